"""Train one batch of sweep cells (one vmapped, jitted program) and measure every cell.

Cell metrics (all honest per-cell numbers; the sweep statistics are over seeds):

- ``{split}/success``: fraction of evaluation episodes that reach a base-objective target at all;
- ``{split}/outcome:base``, ``{split}/outcome:proxy:P``, ``{split}/outcome:other``: the fractions of episodes
  whose outcome is "base objective pursued competently", "proxy P pursued competently (and not the base
  objective)", or neither (see :mod:`mesalab.diagnostics.shift`);
- ``{split}/normalised_return``: mean base-objective return over the oracle's;
- ``{split}/bits``, ``{split}/bits_ceiling``, ``{split}/bits_fraction``: optimization power toward the base
  objective (exact bits per level, mean), the oracle's, and their ratio;
- ``test/goal_directedness`` (when the plan fits the behavioral objective, on the test split only): see
  :mod:`mesalab.diagnostics.behavioral`;
- ``train_curve/success_final``: training success rate over the last 10% of updates;
- recurrent cells only: ``test/success@ticks=k`` (success on the test split with k internal ticks per step, for
  the plan's ``test_ticks``, the training ticks and twice them) and ``test/compute_gain_2x`` (success at twice the
  training ticks minus at the training ticks: the test-time compute gain).

``split`` is ``train`` (levels from the training distribution, unseen ones when N is finite) or ``test``.
"""

from __future__ import annotations

import functools
import json
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from mesalab.experiments.plan import Batch
from mesalab.experiments.presets import EvalPlan

LEVEL_SEED = 12345  # evaluation pools, shared by every cell (paired comparisons across the dial)


@dataclass
class CellResult:
    cell_id: str
    metrics: dict[str, float]
    curve: list[tuple[int, int, float]]  # (update, env steps, training success rate)
    trajectories: list[tuple]  # (split, level, rows, cols, outcome name)
    model_leaves: list  # numpy leaves of the trained model (checkpoint)
    wall_s: float  # wall time of the batch, shared equally by its cells


