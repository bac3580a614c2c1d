"""Figure helpers for the culture chapter: they draw results and compute nothing a page reports."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import ListedColormap
from matplotlib.patches import Rectangle

from mips.culture.world import COLOR_RGB, STRUCTURES

GRID_CMAP = ListedColormap(np.asarray(COLOR_RGB) / 255.0)
PART_NAMES = ("A", "f(A)", "B", "f(B)")


def draw_grid(ax: Axes, grid: np.ndarray, title: str = "", highlight: bool = False,
              wrong: np.ndarray | None = None) -> None:
    """One grid in Fleuret's colours, thin cell lines; a red frame if ``highlight``; crosses on ``wrong`` cells."""
    h, w = grid.shape
    ax.imshow(grid, cmap=GRID_CMAP, vmin=0, vmax=len(COLOR_RGB) - 1, interpolation="nearest")
    ax.set_xticks(np.arange(-0.5, w, 1), minor=True)
    ax.set_yticks(np.arange(-0.5, h, 1), minor=True)
    ax.grid(which="minor", color="0.85", lw=0.5)
    ax.tick_params(which="both", length=0, labelbottom=False, labelleft=False)
    if highlight:
        ax.add_patch(Rectangle((-0.5, -0.5), w, h, fill=False, ec="red", lw=2.5, clip_on=False))
    if wrong is not None:
        ys, xs = np.nonzero(wrong)
        ax.scatter(xs, ys, marker="x", color="black", s=30)
    ax.set_title(title, fontsize=9)


def draw_quiz(axes: Sequence[Axes], grids: np.ndarray, structure: str = "forward", title: str = "",
              wrong: np.ndarray | None = None) -> None:
    """A quiz (canonical grids ``(4, H, W)``) in a structure's order; the predicted (last) grid is framed red."""
    order = STRUCTURES[structure]
    for k, (ax, part) in enumerate(zip(axes, order, strict=True)):
        draw_grid(ax, grids[part], PART_NAMES[part], highlight=k == 3, wrong=wrong if k == 3 else None)
    if title:
        axes[0].set_ylabel(title, fontsize=8, rotation=0, ha="right", va="center")


def quiz_rows(fig, quizzes: np.ndarray, titles: Sequence[str] = (), structure: str = "forward",
              wrong: Sequence[np.ndarray | None] | None = None):
    """A figure of quizzes, one per row; returns the axes ``(n, 4)``."""
    n = len(quizzes)
    axes = fig.subplots(n, 4, squeeze=False)
    for r in range(n):
        draw_quiz(axes[r], quizzes[r], structure, titles[r] if r < len(titles) else "",
                  None if wrong is None else wrong[r])
    return axes


def curve(ax: Axes, steps: Sequence[int], values: Sequence[float], label: str, **kw) -> None:
    ax.plot(steps, values, label=label, **kw)


def hist_compare(ax: Axes, series: dict[str, np.ndarray], bins: int = 40, range_: tuple[float, float] = (-0.1, 1.0)):
    """Overlaid step histograms (density) of several sets of values, NaNs dropped."""
    for k, (label, v) in enumerate(series.items()):
        v = np.asarray(v)
        v = v[np.isfinite(v)]
        if len(v):
            ax.hist(v, bins=bins, range=range_, histtype="step", density=True, lw=1.6, color=f"C{k}",
                    label=f"{label} (median {np.median(v):.2f})")
    ax.legend(fontsize=8)
