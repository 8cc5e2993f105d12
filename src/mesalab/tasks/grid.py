"""The gridworld engine: levels, the functional environment and its observations.

Everything that defines *which* levels an agent sees lives in :class:`EnvParams` (a pytree of arrays), so
a train/test shift is a change of data, and several distributions can be ``vmap``-ed over.

A level is an ``H x W`` grid of walls with up to ``K`` objects. Every object has a *type* and a *colour*.
The agent moves up/right/down/left; moving into a wall leaves it in place; entering a cell with an object
ends the episode (the agent has "chosen" that object); the episode is also cut at ``max_steps``.
The environment's reward is the task's base objective: ``1 - 0.9 * t / max_steps`` on the step ``t`` at
which the agent first enters a base-objective target cell, else 0 (MiniGrid's convention, so the
optimal return is a known function of the shortest-path length).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp

OBJECT_TYPES: tuple[str, ...] = ("goal", "door", "key", "ball", "box")
COLOURS: tuple[str, ...] = ("red", "blue", "green", "yellow")
ACTIONS: tuple[str, ...] = ("up", "right", "down", "left")
# (row, col) displacement of each action
DIRECTIONS = jnp.array([[-1, 0], [0, 1], [1, 0], [0, -1]], dtype=jnp.int32)

# Channel layout of the static grid (one-hot, bool): wall, one per object type, one per colour.
WALL_CHANNEL = 0
TYPE_CHANNEL = {name: 1 + i for i, name in enumerate(OBJECT_TYPES)}
COLOUR_CHANNEL = {name: 1 + len(OBJECT_TYPES) + i for i, name in enumerate(COLOURS)}
N_GRID_CHANNELS = 1 + len(OBJECT_TYPES) + len(COLOURS)
# Observations append one channel for the agent.
AGENT_CHANNEL = N_GRID_CHANNELS
N_OBS_CHANNELS = N_GRID_CHANNELS + 1
LEAN_TRIM = 2  # rings of the egocentric window a "lean" observation drops (always wall on a bordered level)
OBS_MODES = ("egocentric", "global", "lean")
CHANNEL_NAMES: tuple[str, ...] = (
    ("wall",) + tuple(f"type:{t}" for t in OBJECT_TYPES) + tuple(f"colour:{c}" for c in COLOURS) + ("agent",)
)


class Level(NamedTuple):
    """One level as generated: walls, objects and the agent's start cell (arrays; batch them freely)."""

    walls: jax.Array  # bool[H, W]
    obj_pos: jax.Array  # int32[K, 2]
    obj_type: jax.Array  # int32[K] index into OBJECT_TYPES
    obj_colour: jax.Array  # int32[K] index into COLOURS
    obj_present: jax.Array  # bool[K]
    agent_start: jax.Array  # int32[2]


def level_grid(level: Level) -> jax.Array:
    """The static one-hot grid ``bool[H, W, N_GRID_CHANNELS]`` of a level (walls, object types, colours)."""
    h, w = level.walls.shape
    grid = jnp.zeros((h, w, N_GRID_CHANNELS), dtype=jnp.bool_)
    grid = grid.at[:, :, WALL_CHANNEL].set(level.walls)
    r, c = level.obj_pos[:, 0], level.obj_pos[:, 1]
    present = level.obj_present
    type_ch = 1 + level.obj_type
    colour_ch = 1 + len(OBJECT_TYPES) + level.obj_colour
    # absent objects write False (a no-op with .max)
    grid = grid.at[r, c, type_ch].max(present)
    grid = grid.at[r, c, colour_ch].max(present)
    return grid


def object_cells(grid: jax.Array) -> jax.Array:
    """``bool[H, W]``: cells holding an object (entering them ends the episode)."""
    return jnp.any(grid[..., 1 : 1 + len(OBJECT_TYPES)], axis=-1)


