"""The keys-and-chests engine: levels with pickups, an inventory in the state, and its functional environment.

A level is an ``H x W`` grid of walls (bordered) with ``M`` object *slots*; each slot holds a key or a chest, or is
empty. The agent moves up/right/down/left (into a wall: it stays). Dynamics (after jaxgmg's Keys & Chests):

- entering a cell with a key picks it up: the key leaves the grid and the inventory grows by one;
- entering a cell with a closed chest while holding at least one key opens it: the chest leaves the grid, the
  inventory shrinks by one and the step earns ``1 - 0.9 * t / max_steps`` (``t``: the step, counted from 1; each
  chest is rewarded on its own, so a level with two openable chests can earn up to about 2);
- a closed chest entered without a key is *passable*: nothing happens (jaxgmg's choice, so a chest never walls a
  key off);
- the episode ends when nothing more can be earned — every chest that can be opened is open, i.e. the number of
  chests opened reaches ``min(keys, chests)`` of the level (the inventory it starts with counts as keys) — or at
  ``max_steps``.

The state is ``(level, pos, t, taken)``: ``taken[i]`` says slot ``i``'s key was picked up or its chest opened, so
the inventory is ``start_inventory + #keys taken - #chests taken``. Which slots are taken and the cell are the whole
dynamic state (:mod:`mesalab.tasks.keys_chests.mdp` enumerates it exactly).

Observations (bool) have their own channel layout (the static tasks' ``N_GRID_CHANNELS`` layout is untouched):
``"egocentric"`` (default) is a ``(2H-1) x (2W-1)`` window centred on the agent with channels wall, key, chest,
inventory (outside the grid reads as wall); the inventory channel lights cells ``(0, 0 .. n-1)`` of the window's
top row, which always lies on or beyond the border wall, for ``n`` keys held. ``"global"`` is ``H x W`` with
channels wall, key, chest, agent, inventory (cells ``(0, 0 .. n-1)`` of the top border row, as jaxgmg draws it).

The pool (:class:`KeysChestsParams`) also keeps each level's *initial* grid in the static tasks' one-hot layout
(keys as yellow keys, chests as blue boxes), so levels are drawn, hashed and compared like every other task's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp

from mesalab.tasks.grid import (COLOUR_CHANNEL, DIRECTIONS, N_GRID_CHANNELS, TYPE_CHANNEL, WALL_CHANNEL,
                                egocentric_view)

EGO_CHANNELS: tuple[str, ...] = ("wall", "key", "chest", "inventory")
GLOBAL_CHANNELS: tuple[str, ...] = ("wall", "key", "chest", "agent", "inventory")
WALL, KEY, CHEST = 0, 1, 2
EGO_INVENTORY = 3
GLOBAL_AGENT, GLOBAL_INVENTORY = 3, 4
# how a level is drawn in the static one-hot layout (mesalab.tasks.grid): a key is a yellow key, a chest a blue box
DRAWN_KEY = (TYPE_CHANNEL["key"], COLOUR_CHANNEL["yellow"])
DRAWN_CHEST = (TYPE_CHANNEL["box"], COLOUR_CHANNEL["blue"])


class KeysChestsLevel(NamedTuple):
    """One level as generated (arrays; batch them freely)."""

    walls: jax.Array  # bool[H, W]
    obj_pos: jax.Array  # int32[M, 2] distinct cells
    obj_key: jax.Array  # bool[M] True: a key, False: a chest
    obj_present: jax.Array  # bool[M] the slot holds an object
    agent_start: jax.Array  # int32[2] a free cell holding no object
    start_inventory: jax.Array  # int32[] keys held at the start (0 for generated levels)


class KeysChestsParams(NamedTuple):
    """A keys-and-chests task distribution as data: a pool of levels and the episode limit (the fields after
    ``start_inventory`` mean what they mean in :class:`mesalab.tasks.grid.EnvParams`)."""

    grid: jax.Array  # bool[P, H, W, N_GRID_CHANNELS] the initial level in the static layout (walls = channel 0)
    start: jax.Array  # int32[P, 2]
    obj_pos: jax.Array  # int32[P, M, 2]
    obj_key: jax.Array  # bool[P, M]
    obj_present: jax.Array  # bool[P, M]
    start_inventory: jax.Array  # int32[P]
    n_levels: jax.Array  # int32[]
    max_steps: jax.Array  # int32[]
    level_offset: jax.Array = 0  # int32[]


class KeysChestsState(NamedTuple):
    level: jax.Array  # int32[]
    pos: jax.Array  # int32[2]
    t: jax.Array  # int32[]
    taken: jax.Array  # bool[M]: the slot's key was picked up / its chest opened


def drawn_grid(level: KeysChestsLevel) -> jax.Array:
    """``bool[H, W, N_GRID_CHANNELS]``: the level in the static one-hot layout (for drawing and hashing)."""
    h, w = level.walls.shape
    grid = jnp.zeros((h, w, N_GRID_CHANNELS), jnp.bool_).at[:, :, WALL_CHANNEL].set(level.walls)
    r, c = level.obj_pos[:, 0], level.obj_pos[:, 1]
    for channel_key, channel_chest in zip(DRAWN_KEY, DRAWN_CHEST):
        grid = grid.at[r, c, channel_key].max(level.obj_present & level.obj_key)
        grid = grid.at[r, c, channel_chest].max(level.obj_present & ~level.obj_key)
    return grid


def pool_from_levels(levels: KeysChestsLevel, max_steps: int) -> KeysChestsParams:
    """A pool holding ``levels`` (a batch), every entry in use."""
    n = levels.walls.shape[0]
    return KeysChestsParams(
        grid=jax.vmap(drawn_grid)(levels),
        start=levels.agent_start.astype(jnp.int32),
        obj_pos=levels.obj_pos.astype(jnp.int32),
        obj_key=levels.obj_key,
        obj_present=levels.obj_present,
        start_inventory=jnp.asarray(levels.start_inventory, jnp.int32),
        n_levels=jnp.int32(n),
        max_steps=jnp.int32(max_steps),
        level_offset=jnp.int32(0),
    )


def level_of(params: KeysChestsParams, level) -> KeysChestsLevel:
    """Pool entry ``level`` as a :class:`KeysChestsLevel`."""
    return KeysChestsLevel(params.grid[level, :, :, WALL_CHANNEL], params.obj_pos[level], params.obj_key[level],
                           params.obj_present[level], params.start[level], params.start_inventory[level])


def state_grid(state: "KeysChestsState", params: KeysChestsParams) -> jax.Array:
    """The static-layout grid of a state: the level with the keys picked up and the chests opened removed."""
    lv = level_of(params, state.level)
    return drawn_grid(lv._replace(obj_present=lv.obj_present & ~state.taken))


def inventory(taken: jax.Array, obj_key: jax.Array, start_inventory: jax.Array) -> jax.Array:
    """Keys held: the start inventory plus the keys picked up less the chests opened."""
    picked = jnp.sum(taken & obj_key, dtype=jnp.int32)
    opened = jnp.sum(taken & ~obj_key, dtype=jnp.int32)
    return start_inventory + picked - opened


def openable_chests(obj_key: jax.Array, obj_present: jax.Array, start_inventory: jax.Array) -> jax.Array:
    """``min(keys, chests)`` of a level: the chests an episode can open (every cell is reachable)."""
    keys = start_inventory + jnp.sum(obj_present & obj_key, dtype=jnp.int32)
    chests = jnp.sum(obj_present & ~obj_key, dtype=jnp.int32)
    return jnp.minimum(keys, chests)


def chest_reward(t: jax.Array, max_steps: jax.Array) -> jax.Array:
    """The reward of opening a chest on step ``t``."""
    frac = jnp.asarray(t).astype(jnp.float32) / jnp.asarray(max_steps).astype(jnp.float32)
    return (1.0 - 0.9 * frac).astype(jnp.float32)


@dataclass(frozen=True)
class KeysChestsEnv:
    """Static description of a keys-and-chests world (shape, observation mode); methods are pure functions with
    the API of :class:`mesalab.tasks.grid.GridEnv` (``reset``, ``step``, ``step_no_reset``, ``observe``)."""

    height: int
    width: int
    obs_mode: str = "egocentric"

    @property
    def n_actions(self) -> int:
        return 4

    @property
    def obs_shape(self) -> tuple[int, int, int]:
        if self.obs_mode == "global":
            return (self.height, self.width, len(GLOBAL_CHANNELS))
        return (2 * self.height - 1, 2 * self.width - 1, len(EGO_CHANNELS))

    def initial_state(self, params: KeysChestsParams, level: jax.Array) -> KeysChestsState:
        return KeysChestsState(level=jnp.asarray(level, jnp.int32), pos=params.start[level], t=jnp.zeros((), jnp.int32),
                               taken=jnp.zeros(params.obj_key.shape[-1:], jnp.bool_))

    def state_from_record(self, params: KeysChestsParams, level: jax.Array, record: jax.Array,
                          t: jax.Array) -> KeysChestsState:
        """The state of a recorded step: ``record`` is ``(row, col, taken bitmask)``, as evaluation records it."""
        bits = jnp.arange(params.obj_key.shape[-1], dtype=jnp.int32)
        taken = (jnp.right_shift(record[2], bits) & 1) == 1
        return KeysChestsState(level=jnp.asarray(level, jnp.int32), pos=record[:2], t=jnp.asarray(t, jnp.int32),
                               taken=taken)

    # -- functional API -------------------------------------------------------------------------------------
    def reset(self, key: jax.Array, params: KeysChestsParams) -> tuple[jax.Array, KeysChestsState]:
        level = params.level_offset + jax.random.randint(key, (), 0, params.n_levels)
        state = self.initial_state(params, level)
        return self.observe(state, params), state

    def step(self, key: jax.Array, state: KeysChestsState, action: jax.Array, params: KeysChestsParams):
        """Advance one step and auto-reset on episode end: ``(obs, state, reward, done, info)``;
        ``info["success"]``: the episode ended with every openable chest open."""
        state_st, reward, done, success = self.step_no_reset(state, action, params)
        _, state_re = self.reset(key, params)
        new_state = jax.tree_util.tree_map(lambda a, b: jnp.where(done, a, b), state_re, state_st)
        return self.observe(new_state, params), new_state, reward, done, {"success": success}

    def step_no_reset(self, state: KeysChestsState, action: jax.Array, params: KeysChestsParams):
        """One transition without auto-reset: ``(state, reward, done, success)``."""
        lvl = state.level
        target = jnp.clip(state.pos + DIRECTIONS[action], 0, jnp.array([self.height - 1, self.width - 1]))
        blocked = params.grid[lvl, target[0], target[1], WALL_CHANNEL]
        pos = jnp.where(blocked, state.pos, target)
        t = state.t + 1
        is_key, present = params.obj_key[lvl], params.obj_present[lvl]
        here = jnp.all(params.obj_pos[lvl] == pos[None], axis=-1) & present & ~state.taken
        held = inventory(state.taken, is_key, params.start_inventory[lvl])
        opened_now = here & ~is_key & (held >= 1)
        taken = state.taken | (here & is_key) | opened_now
        reward = jnp.where(jnp.any(opened_now), chest_reward(t, params.max_steps), 0.0).astype(jnp.float32)
        opened = jnp.sum(taken & ~is_key & present, dtype=jnp.int32)
        success = opened >= openable_chests(is_key, present, params.start_inventory[lvl])
        done = success | (t >= params.max_steps)
        return KeysChestsState(level=lvl, pos=pos, t=t, taken=taken), reward, done, success

    def observe(self, state: KeysChestsState, params: KeysChestsParams) -> jax.Array:
        lvl = state.level
        h, w = self.height, self.width
        walls = params.grid[lvl, :, :, WALL_CHANNEL]
        remaining = params.obj_present[lvl] & ~state.taken
        is_key = params.obj_key[lvl]
        r, c = params.obj_pos[lvl, :, 0], params.obj_pos[lvl, :, 1]
        keys = jnp.zeros((h, w), jnp.bool_).at[r, c].max(remaining & is_key)
        chests = jnp.zeros((h, w), jnp.bool_).at[r, c].max(remaining & ~is_key)
        held = inventory(state.taken, is_key, params.start_inventory[lvl])
        if self.obs_mode == "global":
            agent = (jnp.arange(h)[:, None] == state.pos[0]) & (jnp.arange(w)[None, :] == state.pos[1])
            inv = (jnp.arange(h)[:, None] == 0) & (jnp.arange(w)[None, :] < held)
            return jnp.stack([walls, keys, chests, agent, inv], axis=-1)
        view = egocentric_view(jnp.stack([walls, keys, chests], axis=-1), state.pos)
        inv = (jnp.arange(2 * h - 1)[:, None] == 0) & (jnp.arange(2 * w - 1)[None, :] < held)
        return jnp.concatenate([view, inv[..., None]], axis=-1)
