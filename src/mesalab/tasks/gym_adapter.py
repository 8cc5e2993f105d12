"""A Gymnasium adapter: any mesalab task as a ``gymnasium.Env`` for outside RL libraries.

Actions are ``Discrete(4)`` (up, right, down, left). ``reset`` draws a level from a fixed pool of the chosen split
(uniformly, with the env's ``np_random``: a seed ``s = np_random.integers(0, 2**31 - 1)`` and the pool entry
``jax.random.randint(jax.random.key(s), (), 0, n_levels)``, as earlier versions of this adapter drew it);
``reset(options={"level": i})`` starts on pool entry ``i`` instead (and draws nothing). ``terminated`` means an
object (or the base objective's target) was entered (keys-chests: every chest that can be opened is open),
``truncated`` that the step limit was reached. The reward is the task's base objective, ``1 - 0.9 t / max_steps``
(a float32 value, returned as a Python float) on the step ``t`` that enters a base-objective target, else 0;
``info["success"]`` says the step did so (``reset``'s info has ``"level"``, the pool entry drawn).

Observation contract. An observation is ``uint8`` with values 0 or 1 only: one-hot channels, last axis, whose
names are the env's ``channel_names``: :data:`mesalab.tasks.grid.CHANNEL_NAMES` (the grid channels, then
``"agent"`` in ``"global"`` mode), or the task's ``lean_channels`` in ``"lean"`` mode (keys-chests: its own
``EGO_CHANNELS`` / ``GLOBAL_CHANNELS``). ``obs_mode`` is any of the task's ``obs_modes`` (default the task's own):
``"egocentric"`` (a ``(2H-1) x (2W-1)`` window centred on the agent, outside the grid reads as wall), ``"global"``
(the ``H x W`` grid plus the agent channel) or ``"lean"`` (the egocentric window less its two always-wall outer
rings and the channels the task never sets); see :class:`mesalab.tasks.grid.GridEnv`. The space is declared
``Box(0, 255, shape, uint8)``, the bounds image libraries expect of ``uint8`` images (Stable-Baselines3's
env checker warns on others), although only 0 and 1 ever occur.

Backends. ``backend="numpy"`` (the default wherever the task's env is a :class:`~mesalab.tasks.grid.GridEnv`:
every task but keys-chests) steps in NumPy from tables precomputed once per pool (:func:`grid_tables`): no JAX
dispatch per step (only ``reset`` makes one, to draw the level as above), the same observations, rewards,
``terminated`` / ``truncated`` and info as ``backend="jax"``, which runs the task's jitted ``step_no_reset`` and
``observe`` per step (keys-chests' only backend). :mod:`mesalab.tasks.gym_vector` batches many copies in one
jitted program.

Level pools (:func:`level_pool`). ``split`` is ``"train"`` or ``"test"`` (anything else is a one-line
:class:`~mesalab.errors.ConfigError` naming both). The pool is a pure function of ``(task, split, n_levels,
level_seed)``:

- ``"train"``: ``n_levels`` solvable levels of the task's training distribution drawn with
  ``jax.random.key(level_seed)`` (the same pool as earlier versions of this adapter).
- ``"test"``: levels of the task's test distribution drawn with the split folded into the key
  (``jax.random.fold_in(jax.random.key(level_seed), 1)``, as :func:`mesalab.diagnostics.evaluation.evaluation_levels`
  does), and guaranteed disjoint from the ``"train"`` pool of the same ``level_seed`` and ``n_levels``: no test
  level has the hash (:mod:`mesalab.tasks.level_hash`: grid bytes + start cell) of any train level. Where the two
  distributions are the same (``maze``: unseen mazes) a collision is possible, so the adapter draws
  ``n_levels + n_levels // 4 + 8`` test candidates, drops, in order, every candidate whose hash is in the train
  pool, and keeps the first ``n_levels`` survivors; if fewer survive it raises a ``ConfigError``. Duplicates
  *within* a pool are not removed (a pool is a sample from its distribution).
"""

from __future__ import annotations

from typing import NamedTuple

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
from gymnasium import spaces

from mesalab.errors import ConfigError
from mesalab.tasks.grid import (CHANNEL_NAMES, LEAN_TRIM, N_GRID_CHANNELS, WALL_CHANNEL, EnvParams, EnvState,
                                GridEnv, object_cells, take_levels)
