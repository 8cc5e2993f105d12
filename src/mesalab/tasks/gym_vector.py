"""A batched Gymnasium adapter: ``num_envs`` copies of a mesalab task as one ``gymnasium.vector.VectorEnv``.

:class:`MesalabVectorEnv` steps every copy in ONE jitted JAX program per ``step()`` call: the autoresets, the
transitions and the observations of all copies, with the state kept on the device (one ``int32`` vector, donated to
the next call). The copies share one level pool (:func:`mesalab.tasks.gym_adapter.level_pool`, the same arguments
as :class:`~mesalab.tasks.gym_adapter.MesalabGymEnv`); the observations, rewards, ``terminated`` / ``truncated``
and ``info["success"]`` of each copy are those of the single env on the same levels (the observation contract of
:mod:`mesalab.tasks.gym_adapter`: one-hot ``uint8`` channels named by ``channel_names``, space bounds 0..255).

Autoreset: Gymnasium's ``NEXT_STEP`` mode (``metadata["autoreset_mode"]``, the default of Gymnasium 1.x vector
envs): the ``step()`` after a copy's episode ended (``terminated`` or ``truncated``) resets that copy instead of
stepping it, ignores its action, and returns its reset observation with reward 0 and ``terminated = truncated =
False``. Infos follow ``gymnasium.vector``'s conventions (an array per key and a ``"_key"`` mask of the copies that
report it, as ``SyncVectorEnv`` merges the single envs' infos): ``"success"`` for the copies stepped, ``"level"``
(the pool entry drawn, 0 where not reported) for the copies reset, every copy on ``reset()``.

Randomness: ``reset(seed=s)`` seeds the env's ``np_random`` with ``s`` and draws a 31-bit seed from it (as the single
env draws its reset seeds; ``seed=None`` draws from the current ``np_random``); every level after that is
:func:`draw_levels` of that seed, the draw counter (0 at ``reset``, then the number of ``step()`` calls) and the
copy's index, so a seeded ``reset`` and the same actions give the same transitions. The levels are uniform over the
pool but not the single env's draws: those use ``jax.random``, whose Threefry rounds cost a CPU more than the rest
of a vector step.

Speed (one core): every output comes from one program call; observations are cut as one contiguous block per copy
from precomputed window bands (:func:`window_bands`: ``P * W * (3H - 2) * (2W - 1) * C`` bytes, 10 MB for 256 levels
of a 9 x 9 task, 31 MB of a 13 x 13 one), and the transition of a GridEnv task is two table look-ups
(:class:`GridVectorTables`); about 55-60 us per ``step()`` of 64 red-door copies with the full egocentric view on
one core (``benchmarks/run.py --only gym``). The arrays returned are read-only NumPy views of the program's two
output buffers (the observations, and one small buffer holding rewards, levels and flags); they stay valid after
later calls (copy one to modify it).

keys-chests runs its own ``initial_state``, ``step_no_reset`` and ``observe``, vmapped, in the same scheme
(:func:`generic_programs`); its rewards may differ from the single env's in the last bit of the float32 (XLA rounds
the vmapped formula on its own), where a GridEnv task's rewards are the single env's exactly.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space

from mesalab.errors import ConfigError
from mesalab.tasks.grid import GridEnv
from mesalab.tasks.gym_adapter import (MOVES, OBJECT_BIT, TARGET_BIT, WALL_BIT, channel_names, grid_tables,
                                       level_pool, observation_space, resolve_obs_mode)
from mesalab.tasks.keys_chests.task import KeysChestsTask
from mesalab.hash32 import mix32
from mesalab.tasks.registry import Task, get_task

_UINT = {1: np.uint8, 2: np.uint16, 4: np.uint32}
# the per-copy flags of the small output buffer, in order (one byte each), then one byte "the actions were valid"
FLAGS: tuple[str, ...] = ("terminated", "truncated", "success", "_success", "_level")


def draw_levels(seed, k, n: int, n_levels, level_offset=0) -> jax.Array:
    """``int32[n]``: the pool entries copies ``0..n-1`` start on at draw ``k`` of a vector env seeded ``seed``:
    ``level_offset + h % n_levels`` with ``h = mix32(mix32(mix32(seed) ^ k) + 0x9E3779B9 * i)`` for copy ``i``
    (uint32 arithmetic; uniform up to a bias below ``n_levels / 2**32``)."""
    u32 = jnp.uint32
    h = mix32(mix32(jnp.asarray(seed).astype(u32)) ^ jnp.asarray(k).astype(u32))
    h = mix32(h + jnp.arange(n, dtype=u32) * u32(0x9E3779B9))
    return jnp.asarray(level_offset).astype(jnp.int32) + (h % jnp.asarray(n_levels).astype(u32)).astype(jnp.int32)


def materialize(x: jax.Array) -> jax.Array:
    """``x`` (leading batch axis) computed into a buffer of its own before any use. XLA fuses cheap producers into
    their consumers, and would recompute the whole transition for every element of the observations cut at the
    positions it gives; a scatter is never fused into its consumer (``optimization_barrier`` is dropped by the CPU
    pipeline before fusion)."""
    return jnp.zeros_like(x).at[jnp.arange(x.shape[0])].set(x, unique_indices=True, indices_are_sorted=True)


def window_bands(frames: np.ndarray, obs_shape) -> np.ndarray:
    """``uint8[P * W, FH, obs_w * C]``: for each pool entry and agent column ``col``, the columns ``col .. col +
    obs_w`` of the padded frames (:class:`mesalab.tasks.gym_adapter.GridTables`), each row's cells and channels
    flattened, so that the egocentric window at ``(row, col)`` is ONE contiguous block: rows ``row .. row + obs_h``
    of band ``level * W + col`` (XLA copies it as a block; cut from the frames it gathers element by element,
    about twice as slow)."""
    p, fh, fw, ch = frames.shape
    oh, ow, _ = obs_shape
    width = fw - ow + 1  # the agent columns
    bands = np.stack([frames[:, :, col:col + ow] for col in range(width)], axis=1)
    return np.ascontiguousarray(bands.reshape(p * width * fh, ow * ch))


class GridVectorTables(NamedTuple):
    """A GridEnv pool as the look-up tables of the vector step. A copy's state is its *cell* ``g = level * H * W +
    row * W + col`` and its step count; ``next_cell[4 g + a]``: the cell action ``a`` leads to (walls block);
    ``codes[g]``: ``OBJECT_BIT | TARGET_BIT`` bits of :class:`~mesalab.tasks.gym_adapter.GridTables`;
    ``start_cell[level]``; ``obs_row[g]``: where the observation starts in ``frames`` (egocentric / lean: the first
    row of the window in :func:`window_bands`; global: the level, the agent's cell index being ``g % (H W)``);
    ``rewards[t]``: the single env's reward of a success at step ``t``."""

    next_cell: np.ndarray
    codes: np.ndarray
    start_cell: np.ndarray
    obs_row: np.ndarray
    rewards: np.ndarray
    frames: np.ndarray
    max_steps: int
    n_cells: int  # H * W


def grid_vector_tables(env: GridEnv, params) -> GridVectorTables:
    """The :class:`GridVectorTables` of ``env`` (shape, observation mode) on the pool ``params``."""
    t = grid_tables(env, params)
    h, w = env.height, env.width
    cells = np.asarray(t.cells, np.int32)  # [P, H, W]
    p = cells.shape[0]
    level, row, col = np.meshgrid(np.arange(p), np.arange(h), np.arange(w), indexing="ij")
    nxt = np.empty((p, h, w, 4), np.int32)
    for a, (dr, dc) in enumerate(MOVES):
        r, c = np.clip(row + dr, 0, h - 1), np.clip(col + dc, 0, w - 1)
        blocked = (cells[level, r, c] & WALL_BIT) != 0
        r, c = np.where(blocked, row, r), np.where(blocked, col, c)
        nxt[..., a] = level * h * w + r * w + c
    if env.obs_mode == "global":
        frames = t.frames.reshape(p, -1)
        obs_row = level
    else:
        frames = window_bands(t.frames, env.obs_shape)
        obs_row = (level * w + col) * t.frames.shape[1] + row
    start = np.asarray(t.start, np.int32)
    return GridVectorTables(next_cell=nxt.reshape(-1), codes=(cells & (OBJECT_BIT | TARGET_BIT)).reshape(-1),
                            start_cell=(np.arange(p) * h * w + start[:, 0] * w + start[:, 1]).astype(np.int32),
                            obs_row=obs_row.reshape(-1).astype(np.int32),
                            rewards=np.asarray(t.rewards, np.float32), frames=frames, max_steps=t.max_steps,
                            n_cells=h * w)


def small_buffer(reward, level, flags, ok) -> jax.Array:
    """``uint8[13 n + 1]``: ``reward`` (float32[n]) at 0, ``level`` (int32[n]) at ``4n``, the :data:`FLAGS`
    (bool[5, n]) at ``8n``, and ``ok`` (the actions were valid) last (see :func:`unpack_small`)."""
    return jnp.concatenate([jax.lax.bitcast_convert_type(reward.astype(jnp.float32), jnp.uint8).reshape(-1),
                            jax.lax.bitcast_convert_type(level.astype(jnp.int32), jnp.uint8).reshape(-1),
                            jnp.stack(flags).astype(jnp.uint8).reshape(-1), jnp.asarray(ok, jnp.uint8)[None]])


def unpack_small(buf: np.ndarray, n: int):
    """``(reward, level, flags, ok)``: NumPy views of :func:`small_buffer`'s output (no copies)."""
    return (buf[:4 * n].view(np.float32), buf[4 * n:8 * n].view(np.int32),
            buf[8 * n:13 * n].view(np.bool_).reshape(len(FLAGS), n), bool(buf[13 * n]))


def grid_programs(env: GridEnv, params, n: int):
    """``(reset, step)``, the jitted programs of ``n`` copies of a GridEnv task on the pool ``params``.

    The device state is ``int32[3n + 2]``: each copy's cell, step count and "ended on the last step" flag, then the
    seed and the draw counter. ``reset(seed) -> (state, small, obs)``; ``step(state, actions) -> (state, small,
    obs)`` (``small``: :func:`small_buffer`); actions outside ``0..3`` leave the state as it was, with ``ok`` false.
    """
    tb = grid_vector_tables(env, params)
    next_cell, codes, start_cell, obs_row, rewards = (
        jnp.asarray(x) for x in (tb.next_cell, tb.codes, tb.start_cell, tb.obs_row, tb.rewards))
    oh, ow, ch = env.obs_shape

    # the block of each copy's observation, in words of `word` bytes (fewer elements for XLA's gather to copy)
    block, stride = oh * ow * ch, (ow * ch if env.obs_mode != "global" else oh * ow * ch)
    word = next(w for w in (4, 2, 1) if block % w == 0 and stride % w == 0)
    if tb.frames.size // word >= 2**31:
        raise ConfigError(f"a pool of {params.grid.shape[0]} levels is too large for the vector env's window bands "
                          f"({tb.frames.size / 2**30:.1f} GiB); use fewer levels")
    words = jnp.asarray(np.ascontiguousarray(tb.frames).reshape(-1).view(_UINT[word]))

    def observe(cells):
        start = materialize(obs_row[cells] * (stride // word))
        flat = jax.vmap(lambda s: jax.lax.dynamic_slice(words, (s,), (block // word,), allow_negative_indices=False))
        obs = flat(start)
        if word > 1:
            obs = jax.lax.bitcast_convert_type(obs, jnp.uint8)
        obs = obs.reshape(n, oh, ow, ch)
        if env.obs_mode == "global":  # the level's grid with the agent channel set at the copy's cell
            here = (cells % tb.n_cells)[:, None, None] == jnp.arange(tb.n_cells).reshape(1, oh, ow)
            agent = here[..., None] & (jnp.arange(ch) == ch - 1)[None, None, None, :]
            obs = jnp.where(agent, jnp.uint8(1), obs)
        return obs

    def draw(seed, k):
        level = draw_levels(seed, k, n, params.n_levels, params.level_offset)
        return level, start_cell[level]

    def reset(seed):
        seed = jnp.asarray(seed, jnp.int32)
        level, cells = draw(seed, 0)
        zeros, false = jnp.zeros((n,), jnp.int32), jnp.zeros((n,), jnp.bool_)
        state = jnp.concatenate([cells, zeros, zeros, jnp.stack([seed, jnp.int32(1)])])
        small = small_buffer(jnp.zeros((n,), jnp.float32), level, (false, false, false, false, ~false), True)
        return state, small, observe(cells)

    def step(flat, actions):
        cells, t, ended = flat[:n], flat[n:2 * n], flat[2 * n:3 * n] != 0
        seed, k = flat[3 * n], flat[3 * n + 1]
        ok = jnp.all((actions >> 2) == 0)  # every action in 0..3
        moved = next_cell[cells * 4 + (actions & 3)]
        code = codes[moved]
        t1 = t + 1
        success, entered = (code & TARGET_BIT) != 0, (code & (OBJECT_BIT | TARGET_BIT)) != 0
        level, fresh = draw(seed, k)
        live = ~ended
        terminated, truncated = live & entered, live & ~entered & (t1 >= tb.max_steps)
        new_cells = jnp.where(ended, fresh, moved)
        reward = jnp.where(live & success, rewards[jnp.minimum(t1, tb.max_steps)], 0.0)
        state = jnp.concatenate([new_cells, jnp.where(ended, 0, t1), (terminated | truncated).astype(jnp.int32),
                                 jnp.stack([seed, k + 1])])
        small = small_buffer(reward, jnp.where(ended, level, 0),
                             (terminated, truncated, live & success, live, ended), ok)
        return jnp.where(ok, state, flat), small, observe(new_cells)

    return jax.jit(reset), jax.jit(step, donate_argnums=0)


def generic_programs(task: Task, env, params, n: int):
    """:func:`grid_programs` for any env with GridEnv's functional API (keys-chests): its ``initial_state``,
    ``step_no_reset`` and ``observe``, vmapped; the state is the states' leaves, cast to int32 and concatenated,
    with the same trailer (ended, seed, counter). A success ends a keys-chests episode (``terminated``), the step
    limit otherwise (``truncated``)."""
    init = jax.vmap(lambda level: env.initial_state(params, level))
    _, template = jax.eval_shape(env.reset, jax.random.key(0), params)
    leaves, treedef = jax.tree_util.tree_flatten(template)
    shapes = [tuple(x.shape) for x in leaves]
    widths = [math.prod(s) for s in shapes]

    def pack(states):
        return jnp.concatenate([x.reshape(n, -1).astype(jnp.int32) for x in jax.tree_util.tree_leaves(states)], 1)

    def unpack(packed):
        out, start = [], 0
        for leaf, shape, width in zip(leaves, shapes, widths):
            col = packed[:, start:start + width].reshape((n,) + shape)
            out.append(col != 0 if leaf.dtype == jnp.bool_ else col.astype(leaf.dtype))
            start += width
        return jax.tree_util.tree_unflatten(treedef, out)

    width = sum(widths)
    observe = jax.vmap(env.observe, (0, None))

    def obs_of(states):
        return observe(jax.tree_util.tree_map(materialize, states), params).astype(jnp.uint8)

    def device_state(states, ended, seed, k):
        return jnp.concatenate([pack(states).reshape(-1), ended.astype(jnp.int32), jnp.stack([seed, k])])

    def reset(seed):
        seed = jnp.asarray(seed, jnp.int32)
        level = draw_levels(seed, 0, n, params.n_levels, params.level_offset)
        states, false = init(level), jnp.zeros((n,), jnp.bool_)
        small = small_buffer(jnp.zeros((n,), jnp.float32), level, (false, false, false, false, ~false), True)
        return device_state(states, false, seed, jnp.int32(1)), small, obs_of(states)

    def step(flat, actions):
        states = unpack(flat[:n * width].reshape(n, width))
        ended = flat[n * width:n * width + n] != 0
        seed, k = flat[n * width + n], flat[n * width + n + 1]
        ok = jnp.all((actions >> 2) == 0)
        stepped, reward, done, success = jax.vmap(env.step_no_reset, (0, 0, None))(states, actions & 3, params)
        level = draw_levels(seed, k, n, params.n_levels, params.level_offset)
        fresh = init(level)
        new = jax.tree_util.tree_map(
            lambda a, b: jnp.where(ended.reshape((n,) + (1,) * (a.ndim - 1)), a, b), fresh, stepped)
        live = ~ended
        terminated, truncated = live & done & success, live & done & ~success
        small = small_buffer(jnp.where(live, reward, 0.0), jnp.where(ended, level, 0),
                             (terminated, truncated, live & success, live, ended), ok)
        state = device_state(new, terminated | truncated, seed, k + 1)
        return jnp.where(ok, state, flat), small, obs_of(new)

    return jax.jit(reset), jax.jit(step, donate_argnums=0)


class MesalabVectorEnv(gym.vector.VectorEnv):
    """``num_envs`` copies of a mesalab task on one level pool, stepped by one jitted program per call (see the
    module docstring). ``task``, ``split``, ``n_levels``, ``level_seed`` and ``obs_mode`` mean what they mean for
    :class:`~mesalab.tasks.gym_adapter.MesalabGymEnv`; ``params`` is the pool, ``channel_names`` names each
    observation channel."""

    metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP, "render_modes": []}

    def __init__(self, task: str | Task = "red-door", num_envs: int = 64, split: str = "train", n_levels: int = 256,
                 level_seed: int = 0, obs_mode: str | None = None):
        if isinstance(num_envs, bool) or not isinstance(num_envs, (int, np.integer)) or num_envs < 1:
            raise ConfigError(f"num_envs must be a positive integer, got {num_envs!r}")
        self.task = get_task(task) if isinstance(task, str) else task
        self.num_envs = n = int(num_envs)
        self.split = split
        self.obs_mode = resolve_obs_mode(self.task, obs_mode)
        self.env = self.task.env_for(self.obs_mode)
        self.params = level_pool(self.task, split, n_levels, level_seed)
        self.channel_names = channel_names(self.task, self.obs_mode)
        self.single_observation_space = observation_space(self.env.obs_shape)
        self.single_action_space = spaces.Discrete(self.env.n_actions)
        self.observation_space = batch_space(self.single_observation_space, n)
        self.action_space = batch_space(self.single_action_space, n)
        if isinstance(self.env, GridEnv) and not isinstance(self.task, KeysChestsTask):
            self._reset, self._step = grid_programs(self.env, self.params, n)
        else:
            self._reset, self._step = generic_programs(self.task, self.env, self.params, n)
        self._state = None

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """Reset every copy (see the module docstring): ``(obs, {"level": int32[n], "_level": all True})``."""
        super().reset(seed=seed)
        self._state, small, obs = self._reset(np.int32(self.np_random.integers(0, 2**31 - 1)))
        _, level, flags, _ = unpack_small(np.asarray(small), self.num_envs)
        return np.asarray(obs), {"level": level, "_level": flags[4]}

    def step(self, actions):
        """One step of every copy (``NEXT_STEP`` autoreset): ``(obs, rewards, terminated, truncated, infos)``;
        a ValueError (and no step) for actions that are not ``num_envs`` integers in ``0..3``."""
        if self._state is None:
            raise RuntimeError("call reset() before step()")
        a = np.asarray(actions)
        if a.dtype != np.int32:
            if a.dtype.kind not in "iu" or ((a >> 2) != 0).any():  # wider ints: checked before they are cut
                raise ValueError(f"actions must be integers in 0..{self.env.n_actions - 1}, got {actions!r}")
            a = a.astype(np.int32)
        if a.shape != (self.num_envs,):
            raise ValueError(f"actions must have shape ({self.num_envs},), got {a.shape}")
        self._state, small, obs = self._step(self._state, a)
        reward, level, flags, ok = unpack_small(np.asarray(small), self.num_envs)
        if not ok:  # the program left the state as it was
            raise ValueError(f"actions must be in 0..{self.env.n_actions - 1}, got {actions!r}")
        return np.asarray(obs), reward, flags[0], flags[1], {"success": flags[2], "_success": flags[3],
                                                            "level": level, "_level": flags[4]}

    def close_extras(self, **kwargs) -> None:
        self._state = None
