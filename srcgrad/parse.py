"""Source -> AST -> checked, desugared statements.

This is the only module that reads the user's source. It checks every construct once, here,
so that later passes never meet a surprise: whatever they are given is in the supported
subset, and whatever is not gets a `TransformError` naming the file, the line, the construct
and what to write instead.

Desugaring keeps later passes small: ``x += e`` becomes ``x = x + e``; ``a, b = b, a`` becomes
one simultaneous `Assign`; ``a = b = e`` binds both names; docstrings and ``pass`` vanish.
"""

from __future__ import annotations

import ast
import inspect
import keyword
import math
import re
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .errors import MissingDerivativeError, SourceUnavailableError, TransformError

# What each unsupported construct is called in messages, and what to do instead.
_UNSUPPORTED_STATEMENTS: dict[type, tuple[str, str]] = {
    ast.Break: ("`break`", "`break` works in a loop's body (in its `if` statements too); "
                "elsewhere, set a flag and test it."),
    ast.Continue: ("`continue`", "`continue` works in a loop's body (in its `if` statements "
                   "too); elsewhere, set a flag and test it."),
    ast.With: ("a `with` statement", "Move the `with` block out of the differentiated function "
               "and pass what it produces in as an argument."),
    ast.Try: ("a `try` statement", "Handle errors outside the differentiated function; srcgrad "
              "gives inf/nan like NumPy instead of raising."),
    ast.Raise: ("a `raise` statement", "Check inputs before calling the differentiated "
                "function."),
    ast.Assert: ("an `assert` statement", "Check inputs before calling the differentiated "
                 "function."),
    ast.Global: ("a `global` declaration", "Read globals freely, but return results instead of "
                 "assigning to globals."),
    ast.Nonlocal: ("a `nonlocal` declaration", "Return results instead of assigning to "
                   "enclosing variables."),
    ast.Delete: ("a `del` statement", "Simply stop using the name; srcgrad drops unused values."),
    ast.Import: ("an `import` inside the function", "Import at module level."),
    ast.ImportFrom: ("an `import` inside the function", "Import at module level."),
    ast.AsyncFunctionDef: ("a nested function definition", "Define helpers at module level."),
    ast.ClassDef: ("a class definition", "Define classes at module level."),
    ast.AsyncWith: ("an `async with` statement", "Differentiate synchronous code only."),
    ast.AsyncFor: ("an `async for` loop", "Differentiate synchronous code only."),
}
for _name in ("TryStar", "Match"):
    if hasattr(ast, _name):
        _UNSUPPORTED_STATEMENTS[getattr(ast, _name)] = (
            f"a `{_name.lower().replace('star', '*')}` statement",
            "Use `if`/`elif`/`else` (and no `try`: check inputs before the call).",
        )

_UNSUPPORTED_EXPRESSIONS: dict[type, tuple[str, str]] = {
    ast.Yield: ("`yield`", "Return one value; generators cannot be differentiated."),
    ast.YieldFrom: ("`yield from`", "Return one value; generators cannot be differentiated."),
    ast.Await: ("`await`", "Differentiate synchronous code only."),
    ast.BoolOp: ("`and`/`or`", "Nest the conditions (`if a:` then `if b:`), or combine masks "
                 "of arrays with np.logical_and / np.logical_or."),
    ast.ListComp: ("a list comprehension", "srcgrad differentiates `sum([...])` of one; for "
                   "anything else use arrays or a loop."),
    ast.SetComp: ("a set comprehension", "Comprehensions are not supported yet."),
    ast.DictComp: ("a dict comprehension", "Comprehensions are not supported yet."),
    ast.GeneratorExp: ("a generator expression", "srcgrad differentiates `sum(...)` of one; "
                       "for anything else use arrays or a loop."),
    ast.Starred: ("`*` unpacking", "Pass arguments explicitly."),
    ast.NamedExpr: ("an assignment expression `:=`", "Assign on its own line."),
    ast.JoinedStr: ("an f-string", "Strings are not numbers; compute numbers only."),
    ast.Set: ("a set literal", "Return one number or array."),
}

_BINARY_OPERATORS: dict[type, str] = {
    ast.Add: "add", ast.Sub: "sub", ast.Mult: "mul", ast.Div: "div", ast.Pow: "pow",
    ast.MatMult: "matmul",
}  # fmt: skip
_OPERATOR_SYMBOLS: dict[type, str] = {
    ast.FloorDiv: "//", ast.Mod: "%", ast.MatMult: "@", ast.LShift: "<<", ast.RShift: ">>",
    ast.BitOr: "|", ast.BitXor: "^", ast.BitAnd: "&", ast.Not: "not", ast.Invert: "~",
}  # fmt: skip


@dataclass(frozen=True)
class Assign:
    """``targets = values``, all values evaluated before any target is bound."""

    targets: tuple[tuple, ...]  # one tuple of names per `=` (chained); nested for `(a, b), c = p`
    values: tuple[ast.expr, ...]
    lineno: int  # line in the file


