"""The mixed sine `sin(a) + 0.2 * sin(5a)`: values, exact derivatives and the generated code.

Run:  python examples/mixed_sine.py            (prints a table and the generated source)
      python examples/mixed_sine.py --plot     (also saves examples/out/mixed_sine.png;
                                                needs matplotlib: pip install -e '.[examples]')
"""

from __future__ import annotations

import argparse
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
    parser.add_argument("--plot", action="store_true", help="save a plot (needs matplotlib)")
    parser.add_argument("--quick", action="store_true", help="skip the plot (used by tests)")
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

    if options.plot and not options.quick:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        out = Path(__file__).parent / "out"
        out.mkdir(exist_ok=True)
        fig, ax = plt.subplots(figsize=(7, 4))
        ax.plot(a, values, label="sin(a) + 0.2 sin(5a)")
        ax.plot(a, grads.a, label="derivative (srcgrad)")
        ax.set_xlabel("a")
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / "mixed_sine.png", dpi=120)
        print(f"saved {out / 'mixed_sine.png'}")


if __name__ == "__main__":
    main()
