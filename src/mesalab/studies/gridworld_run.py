"""The ``run`` kind: ``mesalab run TASK`` trains PPO seeds on a gridworld task, evaluates them under shift,
fits each seed's objective profile and states its alignment verdict.

Run folder::

    config.json          task, PPO config, seeds, evaluation settings, versions (written first)
    checkpoints/seed-S.eqx
    results.duckdb       learning curves, per-objective scores, outcomes, verdicts, drawn trajectories, objective
                         profiles (tables: mesalab.results.tables.RUN_SCHEMA), committed one batch of seeds at a time
    figures/*.png, report.html

Its cells are seeds (the resume rule reads ``runs.seed``); a batch is the seeds one worker trains as one
vmapped program (the seeds split evenly over the workers, as before this module existed, so the numbers do not
depend on the engine). ``diagnose`` re-fits the objective profiles of a finished run from its checkpoints.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Callable

from mesalab.eval_plan import EvalPlan
from mesalab.errors import ConfigError, CorruptRunError
from mesalab.results.folder import RunFolder, folder_meta
from mesalab.results.store import dumps
from mesalab.results.tables import (BEHAVIORAL_OBJECTIVES, CANDIDATE_LIKELIHOODS, COMPETENCE, COMPUTE_SCALING,
                                    EPIC_DISTANCES, EVALUATIONS, IRL_WEIGHTS, LEVEL_BITS, OBJECTIVE_TABLES, OPTIMIZATION_POWER,
                                    OUTCOMES, PROBE_PURSUIT, PROBE_READINGS, PROBE_VERDICTS, RUN_LEVELS, RUN_SCHEMA, RUNS,
                                    SPLIT_OVERLAPS, TRAINING_CURVES, TRAJECTORIES, VERDICTS)
from mesalab.results.tables import EVENT_RATES
from mesalab.studies import register
from mesalab.studies.contract import Listing, Options, SeedRun, task_plugins
from mesalab.studies.engine import Batch, default_workers, seed_groups
from mesalab.studies.settings import ppo_config

N_DRAWN_LEVELS = 4
MAX_SEED_EPISODES = 200_000  # seeds x episodes, evaluated together
DEFAULT_RUN_STEPS = 300_000  # environment steps of a run's PPO when neither --steps nor the config sets them


class GridworldRun(SeedRun):
    kind = "run"
    resume_keys = ("ppo", "eval")
    options = frozenset({"seeds", "first_seed", "steps", "config", "episodes", "workers"})
    schema = RUN_SCHEMA
    missing = "the run did not finish; rerun `mesalab run` with the same options to resume it"
    corrupt = "rerun `mesalab run` with a new --out"

    def names(self) -> list[Listing]:
        from mesalab.tasks import list_tasks

        return [Listing(t.name, t.description, f"{t.base_objective.name} / {', '.join(p.name for p in t.proxies) or '-'}",
                        "\n".join(f"{k}: {v}" for k, v in t.dials.items())) for t in list_tasks()]

    def configure(self, name: str, options: Options) -> dict:
        from mesalab.tasks import get_task

        get_task(name)
        seeds = 4 if options.seeds is None else options.seeds
        episodes = 1000 if options.episodes is None else options.episodes
        if seeds * episodes > MAX_SEED_EPISODES:
            raise ConfigError(f"--seeds x --episodes = {seeds * episodes} exceeds {MAX_SEED_EPISODES} (every seed's "
                              f"episodes are evaluated at once); lower --seeds or --episodes")
        # the run's 300k steps unless --steps or the config file's total_steps says otherwise
        steps = options.steps
        if steps is None and not (options.config_given and "total_steps" in (options.config or {})):
            steps = DEFAULT_RUN_STEPS
        config = ppo_config(options.config, steps, task=name)
        plan = EvalPlan(episodes=episodes)
        return {"name": name, "task": name, "ppo": config.to_dict(), "seeds": list(range(options.first_seed,
                options.first_seed + seeds)), "eval": run_eval_dict(plan), "workers": options.workers,
                "plugins": task_plugins([name])}

    def header(self, s: dict) -> str:
        from mesalab.optimizers import PPOConfig

        cfg = PPOConfig(**s["ppo"])
        n = default_workers(len(s["seeds"])) if s["workers"] is None else s["workers"]
        return (f"[bold]mesalab run {s['task']}[/]: {len(s['seeds'])} seed(s) x {cfg.num_updates * cfg.steps_per_update:,} "
                f"steps, {s['eval']['episodes']} test episodes per seed, {max(n, 1)} worker(s)")

    def plan(self, settings: dict, done: set) -> list[Batch]:
        from mesalab.optimizers import PPOConfig

        groups = seed_groups([s for s in settings["seeds"] if s not in done], settings["workers"])
        if not groups:
            return []
        units = PPOConfig(**settings["ppo"]).num_updates
        spec = {k: settings.get(k) for k in ("task", "ppo", "eval", "created", "versions")}
        return [Batch(f"seeds {g[0]}-{g[-1]}", tuple(g), spec, units) for g in groups]

    def measure(self, batch: Batch, progress=None) -> dict:
        return measure_seeds(batch.spec, list(batch.cells), progress)

    def commit(self, folder: RunFolder, batch: Batch, result: dict) -> None:
        from mesalab.optimizers import PPOConfig
        from mesalab.studies.ppo_batch import rebuild_model

        config = PPOConfig(**batch.spec["ppo"])
        for seed, leaves in result["models"]:
            folder.save_checkpoint(f"seed-{seed}.eqx", rebuild_model(config, leaves))
        rows = dict(result["rows"])
        if not folder.has_results() or not folder.sql("SELECT count(*) FROM levels")[0][0]:
            rows["levels"] = run_level_rows(batch.spec)
        folder.commit(rows)

    def analyse(self, folder: RunFolder):
        from mesalab.analysis.run import analyse_run

        return analyse_run(folder)

    def report(self, folder: RunFolder, analysis) -> Path:
        from mesalab.report.build import build_report

        return build_report(folder.path, analysis)

    def summary(self, analysis) -> list:
        from mesalab.report.terminal import run_summary

        return run_summary(analysis)

    def check_diagnose(self, folder: RunFolder, meta: dict, levels: int | None, seeds: list[int] | None) -> None:
        """The checks of ``mesalab diagnose`` before any work (one-line errors)."""
        load_run_config(folder.path)
        episodes = int(meta.get("eval", {}).get("episodes", levels or 0))
        if levels is not None and levels > episodes:
            raise ConfigError(f"--levels {levels} exceeds the run's {episodes} evaluation episodes per split; pass at "
                              f"most {episodes}")
        unknown = sorted(set(seeds or []) - set(meta["seeds"]))
        if unknown:
            raise ConfigError(f"--seed {unknown} not in this run; its seeds are {meta['seeds']}")

    def diagnose(self, folder: RunFolder, irl_levels: int | None = None, bootstrap: int = 1000,
                 seeds: list[int] | None = None, on_stage: Callable[[str], None] | None = None):
        diagnose_run(folder, irl_levels, bootstrap, seeds, on_stage)
        analysis = self.analyse(folder)
        self.report(folder, analysis)
        return analysis


def run_eval_dict(plan: EvalPlan) -> dict:
    """The evaluation settings a run records in its config (the fields a run has always stored)."""
    return {k: v for k, v in asdict(plan).items()
            if k in ("episodes", "level_seed", "greedy", "irl_levels", "bootstrap", "probes")}


def eval_plan(d: dict) -> EvalPlan:
    return EvalPlan(**{k: v for k, v in d.items() if k in EvalPlan.__dataclass_fields__}, drawn_levels=N_DRAWN_LEVELS)


# -- the measurement (in a worker) ----------------------------------------------------------------------------

def measure_seeds(spec: dict, seeds: list[int], progress=None) -> dict:
    """Train ``seeds`` as one vmapped program, evaluate each on the train and test pools, profile it, and build
    every row of these seeds: ``{"rows": table -> rows, "models": [(seed, leaves)]}``."""
    from mesalab.optimizers import PPOConfig
    from mesalab.optimizers.ppo import task_for
    from mesalab.studies import ppo_batch as P

    config = PPOConfig(**spec["ppo"])
    task = task_for(config)  # as the models observe it
    plan = eval_plan(spec["eval"])
    keys, models, metrics = P.train_batch(config, seeds, progress=progress)
    pools = P.evaluation_pools(task, plan)
    episodes = P.evaluate_models(task, models, keys, pools, plan.greedy)
    by_ticks = {}
    if config.recurrent:
        by_ticks = P.episodes_by_ticks(task, models, keys, pools["test"], plan.greedy, P.test_ticks_for(config.ticks),
                                       config.ticks, episodes["test"])
    leaves = P.model_leaves(models)
    rows: dict[str, list] = {}
    out_models = []
    for i, seed in enumerate(seeds):
        seed_episodes = P.split_seed(episodes, i)
        profiles = P.profile_seed(task, P.split_seed(models, i), seed_episodes, pools, plan)
        scaling = {k: P.success_count(task, P.split_seed(e, i)) for k, e in by_ticks.items()}
        overlaps = P.training_overlaps(config, keys[i], pools)
        seed_rows = seed_result_rows(task, config.to_dict(), spec, int(seed), {k: v[i] for k, v in metrics.items()},
                                     seed_episodes, profiles, scaling, pools, overlaps)
        for table, values in seed_rows.items():  # plain tuples travel back from the worker
            rows.setdefault(table, []).extend(tuple(v) for v in values)
        out_models.append((int(seed), [leaf[i] for leaf in leaves]))
    return {"rows": rows, "models": out_models}


def seed_result_rows(task, config, spec: dict, seed: int, metrics: dict, episodes: dict, profiles: dict,
                     success_by_ticks: dict, pools: dict, overlaps: dict | None = None) -> dict[str, list[tuple]]:
    """Every row of one seed of a run (``config``: the settings the runs table records, with ``task``; ``overlaps``:
    split -> (evaluation levels seen in training, training levels))."""
    from mesalab.diagnostics import summarise
    from mesalab.diagnostics.evaluation import outcome_names
    from mesalab.diagnostics.stats import wilson_interval

    names = outcome_names(task)
    rows: dict[str, list[tuple]] = {t: [] for t in ("runs", "training_curves", "evaluations", "outcomes",
                                                    "competence", "verdicts", "trajectories", "compute_scaling")}
    rows.update(objective_rows({seed: profiles}))
    rows["runs"].append(RUNS.row(seed=seed, task=config["task"], config=dumps(config),
                                 versions=dumps(spec["versions"]), created=spec["created"]))
    for k, (hits, n) in sorted(success_by_ticks.items()):
        lo, hi = wilson_interval(hits, n)
        rows["compute_scaling"].append(COMPUTE_SCALING.row(seed=seed, ticks=k, trained_ticks=config.get("ticks", 1),
                                                           successes=hits, n_episodes=n, success_rate=hits / n,
                                                           ci_low=lo, ci_high=hi))
    steps = metrics.get("env_steps")
    for name, values in metrics.items():
        if name == "env_steps":
            continue
        for i, v in enumerate(values):
            rows["training_curves"].append(TRAINING_CURVES.row(seed=seed, update_index=i, env_steps=int(steps[i]),
                                                               metric=name, value=float(v)))
    for split, ep in episodes.items():
        s = summarise(task, ep, split)
        for j, o in enumerate(s.objectives):
            rows["evaluations"].append(EVALUATIONS.row(
                seed=seed, split=split, objective=o.name, is_base=j == 0, n_episodes=s.n_episodes,
                competent_rate=o.competent_rate, ci_low=o.competent_ci[0], ci_high=o.competent_ci[1],
                reach_rate=o.reach_rate, mean_return=o.mean_return, mean_optimal=o.mean_optimal,
                normalised_return=o.normalised_return))
        for name, count in zip(s.outcome_names, s.outcome_counts):
            rows["outcomes"].append(OUTCOMES.row(seed=seed, split=split, outcome=name, count=count))
        rows["competence"].append(COMPETENCE.row(seed=seed, split=split, rate=s.competence_rate,
                                                 ci_low=s.competence_ci[0], ci_high=s.competence_ci[1]))
        for lvl in range(min(N_DRAWN_LEVELS, ep.length.shape[0])):
            n = int(ep.length[lvl]) + 1
            rows["trajectories"].append(TRAJECTORIES.row(seed=seed, split=split, level=lvl,
                                                         rows=ep.positions[lvl, :n, 0].tolist(),
                                                         cols=ep.positions[lvl, :n, 1].tolist(),
                                                         outcome=names[int(ep.outcome[lvl])]))
    rows["verdicts"].append(verdict_row(task, seed, episodes, pools, profiles))
    rows["event_rates"] = event_rate_rows(task, seed, episodes)
    rows.update(probe_rows(task, seed, episodes, pools, profiles))
    rows["split_overlaps"] = [SPLIT_OVERLAPS.row(seed=seed, split=split, n_levels=int(pools[split].grid.shape[0]),
                                                 n_training_levels=n_train, n_overlap=n)
                              for split, (n, n_train) in (overlaps or {}).items()]
    return rows


def event_rate_rows(task, seed: int, episodes: dict) -> list[tuple]:
    """Keys-chests: the chests opened, keys collected and spare keys collected on each split (none for a task
    without events; see :func:`mesalab.diagnostics.keys_chests.evaluation.event_rates`)."""
    from mesalab.diagnostics.keys_chests.evaluation import event_rates

    return [EVENT_RATES.row(seed=seed, split=split, **r._asdict()) for split, ep in episodes.items()
            for r in event_rates(task, ep)]


def probe_rows(task, seed: int, episodes: dict, pools: dict, profiles: dict) -> dict[str, list[tuple]]:
    """What one seed pursues on every split (the probe table and its reading) and its verdict on each probe split
    (see :mod:`mesalab.diagnostics.probe_pursuit`); nothing for a task without probes."""
    from mesalab.diagnostics.probe_pursuit import probe_reading, pursuit_table

    rows: dict[str, list[tuple]] = {"probe_pursuit": [], "probe_readings": [], "probe_verdicts": []}
    if not task.probes or not any(p.name in episodes for p in task.probes):
        return rows
    table = pursuit_table(task, pools, episodes)
    rows["probe_pursuit"] = [PROBE_PURSUIT.row(seed=seed, split=r.split, feature_set=r.label, n_present=r.n_present,
                                               n_pursued=r.n_pursued, n_ended_on_object=r.n_ended_on_object,
                                               n_ended_in_set=r.n_ended_in_set, rate=r.rate, ci_low=r.ci_low,
                                               ci_high=r.ci_high, precision=r.precision) for r in table]
    reading = probe_reading(task, table)
    rows["probe_readings"] = [PROBE_READINGS.row(seed=seed, feature_set=reading.label, size=reading.size,
                                                 competent=reading.competent, text=reading.text)]
    for p in task.probes:
        if p.name in episodes:
            v = split_verdict(task, p.name, episodes, pools, profiles)
            rows["probe_verdicts"].append(PROBE_VERDICTS.row(seed=seed, split=p.name, label=v.label, proxy=v.proxy,
                                                             confidence=v.confidence, n_episodes=v.n_episodes,
                                                             text=v.text))
    return rows


def run_level_rows(spec: dict) -> list[tuple]:
    """The first drawn levels of the run's evaluation pools (for the trajectory drawings)."""
    from mesalab.optimizers import PPOConfig
    from mesalab.studies.ppo_batch import drawn_levels
    from mesalab.tasks import get_task

    task = get_task(PPOConfig(**spec["ppo"]).task)
    plan = eval_plan(spec["eval"])
    return [RUN_LEVELS.row(split, *r) for split in ("train", "test") for r in drawn_levels(task, split, plan, N_DRAWN_LEVELS)]