class LocalFunction(ast.expr):
    """A function defined inside the differentiated one (``def`` or ``lambda``), parsed like it.

    It stands where the function's value would: ``helper = <LocalFunction>``. Calling it lowers
    its body with the caller's arguments; its free names are looked up in the enclosing
    function's variables when it is called, as Python's closures do.
    """

    _fields = ()

    def __init__(self, parsed: ParsedFunction, lineno: int, col_offset: int) -> None:
        super().__init__(lineno=lineno, col_offset=col_offset)
        self.parsed = parsed


@dataclass(frozen=True)
class Loop:
    """``for target in range(*bounds): body``: the body runs as a loop in the generated code."""

    target: str
    bounds: tuple[ast.expr, ...]  # range's arguments: (stop,), (start, stop) or with a step
    body: tuple[Assign | Loop, ...]
    lineno: int
    condition: ast.expr | None = None  # a `while` loop: runs while this holds (no bounds)
    exit: str | None = None  # a flag a `break` sets to 0.0: the loop stops after the iteration
    # `for` over sequences (`xs`; enumerate's or zip's arguments) and the names bound to their
    # items, each as `Assign` targets. The body starts with one `name = xs[index]` per
    # sequence (for arrays); a list or tuple of arrays is unrolled instead (see lower.py).
    sequences: tuple[ast.expr, ...] = ()
    targets: tuple[tuple, ...] = ()


@dataclass(frozen=True)
class Branch:
    """``if test: then else: orelse`` (``elif`` is a `Branch` in ``orelse``); at run time only
    the branch taken runs, forward and backward."""

    test: ast.expr
    then: tuple[Any, ...]  # Assign, Loop and Branch statements
    orelse: tuple[Any, ...]
    lineno: int


@dataclass(frozen=True)
class Return:
    value: ast.expr
    lineno: int


@dataclass
class Parameter:
    name: str
    kind: str  # "positional" or "keyword" (keyword-only)
    has_default: bool


@dataclass
class ParsedFunction:
    """A user function, checked and desugared; everything later passes need from the source."""

    fn: Callable[..., Any]
    name: str
    filename: str
    lineno: int  # line of the `def` in the file
    params: list[Parameter]
    body: list[Assign | Return]
    source_lines: dict[int, str] = field(repr=False)  # file line number -> text

    @property
    def identifier(self) -> str:
        """`name` as a Python identifier, for generated code and namedtuple types (see
        `python_identifier`); messages and the generated function's ``__name__`` keep `name`."""
        return python_identifier(self.name)

    def error(self, message: str, node: ast.AST | None = None, cls: type = TransformError,
              lineno: int | None = None) -> TransformError:
        """A `TransformError` (or ``cls``) pointing at ``node`` in the user's file."""
        line_no = lineno if lineno is not None else self.file_line(node)
        col = None
        if node is not None and hasattr(node, "col_offset"):
            col = node.col_offset + self._indent
        return cls(message, filename=self.filename, lineno=line_no, col=col,
                   line=self.source_lines.get(line_no) if line_no else None,
                   function=self.name)

    def file_line(self, node: ast.AST | None) -> int | None:
        if node is None or not hasattr(node, "lineno"):
            return None
        return node.lineno + self._offset

    _offset: int = 0
    _indent: int = 0


def python_identifier(name: str) -> str:
    """``name`` if it can name a Python function, else a name that can: a lambda's
    ``<lambda>`` becomes ``lambda_fn``, other characters outside identifiers become ``_``."""
    if name.isidentifier() and not keyword.iskeyword(name):
        return name
    if name == "<lambda>":
        return "lambda_fn"
    cleaned = re.sub(r"\W+", "_", name).strip("_") or "function"
    return f"fn_{cleaned}" if cleaned[0].isdigit() or keyword.iskeyword(cleaned) else cleaned


