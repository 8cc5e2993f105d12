"""A Gymnasium adapter: any mesalab task as a ``gymnasium.Env`` for outside RL libraries.

Observations are the task's one-hot grid as ``uint8``; actions are ``Discrete(4)`` (up, right, down, left).
``reset`` draws a level from a fixed pool of the chosen split; ``terminated`` means an object (or the base
objective's target) was entered (keys-chests: every chest that can be opened is open), ``truncated`` that the step
limit was reached.

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

import gymnasium as gym
import jax
import numpy as np
from gymnasium import spaces

from mesalab.errors import ConfigError
from mesalab.tasks.grid import EnvParams, object_cells, take_levels
from mesalab.tasks.keys_chests.env import state_grid
from mesalab.tasks.keys_chests.task import KeysChestsTask
from mesalab.tasks.level_hash import level_hashes
from mesalab.tasks.registry import Task, get_task

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


class MesalabGymEnv(gym.Env):
    metadata = {"render_modes": ["rgb_array"], "render_fps": 4}

    def __init__(self, task: str = "red-door", split: str = "train", n_levels: int = 256, level_seed: int = 0,
                 render_mode: str | None = None):
        self.task = get_task(task)
        self.split = _check_split(split)
        self.env = self.task.env
        self.params = level_pool(self.task, split, n_levels, level_seed)
        self.render_mode = render_mode
        self.observation_space = spaces.Box(0, 1, self.env.obs_shape, np.uint8)
        self.action_space = spaces.Discrete(self.env.n_actions)
        self._reset = jax.jit(self.env.reset)
        self._step = jax.jit(self.env.step_no_reset)
        self._observe = jax.jit(self.env.observe)
        self.state = None

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        key = jax.random.key(int(self.np_random.integers(0, 2**31 - 1)))
        obs, self.state = self._reset(key, self.params)
        return np.asarray(obs, np.uint8), {"level": int(self.state.level)}

    def step(self, action):
        if self.state is None:
            raise RuntimeError("call reset() before step()")
        if not self.action_space.contains(int(action)):
            raise ValueError(f"action must be in 0..{self.env.n_actions - 1}, got {action!r}")
        self.state, reward, done, success = self._step(self.state, np.int32(action), self.params)
        level, pos = int(self.state.level), np.asarray(self.state.pos)
        if isinstance(self.task, KeysChestsTask):  # its episodes end early only when every openable chest is open
            entered = bool(success)
        else:
            entered = bool(object_cells(np.asarray(self.params.grid[level]))[pos[0], pos[1]]) or bool(success)
        terminated = bool(done) and entered
        truncated = bool(done) and not entered
        obs = np.asarray(self._observe(self.state, self.params), np.uint8)
        return obs, float(reward), terminated, truncated, {"success": bool(success)}

    def render(self):
        if self.render_mode != "rgb_array" or self.state is None:
            return None
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from mesalab.tasks.render import draw_level

        fig, ax = plt.subplots(figsize=(3, 3), dpi=64)
        pos = np.asarray(self.state.pos)
        if isinstance(self.task, KeysChestsTask):  # the objects still there, not the level as it began
            grid = np.asarray(state_grid(self.state, self.params))
        else:
            grid = np.asarray(self.params.grid[int(self.state.level)])
        draw_level(ax, grid, start=pos)
        fig.canvas.draw()
        img = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
        plt.close(fig)
        return img
