"""``mesalab run``: train seeds, evaluate under shift, classify, and write a complete run folder.

Run folder::

    config.json          task, PPO config, seeds, evaluation settings, versions (written first)
    checkpoints/seed-S.eqx
    results.duckdb       learning curves, per-objective scores, outcomes, verdicts, drawn trajectories
    figures/*.png, report.html
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import numpy as np

from mesalab.errors import ConfigError, CorruptRunError
from mesalab.results.files import save_leaves_atomic, write_json_atomic
from mesalab.results.provenance import now, versions
from mesalab.results.store import dumps, write_results
from mesalab.runner import EvalSettings, SeedResult, train_and_evaluate

N_DRAWN_LEVELS = 4


def prepare_run_dir(out: Path | None, task: str, create: bool = True) -> Path:
    """The run folder (default ``runs/TASK-TIME``), checked before anything is written: it must be a folder that
    can be written (not an existing file, a read-only place or under a file) and must not hold a finished run or a
    sweep. Created unless ``create`` is false (the CLI checks it before starting any work)."""
    from mesalab.errors import check_output_dir

    if out is None:
        import datetime as dt

        out = Path("runs") / f"{task}-{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"
    out = check_output_dir(out)
    if (out / "results.duckdb").exists():
        raise ConfigError(f"{out} already holds a finished run; pass a new --out folder")
    if (out / "sweep.json").exists():
        raise ConfigError(f"{out} holds a sweep, not a run; pass a new --out folder")
    if create:
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ConfigError(f"--out {out} cannot be created ({e.strerror or e}); pass a folder you can write to") from None
    return out


def run_experiment(config, seeds: list[int], eval_settings: EvalSettings, out: Path | None = None,
                   workers: int | None = None, on_progress: Callable[[int], None] | None = None,
                   on_stage: Callable[[str], None] | None = None) -> Path:
    """Train ``seeds`` with PPO ``config``, evaluate, and write the run folder; returns its path."""
    from mesalab.optimizers import PPOConfig

    config: PPOConfig = config.validate()
    if len(set(seeds)) != len(seeds) or not seeds:
        raise ConfigError("seeds must be a non-empty list of distinct integers")
    if eval_settings.episodes < 1:
        raise ConfigError("--episodes must be at least 1")
    run_dir = prepare_run_dir(out, config.task)
    stage = on_stage or (lambda s: None)
    meta = {
        "kind": "run",
        "task": config.task,
        "ppo": config.to_dict(),
        "seeds": list(seeds),
        "eval": asdict(eval_settings),
        "versions": versions(),
        "created": now(),
    }
    write_json_atomic(run_dir / "config.json", meta)
    stage("training")
    results = train_and_evaluate(config.to_dict(), seeds, eval_settings, workers, on_progress)
    stage("writing results")
    save_checkpoints(run_dir, config, results)
    rows = result_rows(config, meta, results, eval_settings)
    write_results(run_dir, rows)
    stage("rendering report")
    from mesalab.report import build_report

    build_report(run_dir)
    return run_dir


def save_checkpoints(run_dir: Path, config, results: list[SeedResult]) -> None:
    import equinox as eqx
    import jax

    from mesalab.optimizers import init_model

    (run_dir / "checkpoints").mkdir(exist_ok=True)
    skeleton = init_model(config, jax.random.key(0))
    params, static = eqx.partition(skeleton, eqx.is_array)
    treedef = jax.tree_util.tree_structure(params)
    for r in results:
        model = eqx.combine(jax.tree_util.tree_unflatten(treedef, r.model_leaves), static)
        path = run_dir / "checkpoints" / f"seed-{r.seed}.eqx"
        save_leaves_atomic(path, model)


def load_model(run_dir: Path, seed: int):
    """The trained model of ``seed`` in a run folder (one-line error if missing or corrupt)."""
    import equinox as eqx
    import jax

    from mesalab.optimizers import PPOConfig, init_model

    meta = load_run_config(run_dir)
    config = PPOConfig(**meta["ppo"])
    path = Path(run_dir) / "checkpoints" / f"seed-{seed}.eqx"
    if not path.exists():
        raise CorruptRunError(f"no checkpoint for seed {seed} in {run_dir}; seeds in this run: {meta['seeds']}")
    try:
        return eqx.tree_deserialise_leaves(str(path), init_model(config, jax.random.key(0)))
    except Exception as e:
        raise CorruptRunError(f"checkpoint {path} is corrupt ({type(e).__name__}); retrain with `mesalab run`") from None


def load_run_config(run_dir: Path) -> dict:
    path = Path(run_dir) / "config.json"
    if not path.exists():
        raise CorruptRunError(f"{run_dir} is not a mesalab run folder (no config.json); pass the folder `mesalab run` wrote")
    try:
        meta = json.loads(path.read_text())
        meta["task"], meta["seeds"], meta["icl" if meta.get("kind") == "icl" else "ppo"]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise CorruptRunError(f"{path} is malformed ({type(e).__name__}: {e}); rerun `mesalab run`") from None
    return meta


def objective_rows(profiles: dict) -> dict[str, list[tuple]]:
    """Rows of the objective tables from ``{seed: {split: ObjectiveProfile}}``."""
    from mesalab.results.store import OBJECTIVE_TABLES

    rows: dict[str, list[tuple]] = {k: [] for k in OBJECTIVE_TABLES}
    for seed, by_split in profiles.items():
        for split, prof in by_split.items():
            b = prof.behavioral
            for i, name in enumerate(b.feature_names):
                rows["irl_weights"].append((seed, split, name, i, float(b.weights[i]), float(b.normalised[i]),
                                            float(b.ci_low[i]), float(b.ci_high[i])))
            rows["behavioral_objectives"].append((
                seed, split, b.dominant, b.dominant_weight, b.scale, b.fitted_ll, b.uniform_ll, b.ceiling_ll,
                b.goal_directedness, b.goal_directedness_nats, dumps(b.aliases), dumps(b.absent), b.n_levels,
                b.n_actions, prof.reading))
            for c in b.candidates:
                rows["candidate_likelihoods"].append((seed, split, c.name, c.beta, c.held_out_ll))
            for bits in prof.bits:
                edges, counts = bits.histogram
                rows["optimization_power"].append((seed, split, bits.objective, bits.n_levels, bits.mean, bits.ci[0],
                                                   bits.ci[1], bits.optimal_mean, bits.fraction_of_ceiling,
                                                   list(edges), list(counts)))
                for lvl, (v, o) in enumerate(zip(bits.per_level, bits.per_level_optimal)):
                    rows["level_bits"].append((seed, split, bits.objective, lvl, float(v), float(o)))
    return rows


def diagnose_run(run_dir: Path, irl_levels: int | None = None, bootstrap: int = 1000, seeds: list[int] | None = None,
                 on_stage: Callable[[str], None] | None = None) -> Path:
    """Recompute the objective profile (behavioral objective, bits, goal-directedness) of every seed of a
    finished run from its checkpoints, replace those tables in its database (atomically) and re-render the
    report. The evaluation episodes are replayed with the run's own keys, so they are the run's episodes.
    ``seeds``: only these seeds (the stored results of the others are kept). ``irl_levels``: levels per split
    for IRL (default: 200, or all of the run's evaluation levels if it has fewer)."""
    import jax
    import jax.numpy as jnp

    import equinox as eqx

    from mesalab.results.store import open_results, replace_tables
    from mesalab.runner import EvalSettings, evaluate_models, evaluation_pools, profile_seed, split_seed
    from mesalab.tasks import get_task

    if irl_levels is not None and irl_levels < 1:
        raise ConfigError(f"--levels must be at least 1, got {irl_levels}")
    if bootstrap < 10:
        raise ConfigError(f"--bootstrap must be at least 10, got {bootstrap}")
    stage = on_stage or (lambda s: None)
    run_dir = Path(run_dir)
    meta = load_run_config(run_dir)
    task = get_task(meta["task"])
    ev = dict(meta.get("eval", {}))
    if irl_levels is None:
        irl_levels = min(EvalSettings.irl_levels, int(ev.get("episodes", EvalSettings.episodes)))
    ev.update(irl_levels=irl_levels, bootstrap=bootstrap)
    settings = EvalSettings(**{k: v for k, v in ev.items() if k in EvalSettings.__dataclass_fields__})
    if irl_levels > settings.episodes:
        raise ConfigError(f"--levels {irl_levels} exceeds the run's {settings.episodes} evaluation episodes per split; "
                          f"pass at most {settings.episodes}")
    if seeds is None:
        seeds = list(meta["seeds"])
    unknown = sorted(set(seeds) - set(meta["seeds"]))
    if unknown:
        raise ConfigError(f"seed(s) {unknown} are not in this run; its seeds are {meta['seeds']}")
    pools = evaluation_pools(task, settings)
    stage("replaying the evaluation episodes")
    models = [load_model(run_dir, seed) for seed in seeds]
    stacked = jax.tree_util.tree_map(lambda *xs: jnp.stack(xs) if eqx.is_array(xs[0]) else xs[0], *models)
    keys = jax.vmap(jax.random.key)(jnp.asarray(seeds, jnp.uint32))
    episodes = evaluate_models(task, stacked, keys, pools, settings.greedy)
    profiles = {}
    for i, (seed, model) in enumerate(zip(seeds, models)):
        stage(f"seed {seed}: fitting the behavioral objective")
        profiles[seed] = profile_seed(task, model, split_seed(episodes, i), pools, settings)
    stage("writing results")
    rows = objective_rows(profiles)
    rows["verdicts"] = [verdict_row(task, seed, split_seed(episodes, i), pools, profiles[seed])
                        for i, seed in enumerate(seeds)]
    con = open_results(run_dir)
    try:  # keep the stored results of seeds not diagnosed now
        from mesalab.results.store import has_table

        for table in rows:
            if has_table(con, table):
                marks = ", ".join("?" * len(seeds))
                kept = [tuple(r) for r in con.execute(
                    f"SELECT * FROM {table} WHERE seed NOT IN ({marks})", list(seeds)).fetchall()]
                width = len(rows[table][0]) if rows[table] else 0
                # a database written before a column was added keeps its rows, the new column empty
                rows[table] = [r + (None,) * (width - len(r)) for r in kept] + rows[table]
    finally:
        con.close()
    replace_tables(run_dir, rows)
    stage("rendering report")
    from mesalab.report import build_report

    build_report(run_dir)
    return run_dir


def verdict_row(task, seed: int, episodes: dict, pools: dict, profiles: dict) -> tuple:
    """The ``verdicts`` row of one seed: its alignment verdict from its train and test episodes and, when
    profiled, its behavioral objective on the test levels (see :mod:`mesalab.diagnostics.alignment`)."""
    from mesalab.diagnostics import summarise
    from mesalab.diagnostics.alignment import alignment_verdict

    test_profile = profiles.get("test")
    v = alignment_verdict(task, pools["test"], episodes["test"], summarise(task, episodes["test"], "test"),
                          summarise(task, episodes["train"], "train"),
                          None if test_profile is None else test_profile.behavioral)
    return (seed, v.label, v.proxy, v.confidence, dumps(v.class_probabilities), v.n_episodes, v.text)


def result_rows(config, meta: dict, results: list[SeedResult], eval_settings: EvalSettings) -> dict[str, list[tuple]]:
    from mesalab.diagnostics import evaluation_levels, summarise
    from mesalab.diagnostics.stats import wilson_interval
    from mesalab.diagnostics.shift import outcome_names
    from mesalab.tasks import get_task

    task = get_task(config.task)
    names = outcome_names(task)
    rows: dict[str, list[tuple]] = {k: [] for k in
                                    ["runs", "training_curves", "evaluations", "outcomes", "competence", "verdicts",
                                     "levels", "trajectories", "compute_scaling"]}
    rows.update(objective_rows({r.seed: r.profiles for r in results}))
    for r in results:
        rows["runs"].append((r.seed, config.task, dumps(config.to_dict()), dumps(meta["versions"]), meta["created"]))
        for k, (hits, n) in sorted(r.success_by_ticks.items()):
            rows["compute_scaling"].append((r.seed, k, config.ticks, hits, n, hits / n, *wilson_interval(hits, n)))
        steps = r.metrics["env_steps"]
        for name, values in r.metrics.items():
            if name == "env_steps":
                continue
            for i, v in enumerate(values):
                rows["training_curves"].append((r.seed, i, int(steps[i]), name, float(v)))
        for split, ep in r.episodes.items():
            s = summarise(task, ep, split)
            for j, o in enumerate(s.objectives):
                rows["evaluations"].append((r.seed, split, o.name, j == 0, s.n_episodes, o.competent_rate,
                                            o.competent_ci[0], o.competent_ci[1], o.reach_rate, o.mean_return,
                                            o.mean_optimal, o.normalised_return))
            for name, count in zip(s.outcome_names, s.outcome_counts):
                rows["outcomes"].append((r.seed, split, name, count))
            rows["competence"].append((r.seed, split, s.competence_rate, *s.competence_ci))
            for lvl in range(min(N_DRAWN_LEVELS, ep.length.shape[0])):
                n = int(ep.length[lvl]) + 1
                rows["trajectories"].append((r.seed, split, lvl, ep.positions[lvl, :n, 0].tolist(),
                                             ep.positions[lvl, :n, 1].tolist(), names[int(ep.outcome[lvl])]))
    pools = {split: evaluation_levels(task, split, eval_settings.episodes, eval_settings.level_seed)
             for split in ("train", "test")}
    for r in results:
        rows["verdicts"].append(verdict_row(task, r.seed, r.episodes, pools, r.profiles))
    for split in ("train", "test"):
        params = pools[split]
        grid = np.asarray(params.grid[:N_DRAWN_LEVELS])
        start = np.asarray(params.start[:N_DRAWN_LEVELS])
        for lvl in range(grid.shape[0]):
            h, w, c = grid[lvl].shape
            rows["levels"].append((split, lvl, h, w, c, grid[lvl].reshape(-1).tolist(), int(start[lvl, 0]),
                                   int(start[lvl, 1])))
    return rows