def parse_function(fn: Callable[..., Any]) -> ParsedFunction:
    """Read ``fn``'s source and return its checked, desugared body."""
    name = getattr(fn, "__name__", repr(fn))
    code = getattr(fn, "__code__", None)
    if code is None:
        raise SourceUnavailableError(
            f"srcgrad cannot read the source of {name!r}: it is not a Python function "
            f"(a builtin or C extension?).\n{MissingDerivativeError.fixes(name)}\n"
            "To differentiate a function of your own instead, define it with `def` in a .py file.",
            function=name,
        )
    filename = code.co_filename
    try:
        lines, first = inspect.getsourcelines(fn)
    except (OSError, TypeError):
        raise SourceUnavailableError(
            f"srcgrad cannot read the source of {name!r} (defined in {filename}): Python "
            "keeps no source for functions typed at the interactive prompt or built by exec().\n"
            "Define it with `def` in a .py file (or a notebook cell), or, if it is only called "
            f"inside a differentiated function, give srcgrad its derivative.\n"
            f"{MissingDerivativeError.fixes(name)}",
            filename=filename, function=name,
        ) from None
    text = "".join(lines)
    dedented = textwrap.dedent(text)
    indent = _indent_of(lines, dedented)
    source_lines = {first + i: line.rstrip("\n") for i, line in enumerate(lines)}
    try:
        module = ast.parse(dedented)
    except SyntaxError as exc:  # e.g. a lambda whose line is only part of an expression
        module = _parse_lambda_line(dedented, exc, filename, first, source_lines, name)
    target = _find_definition(module, fn, name)
    if target is None and name == "<lambda>":
        raise SourceUnavailableError(
            f"srcgrad could not tell which lambda in its source lines ({filename}, line "
            f"{first}) is the one to differentiate: more than one there has its parameters "
            f"({', '.join(fn.__code__.co_varnames[:fn.__code__.co_argcount])}). Assign it on a "
            "line of its own (`f = lambda x: ...`) or define it with `def`.",
            filename=filename, lineno=first, line=source_lines.get(first), function=name,
        )
    if target is None:
        raise SourceUnavailableError(
            f"srcgrad could not find the definition of {name!r} in its source lines "
            f"({filename}, line {first}). Define it with a plain `def`.",
            filename=filename, lineno=first, function=name,
        )
    parsed = ParsedFunction(fn=fn, name=name, filename=filename, lineno=first, params=[],
                            body=[], source_lines=source_lines)
    parsed._offset = first - 1
    parsed._indent = indent
    parsed.params = _parameters(parsed, target.args)
    if isinstance(target, ast.Lambda):
        parsed.body = [Return(_check_expr(parsed, target.body), parsed.file_line(target))]
    else:
        parsed.lineno = parsed.file_line(target) or first
        parsed.body = _statements(parsed, target)
    return parsed


def _indent_of(lines: list[str], dedented: str) -> int:
    first_original = next((ln for ln in lines if ln.strip()), "")
    first_dedented = next((ln for ln in dedented.splitlines() if ln.strip()), "")
    return len(first_original) - len(first_original.lstrip()) - (
        len(first_dedented) - len(first_dedented.lstrip())
    )


def _parse_lambda_line(text: str, exc: SyntaxError, filename: str, first: int,
                       source_lines: dict[int, str], name: str) -> ast.Module:
    # inspect returns whole lines; a lambda inside a larger expression may not parse alone.
    try:
        return ast.parse("(" + text.strip() + ")") if text.strip() else ast.parse("")
    except SyntaxError:
        raise TransformError(
            f"srcgrad could not parse the source of {name!r}: {exc.msg}. Define it with a plain "
            "`def` on lines of its own.",
            filename=filename, lineno=first, line=source_lines.get(first), function=name,
        ) from None


def _find_definition(module: ast.Module, fn: Callable[..., Any], name: str) -> Any:
    for node in ast.walk(module):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == name:
            return node
    if name == "<lambda>":
        arg_names = list(fn.__code__.co_varnames[: fn.__code__.co_argcount])
        lambdas = [n for n in ast.walk(module) if isinstance(n, ast.Lambda)
                   and [a.arg for a in n.args.args] == arg_names]
        if len(lambdas) == 1:
            return lambdas[0]
    return None


def _parameters(parsed: ParsedFunction, args: ast.arguments) -> list[Parameter]:
    if args.vararg or args.kwarg:
        star = args.vararg or args.kwarg
        raise parsed.error(
            f"`*{star.arg}` / `**` parameters are not supported: srcgrad needs to know every "
            "parameter it may differentiate. Name the parameters explicitly.", star)
    positional = [*args.posonlyargs, *args.args]
    n_defaults = len(args.defaults)
    params = [Parameter(a.arg, "positional", i >= len(positional) - n_defaults)
              for i, a in enumerate(positional)]
    params += [Parameter(a.arg, "keyword", d is not None)
               for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True)]
    return params


