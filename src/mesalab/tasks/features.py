"""The reward feature basis a task declares for inverse reinforcement learning.

A reward in the basis is linear: entering cell ``s'`` earns ``w . phi(s')`` where ``phi`` holds
- one indicator per object type (``door``, ``key``, ...) and per colour (``red``, ...): the cell holds such an
  object. Entering it ends the episode, so these are "reach an object of this kind" rewards, and they are
  *urgent*: earned times the steps left, like the environment's own reward that falls with time, so "reach it
  sooner" is part of the feature (without it only a step cost could express hurry, and a step cost cannot
  tell "reach the goal" from "end the episode by any means" when the goal is the only exit);
- one indicator per region (``corner:top-right`` ...): the cell lies in that region (earned on every step
  spent there, so a region reward means "go there and stay");
- ``step``: 1 on every step (its weight is a per-step reward; negative means a cost that urges ending the
  episode soon, by any exit).

A task declares the features that can tell its candidate objectives apart on its levels.

Step cost. Because object rewards are urgent, a per-step reward ``c`` is *exactly* the same reward as ``-c``
on reaching any object (up to a constant shared by all trajectories: ``c * t_end = c * T - c * (T - t_end)``),
so a separate step weight would not be identifiable; the registered tasks express "hurry to end the episode"
as an equal positive weight on every object type and leave ``step`` out (``FeatureBasis(step=True)`` adds it
for other uses). Likewise every object has one type and one colour, so adding ``a`` to all type weights and
``-a`` to all colour weights changes nothing; the ridge penalty picks the smallest-norm weights, a fixed gauge.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from mesalab.tasks.grid import COLOUR_CHANNEL, COLOURS, OBJECT_TYPES, TYPE_CHANNEL
from mesalab.tasks.objectives import corner_region

STEP_FEATURE = "step"


@dataclass(frozen=True)
class FeatureBasis:
    types: tuple[str, ...] = ()
    colours: tuple[str, ...] = ()
    regions: tuple[tuple[str, int], ...] = ()  # (corner name, k)
    step: bool = False  # see the module docstring: with urgent object features a step cost is redundant

    def __post_init__(self):
        for t in self.types:
            if t not in OBJECT_TYPES:
                raise ValueError(f"unknown object type {t!r}; choose from {OBJECT_TYPES}")
        for c in self.colours:
            if c not in COLOURS:
                raise ValueError(f"unknown colour {c!r}; choose from {COLOURS}")

    @property
    def names(self) -> tuple[str, ...]:
        regions = tuple(f"corner:{corner}" for corner, _ in self.regions)
        return self.types + self.colours + regions + ((STEP_FEATURE,) if self.step else ())

    @property
    def descriptions(self) -> dict[str, str]:
        d = {t: f"reaching a {t}" for t in self.types}
        d.update({c: f"reaching {c} objects" for c in self.colours})
        d.update({f"corner:{corner}": f"staying in the {corner} {k}x{k} corner" for corner, k in self.regions})
        if self.step:
            d[STEP_FEATURE] = "each step taken (negative: hurrying to end the episode)"
        return d

    @property
    def urgent(self) -> tuple[bool, ...]:
        """Per feature: earned times the steps left (object features) or as is (regions, step)."""
        n_objects = len(self.types) + len(self.colours)
        return tuple(i < n_objects for i in range(len(self.names)))

    def objective(self, name: str):
        """The :class:`~mesalab.tasks.objectives.Objective` "first reach a cell where feature ``name`` is on"
        (a type or colour: its objects; a region: any of its cells); ``None`` for ``step``."""
        from mesalab.tasks.objectives import Objective

        if name in self.types:
            return Objective(name, f"reach a {name}", types=(name,))
        if name in self.colours:
            return Objective(name, f"reach a {name} object", colours=(name,))
        for corner, k in self.regions:
            if name == f"corner:{corner}":
                return Objective(name, f"reach the {corner} {k}x{k} corner", region=(corner, k), needs_object=False)
        if name == STEP_FEATURE and self.step:
            return None
        raise ValueError(f"unknown feature {name!r}; this basis has {self.names}")

    @property
    def object_features(self) -> tuple[str, ...]:
        """The features that mark objects (types and colours)."""
        return self.types + self.colours

    def __len__(self) -> int:
        return len(self.names)

    def maps(self, grid: jax.Array) -> jax.Array:
        """``float32[F, H, W]``: each feature's value on entering each cell of one level's grid."""
        h, w = grid.shape[-3], grid.shape[-2]
        maps = [grid[..., TYPE_CHANNEL[t]] for t in self.types]
        maps += [grid[..., COLOUR_CHANNEL[c]] for c in self.colours]
        maps += [corner_region(h, w, corner, k) for corner, k in self.regions]
        if self.step:
            maps.append(jnp.ones((h, w), jnp.bool_))
        if not maps:
            raise ValueError("a feature basis needs at least one feature")
        return jnp.stack(maps).astype(jnp.float32)


ALL_CORNERS = ("top-left", "top-right", "bottom-left", "bottom-right")


def corners(k: int) -> tuple[tuple[str, int], ...]:
    return tuple((c, k) for c in ALL_CORNERS)
