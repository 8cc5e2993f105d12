"""Keys-and-chests level generation (pure JAX, vmappable over keys).

A level draws its walls (``generate_walls``: ``wall_density`` 0 is an open room), then a *regime*: keys scarce
(few keys, many chests: every key gets used, so "collect keys" and "open chests" agree) or, with probability
``alpha`` (the disambiguating levels), keys plentiful (many keys, few chests: keys beyond the chests are useless).
Objects and the start take distinct random free cells; slots ``0 .. k-1`` hold the keys, the next ``c`` the
chests, the rest are empty.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from mesalab.tasks.families import Distribution, LevelShape
from mesalab.tasks.keys_chests.env import KeysChestsLevel
from mesalab.tasks.mazegen import generate_walls


class Regime(NamedTuple):
    """How many keys and chests a level of a regime holds (inclusive ranges, drawn uniformly)."""

    keys: tuple[int, int]
    chests: tuple[int, int]

    @property
    def max_objects(self) -> int:
        return self.keys[1] + self.chests[1]


def _count(key: jax.Array, lo_hi: tuple[int, int]) -> jax.Array:
    return jax.random.randint(key, (), lo_hi[0], lo_hi[1] + 1).astype(jnp.int32)


def keys_chests_level(key: jax.Array, dist: Distribution, shape: LevelShape, scarce: Regime,
                      plentiful: Regime) -> KeysChestsLevel:
    """One level (``shape.max_objects`` slots, at least either regime's largest count)."""
    m = shape.max_objects
    if max(scarce.max_objects, plentiful.max_objects) > m:
        raise ValueError(f"a regime holds more objects than the {m} slots of the level shape")
    kw, ka, kk, kc, kp = jax.random.split(key, 5)
    walls = generate_walls(kw, shape.height, shape.width, dist.wall_density)
    disamb = jax.random.uniform(ka) < dist.alpha
    kk1, kk2 = jax.random.split(kk)
    kc1, kc2 = jax.random.split(kc)
    n_keys = jnp.where(disamb, _count(kk2, plentiful.keys), _count(kk1, scarce.keys))
    n_chests = jnp.where(disamb, _count(kc2, plentiful.chests), _count(kc1, scarce.chests))
    h, w = walls.shape
    g = jax.random.gumbel(kp, (h * w,))
    cells = jnp.argsort(-jnp.where(~walls.reshape(-1), g, -jnp.inf))[: m + 1]
    pos = jnp.stack([cells // w, cells % w], axis=-1).astype(jnp.int32)
    slot = jnp.arange(m)
    return KeysChestsLevel(walls=walls, obj_pos=pos[:m], obj_key=slot < n_keys, obj_present=slot < n_keys + n_chests,
                           agent_start=pos[m], start_inventory=jnp.zeros((), jnp.int32))
