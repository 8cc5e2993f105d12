"""The ``sweep`` kind: ``mesalab sweep PRESET`` runs a preset's grid of cells (panels x dial values x seeds),
commits each finished batch, resumes a previous run of the same command in the same folder, then tests each
hypothesis for a trend along the dial (:mod:`mesalab.analysis.sweep`).

A cell trains one PPO model (``Preset.cell == "ppo"``), one in-context regression transformer (``"icl"``), one
maze-path recall network (``"maze-path"``) or one MCTS agent's prior and value, AlphaZero-style (``"alphazero"``).

Sweep folder::

    sweep.json          preset, seeds, overrides, evaluation plan, versions (rewritten when seeds are added)
    sweep.duckdb        cells, cell_metrics, cell_curves, cell_trajectories, levels, cell_matches (one transaction
                        per batch; mesalab.results.tables.SWEEP_SCHEMA)
    checkpoints/<cell>.eqx
    figures/*.png, report.html

PPO cell metrics (all honest per-cell numbers; the sweep statistics are over seeds):

- ``{split}/success``: fraction of evaluation episodes that reach a base-objective target at all;
- ``{split}/outcome:base``, ``{split}/outcome:proxy:P``, ``{split}/outcome:other``: the fractions of episodes
  whose outcome is "base objective pursued competently", "proxy P pursued competently (and not the base
  objective)", or neither (see :mod:`mesalab.diagnostics.evaluation`);
- ``{split}/return``: the true return, the mean base-objective return per episode (the environment's reward,
  ``1 - 0.9 t / max_steps`` on reaching a target at step ``t``, else 0); ``{split}/optimal_return``: the oracle's
  (exact, BFS) mean optimal return on the same levels; ``{split}/normalised_return``: their ratio;
- ``{split}/bits``, ``{split}/bits_ceiling``, ``{split}/bits_fraction``: optimization power toward the base
  objective (exact bits per level, mean), the oracle's, and their ratio;
- ``test/goal_directedness`` (when the plan fits the behavioral objective, on the test split only);
- ``train_curve/success_final``: training success rate over the last 10% of updates;
- recurrent cells only: ``test/success@ticks=k`` and ``test/compute_gain_2x`` (success at twice the training
  ticks minus at the training ticks: the test-time compute gain).

AlphaZero cells have the PPO cells' metrics of the searching agent (no goal-directedness: a planner has no
``log_probs(obs)``), and the same of its prior alone (budget 0) as ``{split}/prior/...``, and what the search
adds (:mod:`mesalab.diagnostics.search_bits`, paired on the same levels and keys): ``{split}/search_bits`` (mean
bits with search minus at budget 0) and ``{split}/search_share`` (that over the bits with search: the fraction of
the optimization power the hard-coded search supplies).

ICL cell metrics: ``match/REF/sensitivity_cosine`` and ``match/REF/prediction_mse`` of the final layer's
read-out against every reference algorithm REF, ``best/effective_steps`` (see
:mod:`mesalab.diagnostics.icl_depth`) and ``train/final_loss``; every layer's matches go to ``cell_matches``.

Maze-path cell metrics (a recall network, ``Preset.cell_test`` giving the test sizes, ticks and mazes):
``test/accuracy@size=S``, ``test/best_accuracy@size=S``, ``test/compute_gain@size=S`` and
``train/accuracy_final`` (see :func:`measure_maze_path_batch`).

With ``[eval] internal_probes = K`` (K >= 20 test levels), every PPO cell is also probed for its targets
(:func:`mesalab.diagnostics.mesa_objective.probe_metrics`): ``probe/L/selectivity``, ``probe/L/value`` and
``probe/L/gain_over_random`` for each probe label L (``target:C``, ``distance:C``, ``bfs_action:C``, ``ends_on``),
e.g. ``probe/target:goal/selectivity`` along diversity N.

``split`` is ``train`` (levels from the training distribution, unseen ones when N is finite) or ``test``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mesalab.errors import ConfigError
from mesalab.experiments import plan as P
from mesalab.experiments.presets import PRESETS, Preset, configured_preset
from mesalab.results.folder import RunFolder, checkpoint_name
from mesalab.results.store import dumps
from mesalab.results.tables import (CELL_CURVES, CELL_MATCHES, CELL_METRICS, CELL_TRAJECTORIES, CELLS,
                                    ICL_SWEEP_SCHEMA, SWEEP_LEVELS)
from mesalab.studies import register
from mesalab.studies.contract import Listing, Options, Study, check_sweep_folder, describe, task_plugins
from mesalab.studies.engine import Batch


@dataclass
class CellResult:
    cell_id: str
    metrics: dict[str, float]
    curve: list[tuple[int, int, float]]  # (update, env steps, training success rate)
    trajectories: list[tuple]  # (split, level, rows, cols, outcome name)
    model_leaves: list  # numpy leaves of the trained model (checkpoint)
    wall_s: float  # wall time of the batch, shared equally by its cells
    matches: list = ()  # ICL cells: (layer, reference, reference_loss, model_loss, prediction_mse, cosine)


class Sweep(Study):
    kind = "sweep"
    command = "sweep"
    options = frozenset({"seeds", "steps", "config", "episodes", "irl_levels", "workers", "backend", "address"})
    schema = ICL_SWEEP_SCHEMA
    meta_name, db_name = "sweep.json", "sweep.duckdb"
    missing = "no cell of this sweep has finished; run `mesalab sweep` first"
    corrupt = "move it aside and re-run `mesalab sweep` (its cells will be retrained)"

    def names(self) -> list[Listing]:
        return [Listing(p.name, p.description, dials=f"{p.dial.name}: {[p.dial.display(v) for v in p.dial.values]}")
                for p in PRESETS.values()]

    def default_out(self, name: str) -> Path:
        from mesalab.experiments.user_presets import is_preset_file

        return Path("sweeps") / (Path(name).stem if is_preset_file(name) else name)

    def configure(self, name: str, options: Options) -> dict:
        from mesalab.experiments.user_presets import is_preset_file, load_preset_file, preset_to_dict, register_preset
        from mesalab.studies.settings import ppo_overrides, supervised_overrides

        user = {}
        if is_preset_file(name):  # a preset file of the user's: known by its own name from here on
            preset = register_preset(load_preset_file(name), f"preset file {name}")
            user = {"preset_def": preset_to_dict(preset), "preset_file": str(Path(name).expanduser().resolve())}
            name = preset.name
        preset = PRESETS[name]
        from mesalab.experiments.plan import cell_config_class

        if preset.cell not in ("ppo", "alphazero"):
            for opt in ("episodes", "irl_levels"):
                if getattr(options, opt) is not None:
                    raise ConfigError(f"--{opt.replace('_', '-')} is not used by `mesalab sweep {name}` (its cells are "
                                      f"tested on fresh {'sequences' if preset.cell == 'icl' else 'mazes'}); drop it")
            overrides = supervised_overrides(cell_config_class(preset), options.config, options.steps)
        else:
            if preset.cell == "alphazero" and options.irl_levels:
                raise ConfigError(f"--irl-levels is not used by `mesalab sweep {name}`: its agents search the "
                                  "simulator and have no action probabilities of observations to fit a behavioral "
                                  "objective to; drop it")
            episodes = options.episodes or preset.eval.episodes
            if options.irl_levels is not None and options.irl_levels > episodes:
                raise ConfigError(f"--irl-levels {options.irl_levels} exceeds the {episodes} evaluation levels per "
                                  f"split (--episodes); pass at most {episodes}")
            overrides = ppo_overrides(options.config, options.steps, preset.base, cell_config_class(preset))
        eval_overrides = {k: v for k, v in (("episodes", options.episodes), ("irl_levels", options.irl_levels))
                          if v is not None}
        seeds = list(range(preset.default_seeds if options.seeds is None else options.seeds))
        configured = configured_preset(name, overrides, eval_overrides)
        P.cells(configured, seeds)  # validates the seeds and every cell's config
        return {"name": name, "preset": name, "seeds": seeds, "overrides": overrides, "eval_overrides": eval_overrides,
                "backend": options.backend,
                "plugins": task_plugins(configured.panel_task(panel) for panel in configured.panels), **user}

    def configured(self, settings: dict) -> Preset:
        return configured_preset(settings["preset"], settings["overrides"], settings["eval_overrides"])

    def header(self, s: dict) -> str:
        p = self.configured(s)
        return (f"[bold]mesalab sweep {p.name}[/]: {p.dial.name} in {[p.dial.display(v) for v in p.dial.values]}"
                f" x {len(s['seeds'])} seed(s) x {len(p.panels)} panel(s), backend {s['backend']}")

    def check_folder(self, folder: RunFolder, settings: dict) -> None:
        meta = check_sweep_folder(folder, "sweep", settings["preset"])
        if meta is None:
            return
        if meta.get("preset") != settings["preset"]:
            raise ConfigError(f"{folder.path} holds {describe(meta)}; pass a new --out for {settings['preset']!r}")
        if meta.get("preset_def") != settings.get("preset_def"):
            raise ConfigError(f"{folder.path} was run with another definition of preset {settings['preset']!r} (its "
                              "file changed?); restore the file as it was to resume, or pass a new --out")
        before = (meta.get("overrides", {}), meta.get("eval_overrides", {}))
        if before != (settings["overrides"], settings["eval_overrides"]):
            raise ConfigError(f"{folder.path} was run with settings {before[0] | before[1]}, not "
                              f"{settings['overrides'] | settings['eval_overrides']}; repeat its options to resume it, "
                              "or pass a new --out")

    def start(self, folder: RunFolder, settings: dict) -> dict:
        from dataclasses import asdict

        from mesalab.results.provenance import now, versions

        folder.create()
        preset = self.configured(settings)
        if folder.has_meta():
            meta = folder.read_meta()
            meta["seeds"] = sorted(set(meta["seeds"]) | set(settings["seeds"]))
            meta.setdefault("resumed", []).append(now())
        else:
            meta = {"kind": "sweep", "preset": preset.name, "seeds": sorted(settings["seeds"]),
                    "overrides": settings["overrides"], "eval_overrides": settings["eval_overrides"],
                    "eval": asdict(preset.eval), "versions": versions(), "created": now(),
                    **{k: settings[k] for k in ("preset_def", "preset_file") if k in settings}}
        folder.write_meta(meta)
        settings["versions"] = meta["versions"]
        if preset.cell in ("ppo", "alphazero"):  # gridworld cells: the drawn levels of their trajectories
            folder.commit({"levels": sweep_level_rows(preset, folder)})
        return meta

    def n_cells(self, settings: dict) -> int:
        return len(P.cells(self.configured(settings), settings["seeds"]))

    def plan(self, settings: dict, done: set) -> list[Batch]:
        preset = self.configured(settings)
        out = []
        for b in P.batches(preset, settings["seeds"], done):
            units = (_num_updates(b.config, preset.cell) if preset.cell in ("ppo", "alphazero")
                     else b.config["steps"] * len(b.cells))
            out.append(Batch(b.batch_id, b.cells, {"batch": b, "eval": preset.eval, "cell": preset.cell,
                                                   "cell_test": dict(preset.cell_test), "dial": preset.dial,
                                                   "versions": settings.get("versions")}, units))
        return out

    def measure(self, batch: Batch, progress=None) -> list[CellResult]:
        if batch.spec["cell"] == "icl":
            return measure_icl_batch(batch.spec["batch"], batch.spec["cell_test"], progress)
        if batch.spec["cell"] == "maze-path":
            return measure_maze_path_batch(batch.spec["batch"], batch.spec["cell_test"], progress)
        if batch.spec["cell"] == "alphazero":
            return measure_alphazero_batch(batch.spec["batch"], batch.spec["eval"], progress)
        return measure_ppo_batch(batch.spec["batch"], batch.spec["eval"], progress)

    def commit(self, folder: RunFolder, batch: Batch, results: list[CellResult]) -> None:
        from mesalab.results.provenance import now

        plan_batch = batch.spec["batch"]
        by_id = {c.cell_id: c for c in plan_batch.cells}
        dial = batch.spec["dial"]
        for r in results:
            folder.save_checkpoint(checkpoint_name(r.cell_id), _rebuild(batch.spec["cell"], by_id[r.cell_id].config,
                                                                        r.model_leaves))
        rows: dict[str, list] = {"cells": [], "cell_metrics": [], "cell_curves": [], "cell_trajectories": []}
        if batch.spec["cell"] == "icl":
            rows["cell_matches"] = []
        stamp = now()
        for r in results:
            c = by_id[r.cell_id]
            rows["cells"].append(CELLS.row(cell_id=c.cell_id, batch_id=plan_batch.batch_id, panel=c.panel,
                                           dial=dial.name, value=dial.stored(c.value), seed=c.seed,
                                           config=dumps(c.config), versions=dumps(batch.spec["versions"]),
                                           wall_s=r.wall_s, finished=stamp))
            rows["cell_metrics"] += [CELL_METRICS.row(c.cell_id, k, float(v)) for k, v in sorted(r.metrics.items())]
            rows["cell_curves"] += [CELL_CURVES.row(c.cell_id, u, s, v) for u, s, v in r.curve]
            rows["cell_trajectories"] += [CELL_TRAJECTORIES.row(c.cell_id, *t) for t in r.trajectories]
            if batch.spec["cell"] == "icl":
                rows["cell_matches"] += [CELL_MATCHES.row(c.cell_id, *m) for m in r.matches]
        commit_batch(folder, rows)

    def analyse(self, folder: RunFolder):
        from mesalab.analysis.sweep import analyse_sweep

        return analyse_sweep(folder)

    def report(self, folder: RunFolder, analysis) -> Path:
        from mesalab.report.sweep import build_sweep_report

        return build_sweep_report(folder.path, analysis)

    def summary(self, analysis) -> list:
        from mesalab.report.terminal import sweep_summary

        return sweep_summary(analysis)


def commit_batch(folder: RunFolder, rows: dict) -> None:
    """One batch's rows in one transaction (a name of its own so that tests can interrupt it)."""
    folder.commit(rows)


