"""Objectives as target maps over the static grid.

An :class:`Objective` says which cells count as "reached the goal" on a level: objects of some types and/or
colours, optionally restricted to a region, or plain region cells. The base objective (the environment's
reward), the intended objective and the candidate proxies of a task are all Objectives over the same
grid, so each one's return and its exact optimum (BFS) are computed the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from mesalab.tasks.grid import COLOUR_CHANNEL, COLOURS, OBJECT_TYPES, TYPE_CHANNEL, WALL_CHANNEL, object_cells


def corner_region(height: int, width: int, corner: str, k) -> jax.Array:
    """``bool[H, W]``: interior cells less than ``k`` cells (Chebyshev) from an interior corner cell
    (a ``k x k`` square); ``k`` may be a traced array."""
    rows = jnp.arange(height)[:, None]
    cols = jnp.arange(width)[None, :]
    r0 = 1 if corner.startswith("top") else height - 2
    c0 = width - 2 if corner.endswith("right") else 1
    near = (jnp.abs(rows - r0) < k) & (jnp.abs(cols - c0) < k)
    interior = (rows > 0) & (rows < height - 1) & (cols > 0) & (cols < width - 1)
    return near & interior


@dataclass(frozen=True)
class Objective:
    """A reward "first reach a target cell", with targets defined on the grid.

    ``types`` / ``colours``: object types / colours that count (``None``: any). ``region``: optional
    ``(corner, k)`` restriction. ``needs_object``: if False, every free cell in the region is a target.
    """

    name: str
    description: str
    types: tuple[str, ...] | None = None
    colours: tuple[str, ...] | None = None
    region: tuple[str, int] | None = None
    needs_object: bool = True

    def __post_init__(self):
        for t in self.types or ():
            if t not in OBJECT_TYPES:
                raise ValueError(f"unknown object type {t!r}; choose from {OBJECT_TYPES}")
        for c in self.colours or ():
            if c not in COLOURS:
                raise ValueError(f"unknown colour {c!r}; choose from {COLOURS}")
        if not self.needs_object and self.region is None:
            raise ValueError("an objective without objects needs a region")

    def target_map(self, grid: jax.Array) -> jax.Array:
        """``bool[H, W]`` target cells of this objective on one level's grid (``[..., H, W, C]`` works)."""
        h, w = grid.shape[-3], grid.shape[-2]
        target = ~grid[..., WALL_CHANNEL]
        if self.needs_object:
            target = target & object_cells(grid)
        if self.types is not None:
            target = target & jnp.any(grid[..., [TYPE_CHANNEL[t] for t in self.types]], axis=-1)
        if self.colours is not None:
            target = target & jnp.any(grid[..., [COLOUR_CHANNEL[c] for c in self.colours]], axis=-1)
        if self.region is not None:
            target = target & corner_region(h, w, *self.region)
        return target


@dataclass(frozen=True)
class AnyOf:
    """A union objective: "first reach a target of any of ``members``" (e.g. "a ball or a box")."""

    name: str
    description: str
    members: tuple[Objective, ...]

    def target_map(self, grid: jax.Array) -> jax.Array:
        maps = [m.target_map(grid) for m in self.members]
        out = maps[0]
        for m in maps[1:]:
            out = out | m
        return out


ANY_OBJECT = Objective("any object", "reach any object (whatever its type or colour)")
