"""Level generators of the gridworld task families (pure JAX; vmap over keys to build a pool).

Each generator takes ``(key, dist, shape)`` where ``dist`` is a :class:`Distribution` (arrays, so dials
can be vmapped) and ``shape`` the static :class:`LevelShape`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp

from mesalab.tasks.grid import COLOURS, OBJECT_TYPES, Level
from mesalab.tasks.mazegen import generate_walls
from mesalab.tasks.objectives import corner_region

T = {name: i for i, name in enumerate(OBJECT_TYPES)}
C = {name: i for i, name in enumerate(COLOURS)}
DISTRACTOR_TYPES = jnp.array([T["key"], T["ball"], T["box"]], jnp.int32)
RED_DOOR_DISTRACTORS = jnp.array([T["ball"], T["box"]], jnp.int32)  # keys appear only as the red test object
NON_RED = jnp.array([C["blue"], C["green"], C["yellow"]], jnp.int32)


@dataclass(frozen=True)
class LevelShape:
    height: int
    width: int
    max_objects: int


class Distribution(NamedTuple):
    """The dials of a level distribution (scalars as arrays; vmappable).

    wall_density: probability of keeping each interior wall of a perfect maze (0 open room, 1 maze).
    n_distractors: number of non-goal objects (at most ``max_objects - 1``).
    alpha: fraction of *disambiguating* levels, on which the proxies and the base objective disagree.
    corner_k: size of the corner region (corner-goal).
    """

    wall_density: jax.Array
    n_distractors: jax.Array
    alpha: jax.Array
    corner_k: jax.Array


def make_distribution(wall_density=0.0, n_distractors=0, alpha=0.0, corner_k=3) -> Distribution:
    return Distribution(
        wall_density=jnp.asarray(wall_density, jnp.float32),
        n_distractors=jnp.asarray(n_distractors, jnp.int32),
        alpha=jnp.asarray(alpha, jnp.float32),
        corner_k=jnp.asarray(corner_k, jnp.int32),
    )


def _place(key: jax.Array, free: jax.Array, first_mask: jax.Array, n: int) -> jax.Array:
    """``n`` distinct free cells ``int32[n, 2]``: the first inside ``first_mask``, the rest anywhere free."""
    h, w = free.shape
    k1, k2 = jax.random.split(key)
    p_first = (free & first_mask).reshape(-1).astype(jnp.float32)
    p_first = jnp.where(p_first.sum() > 0, p_first, free.reshape(-1).astype(jnp.float32))
    first = jax.random.categorical(k1, jnp.log(p_first))
    rest_mask = free.reshape(-1).at[first].set(False)
    g = jax.random.gumbel(k2, (h * w,))
    rest = jnp.argsort(-jnp.where(rest_mask, g, -jnp.inf))[: n - 1]
    idx = jnp.concatenate([first[None], rest])
    return jnp.stack([idx // w, idx % w], axis=-1).astype(jnp.int32)


def red_door_level(key: jax.Array, dist: Distribution, shape: LevelShape) -> Level:
    """One door plus distractors (balls/boxes in blue, green or yellow). Ordinary levels: the door is red and
    nothing else is. Disambiguating levels (probability alpha): the door is blue and a red key is present."""
    kw, kp, kt, kc, ka = jax.random.split(key, 5)
    walls = generate_walls(kw, shape.height, shape.width, dist.wall_density)
    k = shape.max_objects
    cells = _place(kp, ~walls, jnp.ones_like(walls), k + 1)
    disamb = jax.random.uniform(ka) < dist.alpha
    types = jnp.concatenate([jnp.array([T["door"]]), jax.random.choice(kt, RED_DOOR_DISTRACTORS, (k - 1,))])
    types = types.at[1].set(jnp.where(disamb, T["key"], types[1]))
    colours = jax.random.choice(kc, NON_RED, (k,))
    colours = colours.at[0].set(jnp.where(disamb, C["blue"], C["red"]))
    colours = colours.at[1].set(jnp.where(disamb, C["red"], colours[1]))
    present = jnp.arange(k) <= dist.n_distractors
    return Level(walls, cells[:k], types.astype(jnp.int32), colours.astype(jnp.int32), present, cells[k])


def corner_goal_level(key: jax.Array, dist: Distribution, shape: LevelShape) -> Level:
    """A green goal. Ordinary levels: the goal lies in the top-right ``k x k`` corner region.
    Disambiguating levels (probability alpha): the goal lies anywhere outside that region."""
    kw, kp, ka, kt, kc = jax.random.split(key, 5)
    walls = generate_walls(kw, shape.height, shape.width, dist.wall_density)
    region = corner_region(shape.height, shape.width, "top-right", dist.corner_k)
    disamb = jax.random.uniform(ka) < dist.alpha
    goal_mask = jnp.where(disamb, ~region, region)
    k = shape.max_objects
    # the agent never starts in the corner region, so "go to the corner" is never satisfied at t=0
    cells = _place(kp, ~walls, goal_mask, k + 1)
    start = cells[k]
    start_ok = ~region[start[0], start[1]]
    cells = _ensure_start_outside(cells, walls, region, start_ok)
    return _green_goal_level(kt, kc, walls, cells, dist)


def _green_goal_level(kt, kc, walls, cells, dist: Distribution) -> Level:
    """A level whose first object is a green goal and the rest random non-red distractors (``cells``: the
    ``k`` object cells then the start)."""
    k = cells.shape[0] - 1
    types = jnp.concatenate([jnp.array([T["goal"]]), jax.random.choice(kt, DISTRACTOR_TYPES, (k - 1,))])
    colours = jnp.concatenate([jnp.array([C["green"]]), jax.random.choice(kc, NON_RED, (k - 1,))])
    present = jnp.arange(k) <= dist.n_distractors
    return Level(walls, cells[:k], types.astype(jnp.int32), colours.astype(jnp.int32), present, cells[k])


def _ensure_start_outside(cells, walls, region, start_ok):
    """Move the start to the free, unoccupied cell outside ``region`` with the lowest index if needed."""
    h, w = walls.shape
    occupied = jnp.zeros((h, w), jnp.bool_).at[cells[:-1, 0], cells[:-1, 1]].set(True)
    ok = (~walls & ~region & ~occupied).reshape(-1)
    alt = jnp.argmax(ok)
    alt_cell = jnp.array([alt // w, alt % w], jnp.int32)
    return cells.at[-1].set(jnp.where(start_ok, cells[-1], alt_cell))


def maze_level(key: jax.Array, dist: Distribution, shape: LevelShape) -> Level:
    """A green goal anywhere in a random maze (distractors optional)."""
    kw, kp, kt, kc = jax.random.split(key, 4)
    walls = generate_walls(kw, shape.height, shape.width, dist.wall_density)
    k = shape.max_objects
    cells = _place(kp, ~walls, jnp.ones_like(walls), k + 1)
    return _green_goal_level(kt, kc, walls, cells, dist)


__all__ = ["Distribution", "LevelShape", "corner_goal_level", "corner_region", "make_distribution",
           "maze_level", "red_door_level"]