def _num_updates(config: dict, cell: str = "ppo") -> int:
    if cell == "alphazero":
        from mesalab.optimizers.alphazero import AlphaZeroConfig

        return AlphaZeroConfig(**config).num_updates
    from mesalab.optimizers import PPOConfig

    return PPOConfig(**config).num_updates


def _rebuild(cell: str, config: dict, leaves: list):
    if cell in ("icl", "maze-path", "alphazero"):
        import equinox as eqx
        import jax

        if cell == "alphazero":
            from mesalab.optimizers.alphazero import AlphaZeroConfig as Config, init_agent as init_model
        elif cell == "icl":
            from mesalab.optimizers.supervised import ICLConfig as Config, init_model
        else:
            from mesalab.optimizers.thinking import ThinkingConfig as Config, init_model

        params, static = eqx.partition(init_model(Config(**config), jax.random.key(0)), eqx.is_array)
        return eqx.combine(jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(params), leaves), static)
    from mesalab.optimizers import PPOConfig
    from mesalab.studies.ppo_batch import rebuild_model

    return rebuild_model(PPOConfig(**config), leaves)


def sweep_level_rows(preset: Preset, folder: RunFolder) -> list[tuple]:
    """The first drawn levels of each task's evaluation pools not yet stored (for the trajectory drawings)."""
    from mesalab.studies.ppo_batch import drawn_levels
    from mesalab.tasks import get_task

    stored = set()
    if folder.has_results():
        stored = {tuple(r) for r in folder.sql("SELECT task, split, level FROM levels")}
    rows = []
    for name in sorted({preset.panel_task(panel) for panel in preset.panels}):
        for split in ("train", "test"):
            for r in drawn_levels(get_task(name), split, preset.eval, preset.eval.drawn_levels):
                if (name, split, r[0]) not in stored:
                    rows.append(SWEEP_LEVELS.row(name, split, *r))
    return rows