def _statements(parsed: ParsedFunction, fn_node: ast.FunctionDef) -> list[Assign | Return]:
    body = list(fn_node.body)
    if body and _is_docstring(body[0]):
        body = body[1:]
    out: list[Assign | Return] = []
    for index, stmt in enumerate(body):
        is_last = index == len(body) - 1
        lineno = parsed.file_line(stmt)
        if isinstance(stmt, ast.Return):
            if not is_last:
                raise parsed.error("`return` must be the last statement: srcgrad "
                                   "differentiates straight-line code ending in one return.", stmt)
            if stmt.value is None:
                raise parsed.error("`return` needs a value: the number or array to "
                                   "differentiate.", stmt)
            if isinstance(stmt.value, (ast.Tuple, ast.List)):
                raise parsed.error("Return one number or array: srcgrad differentiates a "
                                   "single output (return a sum or pack values in an array).",
                                   stmt.value)
            out.append(Return(_check_expr(parsed, stmt.value), lineno))
        elif isinstance(stmt, ast.FunctionDef):
            if stmt.decorator_list:
                raise parsed.error("A decorated nested function is not supported; define it "
                                   "without decorators (or at module level).", stmt)
            local = LocalFunction(_nested(parsed, stmt, stmt.name), stmt.lineno, stmt.col_offset)
            out.append(Assign(((stmt.name,),), (local,), lineno))
        elif isinstance(stmt, (ast.For, ast.While)):
            out.extend(_loop_statements(parsed, stmt))
        elif isinstance(stmt, ast.If):
            out.append(_branch(parsed, stmt))
        elif isinstance(stmt, ast.Assign):
            out.append(_assignment(parsed, stmt))
        elif isinstance(stmt, ast.AugAssign):
            out.append(_augmented(parsed, stmt))
        elif isinstance(stmt, ast.AnnAssign):
            if stmt.value is None or not isinstance(stmt.target, ast.Name):
                raise parsed.error("An annotation without a value binds nothing; remove it.", stmt)
            out.append(Assign(((stmt.target.id,),), (_check_expr(parsed, stmt.value),), lineno))
        elif isinstance(stmt, ast.Pass) or _is_docstring(stmt):
            continue
        elif isinstance(stmt, ast.Expr):
            _check_expr(parsed, stmt.value)  # a `yield` or call deserves its own message
            raise parsed.error("An expression statement has no effect on the result; assign "
                               "its value to a name or remove it.", stmt)
        else:
            what, advice = _UNSUPPORTED_STATEMENTS.get(
                type(stmt), (f"a `{type(stmt).__name__}` statement", ""))
            raise parsed.error(f"srcgrad does not support {what} here. {advice}".rstrip(), stmt)
    if not out or not isinstance(out[-1], Return):
        raise parsed.error(f"`{parsed.name}` must end with `return <value>`: the value to "
                           "differentiate.", fn_node)
    return out


def _is_docstring(stmt: ast.stmt) -> bool:
    return (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant)
            and isinstance(stmt.value.value, str))


def _assignment(parsed: ParsedFunction, stmt: ast.Assign) -> Assign:
    value = stmt.value
    targets = [_target_names(parsed, t) for t in stmt.targets]
    widths = {len(t) for t in targets if len(t) > 1}
    if widths and isinstance(value, (ast.Tuple, ast.List)):
        if {len(value.elts)} != widths or any(len(t) == 1 for t in targets):
            raise parsed.error("Tuple unpacking needs a tuple of the same length on the right, "
                               "as in `a, b = b, a`.", stmt)
        values = tuple(_check_expr(parsed, v) for v in value.elts)
        return Assign(tuple(targets), values, parsed.file_line(stmt))
    # `a = expr`, or `W1, b1 = params`: unpacking a structured parameter (checked when lowered)
    return Assign(tuple(targets), (_check_expr(parsed, value),), parsed.file_line(stmt))


def _target_names(parsed: ParsedFunction, target: ast.expr) -> tuple:
    """A target as a tuple of names; nested tuples for nested unpacking."""
    if isinstance(target, ast.Name):
        return (target.id,)
    if isinstance(target, (ast.Tuple, ast.List)):
        names: list = []
        for element in target.elts:
            inner = _target_names(parsed, element)
            names.append(inner[0] if isinstance(element, ast.Name) else inner)
        return tuple(names)
    what = {ast.Subscript: "an element `x[...]`", ast.Attribute: "an attribute `x.y`",
            ast.Starred: "a starred name"}.get(type(target), "that target")
    raise parsed.error(f"srcgrad cannot assign to {what}: assign to plain names only "
                       "(values are immutable here).", target)


