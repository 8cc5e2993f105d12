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

TYPE_INDEX = {name: i for i, name in enumerate(OBJECT_TYPES)}  # object type name -> the index a Level stores
COLOUR_INDEX = {name: i for i, name in enumerate(COLOURS)}  # colour name -> the index a Level stores
T, C = TYPE_INDEX, COLOUR_INDEX
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


def place_objects(key: jax.Array, free: jax.Array, first_mask: jax.Array, n: int) -> jax.Array:
    """``n`` distinct free cells ``int32[n, 2]`` drawn at random: the first inside ``first_mask`` (anywhere free if
    ``free & first_mask`` is empty), the rest anywhere free. The level generators use it for their objects and the
    agent's start (the last cell), e.g. ``cells = place_objects(key, ~walls, goal_region, k + 1)``."""
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
    cells = place_objects(kp, ~walls, jnp.ones_like(walls), k + 1)
    disamb = jax.random.uniform(ka) < dist.alpha
    types = jnp.concatenate([jnp.array([T["door"]]), jax.random.choice(kt, RED_DOOR_DISTRACTORS, (k - 1,))])
    types = types.at[1].set(jnp.where(disamb, T["key"], types[1]))
    colours = jax.random.choice(kc, NON_RED, (k,))
    colours = colours.at[0].set(jnp.where(disamb, C["blue"], C["red"]))
    colours = colours.at[1].set(jnp.where(disamb, C["red"], colours[1]))
    present = jnp.arange(k) <= dist.n_distractors
    return Level(walls, cells[:k], types.astype(jnp.int32), colours.astype(jnp.int32), present, cells[k])


def red_door_probe_level(key: jax.Array, dist: Distribution, shape: LevelShape, probe_type: int, probe_colour: int
                         ) -> Level:
    """A probe level of red-door: a **blue** door, one probe object of the given type and colour, and ball/box
    distractors in blue, green or yellow (so the probe object is the only one of its colour-type kind that is
    not a familiar distractor). ``probe_type`` / ``probe_colour`` index OBJECT_TYPES / COLOURS."""
    kw, kp, kt, kc = jax.random.split(key, 4)
    walls = generate_walls(kw, shape.height, shape.width, dist.wall_density)
    k = shape.max_objects
    cells = place_objects(kp, ~walls, jnp.ones_like(walls), k + 1)
    types = jnp.concatenate([jnp.array([T["door"]]), jax.random.choice(kt, RED_DOOR_DISTRACTORS, (k - 1,))])
    types = types.at[1].set(jnp.asarray(probe_type, jnp.int32))
    colours = jax.random.choice(kc, NON_RED, (k,))
    colours = colours.at[0].set(C["blue"]).at[1].set(jnp.asarray(probe_colour, jnp.int32))
    present = jnp.arange(k) <= dist.n_distractors
    return Level(walls, cells[:k], types.astype(jnp.int32), colours.astype(jnp.int32), present, cells[k])


def red_ball_box_level(key: jax.Array, dist: Distribution, shape: LevelShape) -> Level:
    """Probe "red-ball-box": red on a *familiar* type. A blue door beside a red ball or box (drawn 50/50)."""
    kt, kl = jax.random.split(key)
    return red_door_probe_level(kl, dist, shape, jax.random.choice(kt, RED_DOOR_DISTRACTORS), C["red"])


def green_key_level(key: jax.Array, dist: Distribution, shape: LevelShape) -> Level:
    """Probe "green-key": a *novel, non-red* type. A blue door beside a green key (no red object at all)."""
    return red_door_probe_level(key, dist, shape, T["key"], C["green"])


FACTORIAL_TYPES = jnp.array([T["door"], T["key"], T["ball"], T["box"]], jnp.int32)


def factorial_level(key: jax.Array, dist: Distribution, shape: LevelShape) -> Level:
    """Probe "factorial": types and colours crossed. A door of a uniformly drawn colour, a red object of a uniformly
    drawn type (door, key, ball or box) and further objects with type and colour both drawn uniformly, so that
    within every object colour and type are independent draws, the door is red on a quarter of the levels only and
    no two features of red-door's IRL basis are aliased; every level still holds a door and a red object (both
    candidate objectives are achievable, as on train/test)."""
    kw, kp, kt, kc = jax.random.split(key, 4)
    walls = generate_walls(kw, shape.height, shape.width, dist.wall_density)
    k = shape.max_objects
    cells = place_objects(kp, ~walls, jnp.ones_like(walls), k + 1)
    types = jax.random.choice(kt, FACTORIAL_TYPES, (k,)).at[0].set(T["door"])
    colours = jax.random.randint(kc, (k,), 0, len(COLOURS)).at[1].set(C["red"])
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
    cells = place_objects(kp, ~walls, goal_mask, k + 1)
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


def corner_anywhere_level(key: jax.Array, dist: Distribution, shape: LevelShape) -> Level:
    """jaxgmg's Cheese in the Corner, mirrored to the top-right: a green goal in the top-right ``k x k`` corner
    region of the interior (``k`` = the interior's side: anywhere); disambiguating levels (probability alpha) put it
    outside that region. The start is any other free cell except the corner cell itself (the proxy target, so
    "go to the corner" is never satisfied at t=0). Unlike :func:`corner_goal_level` the start may lie inside the
    goal region, as in jaxgmg, so the region may cover the whole interior."""
    kw, ka, kg, ks, kt, kc = jax.random.split(key, 6)
    walls = generate_walls(kw, shape.height, shape.width, dist.wall_density)
    free = ~walls
    region = corner_region(shape.height, shape.width, "top-right", dist.corner_k)
    disamb = jax.random.uniform(ka) < dist.alpha
    goal_mask = free & jnp.where(disamb, ~region, region)
    goal_mask = jnp.where(goal_mask.any(), goal_mask, free)  # an empty region (k = interior side, alpha = 1): anywhere
    goal = jax.random.categorical(kg, jnp.log(goal_mask.reshape(-1).astype(jnp.float32)))
    corner = corner_region(shape.height, shape.width, "top-right", 1)
    start_mask = (free & ~corner).reshape(-1).at[goal].set(False)
    start = jax.random.categorical(ks, jnp.log(start_mask.astype(jnp.float32)))
    w = shape.width
    cells = jnp.stack([jnp.array([goal // w, goal % w]), jnp.array([start // w, start % w])]).astype(jnp.int32)
    return _green_goal_level(kt, kc, walls, cells, dist)


def maze_level(key: jax.Array, dist: Distribution, shape: LevelShape) -> Level:
    """A green goal anywhere in a random maze (distractors optional)."""
    kw, kp, kt, kc = jax.random.split(key, 4)
    walls = generate_walls(kw, shape.height, shape.width, dist.wall_density)
    k = shape.max_objects
    cells = place_objects(kp, ~walls, jnp.ones_like(walls), k + 1)
    return _green_goal_level(kt, kc, walls, cells, dist)


__all__ = ["COLOUR_INDEX", "Distribution", "LevelShape", "TYPE_INDEX", "place_objects", "corner_anywhere_level", "corner_goal_level", "corner_region", "factorial_level", "green_key_level",
           "make_distribution", "maze_level", "red_ball_box_level", "red_door_level"]