from mesalab.tasks.keys_chests.env import EGO_CHANNELS, GLOBAL_CHANNELS, state_grid
from mesalab.tasks.keys_chests.task import KeysChestsTask
from mesalab.tasks.level_hash import level_hashes
from mesalab.tasks.registry import Task, get_task

SPLITS: tuple[str, ...] = ("train", "test")
_SPLIT_INDEX = {"train": 0, "test": 1}
BACKENDS: tuple[str, ...] = ("numpy", "jax")
MOVES = ((-1, 0), (0, 1), (1, 0), (0, -1))  # (row, col) of each action, as mesalab.tasks.grid.DIRECTIONS
SPLITS: tuple[str, ...] = ("train", "test")
_SPLIT_INDEX = {"train": 0, "test": 1}


def _check_split(split) -> str:
    if not isinstance(split, str) or split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}; valid splits: {', '.join(repr(s) for s in SPLITS)}")
    return split


def _check_n_levels(n_levels) -> int:
    try:
        n = int(n_levels)
    except (TypeError, ValueError):
        n = None
    if n is None or n != n_levels or isinstance(n_levels, bool) or n < 1:
        raise ConfigError(f"n_levels must be a positive integer, got {n_levels!r}")
    return n


def split_key(level_seed: int, split: str) -> jax.Array:
    """The key a split's pool is drawn from: the raw seed's key for train, the split folded in for test."""
    key = jax.random.key(int(level_seed))
    return key if _check_split(split) == "train" else jax.random.fold_in(key, _SPLIT_INDEX[split])


def n_test_candidates(n_levels: int) -> int:
    """How many test levels are drawn before dropping the ones that collide with the train pool."""
    return n_levels + n_levels // 4 + 8


def keep_disjoint(candidate_hashes, train_hashes, n: int) -> np.ndarray:
    """Indices of the first ``n`` candidates (in order) whose hash is not in ``train_hashes``.

    Raises :class:`ConfigError` if fewer than ``n`` candidates remain."""
    banned = set(train_hashes)
    keep = [i for i, h in enumerate(candidate_hashes) if h not in banned]
    if len(keep) < n:
        raise ConfigError(
            f"only {len(keep)} of {len(candidate_hashes)} drawn test levels differ from every train level, "
            f"{n} needed; lower n_levels or change level_seed"
        )
    return np.asarray(keep[:n], dtype=np.int32)


def level_pool(task: str | Task, split: str, n_levels: int, level_seed: int = 0) -> EnvParams:
    """The fixed pool of ``n_levels`` levels of ``split`` (see the module docstring): reproducible from
    ``level_seed``, and for ``"test"`` disjoint (by level hash) from the ``"train"`` pool of the same arguments."""
    task = get_task(task) if isinstance(task, str) else task
    split, n = _check_split(split), _check_n_levels(n_levels)
    train = task.sample_params_checked(split_key(level_seed, "train"), "train", n)
    if split == "train":
        return train
    candidates = task.sample_params_checked(split_key(level_seed, "test"), "test", n_test_candidates(n))
    try:
        idx = keep_disjoint(level_hashes(candidates), level_hashes(train), n)
    except ConfigError as err:
        raise ConfigError(f"task {task.name!r}, level_seed {level_seed}: {err}") from None
    return take_levels(candidates, idx)


def resolve_obs_mode(task: Task, obs_mode: str | None) -> str:
    """``obs_mode``, or the task's own when ``None``; a one-line ConfigError for a mode the task does not offer."""
    obs_mode = task.obs_mode if obs_mode is None else obs_mode
    task.check_obs_mode(obs_mode)
    return obs_mode


def channel_names(task: Task, obs_mode: str) -> tuple[str, ...]:
    """The name of each channel (last axis) of ``task``'s observations in ``obs_mode``."""
    if isinstance(task, KeysChestsTask):
        return GLOBAL_CHANNELS if obs_mode == "global" else EGO_CHANNELS
    if obs_mode == "global":
        return CHANNEL_NAMES
    if obs_mode == "lean":
        env = task.env_for("lean")
        return tuple(CHANNEL_NAMES[i] for i in env.channels)
    return CHANNEL_NAMES[:N_GRID_CHANNELS]


def observation_space(shape) -> spaces.Box:
    """The ``uint8`` observation space of that shape, with the bounds ``[0, 255]`` image libraries expect (the values
    are 0 or 1: see the module docstring)."""
    return spaces.Box(0, 255, tuple(shape), np.uint8)