def objective_rows(profiles: dict) -> dict[str, list[tuple]]:
    """Rows of the objective tables from ``{seed: {split: ObjectiveProfile}}``."""
    rows: dict[str, list[tuple]] = {k: [] for k in OBJECTIVE_TABLES}
    for seed, by_split in profiles.items():
        for split, prof in by_split.items():
            b = prof.behavioral
            for i, name in enumerate(b.feature_names):
                rows["irl_weights"].append(IRL_WEIGHTS.row(
                    seed=seed, split=split, feature=name, position=i, weight=float(b.weights[i]),
                    normalised=float(b.normalised[i]), ci_low=float(b.ci_low[i]), ci_high=float(b.ci_high[i])))
            rows["behavioral_objectives"].append(BEHAVIORAL_OBJECTIVES.row(
                seed=seed, split=split, dominant=b.dominant, dominant_weight=b.dominant_weight, scale=b.scale,
                fitted_ll=b.fitted_ll, uniform_ll=b.uniform_ll, ceiling_ll=b.ceiling_ll,
                goal_directedness=b.goal_directedness, goal_directedness_nats=b.goal_directedness_nats,
                aliases=dumps(b.aliases), absent=dumps(b.absent), n_levels=b.n_levels, n_actions=b.n_actions,
                reading=prof.reading))
            e = getattr(prof, "epic", None)
            for j, name in enumerate(() if e is None else e.names):
                rows["epic_distances"].append(EPIC_DISTANCES.row(
                    seed=seed, split=split, candidate=name, distance=float(e.distance[j]), ci_low=float(e.ci_low[j]),
                    ci_high=float(e.ci_high[j]), n_levels=e.n_levels, n_replicates=e.n_replicates))
            for c in b.candidates:
                rows["candidate_likelihoods"].append(CANDIDATE_LIKELIHOODS.row(
                    seed=seed, split=split, candidate=c.name, beta=c.beta, held_out_ll=c.held_out_ll))
            for bits in prof.bits:
                edges, counts = bits.histogram
                rows["optimization_power"].append(OPTIMIZATION_POWER.row(
                    seed=seed, split=split, objective=bits.objective, n_levels=bits.n_levels, mean_bits=bits.mean,
                    ci_low=bits.ci[0], ci_high=bits.ci[1], optimal_mean_bits=bits.optimal_mean,
                    fraction_of_ceiling=bits.fraction_of_ceiling, histogram_edges=list(edges),
                    histogram_counts=list(counts)))
                for lvl, (v, o) in enumerate(zip(bits.per_level, bits.per_level_optimal)):
                    rows["level_bits"].append(LEVEL_BITS.row(seed=seed, split=split, objective=bits.objective,
                                                             level=lvl, bits=float(v), optimal_bits=float(o)))
    return rows