def _loop_statements(parsed: ParsedFunction, stmt: ast.For | ast.While) -> list[Any]:
    """A `for` loop (as a loop over indices, or over a list's items) or a `while` loop, whose
    body is assignments, loops, `if` statements, `break` and `continue`; preceded by its
    `break` flag's start and followed by its `else` clause, if it has them.

    `break` and `continue` become flags, so that the body stays one block of straight
    assignments and `if` statements, which is what the loop's graph is made of:
    ``running_<line>`` starts at 1.0 before the loop and a `break` sets it to 0.0 (the
    generated loop stops after that iteration); where a jump happens only on some paths
    through an `if`, the statements after the `if` are guarded by a flag (``running_<line>``,
    or ``going_<line>``, set to 1.0 at each iteration's start, when there is a `continue`).
    Where one arm of an `if` always jumps, the rest of the body simply moves into the other
    arm, as in ``if c: continue`` -> ``if c: pass / else: <rest>``: no flag at all.
    """
    line = parsed.file_line(stmt)
    condition = None
    iteration = _Iteration(f"_step_{line}", (), (), (), ())
    if isinstance(stmt, ast.While):
        condition = _check_expr(parsed, stmt.test)
        if isinstance(condition, ast.Constant) and not isinstance(condition.value, str):
            if not condition.value:
                raise parsed.error("`while` on a false constant never runs its body; remove "
                                   "the loop.", stmt.test)
            if not any(isinstance(n, ast.Break) for n in _own_statements(stmt.body)):
                raise parsed.error("This `while` loop has no `break`, so it never ends.",
                                   stmt.test)
            condition = ast.copy_location(ast.Constant(1.0), stmt.test)  # `while True:`
    else:
        iteration = _iteration(parsed, stmt.target, stmt.iter, stmt)
    running, going = f"running_{line}", f"going_{line}"
    has_continue = any(isinstance(n, ast.Continue) for n in _own_statements(stmt.body))
    jumps = _Jumps(running, going if has_continue else running, set_going=has_continue)
    block = _jump_block(parsed, list(stmt.body), jumps)
    if has_continue and not jumps.guarded:  # no statement waits on `going`: drop it
        jumps = _Jumps(running, running, set_going=False)
        block = _jump_block(parsed, list(stmt.body), jumps)
    start = [Assign(((going,),), (ast.Constant(1.0),), line)] if jumps.guard == going else []
    body: list[Any] = [*iteration.prefix, *start, *block]
    loop_names = {iteration.index} | {n for a in iteration.prefix for t in a.targets
                                      for n in _flatten(t)}
    for part in body[len(iteration.prefix):]:
        clash = loop_names & set(_assigned_names(part))
        if clash:
            raise parsed.error(f"The loop variable `{clash.pop()}` is assigned in the loop "
                               "body; use another name.", stmt)
    loop = Loop(iteration.index, iteration.bounds, tuple(body), line, condition,
                exit=running if jumps.broke else None, sequences=iteration.sequences,
                targets=iteration.targets)
    out: list[Any] = [loop]
    if jumps.broke:  # the flag starts at 1.0 before the loop
        out.insert(0, Assign(((running,),), (ast.Constant(1.0),), line))
    if stmt.orelse:  # runs when the loop was not left by a `break`
        orelse: list[Any] = []
        for inner in stmt.orelse:
            if not _nested_statement(parsed, inner, orelse):
                what = _UNSUPPORTED_STATEMENTS.get(type(inner), (f"a `{type(inner).__name__}`",))[0]
                raise parsed.error(f"srcgrad does not support {what} in a loop's `else` clause; "
                                   "set a flag there and test it after the loop.", inner)
        if jumps.broke:
            else_line = parsed.file_line(stmt.orelse[0])
            guard = ast.copy_location(ast.Name(running, ast.Load()), stmt.orelse[0])
            out.append(Branch(guard, tuple(orelse), (), else_line or line))
        else:
            out.extend(orelse)
    return out


@dataclass
class _Jumps:
    """How one loop's `break` and `continue` statements are written as flags."""

    running: str  # set to 0.0 by `break`; the loop stops after an iteration that clears it
    guard: str  # the flag that guards the statements after a possible jump
    set_going: bool  # jumps clear the per-iteration flag (`going_<line>`)
    broke: bool = False  # the body has a `break`
    guarded: bool = False  # some statements are guarded by `guard`


def _own_statements(statements: list[ast.stmt]) -> list[ast.stmt]:
    """The statements of a loop body, inside its `if` statements but not its nested loops
    (whose `break` and `continue` are their own)."""
    out: list[ast.stmt] = []
    for stmt in statements:
        out.append(stmt)
        if isinstance(stmt, ast.If):
            out += _own_statements(stmt.body) + _own_statements(stmt.orelse)
    return out


def _jumps_in(statements: list[ast.stmt]) -> bool:
    return any(isinstance(s, (ast.Break, ast.Continue)) for s in _own_statements(statements))


def _always_jumps(statements: list[ast.stmt]) -> bool:
    """Whether every path through ``statements`` ends in `break` or `continue`."""
    for stmt in statements:
        if isinstance(stmt, (ast.Break, ast.Continue)):
            return True
        if isinstance(stmt, ast.If) and _always_jumps(stmt.body) and _always_jumps(stmt.orelse):
            return True
    return False


