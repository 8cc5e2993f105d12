"""Train a batch of PPO models as one vmapped, jitted program and evaluate them: the measurement that the
gridworld ``run`` and the PPO cells of a sweep share.

:func:`train_batch` trains every cell of a batch (seeds, and the values of a data dial, vmapped together);
:func:`evaluate_batch` plays one episode per level of the fixed evaluation pools for each model; the rest
split a stacked result per model and fit each model's objective profile.
"""

from __future__ import annotations

import functools
import json
from typing import Callable

import numpy as np

from mesalab.eval_plan import EvalPlan

RECURRENT_TEST_TICKS = (1, 2, 4, 8, 16)  # a recurrent model of a run is also tested at these ticks per step


@functools.lru_cache(maxsize=None)
def _stages_cached(config_json: str, data_dial: str | None):
    """The compiled stages of a PPO run, shared by every batch whose shape settings are the same (one compilation
    per chunk shape per worker process; none at all on a warm persistent compilation cache)."""
    from mesalab.optimizers import PPOConfig
    from mesalab.optimizers.ppo import jitted_stages, make_train_stages

    stages = make_train_stages(PPOConfig(**json.loads(config_json)))
    return stages, jitted_stages(stages)


def _stages(config, data_dial: str | None):
    from mesalab.optimizers import PPOConfig

    d = config.to_dict()
    if data_dial is not None:
        d[data_dial] = getattr(PPOConfig(), data_dial)  # the value is a traced input, not part of the program
    return _stages_cached(json.dumps(d, sort_keys=True), data_dial)


def train_batch(config, seeds: list[int], data_dial: str | None = None, dial_values: list | None = None,
                progress: Callable[[int], None] | None = None):
    """``(keys, models, metrics)`` of one vmapped training run of ``config`` for each seed (and each value of the
    data dial ``data_dial``, one per seed, when given). ``metrics`` are numpy and checked finite."""
    import jax
    import jax.numpy as jnp

    from mesalab.optimizers import check_finite

    from mesalab.optimizers.ppo import train_in_chunks

    keys = jax.vmap(jax.random.key)(jnp.asarray(seeds, jnp.uint32))
    dials = {} if data_dial is None else {data_dial: jnp.asarray(dial_values, jnp.float32)}
    stages, compiled = _stages(config, data_dial)
    models, metrics = train_in_chunks(stages, keys, dials, progress, compiled=compiled)
    metrics = jax.tree_util.tree_map(np.asarray, metrics)
    check_finite(metrics, config.lr)
    return keys, models, metrics


@functools.lru_cache(maxsize=None)
def _training_levels_cached(config_json: str):
    import jax

    from mesalab.optimizers import PPOConfig
    from mesalab.optimizers.ppo import training_levels

    config = PPOConfig(**json.loads(config_json))
    return jax.jit(lambda key, dials: training_levels(config, key, dials))


def training_overlaps(config, key, pools: dict, dials: dict | None = None) -> dict[str, tuple[int, int]]:
    """split -> ``(evaluation levels equal to a level the model was trained on, training levels)``: every level the
    trainer drew from ``key`` is regenerated (:func:`mesalab.optimizers.ppo.training_levels`) and compared by hash
    (:mod:`mesalab.tasks.level_hash`) with each evaluation pool."""
    import jax.numpy as jnp

    from mesalab.tasks.level_hash import overlap_count, pool_hashes

    dials = {k: jnp.asarray(v, jnp.float32) for k, v in (dials or {}).items()}
    grids, starts = _training_levels_cached(json.dumps(config.to_dict(), sort_keys=True))(key, dials)
    seen = set(pool_hashes(np.asarray(grids), np.asarray(starts)))
    return {split: (overlap_count(params, seen), len(seen)) for split, params in pools.items()}


def evaluation_pools(task, plan: EvalPlan) -> dict:
    """split -> the fixed evaluation levels (``EnvParams``), shared by every model (paired comparisons): train,
    test and, when ``plan.probes``, the task's probe splits."""
    from mesalab.diagnostics import evaluation_levels

    splits = task.splits if plan.probes else ("train", "test")
    return {s: evaluation_levels(task, s, plan.episodes, plan.level_seed) for s in splits}


def evaluate_models(task, models, keys, pools: dict, greedy: bool, ticks: int | None = None) -> dict:
    """One episode per pool level for each of a stack of models (leading axis, one per training key) on each
    split: ``split -> Episodes`` (numpy, leading model axis). The episode keys derive from the training keys,
    so replaying a folder's checkpoints reproduces its episodes. ``ticks``: internal iterations per step of a
    recurrent model (its training ticks when ``None``)."""
    import jax

    eval_keys = jax.vmap(lambda k: jax.random.fold_in(k, 7))(keys)
    episodes = {}
    for split, params in pools.items():
        episodes[split] = jax.tree_util.tree_map(np.asarray, _evaluator(task, greedy, ticks)(models, eval_keys, params))
    return episodes