class EnvParams(NamedTuple):
    """A task distribution as data: a pool of compiled levels and the episode limit.

    ``reset`` draws uniformly from ``n_levels`` entries of the pool (from ``level_offset`` on), so the number of distinct
    training levels N is a (vmappable) number, not a shape. For "unlimited" diversity the trainer refreshes
    the pool with newly generated levels (see :func:`mesalab.tasks.registry.Task.sample_params`).
    """

    grid: jax.Array  # bool[P, H, W, N_GRID_CHANNELS]
    start: jax.Array  # int32[P, 2]
    base_target: jax.Array  # bool[P, H, W] cells whose entry scores the base objective
    n_levels: jax.Array  # int32[] number of pool entries in use
    max_steps: jax.Array  # int32[]
    level_offset: jax.Array = 0  # int32[] resets draw from entries [offset, offset + n_levels)


# the fields of a level pool that are not per level (any pool type: EnvParams, keys-chests' KeysChestsParams)
POOL_SCALARS: tuple[str, ...] = ("n_levels", "max_steps", "level_offset")


def take_levels(params, idx: jax.Array):
    """The pool of entries ``idx`` of ``params`` (any pool type), every entry in use."""
    idx = jnp.asarray(idx)
    per_level = {f: getattr(params, f)[idx] for f in params._fields if f not in POOL_SCALARS}
    return params._replace(**per_level, n_levels=jnp.int32(idx.shape[0]), level_offset=jnp.int32(0))



def join_pools(pools: list):
    """One pool holding the levels of ``pools`` in order (pools of one task: the same level shapes), every entry in
    use (any pool type)."""
    first = pools[0]
    per_level = {f: jnp.concatenate([getattr(p, f) for p in pools], 0) for f in first._fields if f not in POOL_SCALARS}
    return first._replace(**per_level, n_levels=jnp.int32(per_level["start"].shape[0]), level_offset=jnp.int32(0))

class EnvState(NamedTuple):
    level: jax.Array  # int32[] index into the pool
    pos: jax.Array  # int32[2]
    t: jax.Array  # int32[] steps taken in this episode