def _jump_block(parsed: ParsedFunction, statements: list[ast.stmt], jumps: _Jumps
                ) -> list[Any]:
    """Statements of a loop body with `break` / `continue` written as flags (see
    `_loop_statements`); the statements after a jump are the rest of the iteration, so they
    move into the arm of the `if` that does not jump, or behind a guard."""
    body: list[Any] = []
    for position, inner in enumerate(statements):
        rest = statements[position + 1:]
        line = parsed.file_line(inner)
        if isinstance(inner, (ast.Break, ast.Continue)):
            if isinstance(inner, ast.Break):
                jumps.broke = True
                body.append(Assign(((jumps.running,),), (ast.Constant(0.0),), line))
            if jumps.set_going:
                body.append(Assign(((jumps.guard,),), (ast.Constant(0.0),), line))
            return body  # what follows a jump never runs
        if isinstance(inner, ast.If) and _jumps_in([inner]):
            test = _check_expr(parsed, inner.test)
            if _always_jumps(inner.body):
                then, orelse = inner.body, [*inner.orelse, *rest]
                rest = []
            elif _always_jumps(inner.orelse):
                then, orelse = [*inner.body, *rest], inner.orelse
                rest = []
            else:
                then, orelse = inner.body, inner.orelse
            body.append(Branch(test, tuple(_jump_block(parsed, then, jumps)),
                               tuple(_jump_block(parsed, orelse, jumps)), line))
            remaining = _jump_block(parsed, rest, jumps)
            if remaining:  # runs only if the `if` did not jump
                jumps.guarded = True
                guard = ast.copy_location(ast.Name(jumps.guard, ast.Load()), inner)
                body.append(Branch(guard, tuple(remaining), (), parsed.file_line(rest[0])))
            return body
        returned = next((s for s in _own_statements([inner]) if isinstance(s, ast.Return)),
                        None)
        if returned is not None:
            raise parsed.error("`return` inside a loop is not supported yet; assign the result "
                               "to a variable that exists before the loop, `break`, and return "
                               "it after the loop.", returned)
        if not _nested_statement(parsed, inner, body):
            what = _UNSUPPORTED_STATEMENTS.get(type(inner), (f"a `{type(inner).__name__}`",))[0]
            raise parsed.error(f"srcgrad does not support {what} inside a loop yet; a loop body "
                               "is assignments (`x = x + dt * f(x)`, `total += ...`), loops, "
                               "`if` statements, `break` and `continue`.", inner)
    return body


def _nested_statement(parsed: ParsedFunction, inner: ast.stmt, out: list[Any]) -> bool:
    """Add a statement of a loop body or a branch to ``out``; False if it is not one srcgrad
    takes there (the caller says why, for its kind of block)."""
    if isinstance(inner, ast.Assign):
        out.append(_assignment(parsed, inner))
    elif isinstance(inner, ast.AugAssign):
        out.append(_augmented(parsed, inner))
    elif isinstance(inner, (ast.For, ast.While)):
        out.extend(_loop_statements(parsed, inner))
    elif isinstance(inner, ast.If):
        out.append(_branch(parsed, inner))
    elif not isinstance(inner, ast.Pass):
        return False
    return True


def _branch(parsed: ParsedFunction, stmt: ast.If) -> Branch:
    """An `if` statement whose branches are assignments, loops and `if` statements."""

    def block(statements: list[ast.stmt]) -> tuple[Any, ...]:
        out: list[Any] = []
        for inner in statements:
            if _nested_statement(parsed, inner, out):
                continue
            if isinstance(inner, ast.Return):
                raise parsed.error("`return` inside an `if` is not supported yet; assign the "
                                   "result to a name in each branch and return it after the "
                                   "`if`.", inner)
            what = _UNSUPPORTED_STATEMENTS.get(type(inner), (f"a `{type(inner).__name__}`",))[0]
            raise parsed.error(f"srcgrad does not support {what} inside an `if` yet; a branch "
                               "is assignments, loops and `if` statements.", inner)
        return tuple(out)

    return Branch(_check_expr(parsed, stmt.test), block(stmt.body), block(stmt.orelse),
                  parsed.file_line(stmt))


@dataclass(frozen=True)
class _Iteration:
    """``for target in iterator`` as a loop over indices (see `_iteration`)."""

    index: str  # the index's name: range's variable, enumerate's, or a made-up one
    bounds: tuple[ast.expr, ...]  # range's arguments
    prefix: tuple[Assign, ...]  # `v = xs[index]`, one per sequence, starting each iteration
    sequences: tuple[ast.expr, ...]  # what is iterated over (none for range)
    targets: tuple[tuple, ...]  # the names bound to each sequence's items


