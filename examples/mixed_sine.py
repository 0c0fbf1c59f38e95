"""The mixed sine `sin(a) + 0.2 * sin(5a)`: values, exact derivatives and the generated code.

Run:  python examples/mixed_sine.py     (prints a table and the generated source; when
                                         matplotlib is installed, also saves
                                         examples/out/mixed_sine/mixed_sine.png)
Options: --out DIR (where the plot goes), --no-plot, --quick (what the tests run).
Matplotlib: pip install -e '.[examples]'.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
from pathlib import Path

import numpy as np

from srcgrad import grad
from srcgrad.functions import sin


@grad
def mixed_sine(a):
    """A sine with a fifth harmonic on top."""
    return sin(a) + 0.2 * sin(a * 5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plot", action="store_true",
                        help="insist on the plot (fails without matplotlib); the default "
                             "draws it whenever matplotlib is installed")
    parser.add_argument("--no-plot", action="store_true", help="skip the plot")
    parser.add_argument("--quick", action="store_true",
                        help="accepted for symmetry with the other examples (already quick)")
    parser.add_argument("--out", type=Path, default=None,
                        help="folder for the plot (default: examples/out/mixed_sine/)")
    options = parser.parse_args()

    print("Python floats in, Python floats out (the math-module fast path):")
    print(f"{'a':>8} {'value':>12} {'d/da':>12} {'by hand':>12}")
    for a in (-math.pi / 2, -0.7, 0.0, 0.7, math.pi / 2):
        value, (da,) = mixed_sine(a)
        by_hand = math.cos(a) + math.cos(5 * a)
        print(f"{a:8.4f} {value:12.8f} {da:12.8f} {by_hand:12.8f}")

    a = np.linspace(-np.pi, np.pi, 201)
    values, grads = mixed_sine(a)
    worst = np.max(np.abs(grads.a - (np.cos(a) + np.cos(5 * a))))
    print(f"\nNumPy array of {a.size} points in one call: largest deviation from the "
          f"hand-derived derivative = {worst:.1e}")

    print("\nThe generated code (print(mixed_sine.source)):\n")
    print(mixed_sine.source)

    wanted = options.plot or importlib.util.find_spec("matplotlib") is not None
    if wanted and not options.no_plot:
        plot(a, values, grads.a, options.out or Path(__file__).parent / "out" / "mixed_sine")


def plot(a: np.ndarray, values: np.ndarray, derivative: np.ndarray, out: Path) -> Path:
    """The function, srcgrad's derivative, and the hand-derived one dashed on top."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(a, values, lw=2, label="sin(a) + 0.2 sin(5a)")
    ax.plot(a, derivative, lw=2, label="derivative (srcgrad)")
    ax.plot(a, np.cos(a) + np.cos(5 * a), "k--", lw=1, label="cos(a) + cos(5a), by hand")
    ax.axhline(0.0, color="0.7", lw=0.8)
    ax.set(xlabel="a", xlim=(-np.pi, np.pi), title="mixed_sine and its derivative")
    ax.legend(loc="upper left", fontsize=9)
    fig.tight_layout()
    path = out / "mixed_sine.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"saved {path}")
    return path


if __name__ == "__main__":
    main()