def base_reward(t: int, max_steps: int) -> float:
    """``1 - 0.9 t / max_steps`` evaluated in float32 by NumPy, as a Python float (the reward of a success at step
    ``t``; XLA may round its last bit differently, see :func:`reward_table`)."""
    frac = np.float32(t) / np.float32(max_steps)
    return float(np.float32(np.float32(1.0) - np.float32(0.9) * frac))


def reward_table(env: GridEnv, params: EnvParams, step=None) -> tuple[float, ...]:
    """``rewards[t]`` for ``t`` in ``0..max_steps``: the reward of a success at step ``t``, as ``step`` (default
    ``jax.jit(env.step_no_reset)``, the JAX backend's program) computes it. The last bit of ``1 - 0.9 t /
    max_steps`` in float32 depends on how XLA compiled the formula (fused multiply-add or not), so it is read off
    that program: one step into a base-objective target of the pool for each ``t``. A pool without an enterable
    target never rewards; its table is :func:`base_reward`'s."""
    max_steps = int(params.max_steps)
    grid, targets = np.asarray(params.grid, bool), np.asarray(params.base_target, bool)
    found = np.argwhere(targets & ~grid[..., WALL_CHANNEL])
    if not len(found):
        return tuple(base_reward(t, max_steps) for t in range(max_steps + 1))
    level, row, col = (int(x) for x in found[0])
    for action, (dr, dc) in enumerate(MOVES):  # a cell beside the target (inside the grid) and the move into it
        if 0 <= row - dr < env.height and 0 <= col - dc < env.width:
            break
    step = jax.jit(env.step_no_reset) if step is None else step
    pos = jnp.array([row - dr, col - dc], jnp.int32)
    rewards = [base_reward(0, max_steps)]
    for t in range(max_steps):
        state = EnvState(level=jnp.int32(level), pos=pos, t=jnp.int32(t))
        _, reward, _, success = step(state, np.int32(action), params)
        assert bool(success), "the step into a base-objective target must succeed"
        rewards.append(float(reward))
    return tuple(rewards)


# bits of GridTables.cells
WALL_BIT, OBJECT_BIT, TARGET_BIT = 1, 2, 4


class GridTables(NamedTuple):
    """A :class:`GridEnv` level pool as plain Python / NumPy data, precomputed once (:func:`grid_tables`), from which
    :func:`numpy_step` and :func:`numpy_observe` run the env's dynamics and observations without JAX.

    ``cells[level][row][col]``: bits ``WALL_BIT`` (a wall), ``OBJECT_BIT`` (an object: entering ends the episode) and
    ``TARGET_BIT`` (a base-objective target). ``frames``: ``uint8[P, ...]`` what observations are cut from: for
    ``"global"`` the grid with an all-zero agent channel (``[P, H, W, C + 1]``); for ``"egocentric"`` / ``"lean"``
    the grid (lean: its kept channels) padded with wall cells so that the observation at ``(row, col)`` is the slice
    ``frames[level, row:row + obs_h, col:col + obs_w]``. ``rewards``: :func:`reward_table`."""

    height: int
    width: int
    obs_mode: str
    obs_shape: tuple[int, int, int]
    max_steps: int
    cells: list
    start: list  # [P] of (row, col)
    frames: np.ndarray
    rewards: tuple[float, ...]


def padded_frames(grid: np.ndarray, trim: int = 0, wall: int | None = WALL_CHANNEL) -> np.ndarray:
    """``uint8[P, 3H-2-2 trim, 3W-2-2 trim, C]``: each level's ``grid`` (``bool[P, H, W, C]``) in a border of cells
    reading as wall (channel ``wall``; ``None``: none), less ``trim`` outer rings, so that
    :func:`mesalab.tasks.grid.egocentric_view` with that ``trim`` at ``(row, col)`` is the window starting there."""
    p, h, w, ch = grid.shape
    out = np.zeros((p, 3 * h - 2, 3 * w - 2, ch), np.uint8)
    if wall is not None:
        out[..., wall] = 1
    out[:, h - 1:2 * h - 1, w - 1:2 * w - 1] = grid
    return np.ascontiguousarray(out[:, trim:out.shape[1] - trim, trim:out.shape[2] - trim])