def _iteration(parsed: ParsedFunction, target: ast.expr, iterator: ast.expr, where: ast.AST
               ) -> _Iteration:
    """``for target in iterator`` as a loop over indices. ``range(...)`` is itself; ``xs``
    (an array) is ``range(len(xs))`` with ``v = xs[i]``; ``enumerate(xs)`` and ``zip(xs, ys)``
    likewise. A list or tuple (a structured parameter, or written out) is read the same way
    here; lowering, which knows what ``xs`` holds, unrolls a loop over one."""
    line = parsed.file_line(where)
    call = iterator if isinstance(iterator, ast.Call) and isinstance(
        iterator.func, ast.Name) and not iterator.keywords else None
    kind = call.func.id if call is not None else None

    def sequence(node: ast.expr) -> ast.expr:
        if not isinstance(node, (ast.Name, ast.Attribute, ast.Subscript, ast.Tuple, ast.List)):
            raise parsed.error("srcgrad loops over a name (an array, or a list or tuple "
                               "parameter), a list or tuple written out, `range(...)`, "
                               "`enumerate(...)` or `zip(...)` of those; assign this "
                               "sequence to a name first.", node)
        return _check_expr(parsed, node)

    def over(names: list[ast.expr], sequences: list[ast.expr], index: str) -> _Iteration:
        checked = [sequence(s) for s in sequences]
        targets = tuple(_target_names(parsed, t) for t in names)
        prefix = tuple(
            Assign((t,), (ast.copy_location(ast.Subscript(s, ast.Name(index, ast.Load()),
                                                          ast.Load()), s),), line)
            for t, s in zip(targets, checked, strict=True))
        length = ast.copy_location(ast.Call(ast.Name("len", ast.Load()), [checked[0]], []),
                                   checked[0])
        return _Iteration(index, (length,), prefix, tuple(checked), targets)

    if kind == "range" and isinstance(target, ast.Name) and 1 <= len(call.args) <= 3:
        return _Iteration(target.id, tuple(_check_expr(parsed, a) for a in call.args), (),
                          (), ())
    if kind == "enumerate" and len(call.args) == 1 and isinstance(target, ast.Tuple) and len(
            target.elts) == 2 and isinstance(target.elts[0], ast.Name):
        inner, items = call.args[0], target.elts[1]
        if (isinstance(inner, ast.Call) and isinstance(inner.func, ast.Name)
                and inner.func.id == "zip" and not inner.keywords and isinstance(
                    items, ast.Tuple) and len(items.elts) == len(inner.args) > 0):
            return over(list(items.elts), list(inner.args), target.elts[0].id)  # of a zip
        return over([items], [inner], target.elts[0].id)
    if kind == "zip" and call.args and isinstance(target, ast.Tuple) and len(
            target.elts) == len(call.args):
        index = f"_{'_'.join(_flatten(_target_names(parsed, target)))}_index"
        return over(list(target.elts), list(call.args), index)
    if kind is None and isinstance(target, (ast.Name, ast.Tuple, ast.List)):
        names = _flatten(_target_names(parsed, target))
        index = f"{names[0]}_index" if isinstance(target, ast.Name) else (
            f"_{'_'.join(names)}_index")
        return over([target], [iterator], index)
    raise parsed.error("srcgrad differentiates loops over `range(...)`, over an array "
                       "(`for v in xs`), over a list or tuple of arrays (`for W, b in "
                       "layers`), `enumerate(xs)` and `zip(xs, ys)`; zip stops at the "
                       "shortest sequence.", where)


def _assigned_names(part: Any) -> list[str]:
    """Every name a statement of a loop or branch body binds (nested blocks included)."""
    if isinstance(part, Assign):
        return [n for target in part.targets for n in _flatten(target)]
    if isinstance(part, Loop):
        return [part.target, *(n for p in part.body for n in _assigned_names(p))]
    return [n for block in (part.then, part.orelse) for p in block for n in _assigned_names(p)]


def _flatten(target: Any) -> list[str]:
    if isinstance(target, str):
        return [target]
    return [name for part in target for name in _flatten(part)]


def _augmented(parsed: ParsedFunction, stmt: ast.AugAssign) -> Assign:
    if not isinstance(stmt.target, ast.Name):
        raise parsed.error("Augmented assignment works on plain names only.", stmt.target)
    if type(stmt.op) not in _BINARY_OPERATORS:
        symbol = _OPERATOR_SYMBOLS.get(type(stmt.op), type(stmt.op).__name__)
        raise parsed.error(f"The operator `{symbol}=` is not supported; srcgrad differentiates "
                           "+ - * / and **.", stmt)
    load = ast.copy_location(ast.Name(stmt.target.id, ast.Load()), stmt.target)
    combined = ast.copy_location(ast.BinOp(load, stmt.op, stmt.value), stmt)
    return Assign(((stmt.target.id,),), (_check_expr(parsed, combined),), parsed.file_line(stmt))


def _nested(parsed: ParsedFunction, node: ast.FunctionDef | ast.Lambda, name: str
            ) -> ParsedFunction:
    """A function defined inside ``parsed``: same file, same globals and closure."""
    inner = ParsedFunction(fn=parsed.fn, name=name, filename=parsed.filename,
                           lineno=parsed.file_line(node) or parsed.lineno, params=[], body=[],
                           source_lines=parsed.source_lines)
    inner._offset = parsed._offset
    inner._indent = parsed._indent
    inner.params = _parameters(inner, node.args)
    if isinstance(node, ast.Lambda):
        inner.body = [Return(_check_expr(inner, node.body), parsed.file_line(node))]
    else:
        inner.body = _statements(inner, node)
    return inner


