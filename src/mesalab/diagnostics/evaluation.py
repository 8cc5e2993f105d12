"""The evaluator: roll a policy out on a pool of levels (a training or a shifted test split) and score every
episode under the base objective and each candidate proxy, against the exact (BFS) optimum of each.

Definitions (per episode, for each candidate objective c = base objective, proxy 1, ..., proxy k):
- ``first_reach[c]``: steps until the agent first stands on a target cell of c (``NEVER`` if it never does
  before the episode ends); ``shortest[c]``: the exact fewest steps (oracle).
- ``returns[c]`` / ``optimal[c]``: the return the episode earns under c / the best achievable.
- c is *pursued competently* when reached within twice its shortest path.
- ``outcome``: 0 if the base objective was pursued competently, else j (1..k) for the first proxy reached
  competently, else k+1 ("other": nothing pursued competently).
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from mesalab.eval_plan import LEVEL_SEED
from mesalab.diagnostics.policies import Policy, as_stateful
from mesalab.diagnostics.stats import wilson_interval
from mesalab.tasks.grid import EnvParams, EnvState, GridEnv
from mesalab.diagnostics.competence import EFFICIENCY_FACTOR, NEVER, outcome_of
from mesalab.tasks.oracle import return_for_length, shortest_path_length
from mesalab.tasks.registry import Task


class Episodes(NamedTuple):
    """One episode per level of the pool (arrays with a leading level axis)."""

    positions: jax.Array  # int32[n, T+1, 2] agent cell after each step (frozen after the episode ends)
    actions: jax.Array  # int32[n, T] action taken at each step (entries from ``length`` on are padding)
    length: jax.Array  # int32[n] steps taken
    first_reach: jax.Array  # int32[n, K]
    shortest: jax.Array  # int32[n, K]
    returns: jax.Array  # float32[n, K]
    optimal: jax.Array  # float32[n, K]
    outcome: jax.Array  # int32[n] in [0, K]


def rollout(env: GridEnv, policy: Policy, params: EnvParams, level: jax.Array, key: jax.Array, n_steps: int):
    """One episode of at most ``n_steps`` on pool entry ``level`` without auto-reset (a stateful policy's carry
    starts from its initial carry; a planner decides from the state): ``(positions[n_steps + 1, 2],
    actions[n_steps], length)``."""
    if policy.plan is not None:  # a planner searches the true simulator from the state (policies.py)
        initial_carry = lambda: jnp.zeros((), jnp.int32)  # noqa: E731

        def act(state, k, memory):
            return policy.plan(env, state, params, k), memory
    else:
        initial_carry, act_obs, _ = as_stateful(policy)

        def act(state, k, memory):
            return act_obs(env.observe(state, params), k, memory)
    state = EnvState(level=level, pos=params.start[level], t=jnp.zeros((), jnp.int32))

    def step(carry, k):
        state, alive, memory = carry
        action, memory = act(state, k, memory)
        nxt, _, done, _ = env.step_no_reset(state, action, params)
        state = jax.tree_util.tree_map(lambda a, b: jnp.where(alive, a, b), nxt, state)
        return (state, alive & ~done, memory), (state.pos, action)

    (final, _, _), (pos, actions) = jax.lax.scan(step, (state, jnp.bool_(True), initial_carry()),
                                                 jax.random.split(key, n_steps))
    positions = jnp.concatenate([params.start[level][None], pos], axis=0)
    return positions, actions, final.t


def reach_and_shortest(objective, grid, start, base_target, positions, alive):
    """First step at which the episode stands on a target of ``objective`` (``NEVER`` if none) and the exact
    fewest steps to one."""
    target = objective.target_map(grid)
    hit = target[positions[:, 0], positions[:, 1]] & alive
    first = jnp.where(jnp.any(hit), jnp.argmax(hit), NEVER)
    return first, shortest_path_length(grid, start, base_target, target)


def competent_pursuit(objective, params: EnvParams, episodes: Episodes) -> np.ndarray:
    """``bool[n]``: which episodes pursued ``objective`` (any object with a ``target_map``, listed by the task or
    not) competently: reached one of its targets within ``EFFICIENCY_FACTOR`` times the exact shortest path."""
    return np.asarray(_competent_jit(objective, params, episodes.positions, episodes.length))


@partial(jax.jit, static_argnums=0)
def _competent_jit(objective, params, positions, length):
    def one(level, pos, n):
        alive = jnp.arange(pos.shape[0]) <= n
        first, shortest = reach_and_shortest(objective, params.grid[level], params.start[level], params.base_target[level],
                                 pos, alive)
        return (first < NEVER) & (first <= EFFICIENCY_FACTOR * shortest)

    levels = jnp.arange(positions.shape[0], dtype=jnp.int32)
    return jax.vmap(one)(levels, jnp.asarray(positions), jnp.asarray(length))


def score_episode(task: Task, params: EnvParams, level: jax.Array, positions: jax.Array, length: jax.Array):
    """Per-candidate first-reach times, shortest paths, returns, optima and the outcome of one episode."""
    grid = params.grid[level]
    base_target = params.base_target[level]
    start = params.start[level]
    t = jnp.arange(positions.shape[0])
    alive = t <= length
    first, shortest = [], []
    for obj in task.candidate_objectives:
        f, s = reach_and_shortest(obj, grid, start, base_target, positions, alive)
        first.append(f)
        shortest.append(s)
    first = jnp.stack(first).astype(jnp.int32)
    shortest = jnp.stack(shortest).astype(jnp.int32)
    returns = return_for_length(first, params.max_steps)
    optimal = return_for_length(shortest, params.max_steps)
    return first, shortest, returns, optimal, outcome_of(first, shortest)


def evaluate(task: Task, policy: Policy, params: EnvParams, key: jax.Array) -> Episodes:
    """Run ``policy`` for one episode on every level of ``params`` (jittable; vmapped over levels). A keys-chests
    task has its own evaluator (:mod:`mesalab.diagnostics.keys_chests.evaluation`; same fields, plus its events)."""
    from mesalab.tasks.keys_chests import KeysChestsTask

    if isinstance(task, KeysChestsTask):
        from mesalab.diagnostics.keys_chests.evaluation import evaluate as evaluate_keys_chests

        return evaluate_keys_chests(task, policy, params, key)
    env = task.env_for(policy.obs_mode)
    n = params.grid.shape[0]
    levels = jnp.arange(n, dtype=jnp.int32)

    def one(level, k):
        positions, actions, length = rollout(env, policy, params, level, k, task.max_steps)
        return (positions, actions, length, *score_episode(task, params, level, positions, length))

    out = jax.vmap(one)(levels, jax.random.split(key, n))
    return Episodes(*out)


def evaluation_levels(task: Task, split: str, n_episodes: int, seed: int = LEVEL_SEED) -> EnvParams:
    """The fixed pool of evaluation levels of a split (same for every seed, so comparisons are paired).
    Each split (train, test, each probe) has its own key, none of them a training pool's."""
    key = jax.random.fold_in(jax.random.key(seed), task.splits.index(split) if split in task.splits else 1)
    return task.sample_params_checked(key, split, n_episodes)