def grid_tables(env: GridEnv, params: EnvParams) -> GridTables:
    """The :class:`GridTables` of ``env`` (its shape and observation mode) on every entry of the pool ``params``."""
    grid = np.asarray(params.grid, bool)
    walls = grid[..., WALL_CHANNEL]
    objects = np.asarray(object_cells(grid))
    targets = np.asarray(params.base_target, bool)
    cells = (walls * WALL_BIT + objects * OBJECT_BIT + targets * TARGET_BIT).astype(np.int64)
    if env.obs_mode == "global":
        frames = np.concatenate([grid, np.zeros(grid.shape[:3] + (1,), bool)], axis=-1).astype(np.uint8)
    elif env.obs_mode == "lean":
        chans = list(env.channels)
        frames = padded_frames(grid[..., chans], LEAN_TRIM,
                               chans.index(WALL_CHANNEL) if WALL_CHANNEL in chans else None)
    else:
        frames = padded_frames(grid)
    max_steps = int(params.max_steps)
    return GridTables(height=env.height, width=env.width, obs_mode=env.obs_mode, obs_shape=tuple(env.obs_shape),
                      max_steps=max_steps, cells=cells.tolist(),
                      start=[tuple(s) for s in np.asarray(params.start).tolist()], frames=frames,
                      rewards=reward_table(env, params))


def numpy_observe(tables: GridTables, level: int, row: int, col: int) -> np.ndarray:
    """The observation (a new ``uint8`` array) of the agent at ``(row, col)`` of pool entry ``level``: equal to
    the env's ``observe``."""
    if tables.obs_mode == "global":
        obs = tables.frames[level].copy()
        obs[row, col, -1] = 1
        return obs
    oh, ow, _ = tables.obs_shape
    return tables.frames[level, row:row + oh, col:col + ow].copy()


def numpy_step(tables: GridTables, level: int, row: int, col: int, t: int, action: int):
    """One transition of :meth:`GridEnv.step_no_reset` in plain Python: ``(row, col, t, reward, terminated,
    truncated, success)`` after ``action`` from ``(row, col)`` at step count ``t`` (``terminated``: an object or a
    base-objective target was entered; ``truncated``: the step limit was reached otherwise)."""
    dr, dc = MOVES[action]
    r, c = row + dr, col + dc
    r = 0 if r < 0 else (tables.height - 1 if r >= tables.height else r)
    c = 0 if c < 0 else (tables.width - 1 if c >= tables.width else c)
    cells = tables.cells[level]
    if cells[r][c] & WALL_BIT:
        r, c = row, col
    code = cells[r][c]
    t += 1
    success = (code & TARGET_BIT) != 0
    terminated = (code & (OBJECT_BIT | TARGET_BIT)) != 0
    if success:
        # past max_steps (stepping on after the episode ended) NumPy's rounding stands in for XLA's
        reward = tables.rewards[t] if t <= tables.max_steps else base_reward(t, tables.max_steps)
    else:
        reward = 0.0
    return r, c, t, reward, terminated, (not terminated) and t >= tables.max_steps, success


def _level_draw(params):
    """The jitted legacy level draw: seed -> ``level_offset + randint(key(seed), (), 0, n_levels)``."""
    return jax.jit(lambda s: params.level_offset + jax.random.randint(jax.random.key(s), (), 0, params.n_levels))


