"""A Gymnasium adapter: any mesalab task as a ``gymnasium.Env`` for outside RL libraries.

Observations are the task's one-hot grid as ``uint8``; actions are ``Discrete(4)`` (up, right, down, left).
``reset`` draws a level from a fixed pool of the chosen split; ``terminated`` means an object (or the base
objective's target) was entered, ``truncated`` that the step limit was reached.
"""

from __future__ import annotations

import gymnasium as gym
import jax
import numpy as np
from gymnasium import spaces

from mesalab.tasks.grid import object_cells
from mesalab.tasks.registry import get_task


class MesalabGymEnv(gym.Env):
    metadata = {"render_modes": ["rgb_array"], "render_fps": 4}

    def __init__(self, task: str = "red-door", split: str = "train", n_levels: int = 256, level_seed: int = 0,
                 render_mode: str | None = None):
        self.task = get_task(task)
        self.split = split
        self.env = self.task.env
        self.params = self.task.sample_params_checked(jax.random.key(level_seed), split, n_levels)
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
        draw_level(ax, np.asarray(self.params.grid[int(self.state.level)]), start=pos)
        fig.canvas.draw()
        img = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
        plt.close(fig)
        return img