# -- measuring a batch of cells (in a worker) ---------------------------------------------------------------------

def gridworld_cell_result(cell_id: str, values: dict, metrics: dict, i: int, task, episodes: dict, plan,
                          leaves: list) -> CellResult:
    """One trained gridworld cell (seed ``i`` of its batch's training ``metrics``): its metrics plus the training
    success over the last 10% of updates, its learning curve (at most about 50 points), drawn trajectories and
    checkpoint leaves."""
    from mesalab.studies import ppo_batch as B

    success = metrics["success_rate"][i]
    tail = success[int(0.9 * len(success)):]
    values["train_curve/success_final"] = float(np.nanmean(tail)) if np.isfinite(tail).any() else float("nan")
    step = max(1, len(success) // 50)
    curve = [(int(u), int(metrics["env_steps"][i][u]), float(success[u])) for u in range(0, len(success), step)]
    return CellResult(cell_id, values, curve, B.drawn_trajectories(task, episodes, plan.drawn_levels), leaves, 0.0)


def share_wall_time(results: list[CellResult], t0: float) -> list[CellResult]:
    """The batch's wall time since ``t0``, shared equally by its cells."""
    wall = (time.time() - t0) / len(results)
    for r in results:
        r.wall_s = wall
    return results


def measure_ppo_batch(batch: P.Batch, plan, progress=None) -> list[CellResult]:
    """Train one batch of PPO cells (one vmapped, jitted program) and measure every cell."""
    from mesalab.optimizers import PPOConfig
    from mesalab.optimizers.ppo import task_for
    from mesalab.studies import ppo_batch as B

    t0 = time.time()
    config = PPOConfig.from_dict(batch.config)
    task = task_for(config)  # as the models observe it
    dial_values = None if batch.data_dial is None else [c.config[batch.data_dial] for c in batch.cells]
    keys, models, metrics = B.train_batch(config, [c.seed for c in batch.cells], batch.data_dial, dial_values, progress)
    pools = B.evaluation_pools(task, plan)
    episodes = B.evaluate_models(task, models, keys, pools, plan.greedy)
    by_ticks = {}  # recurrent cells: the test split at other numbers of ticks per step (same levels and keys)
    if config.recurrent:
        by_ticks = B.episodes_by_ticks(task, models, keys, pools["test"], plan.greedy,
                                       B.test_ticks_for(config.ticks, plan.test_ticks), config.ticks, episodes["test"])
    leaves = B.model_leaves(models)
    out = []
    for i, cell in enumerate(batch.cells):
        model = B.split_seed(models, i)
        cell_eps = B.split_seed(episodes, i)
        values = measure_cell(task, model, cell_eps, pools, plan)
        if plan.internal_probes > 0:
            values.update(cell_probe_metrics(task, config, model, pools["test"], plan, cell.seed))
        dials = {} if batch.data_dial is None else {batch.data_dial: cell.config[batch.data_dial]}
        for split, (n_overlap, _) in B.training_overlaps(config, keys[i], pools, dials).items():
            values[f"{split}/training_overlap"] = float(n_overlap)  # evaluation levels equal to a training level
        if config.recurrent:
            values.update(compute_scaling_metrics(config.ticks, {k: B.success_count(task, B.split_seed(e, i))
                                                                 for k, e in by_ticks.items()}))
        out.append(gridworld_cell_result(cell.cell_id, values, metrics, i, task, cell_eps, plan,
                                         [leaf[i] for leaf in leaves]))
    return share_wall_time(out, t0)


def measure_alphazero_batch(batch: P.Batch, plan, progress=None) -> list[CellResult]:
    """Train one batch of AlphaZero cells (seeds vmapped in one jitted program) and measure every cell with search
    and without (its prior alone, budget 0), on the same levels and keys."""
    import dataclasses

    import jax
    import jax.numpy as jnp

    from mesalab.optimizers import check_finite
    from mesalab.optimizers.alphazero import AlphaZeroConfig, make_train
    from mesalab.studies import ppo_batch as B
    from mesalab.tasks import get_task

    t0 = time.time()
    config = AlphaZeroConfig.from_dict(batch.config)
    task = get_task(config.task).with_obs_mode(config.obs_mode)
    plan = dataclasses.replace(plan, irl_levels=0)  # a planner has no log_probs(obs) to fit a behavioral objective to
    keys = jax.vmap(jax.random.key)(jnp.asarray([c.seed for c in batch.cells], jnp.uint32))
    agents, metrics = jax.jit(jax.vmap(make_train(config)))(keys)
    metrics = jax.tree_util.tree_map(np.asarray, metrics)
    check_finite(metrics, config.lr)
    if progress is not None:
        progress(config.num_updates)
    pools = B.evaluation_pools(task, plan)
    episodes = B.evaluate_models(task, agents, keys, pools, plan.greedy)
    prior_episodes = B.evaluate_models(task, agents.with_iterations(0), keys, pools, plan.greedy)
    leaves = B.model_leaves(agents)
    out = []
    for i, cell in enumerate(batch.cells):
        agent = B.split_seed(agents, i)
        cell_eps, prior_eps = B.split_seed(episodes, i), B.split_seed(prior_episodes, i)
        values = measure_cell(task, agent, cell_eps, pools, plan)
        prior = measure_cell(task, agent.net, prior_eps, pools, plan)
        values.update({f"{k.split('/', 1)[0]}/prior/{k.split('/', 1)[1]}": v for k, v in prior.items()})
        for split in pools:
            gain = values[f"{split}/bits"] - prior[f"{split}/bits"]  # a mean of the paired per-level differences
            values[f"{split}/search_bits"] = gain
            values[f"{split}/search_share"] = gain / values[f"{split}/bits"] if values[f"{split}/bits"] > 0 \
                else float("nan")
        out.append(gridworld_cell_result(cell.cell_id, values, metrics, i, task, cell_eps, plan,
                                         [leaf[i] for leaf in leaves]))
    return share_wall_time(out, t0)


def measure_cell(task, model, episodes: dict, pools: dict, plan) -> dict[str, float]:
    """The metrics of one trained PPO model from its evaluation episodes (``split -> Episodes``)."""
    from mesalab.diagnostics import summarise
    from mesalab.diagnostics.optimization_power import episode_bits
    from mesalab.studies.ppo_batch import profile_seed

    values: dict[str, float] = {}
    # the behavioral objective is fitted on the test split only: the sweeps ask about unseen levels
    profiles = profile_seed(task, model, {"test": episodes["test"]}, pools, plan)
    for split, ep in episodes.items():
        s = summarise(task, ep, split)
        base = s.objectives[0]
        values[f"{split}/success"] = base.reach_rate
        values[f"{split}/return"] = base.mean_return
        values[f"{split}/optimal_return"] = base.mean_optimal
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


def cell_probe_metrics(task, config, model, test_pool, plan, seed: int) -> dict[str, float]:
    """``probe/L/...`` of one PPO cell's model on the first ``plan.internal_probes`` test levels (see
    :func:`mesalab.diagnostics.mesa_objective.probe_metrics`), beside an untrained model of its architecture."""
    import jax
    import jax.numpy as jnp

    from mesalab.diagnostics.mesa_objective import probe_metrics
    from mesalab.optimizers import init_model
    from mesalab.tasks.grid import take_levels

    random_model = init_model(config, jax.random.fold_in(jax.random.key(seed), 999))
    levels = take_levels(test_pool, jnp.arange(min(plan.internal_probes, plan.episodes)))
    return probe_metrics(task, model, random_model, levels, jax.random.fold_in(jax.random.key(seed), 11),
                         greedy=plan.greedy, seed=seed)


def compute_scaling_metrics(trained_ticks: int, success_by_ticks: dict) -> dict[str, float]:
    """``test/success@ticks=k`` for every evaluated k, and ``test/compute_gain_2x``: success at twice the training
    ticks minus success at the training ticks (paired: the same unseen levels and episode keys).
    ``success_by_ticks``: ticks -> (successes, episodes)."""
    rate = {k: s / n for k, (s, n) in success_by_ticks.items()}
    values = {f"test/success@ticks={k}": float(v) for k, v in sorted(rate.items())}
    values["test/compute_gain_2x"] = float(rate[2 * trained_ticks] - rate[trained_ticks])
    return values


DIVERGED_RATIO = 2.0  # a training run diverged when its final loss ends above this multiple of its lowest


def training_outcome(loss) -> tuple[float, float]:
    """``(final loss, diverged)`` of a loss curve: the mean over its last window (5% of the steps, at least 5), and
    1.0 when that is non-finite, or both above DIVERGED_RATIO times the lowest window mean and above the first
    window's (it came down, then blew up past where it began), else 0.0. Batch noise in a short run is neither."""
    loss = np.asarray(loss, np.float64)
    w = min(len(loss), max(5, len(loss) // 20))
    windows = np.convolve(loss, np.ones(w) / w, mode="valid")
    final = float(windows[-1])
    if not np.isfinite(final):
        return final, 1.0
    lowest = float(np.nanmin(windows))
    return final, float(final > DIVERGED_RATIO * lowest and final > windows[0])


def measure_icl_batch(batch: P.Batch, test: dict, progress=None) -> list[CellResult]:
    """Train each ICL cell of a batch (one jitted program per config, seed by seed) and measure which algorithm
    its read-out after every layer matches (on ``test["n_eval"]`` held-out sequences, default 4000). A cell whose
    training loss blew up is marked ``train/diverged`` = 1 (:func:`training_outcome`)."""
    from mesalab.diagnostics.icl_analysis import icl_cell_measurement
    from mesalab.optimizers.supervised import ICLConfig
    from mesalab.studies.icl_run import train_icl_seed
    from mesalab.studies.ppo_batch import model_leaves

    out = []
    for i, cell in enumerate(batch.cells):
        t0 = time.time()
        config = ICLConfig(**cell.config)
        model, loss = train_icl_seed(config, cell.seed)
        metrics, matches = icl_cell_measurement(model, config, int(test.get("n_eval", 4000)))
        metrics["train/final_loss"], metrics["train/diverged"] = training_outcome(loss)
        # no cell_curves rows: that table holds PPO success rates, and the loss is kept as train/final_loss
        out.append(CellResult(cell.cell_id, metrics, [], [], model_leaves(model), time.time() - t0, matches))
        if progress:
            progress((i + 1) * config.steps)
    return out


def measure_maze_path_batch(batch: P.Batch, test: dict, progress=None) -> list[CellResult]:
    """Train each maze-path cell of a batch (a recall network, seed by seed) and measure its exact accuracy on
    fresh mazes of each test size after every tick: ``test/accuracy@size=S`` (at the training ticks),
    ``test/best_accuracy@size=S`` (at the best tick count, chosen on the same mazes) and
    ``test/compute_gain@size=S`` (their paired difference)."""
    import jax

    from mesalab.diagnostics.compute_scaling import maze_path_compute_scaling
    from mesalab.optimizers.thinking import ThinkingConfig, make_train
    from mesalab.studies.ppo_batch import model_leaves

    out = []
    for i, cell in enumerate(batch.cells):
        t0 = time.time()
        config = ThinkingConfig.from_dict(cell.config)
        done = i * config.steps
        model, metrics = make_train(config, None if progress is None else (lambda s, n: progress(done + s)))(
            jax.random.PRNGKey(cell.seed))
        cs = maze_path_compute_scaling(model, jax.random.PRNGKey(10_000 + cell.seed), test.get("sizes", (config.size,)),
                                       max(int(test.get("max_ticks", 2 * config.ticks)), config.ticks),
                                       int(test.get("mazes", 100)), trained_size=config.size)
        values = {}
        for r in cs.summary():
            values[f"test/accuracy@size={r['size']}"] = float(r["accuracy_at_trained_ticks"])
            values[f"test/best_accuracy@size={r['size']}"] = float(r["accuracy_at_best_ticks"])
            values[f"test/compute_gain@size={r['size']}"] = float(r["gain"])
        values["train/accuracy_final"] = float(metrics["train_accuracy"][-1])
        curve = [(int(s), int(s) * config.batch, float(a)) for s, a in zip(metrics["eval_step"], metrics["train_accuracy"])]
        out.append(CellResult(cell.cell_id, values, curve, [], model_leaves(model), time.time() - t0))
    return out


SWEEP = register(Sweep())
