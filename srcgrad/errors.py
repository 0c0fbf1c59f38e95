"""Errors srcgrad raises for input it cannot transform.

Every error points at the user's own code (file, line, the line's text with a caret under the
construct) and says what to do instead, so that nobody has to read srcgrad's internals to fix
their function.
"""

from __future__ import annotations

_REGISTER_FIXES = (
    "Give srcgrad its derivative in one of two ways:\n"
    "  1. define `{name}_derive` beside `{name}` (same module, or the decorated function's\n"
    "     module); with one argument it returns d{name}/dx, with several a tuple of partials;\n"
    "  2. call `srcgrad.register({name}, derivative)` (or decorate the derivative with\n"
    "     `@srcgrad.register({name})`)."
)


class TransformError(Exception):
    """A function (or part of one) that srcgrad cannot turn into gradient code.

    Attributes name the place in the user's source: ``filename``, ``lineno`` (1-based, in the
    file), ``col`` (0-based) and ``line`` (the text of that line).
    """

    def __init__(
        self,
        message: str,
        *,
        filename: str | None = None,
        lineno: int | None = None,
        col: int | None = None,
        line: str | None = None,
        function: str | None = None,
    ) -> None:
        self.message = message
        self.filename = filename
        self.lineno = lineno
        self.col = col
        self.line = line
        self.function = function
        super().__init__(self._render())

    def _render(self) -> str:
        where = []
        if self.filename:
            where.append(f'File "{self.filename}"')
        if self.lineno is not None:
            where.append(f"line {self.lineno}")
        if self.function:
            where.append(f"in {self.function}")
        text = ", ".join(where)
        if self.line is not None:
            stripped = self.line.rstrip()
            indent = len(stripped) - len(stripped.lstrip())
            caret_col = max(self.col if self.col is not None else indent, indent)
            text += f"\n    {stripped.strip()}\n    {' ' * (caret_col - indent)}^"
        return f"{text}\n{self.message}" if text else self.message


class MissingDerivativeError(TransformError):
    """A called function has no derivative: neither built in, registered, nor `_derive`."""

    @staticmethod
    def fixes(name: str) -> str:
        """The two ways to supply a derivative for ``name``, as advice text."""
        return _REGISTER_FIXES.format(name=name)


class SourceUnavailableError(TransformError):
    """Python keeps no source text for the function (a REPL definition, a builtin, C code)."""