@dataclass(frozen=True)
class GridEnv:
    """Static description of a gridworld: its shape and observation mode. Methods are pure functions.

    ``obs_mode``: ``"global"`` gives the ``H x W`` grid plus an agent channel; ``"egocentric"`` gives a
    ``(2H-1) x (2W-1)`` view centred on the agent (outside the grid reads as wall), which makes
    "where is the door relative to me" a translation-invariant feature. ``"lean"`` is the egocentric view without
    what never carries information on a bordered level: the two outer rings of the window (always wall, since the
    agent stands inside the border) and the channels other than ``channels`` (grid channel indices, in order;
    ones the task never sets). It is lossless for such levels: ``(2H-5) x (2W-5) x len(channels)``.
    """

    height: int
    width: int
    obs_mode: str = "egocentric"
    channels: tuple[int, ...] = ()  # the grid channels a "lean" observation keeps

    @property
    def n_actions(self) -> int:
        return len(ACTIONS)

    @property
    def obs_shape(self) -> tuple[int, int, int]:
        if self.obs_mode == "global":
            return (self.height, self.width, N_OBS_CHANNELS)
        if self.obs_mode == "lean":
            return (2 * self.height - 1 - 2 * LEAN_TRIM, 2 * self.width - 1 - 2 * LEAN_TRIM, len(self.channels))
        return (2 * self.height - 1, 2 * self.width - 1, N_GRID_CHANNELS)

    # -- functional API -------------------------------------------------------------------------------
    def reset(self, key: jax.Array, params: EnvParams) -> tuple[jax.Array, EnvState]:
        level = params.level_offset + jax.random.randint(key, (), 0, params.n_levels)
        state = EnvState(level=level, pos=params.start[level], t=jnp.zeros((), jnp.int32))
        return self.observe(state, params), state

    def step(
        self, key: jax.Array, state: EnvState, action: jax.Array, params: EnvParams
    ) -> tuple[jax.Array, EnvState, jax.Array, jax.Array, dict]:
        """Advance one step and auto-reset on episode end. Returns ``(obs, state, reward, done, info)``.

        ``info["success"]`` is True when the episode ended by reaching a base-objective target.
        """
        state_st, reward, done, success = self.step_no_reset(state, action, params)
        _, state_re = self.reset(key, params)
        new_state = jax.tree_util.tree_map(lambda a, b: jnp.where(done, a, b), state_re, state_st)
        return self.observe(new_state, params), new_state, reward, done, {"success": success}

    def step_no_reset(
        self, state: EnvState, action: jax.Array, params: EnvParams
    ) -> tuple[EnvState, jax.Array, jax.Array, jax.Array]:
        """One transition without auto-reset: ``(state, reward, done, success)``."""
        lvl = state.level
        target = state.pos + DIRECTIONS[action]
        target = jnp.clip(target, 0, jnp.array([self.height - 1, self.width - 1]))
        blocked = params.grid[lvl, target[0], target[1], WALL_CHANNEL]
        pos = jnp.where(blocked, state.pos, target)
        t = state.t + 1
        cell = params.grid[lvl, pos[0], pos[1]]
        on_object = jnp.any(cell[1 : 1 + len(OBJECT_TYPES)])
        success = params.base_target[lvl, pos[0], pos[1]]
        frac = t.astype(jnp.float32) / jnp.asarray(params.max_steps).astype(jnp.float32)
        reward = jnp.where(success, 1.0 - 0.9 * frac, 0.0).astype(jnp.float32)
        done = on_object | success | (t >= params.max_steps)
        return EnvState(level=lvl, pos=pos, t=t), reward, done, success

    def observe(self, state: EnvState, params: EnvParams) -> jax.Array:
        grid = params.grid[state.level]
        if self.obs_mode == "global":
            rows = jnp.arange(self.height)[:, None] == state.pos[0]
            cols = jnp.arange(self.width)[None, :] == state.pos[1]
            agent = (rows & cols)[..., None]
            return jnp.concatenate([grid, agent], axis=-1)
        if self.obs_mode == "lean":
            return egocentric_view(grid[..., list(self.channels)], state.pos, trim=LEAN_TRIM,
                                   wall=self.channels.index(WALL_CHANNEL) if WALL_CHANNEL in self.channels else None)
        return egocentric_view(grid, state.pos)


def egocentric_view(grid: jax.Array, pos: jax.Array, trim: int = 0, wall: int | None = WALL_CHANNEL) -> jax.Array:
    """Crop a ``(2H-1, 2W-1)`` window of ``grid`` centred on ``pos``; cells outside the grid are walls (channel
    ``wall``; ``None``: no wall channel). ``trim`` cuts that many rings off the window's edge."""
    h, w, ch = grid.shape
    pad_value = jnp.zeros((ch,), jnp.bool_)
    if wall is not None:
        pad_value = pad_value.at[wall].set(True)
    padded = jnp.broadcast_to(pad_value, (3 * h - 2, 3 * w - 2, ch))
    padded = jax.lax.dynamic_update_slice(padded, grid, (h - 1, w - 1, 0))
    return jax.lax.dynamic_slice(padded, (pos[0] + trim, pos[1] + trim, 0),
                                 (2 * h - 1 - 2 * trim, 2 * w - 1 - 2 * trim, ch))


def neighbours(x: jax.Array, fill) -> jax.Array:
    """``[4, H, W]``: for each action, the value of ``x`` in the cell that action moves to (``fill`` outside)."""
    h, w = x.shape
    p = jnp.pad(x, 1, constant_values=fill)
    return jnp.stack(
        [p[0:h, 1 : w + 1], p[1 : h + 1, 2 : w + 2], p[2 : h + 2, 1 : w + 1], p[1 : h + 1, 0:w]]
    )
