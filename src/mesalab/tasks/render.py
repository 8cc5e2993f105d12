"""Draw levels and trajectories with Matplotlib.

Walls are dark; each object is drawn as its type's shape (goal: star, door: tall bar, key: triangle,
ball: circle, box: diamond) filled with its colour; the start is a black ring, the path a line and its end a
cross. :func:`legend_handles` gives the matching legend entries (glyph per type, fill per colour, walls,
start, path, end), restricted to what the drawn levels contain.
"""

from __future__ import annotations

import numpy as np

from mesalab.tasks.grid import COLOUR_CHANNEL, COLOURS, OBJECT_TYPES, TYPE_CHANNEL, WALL_CHANNEL

_RGB = {"red": "#d62728", "blue": "#1f77b4", "green": "#2ca02c", "yellow": "#e6b800"}
_MARKER = {"goal": "*", "door": "s", "key": "^", "ball": "o", "box": "D"}
_NEUTRAL = "#bbbbbb"  # the fill of the type glyphs in the legend (colour is a separate entry)
_WALL_GREY, _FLOOR_GREY = 0.25, 0.96
# a tall bar, the legend's stand-in for the door rectangle drawn by _door_patch
_DOOR_MARKER = [(-0.33, -1.0), (0.33, -1.0), (0.33, 1.0), (-0.33, 1.0), (-0.33, -1.0)]


def draw_level(ax, grid: np.ndarray, start=None, rows=None, cols=None, title: str | None = None) -> None:
    grid = np.asarray(grid)
    h, w = grid.shape[:2]
    ax.imshow(np.where(grid[..., WALL_CHANNEL], _WALL_GREY, _FLOOR_GREY), cmap="gray", vmin=0, vmax=1,
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


def legend_handles(grids=None, path: bool = True) -> list:
    """Legend entries (Matplotlib artists with labels) for the glyphs :func:`draw_level` draws.

    ``grids``: the drawn levels (``bool[H, W, C]`` or a stack of them); when given, only the object types and
    colours that occur in them are listed (all otherwise). ``path``: include the path and end-of-path entries.
    """
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    if grids is None:
        types, colours = list(OBJECT_TYPES), list(COLOURS)
    else:
        g = np.asarray(grids, dtype=bool).reshape((-1,) + np.asarray(grids).shape[-3:])
        types = [t for t in OBJECT_TYPES if g[..., TYPE_CHANNEL[t]].any()]
        colours = [k for k in COLOURS if g[..., COLOUR_CHANNEL[k]].any()]
    handles = [Patch(facecolor=str(_WALL_GREY), edgecolor="none", label="wall")]
    for t in types:
        marker = _DOOR_MARKER if t == "door" else _MARKER[t]
        handles.append(Line2D([], [], linestyle="none", marker=marker, markersize=11 if t == "goal" else 9,
                              markerfacecolor=_NEUTRAL, markeredgecolor="black", markeredgewidth=0.8,
                              label=f"{t} (shape)"))
    for k in colours:
        handles.append(Patch(facecolor=_RGB[k], edgecolor="black", linewidth=0.6, label=f"{k} (fill)"))
    handles.append(Line2D([], [], linestyle="none", marker="o", markersize=9, markerfacecolor="none",
                          markeredgecolor="black", markeredgewidth=2, label="start"))
    if path:
        handles.append(Line2D([], [], color="black", linewidth=1.6, alpha=0.75, label="agent's path"))
        handles.append(Line2D([], [], linestyle="none", marker="x", color="black", markersize=8,
                              markeredgewidth=2, label="episode end"))
    return handles


def render_level_png(path, grid, start=None, rows=None, cols=None, title=None, legend: bool = False) -> None:
    """Write one level (and optionally a trajectory) to a PNG file; ``legend`` adds a key of its glyphs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(3, 3), dpi=100)
    draw_level(ax, grid, start, rows, cols, title)
    fig.tight_layout()
    if legend:
        fig.legend(handles=legend_handles(grid, path=rows is not None and len(rows) > 0), loc="upper center",
                   bbox_to_anchor=(0.5, 0.0), ncol=3, fontsize=7, frameon=False)
        fig.savefig(path, bbox_inches="tight")
    else:
        fig.savefig(path)
    plt.close(fig)
