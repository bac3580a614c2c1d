"""Figure helpers for the HUMN chapter: they draw results, they compute nothing that a page reports."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.patches import FancyArrowPatch, Rectangle


def ring_layout(distances_from_start: np.ndarray) -> np.ndarray:
    """Node positions ``(n, 2)``: node ``v`` on the circle of radius ``d(start, v)``, spread evenly on it."""
    d = np.asarray(distances_from_start)
    pos = np.zeros((len(d), 2))
    for r in np.unique(d):
        ring = np.flatnonzero(d == r)
        angles = 2 * np.pi * (np.arange(len(ring)) + 0.5 * (r % 2)) / max(len(ring), 1) + np.pi / 2
        pos[ring] = r * np.c_[np.cos(angles), np.sin(angles)]
    return pos


def draw_graph(ax: Axes, adj: np.ndarray, pos: np.ndarray, start: int, paths: Sequence[Sequence[int]] = (),
               colors: Sequence[str] = (), labels: Sequence[str] = (), edge_alpha: float = 0.12) -> None:
    """The directed graph (faint edges), its nodes numbered, and paths drawn over it as arrows."""
    for u, v in zip(*np.nonzero(adj), strict=True):
        ax.plot(*pos[[u, v]].T, color="0.5", lw=0.6, alpha=edge_alpha, zorder=1)
    for k, path in enumerate(paths):
        color = colors[k] if k < len(colors) else f"C{k}"
        for a, b in zip(path[:-1], path[1:], strict=True):
            ok = adj[a, b]
            ax.add_patch(FancyArrowPatch(pos[a], pos[b], arrowstyle="-|>", mutation_scale=12, lw=2,
                                         color=color, ls="-" if ok else ":", alpha=0.85, zorder=3,
                                         shrinkA=8, shrinkB=8))
        if labels and k < len(labels):
            ax.plot([], [], color=color, lw=2, label=labels[k])
    node_color = ["#d62728" if v == start else "white" for v in range(len(adj))]
    ax.scatter(*pos.T, s=180, c=node_color, edgecolors="k", zorder=4)
    for v, (x, y) in enumerate(pos):
        ax.text(x, y, str(v), ha="center", va="center", fontsize=7, zorder=5)
    ax.set_aspect("equal")
    ax.axis("off")
    if labels:
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, 0.0), fontsize=8, frameon=False, ncol=2)


def draw_cartpole(ax: Axes, state: np.ndarray, x_limit: float = 2.4, pole_length: float = 1.0,
                  alpha: float = 1.0) -> None:
    """One frame of cart pole drawn from its state ``(x, x_dot, theta, theta_dot)`` (gymnasium's geometry:
    the cart leaves the track at ``|x| > 2.4``, the episode ends at ``|theta| > 12`` degrees)."""
    x, _, theta, _ = np.asarray(state, dtype=float)
    ax.plot([-x_limit - 0.3, x_limit + 0.3], [0, 0], color="0.3", lw=1)
    for edge in (-x_limit, x_limit):
        ax.plot([edge, edge], [-0.05, 0.05], color="#d62728", lw=1.5)
    ax.add_patch(Rectangle((x - 0.25, 0.0), 0.5, 0.25, color="#1f77b4", alpha=alpha))
    top = (x + pole_length * np.sin(theta), 0.25 + pole_length * np.cos(theta))
    ax.plot([x, top[0]], [0.25, top[1]], color="#ff7f0e", lw=4, alpha=alpha, solid_capstyle="round")
    ax.set_xlim(-x_limit - 0.4, x_limit + 0.4)
    ax.set_ylim(-0.2, 1.4)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