class ObjectiveScore(NamedTuple):
    name: str
    reach_rate: float  # fraction of episodes that reached a target of this objective
    competent_rate: float  # fraction reaching it within twice the shortest path
    competent_ci: tuple[float, float]
    mean_return: float
    mean_optimal: float
    normalised_return: float  # mean return / mean optimal return


class SplitSummary(NamedTuple):
    split: str
    n_episodes: int
    objectives: tuple[ObjectiveScore, ...]
    outcome_names: tuple[str, ...]
    outcome_counts: tuple[int, ...]
    competence_rate: float  # fraction of episodes pursuing some candidate competently
    competence_ci: tuple[float, float]


def outcome_names(task: Task) -> tuple[str, ...]:
    return ("base:" + task.base_objective.name, *("proxy:" + p.name for p in task.proxies), "other")


def summarise(task: Task, episodes: Episodes, split: str) -> SplitSummary:
    """Host-side aggregation of one policy's episodes on one split (NumPy)."""
    ep = jax.tree_util.tree_map(np.asarray, episodes)
    n = int(ep.length.shape[0])
    competent = (ep.first_reach < NEVER) & (ep.first_reach <= EFFICIENCY_FACTOR * ep.shortest)
    scores = []
    for j, obj in enumerate(task.candidate_objectives):
        c = int(competent[:, j].sum())
        mean_opt = float(ep.optimal[:, j].mean())
        mean_ret = float(ep.returns[:, j].mean())
        scores.append(
            ObjectiveScore(
                name=obj.name,
                reach_rate=float((ep.first_reach[:, j] < NEVER).mean()),
                competent_rate=c / n,
                competent_ci=wilson_interval(c, n),
                mean_return=mean_ret,
                mean_optimal=mean_opt,
                normalised_return=mean_ret / mean_opt if mean_opt > 0 else float("nan"),
            )
        )
    k = len(task.candidate_objectives)
    counts = np.bincount(ep.outcome, minlength=k + 1)
    n_comp = int(counts[:k].sum())
    return SplitSummary(
        split=split,
        n_episodes=n,
        objectives=tuple(scores),
        outcome_names=outcome_names(task),
        outcome_counts=tuple(int(c) for c in counts),
        competence_rate=n_comp / n,
        competence_ci=wilson_interval(n_comp, n),
    )