def run_batch(batch: Batch, plan: EvalPlan, progress: Callable[[int], None] | None = None) -> list[CellResult]:
    import equinox as eqx
    import jax
    import jax.numpy as jnp

    from mesalab.optimizers import PPOConfig, check_finite
    from mesalab.runner import (EvalSettings, episodes_by_ticks, evaluate_models, evaluation_pools, split_seed,
                                success_count, test_ticks_for)
    from mesalab.tasks import get_task

    t0 = time.time()
    config = PPOConfig.from_dict(batch.config)
    task = get_task(config.task)
    seeds = jnp.asarray([c.seed for c in batch.cells], jnp.uint32)
    keys = jax.vmap(jax.random.key)(seeds)
    dials = {} if batch.data_dial is None else {
        batch.data_dial: jnp.asarray([c.config[batch.data_dial] for c in batch.cells], jnp.float32)}
    _PROGRESS[0] = progress
    try:  # wait for the (asynchronously dispatched) training inside, so that every update is reported
        models, metrics = jax.block_until_ready(_trainer(config, batch.data_dial)(keys, dials))
    finally:
        _PROGRESS[0] = None
    metrics = jax.tree_util.tree_map(np.asarray, metrics)
    check_finite(metrics, config.lr)
    settings = EvalSettings(episodes=plan.episodes, level_seed=LEVEL_SEED, irl_levels=plan.irl_levels,
                            bootstrap=plan.bootstrap)
    pools = evaluation_pools(task, settings)
    episodes = evaluate_models(task, models, keys, pools, settings.greedy)
    by_ticks = {}  # recurrent cells: the test split at other numbers of ticks per step (same levels and keys)
    if config.recurrent:
        by_ticks = episodes_by_ticks(task, models, keys, pools["test"], settings.greedy,
                                     test_ticks_for(config.ticks, plan.test_ticks), config.ticks, episodes["test"])
    leaves = [np.asarray(x) for x in jax.tree_util.tree_leaves(eqx.filter(models, eqx.is_array))]
    out = []
    for i, cell in enumerate(batch.cells):
        model = split_seed(models, i)
        cell_eps = split_seed(episodes, i)
        values = measure_cell(task, model, cell_eps, pools, settings)
        if config.recurrent:
            values.update(compute_scaling_metrics(config.ticks, {k: success_count(task, split_seed(e, i))
                                                                 for k, e in by_ticks.items()}))
        success = metrics["success_rate"][i]
        tail = success[int(0.9 * len(success)):]
        values["train_curve/success_final"] = float(np.nanmean(tail)) if np.isfinite(tail).any() else float("nan")
        step = max(1, len(success) // 50)
        curve = [(int(u), int(metrics["env_steps"][i][u]), float(success[u])) for u in range(0, len(success), step)]
        out.append(CellResult(cell.cell_id, values, curve, drawn_trajectories(task, cell_eps, plan.drawn_levels),
                              [leaf[i] for leaf in leaves], 0.0))
    wall = (time.time() - t0) / len(out)
    for r in out:
        r.wall_s = wall
    return out


# The batch being trained reports its progress here: the jitted trainers are cached across batches (one
# compilation per shape per worker process), so the callback compiled into them must not be batch-specific.
_PROGRESS: list = [None]


def _report_progress(n: int) -> None:
    if _PROGRESS[0] is not None:
        _PROGRESS[0](n)


@functools.lru_cache(maxsize=None)
def _trainer_cached(config_json: str, data_dial: str | None):
    import jax

    from mesalab.optimizers import PPOConfig, make_train

    train = make_train(PPOConfig(**json.loads(config_json)), _report_progress)
    return jax.jit(jax.vmap(train))


def _trainer(config, data_dial: str | None):
    """``train(keys, dials)`` vmapped and jitted, shared by every batch whose shape settings are the same."""
    from mesalab.optimizers import PPOConfig

    d = config.to_dict()
    if data_dial is not None:
        d[data_dial] = getattr(PPOConfig(), data_dial)  # the value is a traced input, not part of the program
    return _trainer_cached(json.dumps(d, sort_keys=True), data_dial)


def measure_cell(task, model, episodes: dict, pools: dict, settings) -> dict[str, float]:
    """The metrics of one trained model from its evaluation episodes (``split -> Episodes``)."""
    from mesalab.diagnostics import summarise
    from mesalab.diagnostics.optimization_power import episode_bits
    from mesalab.runner import profile_seed

    values: dict[str, float] = {}
    # the behavioral objective is fitted on the test split only: the sweeps ask about unseen levels
    profiles = profile_seed(task, model, {"test": episodes["test"]}, pools, settings)
    for split, ep in episodes.items():
        s = summarise(task, ep, split)
        base = s.objectives[0]
        values[f"{split}/success"] = base.reach_rate
        values[f"{split}/normalised_return"] = base.normalised_return
        for name, count in zip(s.outcome_names, s.outcome_counts):
            key = "base" if name.startswith("base:") else name
            values[f"{split}/outcome:{key}"] = count / s.n_episodes
        bits = episode_bits(task, pools[split], ep)[task.base_objective.name]
        agent, ceiling = float(np.mean(bits.agent)), float(np.mean(bits.optimal))
        values[f"{split}/bits"] = agent
        values[f"{split}/bits_ceiling"] = ceiling
        values[f"{split}/bits_fraction"] = agent / ceiling if ceiling > 0 else 0.0
        if split in profiles:
            values[f"{split}/goal_directedness"] = float(profiles[split].behavioral.goal_directedness)
    return values


def compute_scaling_metrics(trained_ticks: int, success_by_ticks: dict) -> dict[str, float]:
    """``test/success@ticks=k`` for every evaluated k, and ``test/compute_gain_2x``: success at twice the training
    ticks minus success at the training ticks (paired: the same unseen levels and episode keys).
    ``success_by_ticks``: ticks -> (successes, episodes)."""
    rate = {k: s / n for k, (s, n) in success_by_ticks.items()}
    values = {f"test/success@ticks={k}": float(v) for k, v in sorted(rate.items())}
    values["test/compute_gain_2x"] = float(rate[2 * trained_ticks] - rate[trained_ticks])
    return values


def drawn_trajectories(task, episodes: dict, n: int) -> list[tuple]:
    from mesalab.diagnostics.shift import outcome_names

    names = outcome_names(task)
    rows = []
    for split, ep in episodes.items():
        for lvl in range(min(n, ep.length.shape[0])):
            k = int(ep.length[lvl]) + 1
            rows.append((split, lvl, ep.positions[lvl, :k, 0].tolist(), ep.positions[lvl, :k, 1].tolist(),
                         names[int(ep.outcome[lvl])]))
    return rows