def verdict_row(task, seed: int, episodes: dict, pools: dict, profiles: dict) -> tuple:
    """The ``verdicts`` row of one seed: its alignment verdict from its train and test episodes and, when
    profiled, its behavioral objective on the test levels (see :mod:`mesalab.diagnostics.alignment`)."""
    v = split_verdict(task, "test", episodes, pools, profiles)
    return VERDICTS.row(seed=seed, label=v.label, proxy=v.proxy, confidence=v.confidence,
                        class_probabilities=dumps(v.class_probabilities), n_episodes=v.n_episodes, text=v.text)


def split_verdict(task, split: str, episodes: dict, pools: dict, profiles: dict):
    """The alignment verdict of one seed on one shifted split (its training episodes give the competence check;
    its behavioral objective on that split, when profiled, the unlisted-objective category)."""
    from mesalab.diagnostics import summarise
    from mesalab.diagnostics.alignment import alignment_verdict

    profile = profiles.get(split)
    return alignment_verdict(task, pools[split], episodes[split], summarise(task, episodes[split], split),
                             summarise(task, episodes["train"], "train"), None if profile is None else profile.behavioral)


# -- reading a run back -----------------------------------------------------------------------------------------

def load_run_config(run_dir: Path) -> dict:
    """The config of a run folder (one-line error if it is none or malformed)."""
    run_dir = Path(run_dir)
    meta = folder_meta(run_dir) if (run_dir / "config.json").exists() else None
    if meta is None:
        raise CorruptRunError(f"{run_dir} is not a mesalab run folder (no config.json); pass the folder `mesalab run` wrote")
    try:
        meta["task"], meta["seeds"], meta["icl" if meta.get("kind") == "icl" else "ppo"]
    except (KeyError, TypeError) as e:
        raise CorruptRunError(f"{run_dir / 'config.json'} is malformed ({type(e).__name__}: {e}); rerun `mesalab run`") from None
    return meta


