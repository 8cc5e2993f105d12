"""A value iteration network's learned reward map read as its mesa-objective, and compared with the task's
objectives ("Conditions for Mesa-Optimization" §2.2: with the search hard-coded, only the objective is learned).

For each level, the reward map the network computes from the level's first observation is read on the level's
grid cells, and its Spearman rank correlation with each objective's target map (1 on the objective's target
cells, 0 elsewhere) is taken over the free (non-wall) cells. A reward map that ranks exactly the objective's
targets above every other free cell and is flat elsewhere has rho = 1 with it; one that ignores the targets, 0.
The mean over levels comes with a 95% bootstrap interval over levels; levels where the objective has no target
(or every free cell is one) carry no rank information and are left out of that objective's mean.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from scipy.stats import rankdata

from mesalab.diagnostics.stats import bootstrap_mean_ci
from mesalab.errors import ConfigError
from mesalab.tasks.grid import LEAN_TRIM, WALL_CHANNEL, EnvState


class RewardMapAgreement(NamedTuple):
    objective: str
    rho: float  # mean over levels of the Spearman correlation of the reward map with the objective's targets
    rho_ci: tuple[float, float]
    n_levels: int  # levels with at least one target and one non-target free cell


def reward_on_grid(task, model, params, obs_mode: str) -> np.ndarray:
    """``float[n, H, W]``: the reward map ``model`` (a value iteration network) computes from each level's first
    observation, on the level's own cells (egocentric and lean windows are moved back onto the grid)."""
    if not hasattr(model, "reward_w"):
        raise ConfigError(f"reward maps are read from a value iteration network (model 'vin'), not "
                          f"{type(model).__name__}")
    env = task.env if task.env.obs_mode == obs_mode else task.with_obs_mode(obs_mode).env
    h, w = env.height, env.width
    levels = jnp.arange(params.grid.shape[0], dtype=jnp.int32)  # a level's index into the pool's arrays

    def one(level, pos):
        obs = env.observe(EnvState(level, pos, jnp.int32(0)), params)
        _, acts = model(obs)
        reward = acts["reward_map"]
        if obs_mode == "global":
            return reward
        trim = LEAN_TRIM if obs_mode == "lean" else 0
        # window cell (i, j) shows grid cell (i + trim + pos_r - (h - 1), j + trim + pos_c - (w - 1))
        padded = jnp.pad(reward, trim, constant_values=jnp.nan)
        return jax.lax.dynamic_slice(padded, (h - 1 - pos[0], w - 1 - pos[1]), (h, w))

    return np.asarray(jax.jit(jax.vmap(one))(levels, params.start[levels]), np.float64)


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = rankdata(a), rankdata(b)
    return float(np.corrcoef(ra, rb)[0, 1])


def reward_map_agreement(task, model, params, obs_mode: str, objectives=None, seed: int = 0
                         ) -> list[RewardMapAgreement]:
    """The learned reward map against each of ``objectives`` (default: the task's base objective, then its
    proxies), on the levels of ``params``."""
    objectives = objectives or (task.base_objective, *task.proxies)
    reward = reward_on_grid(task, model, params, obs_mode)
    grids = np.asarray(params.grid)
    free = ~grids[..., WALL_CHANNEL]
    out = []
    for objective in objectives:
        targets = np.asarray(objective.target_map(jnp.asarray(params.grid)))
        rhos = []
        for i in range(grids.shape[0]):
            t, r = targets[i][free[i]], reward[i][free[i]]
            if t.all() or not t.any():
                continue
            rhos.append(0.0 if np.ptp(r) == 0 else _spearman(r, t.astype(np.float64)))
        if rhos:
            m, lo, hi = bootstrap_mean_ci(np.asarray(rhos), seed=seed)
        else:
            m, lo, hi = float("nan"), float("nan"), float("nan")
        out.append(RewardMapAgreement(objective.name, m, (lo, hi), len(rhos)))
    return out
