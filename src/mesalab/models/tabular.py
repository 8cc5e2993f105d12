"""A tabular actor-critic: one logit vector and one value per distinct observation, in a fixed-size hashed table
(pure JAX). It learns each observation's output independently, so nothing it learns on one observation carries to
another: "Conditions for Mesa-Optimization" §2.2's model class that is never a mesa-optimizer.

The observation's cells are hashed to a slot (a random linear hash mod 2^32 of the flattened observation, then
a 32-bit avalanche finaliser, then the low ``log2(slots)`` bits); two observations share a slot only by a hash
collision (about ``n^2 / (2 slots)`` pairs among ``n`` distinct observations). The table is read as
``scale * table[slot]``: Adam moves every parameter by about ``lr`` per step whatever its gradient's size, and a
table entry is touched only by its own observation's samples, so the scale lets PPO's learning rate move a logit
by ``scale * lr`` per step (a reparametrisation; it changes no fixed point). Every value starts at the largest
return an episode can earn (``OPTIMISM``, optimistic initialisation): a table cannot generalise between
observations, so without it exploration is a random walk. With zero initial values PPO never found the goal of the
one of 16 training mazes whose shortest path is longest (23 steps in 60) in 2M steps; with optimism it learns all 16
in 1M.

Calling convention (the actor-critics'): ``model(obs) -> ((logits, value), activations)``; named activations
``input`` (the flattened observation), ``slot`` (int32[]), ``logits``, ``value``.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp

from mesalab.hash32 import mix32
from mesalab.models.common import Intervention, tap

DEFAULT_SLOTS_LOG2 = 20  # 2^20 slots: about 0.1 expected collisions among the ~500 states of 16 mazes
HASH_SEED = 0x5EED
OPTIMISM = 1.0  # the value of an observation never trained on: the most any gridworld episode returns


def observation_slot(obs: jax.Array, slots_log2: int) -> jax.Array:
    """The table slot of one observation (int32[]): deterministic, the same in every process."""
    flat = jnp.asarray(obs).reshape(-1)
    values = jnp.round(flat.astype(jnp.float32) * 255.0).astype(jnp.uint32)  # one-hot / uint8 cells, exactly
    mult = jax.random.bits(jax.random.key(HASH_SEED), (flat.shape[0],), jnp.uint32) | jnp.uint32(1)
    h = mix32(jnp.sum(values * mult, dtype=jnp.uint32) + jnp.uint32(flat.shape[0]))
    return (h & jnp.uint32((1 << slots_log2) - 1)).astype(jnp.int32)


class TabularActorCritic(eqx.Module):
    """``scale * table[slot(obs)]`` -> policy logits and value (module docstring)."""

    logits_table: jax.Array  # float32[slots, n_actions]
    value_table: jax.Array  # float32[slots]
    slots_log2: int = eqx.field(static=True)
    scale: float = eqx.field(static=True)

    def __init__(self, obs_shape: Sequence[int], n_actions: int, slots_log2: int = DEFAULT_SLOTS_LOG2,
                 scale: float = 20.0, optimism: float = OPTIMISM, *, key=None):
        del obs_shape, key  # every table starts the same: uniform policy, value ``optimism``
        self.logits_table = jnp.zeros((1 << slots_log2, n_actions), jnp.float32)
        self.value_table = jnp.full((1 << slots_log2,), float(optimism) / float(scale), jnp.float32)
        self.slots_log2 = int(slots_log2)
        self.scale = float(scale)

    def __call__(self, obs: jax.Array, interventions: Mapping[str, Intervention] | None = None):
        acts: dict = {}
        tap("input", obs.reshape(-1).astype(jnp.float32), acts, interventions)
        slot = tap("slot", observation_slot(obs, self.slots_log2), acts, interventions)
        logits = tap("logits", self.scale * self.logits_table[slot], acts, interventions)
        value = tap("value", self.scale * self.value_table[slot], acts, interventions)
        return (logits, value), acts

    def write(self, obs: jax.Array, logits: jax.Array, value: jax.Array | None = None) -> "TabularActorCritic":
        """A copy whose table returns ``logits`` (and ``value``) on each of ``obs[B, ...]`` (the last write wins on a
        shared slot): how a test plants a known table."""
        slots = jax.vmap(lambda o: observation_slot(o, self.slots_log2))(obs)
        new = eqx.tree_at(lambda m: m.logits_table, self, self.logits_table.at[slots].set(logits / self.scale))
        if value is not None:
            new = eqx.tree_at(lambda m: m.value_table, new, self.value_table.at[slots].set(value / self.scale))
        return new