@functools.lru_cache(maxsize=None)
def _evaluator(task, greedy: bool, ticks: int | None = None):
    """One jitted evaluator per (task, greedy, ticks), so repeated evaluations reuse its compilation."""
    import equinox as eqx

    from mesalab.diagnostics import evaluate, model_policy

    @eqx.filter_jit
    def run(models, keys, params):
        return eqx.filter_vmap(lambda m, k, p: evaluate(task, model_policy(m, task.obs_mode, greedy, ticks=ticks), p, k),
                               in_axes=(eqx.if_array(0), 0, None))(models, keys, params)

    return run


def test_ticks_for(trained_ticks: int, extra=RECURRENT_TEST_TICKS) -> list[int]:
    """The tick counts a recurrent model is tested at: ``extra``, its training ticks and twice them."""
    return sorted(set(extra) | {trained_ticks, 2 * trained_ticks})


def episodes_by_ticks(task, models, keys, pool, greedy: bool, ticks: list[int], trained_ticks: int,
                      trained_episodes=None) -> dict:
    """``ticks -> Episodes`` of a stack of recurrent models on one pool at each number of ticks per step (the
    same levels and episode keys at every count, so the comparison is paired); the episodes already played at
    the training ticks are reused when given."""
    out = {}
    for k in ticks:
        if k == trained_ticks and trained_episodes is not None:
            out[k] = trained_episodes
        else:
            out[k] = evaluate_models(task, models, keys, {"test": pool}, greedy, ticks=k)["test"]
    return out


def success_count(task, episodes) -> tuple[int, int]:
    """(episodes that reached a base-objective target, episodes) of one model."""
    from mesalab.diagnostics import summarise

    s = summarise(task, episodes, "test")
    return int(round(s.objectives[0].reach_rate * s.n_episodes)), int(s.n_episodes)


def split_seed(tree, i: int):
    """Entry ``i`` of a stacked pytree (numpy episodes or an Equinox model with a leading seed axis)."""
    import equinox as eqx
    import jax

    return jax.tree_util.tree_map(lambda x: x[i] if eqx.is_array(x) or isinstance(x, np.ndarray) else x, tree)


def model_leaves(models) -> list[np.ndarray]:
    """The numpy array leaves of a stack of models (``eqx.filter(models, eqx.is_array)``): what travels back
    from a worker and is checkpointed."""
    import equinox as eqx
    import jax

    return [np.asarray(x) for x in jax.tree_util.tree_leaves(eqx.filter(models, eqx.is_array))]


def rebuild_model(config, leaves: list):
    """The Equinox model of ``config`` holding ``leaves`` (one model's array leaves)."""
    import equinox as eqx
    import jax

    from mesalab.optimizers import init_model

    params, static = eqx.partition(init_model(config, jax.random.key(0)), eqx.is_array)
    treedef = jax.tree_util.tree_structure(params)
    return eqx.combine(jax.tree_util.tree_unflatten(treedef, leaves), static)


def profile_seed(task, model, episodes: dict, pools: dict, plan: EvalPlan) -> dict:
    """The objective profile (behavioral objective, bits, goal-directedness) of one trained model per split;
    ``pools``: split -> the evaluation levels (``EnvParams``) the episodes were played on."""
    if plan.irl_levels <= 0:
        return {}
    from mesalab.diagnostics.policy_replay import model_log_probs
    from mesalab.diagnostics.objective_profile import objective_profile

    out = {}
    for split, ep in episodes.items():
        params = pools[split]
        own = lambda demos, params=params: model_log_probs(task, model, task.obs_mode, plan.greedy,  # noqa: E731
                                                           params, demos)
        out[split] = objective_profile(task, params, ep, split, irl_levels=plan.irl_levels,
                                       n_boot=plan.bootstrap, own_log_probs=own)
    return out


def drawn_trajectories(task, episodes: dict, n: int) -> list[tuple]:
    """``(split, level, rows, cols, outcome name)`` of the first ``n`` episodes of each split of one model."""
    from mesalab.diagnostics.evaluation import outcome_names

    names = outcome_names(task)
    rows = []
    for split, ep in episodes.items():
        for lvl in range(min(n, ep.length.shape[0])):
            k = int(ep.length[lvl]) + 1
            rows.append((split, lvl, ep.positions[lvl, :k, 0].tolist(), ep.positions[lvl, :k, 1].tolist(),
                         names[int(ep.outcome[lvl])]))
    return rows


def drawn_levels(task, split: str, plan: EvalPlan, n: int) -> list[tuple]:
    """``(level, height, width, channels, grid (flat), start_row, start_col)`` of the first ``n`` levels of one
    evaluation pool (for the trajectory drawings)."""
    from mesalab.diagnostics import evaluation_levels

    params = evaluation_levels(task, split, plan.episodes, plan.level_seed)
    rows = []
    for lvl in range(min(n, params.grid.shape[0])):
        g = np.asarray(params.grid[lvl])
        h, w, c = g.shape
        rows.append((lvl, h, w, c, g.reshape(-1).tolist(), int(params.start[lvl, 0]), int(params.start[lvl, 1])))
    return rows