class MesalabGymEnv(gym.Env):
    """A mesalab task as a ``gymnasium.Env`` (see the module docstring): one level pool (``task``, ``split``,
    ``n_levels``, ``level_seed``), observations in ``obs_mode``, stepped by ``backend`` (``"numpy"`` or ``"jax"``;
    ``None``: NumPy wherever the task's env is a GridEnv). ``state`` is the current
    :class:`~mesalab.tasks.grid.EnvState` (keys-chests: its state; ``None`` before ``reset``); ``channel_names``
    names each observation channel."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 4}

    def __init__(self, task: str | Task = "red-door", split: str = "train", n_levels: int = 256, level_seed: int = 0,
                 render_mode: str | None = None, obs_mode: str | None = None, backend: str | None = None):
        self.task = get_task(task) if isinstance(task, str) else task
        self.split = _check_split(split)
        self.obs_mode = resolve_obs_mode(self.task, obs_mode)
        self.env = self.task.env_for(self.obs_mode)
        numpy_ok = isinstance(self.env, GridEnv) and not isinstance(self.task, KeysChestsTask)
        if backend is None:
            backend = "numpy" if numpy_ok else "jax"
        if backend not in BACKENDS:
            raise ConfigError(f"unknown backend {backend!r}; valid backends: {', '.join(map(repr, BACKENDS))}")
        if backend == "numpy" and not numpy_ok:
            raise ConfigError(f"task {self.task.name!r} has no NumPy backend; use backend='jax'")
        self.backend = backend
        self.params = level_pool(self.task, split, n_levels, level_seed)
        self.render_mode = render_mode
        self.channel_names = channel_names(self.task, self.obs_mode)
        self.observation_space = observation_space(self.env.obs_shape)
        self.action_space = spaces.Discrete(self.env.n_actions)
        self._n_pool = int(self.params.grid.shape[0])
        self._draw = _level_draw(self.params)
        self._jax_state = None
        if backend == "numpy":
            self.tables = grid_tables(self.env, self.params)
            self._level = self._row = self._col = self._t = -1
        else:
            self._reset_state = jax.jit(lambda level: self._initial_state(level))
            self._step = jax.jit(self.env.step_no_reset)
            self._observe = jax.jit(self.env.observe)

    def _initial_state(self, level):
        if isinstance(self.task, KeysChestsTask):
            return self.env.initial_state(self.params, level)
        return EnvState(level=level, pos=self.params.start[level], t=jnp.zeros((), jnp.int32))

    @property
    def state(self):
        """The current state (``None`` before the first ``reset``); NumPy scalars under the NumPy backend."""
        if self.backend == "jax":
            return self._jax_state
        if self._level < 0:
            return None
        return EnvState(level=np.int32(self._level), pos=np.array([self._row, self._col], np.int32),
                        t=np.int32(self._t))

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if options and options.get("level") is not None:
            level = int(options["level"])
            if not 0 <= level < self._n_pool:
                raise ValueError(f"options['level'] must be a pool entry in 0..{self._n_pool - 1}, got {level!r}")
        else:
            level = int(self._draw(np.int32(self.np_random.integers(0, 2**31 - 1))))
        if self.backend == "numpy":
            self._level, self._t = level, 0
            self._row, self._col = self.tables.start[level]
            return numpy_observe(self.tables, level, self._row, self._col), {"level": level}
        self._jax_state = self._reset_state(jnp.int32(level))
        return np.asarray(self._observe(self._jax_state, self.params), np.uint8), {"level": level}

    def step(self, action):
        a = int(action)
        if not 0 <= a < 4:
            raise ValueError(f"action must be in 0..{self.env.n_actions - 1}, got {action!r}")
        if self.backend == "numpy":
            if self._level < 0:
                raise RuntimeError("call reset() before step()")
            tables = self.tables
            r, c, self._t, reward, terminated, truncated, success = numpy_step(
                tables, self._level, self._row, self._col, self._t, a)
            self._row, self._col = r, c
            return numpy_observe(tables, self._level, r, c), reward, terminated, truncated, {"success": success}
        if self._jax_state is None:
            raise RuntimeError("call reset() before step()")
        self._jax_state, reward, done, success = self._step(self._jax_state, np.int32(a), self.params)
        level, pos = int(self._jax_state.level), np.asarray(self._jax_state.pos)
        if isinstance(self.task, KeysChestsTask):  # its episodes end early only when every openable chest is open
            entered = bool(success)
        else:
            entered = bool(object_cells(np.asarray(self.params.grid[level]))[pos[0], pos[1]]) or bool(success)
        terminated = bool(done) and entered
        truncated = bool(done) and not entered
        obs = np.asarray(self._observe(self._jax_state, self.params), np.uint8)
        return obs, float(reward), terminated, truncated, {"success": bool(success)}

    def render(self):
        state = self.state
        if self.render_mode != "rgb_array" or state is None:
            return None
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from mesalab.tasks.render import draw_level

        fig, ax = plt.subplots(figsize=(3, 3), dpi=64)
        pos = np.asarray(state.pos)
        if isinstance(self.task, KeysChestsTask):  # the objects still there, not the level as it began
            grid = np.asarray(state_grid(state, self.params))
        else:
            grid = np.asarray(self.params.grid[int(state.level)])
        draw_level(ax, grid, start=pos)
        fig.canvas.draw()
        img = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
        plt.close(fig)
        return img
