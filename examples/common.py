"""What every example shares: its command line, its output folder, plotting without a screen.

Not part of srcgrad: the examples import it as a sibling module (``python examples/NAME.py``
puts ``examples/`` on the path). Matplotlib is imported only when a picture is drawn.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent


def parser(doc: str) -> argparse.ArgumentParser:
    """An argument parser with the flags every example takes: ``--quick`` and ``--out``."""
    lines = doc.strip().splitlines()
    p = argparse.ArgumentParser(description=lines[0],
                                epilog="\n".join(lines[1:]).strip() or None,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="a short run with fewer frames (what the tests run)")
    p.add_argument("--out", type=Path, default=None,
                   help="folder for the images (default: examples/out/<example name>/)")
    return p


def output_dir(option: Path | None, name: str) -> Path:
    """The folder an example writes to, created if needed."""
    folder = option if option is not None else HERE / "out" / name
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def pyplot() -> Any:
    """``matplotlib.pyplot`` with the Agg backend: files only, no window, works in CI."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"figure.dpi": 100, "axes.spines.top": False,
                         "axes.spines.right": False, "axes.grid": True, "grid.alpha": 0.3})
    return plt


def save(fig: Any, path: Path, dpi: int = 110) -> Path:
    """Save and close ``fig``; print where it went."""
    fig.tight_layout()
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    pyplot().close(fig)
    print(f"wrote {path}")
    return path


def save_gif(fig: Any, draw: Callable[[int], Any], frames: int, path: Path, fps: int = 12,
             dpi: int = 80) -> Path:
    """An animated GIF of ``fig``, calling ``draw(i)`` to update it for frame ``i``.

    Frames are rendered once each and handed to Pillow (a matplotlib dependency) with a
    shared palette; the last frame is held for 1.5 s so the converged state can be seen.
    """
    from PIL import Image

    fig.set_dpi(dpi)
    draw(0)  # lay out with real titles and labels in place
    fig.tight_layout()
    images = []
    for i in range(frames):
        draw(i)
        fig.canvas.draw()
        images.append(Image.fromarray(np.asarray(fig.canvas.buffer_rgba())[..., :3]))
    palette = images[-1].quantize(colors=64, method=Image.Quantize.MEDIANCUT)
    frames_p = [image.quantize(palette=palette, dither=Image.Dither.NONE) for image in images]
    durations = [round(1000 / fps)] * (frames - 1) + [1500]
    frames_p[0].save(path, save_all=True, append_images=frames_p[1:], duration=durations,
                     loop=0, optimize=True)
    pyplot().close(fig)
    print(f"wrote {path}")
    return path


def snapshot_steps(total: int, frames: int) -> list[int]:
    """``frames`` step numbers in 0..total, denser at the start where the fit moves most."""
    steps = np.unique(np.round(np.geomspace(1, total + 1, frames) - 1).astype(int))
    return [int(s) for s in steps]


def write_summary(folder: Path, summary: dict[str, Any]) -> Path:
    """``summary.json``: what the run achieved, for the tests and for readers of the gallery."""
    path = folder / "summary.json"
    path.write_text(json.dumps(summary, indent=2, default=_plain) + "\n")
    return path


def _plain(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")