class SumLoop(ast.expr):
    """``sum(expr for v in xs)``, ``max(...)`` or ``min(...)`` of a generator or a list
    comprehension: a loop combining the values of ``expr`` into an accumulator."""

    _fields = ()

    def __init__(self, loop: Loop, total: str, start: float, lineno: int,
                 col_offset: int) -> None:
        super().__init__(lineno=lineno, col_offset=col_offset)
        self.loop = loop
        self.total = total  # the accumulator's name inside the loop
        self.start = start  # its value before the first iteration


_REDUCTIONS = {"sum": 0.0, "max": -math.inf, "min": math.inf}


class _Sums(ast.NodeTransformer):
    """Replace ``sum(<comprehension>)`` by a `SumLoop`."""

    def __init__(self, parsed: ParsedFunction) -> None:
        self.parsed = parsed

    def visit_Call(self, node: ast.Call) -> ast.expr:
        self.generic_visit(node)
        if not (isinstance(node.func, ast.Name) and node.func.id in _REDUCTIONS
                and len(node.args) == 1 and not node.keywords
                and isinstance(node.args[0], (ast.GeneratorExp, ast.ListComp))):
            return node
        kind = node.func.id
        comprehension = node.args[0]
        if len(comprehension.generators) != 1 or comprehension.generators[0].ifs:
            raise self.parsed.error("srcgrad sums one `for` clause without `if` "
                                    "(`sum(f(v) for v in xs)`); write a loop for more.", node)
        generator = comprehension.generators[0]
        iteration = _iteration(self.parsed, generator.target, generator.iter, node)
        total = {"sum": "total", "max": "largest", "min": "smallest"}[kind]
        line = self.parsed.file_line(node)
        value = _check_expr(self.parsed, comprehension.elt)
        if kind == "sum":
            step: ast.expr = ast.BinOp(ast.Name(total, ast.Load()), ast.Add(), value)
        else:  # the builtin max/min of two values: srcgrad's maximum/minimum
            step = ast.Call(ast.Name(kind, ast.Load()), [ast.Name(total, ast.Load()), value], [])
        step = ast.copy_location(step, node)
        loop = Loop(iteration.index, iteration.bounds,
                    (*iteration.prefix, Assign(((total,),), (step,), line)), line,
                    sequences=iteration.sequences, targets=iteration.targets)
        return SumLoop(loop, total, _REDUCTIONS[kind], node.lineno, node.col_offset)


class _Lambdas(ast.NodeTransformer):
    """Replace each ``lambda`` by a `LocalFunction` (their bodies are checked on the way)."""

    def __init__(self, parsed: ParsedFunction) -> None:
        self.parsed = parsed

    def visit_Lambda(self, node: ast.Lambda) -> ast.expr:
        return LocalFunction(_nested(self.parsed, node, "<lambda>"), node.lineno, node.col_offset)


def _check_expr(parsed: ParsedFunction, expr: ast.expr) -> ast.expr:
    """Raise on anything outside the supported expression subset; return ``expr``."""
    if any(isinstance(node, ast.Lambda) for node in ast.walk(expr)):
        expr = _Lambdas(parsed).visit(expr)
    if any(isinstance(node, (ast.GeneratorExp, ast.ListComp)) for node in ast.walk(expr)):
        expr = _Sums(parsed).visit(expr)
    for node in ast.walk(expr):
        if isinstance(node, ast.BinOp) and type(node.op) not in _BINARY_OPERATORS:
            symbol = _OPERATOR_SYMBOLS.get(type(node.op), type(node.op).__name__)
            raise parsed.error(f"The operator `{symbol}` is not supported; srcgrad "
                               "differentiates + - * / ** and @.", node)
        if isinstance(node, ast.UnaryOp) and not isinstance(node.op, (ast.USub, ast.UAdd)):
            symbol = _OPERATOR_SYMBOLS.get(type(node.op), type(node.op).__name__)
            raise parsed.error(f"The operator `{symbol}` is not supported; srcgrad "
                               "differentiates unary - and +.", node)
        if isinstance(node, ast.Constant) and isinstance(node.value, (bytes, complex)):
            raise parsed.error(f"The constant {node.value!r} is not a real number; srcgrad "
                               "computes with ints and floats.", node)
        if isinstance(node, ast.Call):
            for arg in node.args:
                if isinstance(arg, ast.Starred):
                    raise parsed.error("`*args` in a call is not supported; pass arguments "
                                       "explicitly.", arg)
            for keyword in node.keywords:
                if keyword.arg is None:
                    raise parsed.error("`**kwargs` in a call is not supported; pass arguments "
                                       "explicitly.", keyword.value)
        what_advice = _UNSUPPORTED_EXPRESSIONS.get(type(node))
        if what_advice:
            what, advice = what_advice
            raise parsed.error(f"srcgrad does not support {what} here. {advice}", node)
    return expr
