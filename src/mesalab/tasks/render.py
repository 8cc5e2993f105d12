"""Draw levels and trajectories with Matplotlib.

Walls are dark; each object is drawn as its type's shape (goal: star, door: tall bar, key: triangle,
ball: circle, box: square) filled with its colour; the start is a black ring and the path a line.
"""

from __future__ import annotations

import numpy as np

from mesalab.tasks.grid import COLOUR_CHANNEL, COLOURS, OBJECT_TYPES, TYPE_CHANNEL, WALL_CHANNEL

_RGB = {"red": "#d62728", "blue": "#1f77b4", "green": "#2ca02c", "yellow": "#e6b800"}
_MARKER = {"goal": "*", "door": "s", "key": "^", "ball": "o", "box": "D"}


def draw_level(ax, grid: np.ndarray, start=None, rows=None, cols=None, title: str | None = None) -> None:
    grid = np.asarray(grid)
    h, w = grid.shape[:2]
    ax.imshow(np.where(grid[..., WALL_CHANNEL], 0.25, 0.96), cmap="gray", vmin=0, vmax=1,
              extent=(-0.5, w - 0.5, h - 0.5, -0.5))
    for r in range(h):
        for c in range(w):
            types = [t for t in OBJECT_TYPES if grid[r, c, TYPE_CHANNEL[t]]]
            colours = [k for k in COLOURS if grid[r, c, COLOUR_CHANNEL[k]]]
            if types:
                marker = _MARKER[types[0]]
                size = 15 if types[0] == "goal" else 11
                if types[0] == "door":
                    ax.add_patch(_door_patch(r, c, _RGB.get(colours[0] if colours else "", "#777")))
                else:
                    ax.plot(c, r, marker=marker, markersize=size, color=_RGB.get(colours[0] if colours else "", "#777"),
                            markeredgecolor="black", markeredgewidth=0.8)
    if rows is not None and len(rows):
        ax.plot(cols, rows, color="black", linewidth=1.6, alpha=0.75)
        ax.plot(cols[-1], rows[-1], marker="x", color="black", markersize=8, markeredgewidth=2)
    if start is not None:
        ax.plot(start[1], start[0], marker="o", markersize=10, markerfacecolor="none", markeredgecolor="black",
                markeredgewidth=2)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=8)


def _door_patch(r, c, colour):
    from matplotlib.patches import Rectangle

    return Rectangle((c - 0.3, r - 0.45), 0.6, 0.9, facecolor=colour, edgecolor="black", linewidth=1.0)


def render_level_png(path, grid, start=None, rows=None, cols=None, title=None) -> None:
    """Write one level (and optionally a trajectory) to a PNG file."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(3, 3), dpi=100)
    draw_level(ax, grid, start, rows, cols, title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