def load_model(run_dir: Path, seed: int):
    """The trained model of ``seed`` in a run folder (one-line error if missing or corrupt)."""
    import jax

    from mesalab.optimizers import PPOConfig, init_model

    meta = load_run_config(run_dir)
    folder = RUN.folder(run_dir)
    if not folder.checkpoint_path(f"seed-{seed}.eqx").exists():
        raise CorruptRunError(f"no checkpoint for seed {seed} in {run_dir}; seeds in this run: {meta['seeds']}")
    return folder.load_checkpoint(f"seed-{seed}.eqx", init_model(PPOConfig(**meta["ppo"]), jax.random.key(0)),
                                  f"seed {seed}")


def diagnose_run(folder: RunFolder | Path, irl_levels: int | None = None, bootstrap: int = 1000,
                 seeds: list[int] | None = None, on_stage: Callable[[str], None] | None = None) -> Path:
    """Recompute the objective profile (behavioral objective, bits, goal-directedness) and verdict of every seed
    of a finished run from its checkpoints and replace those tables in its database (atomically). The
    evaluation episodes are replayed with the run's own keys, so they are the run's episodes. ``seeds``: only
    these seeds (the stored results of the others are kept). ``irl_levels``: levels per split for IRL
    (default: 200, or all of the run's evaluation levels if it has fewer)."""
    import equinox as eqx
    import jax
    import jax.numpy as jnp

    from mesalab.results.store import replace_tables
    from mesalab.studies.ppo_batch import evaluate_models, evaluation_pools, profile_seed, split_seed
    from mesalab.tasks import get_task

    if irl_levels is not None and irl_levels < 1:
        raise ConfigError(f"--levels must be at least 1, got {irl_levels}")
    if bootstrap < 10:
        raise ConfigError(f"--bootstrap must be at least 10, got {bootstrap}")
    stage = on_stage or (lambda s: None)
    folder = folder if isinstance(folder, RunFolder) else RUN.folder(folder)
    run_dir = folder.path
    meta = load_run_config(run_dir)
    task = get_task(meta["task"]).with_obs_mode(meta.get("ppo", {}).get("obs_mode", ""))  # as its models observe
    ev = dict(meta.get("eval", {}))
    if irl_levels is None:
        irl_levels = min(EvalPlan.irl_levels, int(ev.get("episodes", EvalPlan.episodes)))
    ev.update(irl_levels=irl_levels, bootstrap=bootstrap)
    plan = eval_plan(ev)
    if irl_levels > plan.episodes:
        raise ConfigError(f"--levels {irl_levels} exceeds the run's {plan.episodes} evaluation episodes per split; "
                          f"pass at most {plan.episodes}")
    if seeds is None:
        seeds = list(meta["seeds"])
    unknown = sorted(set(seeds) - set(meta["seeds"]))
    if unknown:
        raise ConfigError(f"seed(s) {unknown} are not in this run; its seeds are {meta['seeds']}")
    pools = evaluation_pools(task, plan)
    stage("replaying the evaluation episodes")
    models = [load_model(run_dir, seed) for seed in seeds]
    stacked = jax.tree_util.tree_map(lambda *xs: jnp.stack(xs) if eqx.is_array(xs[0]) else xs[0], *models)
    keys = jax.vmap(jax.random.key)(jnp.asarray(seeds, jnp.uint32))
    episodes = evaluate_models(task, stacked, keys, pools, plan.greedy)
    profiles = {}
    for i, (seed, model) in enumerate(zip(seeds, models)):
        stage(f"seed {seed}: fitting the behavioral objective")
        profiles[seed] = profile_seed(task, model, split_seed(episodes, i), pools, plan)
    stage("writing results")
    rows = objective_rows(profiles)
    rows["verdicts"] = [verdict_row(task, seed, split_seed(episodes, i), pools, profiles[seed])
                        for i, seed in enumerate(seeds)]
    for i, seed in enumerate(seeds):
        for table, values in probe_rows(task, seed, split_seed(episodes, i), pools, profiles[seed]).items():
            rows.setdefault(table, []).extend(values)
    present = folder.table_names()
    for table in rows:  # keep the stored results of seeds not diagnosed now
        if table in present:
            kept = folder.rows_without(table, "seed", seeds)
            width = len(RUN_SCHEMA[table].columns)
            # a database written before a column was added keeps its rows, the new column empty
            rows[table] = [r + (None,) * (width - len(r)) for r in kept] + rows[table]
    replace_tables(run_dir, rows)
    return run_dir


RUN = register(GridworldRun())
