"""The ``mesalab`` command line: ``run``, ``diagnose``, ``sweep``, ``report``, ``tasks``.

User errors (unknown task, bad option values, malformed config, corrupt run folder, an output path that is a
file or cannot be written) print one line that names the fix and exit with status 2; no traceback. Every input is
checked before any work starts, anything is written or any progress is displayed.

Limits of the count options (also in ``--help`` and in the errors): a run trains its seeds as one vmapped program and
evaluates every seed's episodes at once, so ``--seeds`` <= 100, ``--episodes`` <= 100000 and their product <= 200000
keep it within memory; ``--steps`` <= 1e9 (PPO) or 1e7 (maze-path, icl-gd SGD steps); ``--workers`` <= 256; seeds are
32-bit (``--first-seed`` + ``--seeds`` <= 2^31). Sweeps: ``--episodes`` and ``--irl-levels`` <= 20000 (a batch
evaluates 8 cells at once); extrapolation: at most 16 ``--sizes``, each odd in [5, 201], ``--max-ticks`` <= 5000,
``--mazes`` <= 10000. ``diagnose``: ``--levels`` <= 100000, ``--bootstrap`` in [10, 100000].
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from mesalab.errors import ConfigError, MesalabError, check_output_dir

try:  # typer >= 0.20 vendors click
    from typer._click import exceptions as _click_exc
except ImportError:  # pragma: no cover - older typer with click as a dependency
    import click.exceptions as _click_exc

MAX_SEEDS = 100  # seeds per run or per dial value of a sweep (a run vmaps its seeds)
MAX_EPISODES = 100_000  # run: evaluation episodes (levels) per split and seed
MAX_SEED_EPISODES = 200_000  # run: seeds x episodes, evaluated together
MAX_WORKERS = 256
MAX_SEED = 2**31 - 1  # seeds are 32-bit PRNG keys
MAX_LEVELS = 100_000  # diagnose --levels
BOOTSTRAP_RANGE = (10, 100_000)  # diagnose --bootstrap
MAX_SIZE, MAX_N_SIZES = 201, 16  # extrapolation --sizes
MAX_TICKS = 5000  # extrapolation --max-ticks
MAX_MAZES = 10_000  # extrapolation --mazes
MAX_CONFIG_BYTES = 1_000_000  # a --config file is a small JSON object

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None,
                  help="mesalab: train learned algorithms, then measure what they optimize and whether it survives shift.")
console = Console()
err_console = Console(stderr=True)


@app.command()
def tasks() -> None:
    """List the registered tasks with their train/test dials."""
    from mesalab.tasks import list_tasks

    table = Table(title="mesalab tasks")
    table.add_column("task", style="bold")
    table.add_column("description")
    table.add_column("base objective / proxies")
    table.add_column("dials (train / test)")
    for t in list_tasks():
        table.add_row(t.name, t.description,
                      f"{t.base_objective.name} / {', '.join(p.name for p in t.proxies) or '-'}",
                      "\n".join(f"{k}: {v}" for k, v in t.dials.items()))
    table.add_row("icl-gd", "In-context linear regression for transformers (supervised; `mesalab run icl-gd`): "
                  "which learning algorithm does the trained model implement?",
                  "query squared error / -", "dim, n_context, noise_std, x_scale, w_scale (ICLConfig; OOD curves "
                  "over x and w scale)")
    table.add_row("maze-path", "Maze image in, shortest-path mask out, procedurally generated at any size "
                  "(supervised; `mesalab sweep extrapolation`): does a recall network that iterates longer solve "
                  "bigger mazes than it was trained on?",
                  "exact match with the BFS path / -", "size (train 9, test up to 45), ticks (ThinkingConfig)")
    console.print(table)


def _check_count(option: str, value: Optional[int], lo: int, hi: int, why: str = "") -> None:
    """A one-line error unless ``value`` (an integer option; ``None`` = not given) is in ``[lo, hi]``."""
    if value is not None and not lo <= value <= hi:
        raise ConfigError(f"{option} must be at least {lo} and at most {hi}{why}, got {value}")


def _reject_unused(command: str, **given) -> None:
    """A one-line error for an option given to a command that does not use it (instead of ignoring it)."""
    for name, value in given.items():
        if value is not None:
            option = "--" + name.replace("_", "-")
            raise ConfigError(f"{option} is not used by `mesalab {command}`; drop it (see `mesalab {command} --help`)")


def _read_config_file(config_path: Optional[Path], what: str) -> dict:
    """The JSON object of ``--config`` (``{}`` when not given), with one-line errors naming the fix."""
    if config_path is None:
        return {}
    try:
        if not config_path.exists():
            raise ConfigError(f"config file {config_path} not found; pass an existing JSON file to --config")
        if config_path.is_dir():
            raise ConfigError(f"--config {config_path} is a folder; pass a JSON file of {what} settings")
        if not config_path.is_file():
            raise ConfigError(f"--config {config_path} is not a regular file; pass a JSON file of {what} settings")
        if config_path.stat().st_size > MAX_CONFIG_BYTES:
            raise ConfigError(f"--config {config_path} is larger than {MAX_CONFIG_BYTES} bytes; pass a small JSON "
                              f"object of {what} settings")
        text = config_path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"--config {config_path} cannot be read ({e.strerror or e}); pass a readable JSON file") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {config_path} is not UTF-8 text; pass a JSON file of {what} settings") from None

    def no_duplicates(pairs):
        keys = [k for k, _ in pairs]
        twice = sorted({k for k in keys if keys.count(k) > 1})
        if twice:
            raise ConfigError(f"config file {config_path} sets {twice} more than once; keep one of each")
        return dict(pairs)

    try:
        overrides = json.loads(text, object_pairs_hook=no_duplicates)
    except json.JSONDecodeError as e:
        raise ConfigError(f"config file {config_path} is not valid JSON ({e.msg} at line {e.lineno}); fix the file") from None
    except RecursionError:
        raise ConfigError(f"config file {config_path} is nested too deeply; it must be a flat JSON object") from None
    if not isinstance(overrides, dict):
        raise ConfigError(f"config file {config_path} must hold a JSON object of {what} settings, e.g. "
                          f"{{\"lr\": 0.001}}, not a {type(overrides).__name__}")
    return overrides


def _load_config(task: str, config_path: Optional[Path], steps: Optional[int]):
    """The PPO config of ``mesalab run TASK``: the file's own values are checked first (so ``--steps`` cannot hide
    a bad ``total_steps``), then ``--steps`` is applied and the whole config validated."""
    from mesalab.optimizers import PPOConfig
    from mesalab.tasks import get_task

    get_task(task)
    overrides = PPOConfig.check_dict(_read_config_file(config_path, "PPO"))
    if overrides.get("task", task) != task:
        raise ConfigError(f"config file names task {overrides['task']!r} but the command names {task!r}; make them agree")
    overrides["task"] = task
    if steps is not None:
        _check_steps_cover_an_update(steps, overrides)
        overrides["total_steps"] = steps
    return PPOConfig.from_dict(overrides)


def _check_steps_cover_an_update(steps: int, overrides: dict) -> None:
    from mesalab.optimizers import PPOConfig

    d = PPOConfig()
    per_update = overrides.get("num_envs", d.num_envs) * overrides.get("rollout_len", d.rollout_len)
    if steps < per_update:
        raise ConfigError(f"--steps {steps} is less than one PPO update (num_envs*rollout_len={per_update}); pass "
                          f"--steps of at least {per_update}")


def _steps_range(config_cls) -> tuple[int, int]:
    rng = config_cls.RANGES["total_steps" if "total_steps" in config_cls.RANGES else "steps"]
    return int(rng.lo), int(rng.hi)


def _check_seeds(seeds: int, first_seed: int = 0) -> None:
    _check_count("--seeds", seeds, 1, MAX_SEEDS)
    _check_count("--first-seed", first_seed, 0, MAX_SEED - seeds + 1, " (seeds are 32-bit)")


@app.command()
def run(
    task: str = typer.Argument(..., help="task name (see `mesalab tasks`)"),
    seeds: int = typer.Option(4, "--seeds", help=f"number of training seeds (0, 1, ..., K-1), 1..{MAX_SEEDS}"),
    steps: Optional[int] = typer.Option(None, "--steps", help="environment steps per seed (default 300000; at most "
                                        "1e9), or Adam steps for icl-gd (at most 1e7)"),
    out: Optional[Path] = typer.Option(None, "--out", help="run folder (default runs/TASK-TIME); a new folder, or "
                                       "one with no finished run"),
    config: Optional[Path] = typer.Option(None, "--config", help="JSON file of PPO settings to override"),
    episodes: Optional[int] = typer.Option(None, "--episodes", help="evaluation episodes per split and seed (default "
                                           f"1000), 1..{MAX_EPISODES} (seeds x episodes <= {MAX_SEED_EPISODES})"),
    workers: Optional[int] = typer.Option(None, "--workers", help="worker processes (default: one per core on CPU; "
                                          f"0 = in-process; at most {MAX_WORKERS})"),
    first_seed: int = typer.Option(0, "--first-seed", help="seeds are first_seed ... first_seed+K-1 (32-bit)"),
) -> None:
    """Train on TASK, evaluate on its shifted test distribution, print verdicts and write the report."""
    from mesalab.pipeline import prepare_run_dir, run_experiment
    from mesalab.runner import EvalSettings

    _check_seeds(seeds, first_seed)
    _check_count("--episodes", episodes, 1, MAX_EPISODES)
    _check_count("--workers", workers, 0, MAX_WORKERS)
    if task == "icl-gd":
        return _run_icl(seeds, steps, out, config, first_seed, episodes, workers)
    if task == "maze-path":
        raise ConfigError("maze-path is trained and tested across sizes by `mesalab sweep extrapolation`; run that")
    episodes = 1000 if episodes is None else episodes
    if seeds * episodes > MAX_SEED_EPISODES:
        raise ConfigError(f"--seeds x --episodes = {seeds * episodes} exceeds {MAX_SEED_EPISODES} (every seed's "
                          f"episodes are evaluated at once); lower --seeds or --episodes")
    from mesalab.optimizers import PPOConfig

    _check_count("--steps", steps, *_steps_range(PPOConfig))
    cfg = _load_config(task, config, steps if steps is not None else (None if config else 300_000))
    out = prepare_run_dir(out, task, create=False)
    seed_list = list(range(first_seed, first_seed + seeds))
    eval_settings = EvalSettings(episodes=episodes)
    from mesalab.runner import default_workers

    n_workers = default_workers(seeds) if workers is None else workers
    if n_workers == 0:
        # in-process training blocks inside XLA where Python's Ctrl-C handler cannot run: let SIGINT end the
        # process at once (safe: config, checkpoints, database and report are all written atomically)
        import signal

        signal.signal(signal.SIGINT, signal.SIG_DFL)
    total = cfg.num_updates * max(1, min(n_workers, seeds))
    console.print(f"[bold]mesalab run {task}[/]: {seeds} seed(s) x {cfg.num_updates * cfg.steps_per_update:,} steps, "
                  f"{episodes} test episodes per seed, {max(n_workers, 1)} worker(s)")
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("eta"), TimeRemainingColumn(), console=console, transient=False) as progress:
        bar = progress.add_task("compiling + training (updates)", total=total)
        stage = progress.add_task("", total=None, visible=False)

        def on_stage(s):
            if s != "training":
                progress.update(bar, completed=total)
                progress.update(stage, description=s, visible=True)

        run_dir = run_experiment(cfg, seed_list, eval_settings, out, n_workers,
                                 on_progress=lambda n: progress.update(bar, completed=n), on_stage=on_stage)
        progress.update(stage, visible=False)
    print_summary(run_dir)


def _run_icl(seeds: int, steps: Optional[int], out: Optional[Path], config_path: Optional[Path], first_seed: int,
             episodes: Optional[int] = None, workers: Optional[int] = None) -> None:
    from mesalab.icl_pipeline import run_icl
    from mesalab.optimizers.supervised import ICLConfig
    from mesalab.pipeline import prepare_run_dir

    _reject_unused("run icl-gd", episodes=episodes, workers=workers)  # it tests on fresh sequences, in-process
    _check_count("--steps", steps, *_steps_range(ICLConfig))
    overrides = ICLConfig.check_dict(_read_config_file(config_path, "ICLConfig"))  # the file's own values first
    if steps is not None:
        overrides["steps"] = steps
    cfg = ICLConfig.from_dict(overrides)
    out = prepare_run_dir(out, "icl-gd", create=False)
    seed_list = list(range(first_seed, first_seed + seeds))
    console.print(f"[bold]mesalab run icl-gd[/]: {seeds} seed(s) x {cfg.steps} Adam steps, {cfg.layers} layer(s), "
                  f"{'softmax' if cfg.softmax else 'linear'} attention")
    with Progress(TextColumn("{task.description}"), TimeElapsedColumn(), console=console, transient=True) as progress:
        progress.add_task("training and analysing", total=None)
        run_dir = run_icl(cfg, seed_list, out)
    print_icl_summary(run_dir)


def print_icl_summary(run_dir: Path) -> None:
    import duckdb

    con = duckdb.connect(str(Path(run_dir) / "results.duckdb"), read_only=True)
    try:
        rows = con.execute("SELECT seed, layer, reference, reference_loss, model_loss, prediction_mse, sensitivity_cosine "
                           "FROM icl_matches WHERE layer = (SELECT max(layer) FROM icl_matches) ORDER BY seed, reference").fetchall()
    finally:
        con.close()
    table = Table(title="icl-gd: which learning algorithm does the transformer implement?")
    for col in ("seed", "reference", "reference loss", "model loss", "prediction MSE", "sensitivity cosine"):
        table.add_column(col)
    for seed, _, ref, rl, ml, mse, cos in rows:
        table.add_row(str(seed), ref, f"{rl:.4f}", f"{ml:.4f}", f"{mse:.5f}", f"{cos:.4f}")
    console.print(table)
    print_report_sentences(Path(run_dir) / "report.html", r"<li>(Seed [^<]*)</li>")


def print_report_sentences(report: Path, pattern: str) -> None:
    """Print the sentences a report states (its list items matching ``pattern``), then its path."""
    import html
    import re

    for sentence in re.findall(pattern, report.read_text()):
        console.print(html.unescape(sentence), markup=False)
    console.print(f"Report: {report}")


def print_summary(run_dir: Path) -> None:
    from mesalab.diagnostics.verdict import NOT_TRAINED, TRAINING_COMPETENCE, verdict_phrase
    from mesalab.pipeline import load_run_config
    from mesalab.report.build import verdict_summary
    from mesalab.results.store import open_results, query
    from mesalab.tasks import get_task

    meta = load_run_config(run_dir)
    task = get_task(meta["task"])
    con = open_results(run_dir)
    ev = query(con, "SELECT * FROM evaluations")
    verdicts = query(con, "SELECT * FROM verdicts ORDER BY seed")
    con.close()
    table = Table(title=f"{task.name}: shift evaluation ({meta['eval']['episodes']} episodes per split)")
    table.add_column("seed")
    table.add_column("train: base pursued competently")
    table.add_column(f"test {task.base_objective.name} (base)")
    for p in task.proxies:
        table.add_column(f"test {p.name} (proxy)")
    table.add_column("verdict")
    get = {(r["seed"], r["split"], r["objective"]): r for r in ev}

    def fmt(r):
        return f"{r['competent_rate']:.2f} [{r['ci_low']:.2f}, {r['ci_high']:.2f}]"

    for v in verdicts:
        s = v["seed"]
        label = verdict_phrase(v["label"], v["proxy"]) + f" (conf {v['confidence']:.2f})"
        table.add_row(str(s), fmt(get[(s, "train", task.base_objective.name)]),
                      fmt(get[(s, "test", task.base_objective.name)]),
                      *[fmt(get[(s, "test", p.name)]) for p in task.proxies], label)
    console.print(table)
    console.print(f"[bold]Verdict:[/] {verdict_summary(verdicts)}")
    untrained = [v for v in verdicts if v["label"] == NOT_TRAINED]
    if untrained:
        rates = ", ".join(f"seed {v['seed']}: {get[(v['seed'], 'train', task.base_objective.name)]['competent_rate']:.2f}"
                          for v in untrained)
        console.print(f"[bold yellow]Warning:[/] {len(untrained)} seed(s) never learned to pursue the base objective in "
                      f"training ({rates}, below {TRAINING_COMPETENCE:.2f}), so their test verdict says nothing about "
                      "alignment; train longer or check the PPO settings (e.g. lr, anneal_lr).", markup=True)
    print_objectives(run_dir)
    console.print(f"Report: {Path(run_dir) / 'report.html'}")


def print_objectives(run_dir: Path) -> None:
    """The behavioral objective, goal-directedness and optimization power of each seed on the test split."""
    from mesalab.results.store import has_table, open_results, query

    con = open_results(run_dir)
    try:
        if not has_table(con, "behavioral_objectives"):
            console.print("No behavioral objective in this run; compute it with `mesalab diagnose "
                          f"{run_dir}`.", markup=False)
            return
        objs = query(con, "SELECT * FROM behavioral_objectives ORDER BY seed, split DESC")
        bits = query(con, "SELECT * FROM optimization_power ORDER BY seed, split DESC, objective")
    finally:
        con.close()
    if not objs:
        return
    table = Table(title="What is it optimizing? (behavioral objective by exact MCE-IRL)")
    for col in ("seed", "split", "dominant feature (w)", "goal-directedness", "bits (base) / ceiling", "bits (proxies)"):
        table.add_column(col)
    by = {}
    for b in bits:
        by.setdefault((b["seed"], b["split"]), []).append(b)
    for o in objs:
        bb = by.get((o["seed"], o["split"]), [])
        base = [b for b in bb if b["objective"].startswith("base:")]
        proxies = [b for b in bb if b["objective"].startswith("proxy:")]
        table.add_row(str(o["seed"]), o["split"], f"{o['dominant']} ({o['dominant_weight']:.2f})",
                      f"{o['goal_directedness']:.2f}",
                      " ".join(f"{b['mean_bits']:.1f} / {b['optimal_mean_bits']:.1f}" for b in base),
                      " ".join(f"{b['objective'][6:]}: {b['mean_bits']:.1f}" for b in proxies) or "-")
    console.print(table)
    first_test = next((o for o in objs if o["split"] == "test"), objs[0])
    console.print(f"[bold]Seed {first_test['seed']} ({first_test['split']}):[/] {first_test['reading']}")


@app.command()
def diagnose(
    run_dir: Path = typer.Argument(..., help="a run folder written by `mesalab run`"),
    levels: Optional[int] = typer.Option(None, "--levels", help="evaluation levels per split used to fit the behavioral objective (default 200, or all the run has; at most the run's episodes)"),
    bootstrap: int = typer.Option(1000, "--bootstrap", help=f"bootstrap replicates for the IRL weight intervals, {BOOTSTRAP_RANGE[0]}..{BOOTSTRAP_RANGE[1]}"),
    seed: Optional[list[int]] = typer.Option(None, "--seed", help="diagnose only this seed (repeatable; default all)"),
) -> None:
    """Fit the behavioral objective (exact MCE-IRL), optimization power (bits) and goal-directedness of every
    seed of a finished run, store them in its database and re-render its report."""
    from mesalab.pipeline import diagnose_run, load_run_config

    _check_count("--levels", levels, 1, MAX_LEVELS)
    _check_count("--bootstrap", bootstrap, *BOOTSTRAP_RANGE)
    for s in seed or []:
        _check_count("--seed", s, 0, MAX_SEED)
    _check_run_folder(run_dir)
    meta = load_run_config(run_dir)
    if meta.get("kind") == "icl":
        raise ConfigError(f"{run_dir} is an icl-gd run (no behavioral objective to fit); pass a folder of `mesalab run TASK`")
    episodes = int(meta.get("eval", {}).get("episodes", levels or 0))
    if levels is not None and levels > episodes:
        raise ConfigError(f"--levels {levels} exceeds the run's {episodes} evaluation episodes per split; pass at most {episodes}")
    unknown = sorted(set(seed or []) - set(meta["seeds"]))
    if unknown:
        raise ConfigError(f"--seed {unknown} not in this run; its seeds are {meta['seeds']}")
    with Progress(TextColumn("{task.description}"), TimeElapsedColumn(), console=console, transient=True) as progress:
        stage = progress.add_task("loading", total=None)
        diagnose_run(run_dir, levels, bootstrap, seed or None,
                     on_stage=lambda s: progress.update(stage, description=s))
    print_objectives(run_dir)
    console.print(f"Report: {Path(run_dir) / 'report.html'}")


def _check_run_folder(run_dir: Path) -> None:
    """A one-line error unless ``run_dir`` is a folder this command can rewrite (its report and tables)."""
    if not run_dir.is_dir():
        raise ConfigError(f"{run_dir} is not a folder; pass a run folder written by `mesalab run`")
    check_output_dir(run_dir, "run folder")


@app.command()
def sweep(
    preset: str = typer.Argument(..., help="pseudo-alignment-alpha | diversity | capacity | simplicity | statefulness | "
                                 "time-penalty | extrapolation | toy-model"),
    seeds: Optional[int] = typer.Option(None, "--seeds", help=f"seeds per dial value (default: the preset's, 5), 1..{MAX_SEEDS}"),
    backend: str = typer.Option("local", "--backend", help="local (pinned worker processes) or ray"),
    out: Optional[Path] = typer.Option(None, "--out", help="sweep folder (default sweeps/PRESET); re-running resumes it"),
    workers: Optional[int] = typer.Option(None, "--workers", help="parallel workers (default: one per core on CPU; 0 = in-process, local only; at most "
                                          f"{MAX_WORKERS})"),
    address: Optional[str] = typer.Option(None, "--address", help="Ray cluster address (default: start a local Ray for this command)"),
    steps: Optional[int] = typer.Option(None, "--steps", help="override the environment steps of every cell (at most 1e9; "
                                        "extrapolation: SGD steps, at most 1e7)"),
    config: Optional[Path] = typer.Option(None, "--config", help="JSON file of PPO settings to override in every cell"),
    episodes: Optional[int] = typer.Option(None, "--episodes", help="override the evaluation levels per split and cell (at most 20000)"),
    irl_levels: Optional[int] = typer.Option(None, "--irl-levels", help="override the levels used for goal-directedness (0 skips it; at most --episodes)"),
    compare: Optional[Path] = typer.Option(None, "--compare", help="toy-model only: a diversity sweep folder to set beside the model"),
    sizes: Optional[str] = typer.Option(None, "--sizes", help="extrapolation only: maze sizes to test (default "
                                        f"9,13,21,33,45; at most {MAX_N_SIZES}, each odd in [5, {MAX_SIZE}])"),
    max_ticks: Optional[int] = typer.Option(None, "--max-ticks", help="extrapolation only: test every tick count up to "
                                            f"this (default 400, at most {MAX_TICKS})"),
    mazes: Optional[int] = typer.Option(None, "--mazes", help=f"extrapolation only: unseen mazes per size (default 100, at most {MAX_MAZES})"),
) -> None:
    """Run a preset experiment (a grid of dial values x seeds), commit each finished batch, test the
    hypothesis for a trend along the dial and write the sweep report. Re-running the same command resumes."""
    from mesalab.experiments.presets import EVAL_RANGES, EXTRAPOLATION, TOY_MODEL, get_preset

    _check_count("--seeds", seeds, 1, MAX_SEEDS)
    _check_count("--workers", workers, 0, MAX_WORKERS)
    _check_count("--episodes", episodes, *EVAL_RANGES["episodes"])
    _check_count("--irl-levels", irl_levels, *EVAL_RANGES["irl_levels"])
    _check_count("--max-ticks", max_ticks, 1, MAX_TICKS)
    _check_count("--mazes", mazes, 1, MAX_MAZES)
    if backend not in ("local", "ray"):
        raise ConfigError(f"unknown backend {backend!r}; use --backend local or --backend ray")
    if preset in (TOY_MODEL, EXTRAPOLATION) and backend != "local":
        raise ConfigError(f"--backend is not used by `mesalab sweep {preset}` (it runs in this process); drop it")
    if preset == TOY_MODEL:
        _reject_unused("sweep toy-model", seeds=seeds, workers=workers, address=address, steps=steps, config=config,
                       episodes=episodes, irl_levels=irl_levels, sizes=sizes, max_ticks=max_ticks, mazes=mazes)
        _sweep_toy_model(out, compare)
        return
    if compare is not None:
        raise ConfigError("--compare is for the toy-model preset only")
    if preset == EXTRAPOLATION:
        _reject_unused("sweep extrapolation", workers=workers, address=address, episodes=episodes, irl_levels=irl_levels)
        _sweep_extrapolation(out, 1 if seeds is None else seeds, steps, config, sizes, max_ticks, mazes)
        return
    _reject_unused(f"sweep {preset}", sizes=sizes, max_ticks=max_ticks, mazes=mazes)
    p = get_preset(preset)
    n_seeds = p.default_seeds if seeds is None else seeds
    if address is not None and backend != "ray":
        raise ConfigError("--address is for --backend ray; add --backend ray or drop --address")
    if backend == "ray":
        import importlib.util

        if importlib.util.find_spec("ray") is None:
            raise ConfigError("--backend ray needs Ray (pip install 'ray'); or use --backend local")
        if workers == 0:
            raise ConfigError("--workers 0 (in-process) is for --backend local; pass --workers 1 or more with ray")
    if irl_levels is not None and irl_levels > (episodes or p.eval.episodes):
        n = episodes or p.eval.episodes
        raise ConfigError(f"--irl-levels {irl_levels} exceeds the {n} evaluation levels per split (--episodes); "
                          f"pass at most {n}")
    from mesalab.optimizers import PPOConfig

    _check_count("--steps", steps, *_steps_range(PPOConfig))
    overrides = PPOConfig.check_dict(_read_config_file(config, "PPO"))  # the file's own values, before --steps
    if steps is not None:
        _check_steps_cover_an_update(steps, {**p.base, **overrides})
        overrides["total_steps"] = steps
    eval_overrides = {k: v for k, v in (("episodes", episodes), ("irl_levels", irl_levels)) if v is not None}
    from mesalab.experiments.sweep import check_sweep_inputs, run_sweep

    # everything (every cell's config, the folder) is checked before the progress display starts
    _, _, out = check_sweep_inputs(preset, list(range(n_seeds)), out, backend, overrides, eval_overrides)
    if backend == "local" and workers == 0:
        import signal

        signal.signal(signal.SIGINT, signal.SIG_DFL)  # see `run`: committed batches are safe
    console.print(f"[bold]mesalab sweep {preset}[/]: {p.dial.name} in {[p.dial.display(v) for v in p.dial.values]}"
                  f" x {n_seeds} seed(s) x {len(p.panels)} panel(s), backend {backend}")
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed:.1f}/{task.total:.0f} cells"),
                  TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(), console=console) as progress:
        bar = progress.add_task("planning", total=1)

        def on_plan(todo, done):
            if done:
                console.print(f"resuming: {done} cell(s) already finished, {todo} to run", markup=False)
            progress.update(bar, description="compiling + training", total=max(todo, 1), completed=0 if todo else 1)

        sweep_dir = run_sweep(preset, list(range(n_seeds)), out, backend, workers, address, overrides, eval_overrides,
                              on_plan=on_plan, on_progress=lambda n: progress.update(bar, completed=n))
    print_sweep_summary(sweep_dir)


def _check_new_or_same_kind(out: Path, kind: str) -> None:
    """A one-line error if ``out`` already holds a run, or a sweep of another kind than ``kind`` (never overwrite
    finished results of something else)."""
    from mesalab.experiments.sweep import SWEEP_JSON, load_sweep_config

    if (out / SWEEP_JSON).exists():
        meta = load_sweep_config(out)
        if meta.get("kind") != kind:
            raise ConfigError(f"{out} holds a sweep of {meta['preset']!r}, not of {kind!r}; pass a new --out folder")
    elif (out / "results.duckdb").exists():
        raise ConfigError(f"{out} holds a run, not a sweep; pass a new --out folder")


def _sweep_toy_model(out: Optional[Path], compare: Optional[Path]) -> None:
    from mesalab.experiments.sweep import load_sweep_config
    from mesalab.experiments.toy_model import run_toy_model

    if compare is not None:
        if not compare.is_dir():
            raise ConfigError(f"--compare {compare} is not a folder; pass a diversity sweep folder")
        meta = load_sweep_config(compare)
        if meta["preset"] != "diversity":
            raise ConfigError(f"--compare needs a diversity sweep folder; {compare} holds {meta['preset']!r}")
        if not (compare / "sweep.duckdb").exists():
            raise ConfigError(f"{compare} has no finished cells yet; run `mesalab sweep diversity` first")
    out = check_output_dir(Path("sweeps") / "toy-model" if out is None else out)
    _check_new_or_same_kind(out, "toy-model")
    print_report_sentences(run_toy_model(out, compare) / "report.html", r"<li[^>]*>([^<]*)</li>")


def _parse_sizes(sizes: str) -> list[int]:
    try:
        size_list = [int(x) for x in sizes.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"--sizes must be comma-separated odd integers, e.g. 9,13,33; got {sizes!r}") from None
    if not 1 <= len(size_list) <= MAX_N_SIZES:
        raise ConfigError(f"--sizes must list 1 to {MAX_N_SIZES} maze sizes, e.g. 9,13,33; got {sizes!r}")
    for size in size_list:
        if size % 2 == 0 or not 5 <= size <= MAX_SIZE:
            raise ConfigError(f"--sizes must be odd integers in [5, {MAX_SIZE}] (walls included), e.g. 9,13,33; "
                              f"got {size}")
    return size_list


def _sweep_extrapolation(out, n_seeds: int, steps, config, sizes: Optional[str], max_ticks: Optional[int],
                         mazes: Optional[int]) -> None:
    from mesalab.experiments.extrapolation import (DEFAULT_MAX_TICKS, DEFAULT_MAZES, DEFAULT_SIZES, PRESET,
                                                   run_extrapolation, settings_of)
    from mesalab.experiments.sweep import load_sweep_config
    from mesalab.optimizers.thinking import ThinkingConfig, stored_config

    _check_seeds(n_seeds)
    _check_count("--steps", steps, *_steps_range(ThinkingConfig))
    overrides = ThinkingConfig.check_dict(_read_config_file(config, "maze-path"))  # the file's own values first
    if steps is not None:
        overrides["steps"] = steps
    size_list = _parse_sizes(",".join(map(str, DEFAULT_SIZES)) if sizes is None else sizes)
    max_ticks = DEFAULT_MAX_TICKS if max_ticks is None else max_ticks
    mazes = DEFAULT_MAZES if mazes is None else mazes
    settings = settings_of(overrides, size_list, max_ticks, mazes)  # the whole config and the test settings
    out = check_output_dir(Path("sweeps") / PRESET if out is None else out)
    _check_new_or_same_kind(out, PRESET)
    if (out / "sweep.json").exists():  # resuming: the same check run_extrapolation makes, before any display
        old = load_sweep_config(out)
        old["config"] = stored_config(old.get("config") or {}).to_dict()
        if any(old.get(k) != v for k, v in {"kind": PRESET, "preset": PRESET, **settings}.items()):
            raise ConfigError(f"{out} holds an extrapolation sweep with other settings; pass a new --out or the "
                              f"same settings to resume it")
    console.print(f"[bold]mesalab sweep extrapolation[/]: {n_seeds} seed(s), test sizes {size_list}, up to "
                  f"{max_ticks} ticks, {mazes} mazes per size")
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(), console=console) as progress:
        bar = progress.add_task("compiling", total=1)
        out_dir = run_extrapolation(out, list(range(n_seeds)), overrides, size_list, max_ticks, mazes,
                                    on_progress=lambda what, i, n: progress.update(bar, description=what,
                                                                                   completed=i, total=n))
    print_report_sentences(out_dir / "report.html", r"<li[^>]*>([^<]*)</li>")


def print_sweep_summary(sweep_dir: Path) -> None:
    from mesalab.experiments.sweep import analyse_sweep

    a = analyse_sweep(sweep_dir)
    table = Table(title=f"{a.preset.name}: {a.n_cells} of {a.n_expected} cells finished")
    table.add_column(a.preset.dial.name)
    shown = [s for s in a.series if s.metric in {v.metric for v in a.verdicts}]
    for s in shown:
        table.add_column((s.panel + ": " if s.panel != "all" else "") + s.metric)
    for v in a.preset.dial.values:
        row = [a.preset.dial.display(v)]
        for s in shown:
            p = next((p for p in s.points if p.value == v), None)
            row.append("-" if p is None else f"{p.mean:.2f} [{p.ci_low:.2f}, {p.ci_high:.2f}]")
        table.add_row(*row)
    console.print(table)
    for v in a.verdicts:
        colour = {"supported": "green", "contradicted": "red"}.get(v.verdict, "yellow")
        console.print(f"[{colour}]{v.verdict.upper()}[/] ", end="")
        console.print(v.sentence, markup=False)
    console.print(f"Report: {Path(sweep_dir) / 'report.html'}")


@app.command()
def report(run_dir: Path = typer.Argument(..., help="a run or sweep folder written by `mesalab run` or `mesalab sweep`")) -> None:
    """Re-render report.html (and figures) of a run or sweep folder from its config and results database."""
    from mesalab.report import build_report

    _check_run_folder(run_dir)
    from mesalab.pipeline import load_run_config

    if (run_dir / "sweep.json").exists():
        from mesalab.experiments.sweep import load_sweep_config
        from mesalab.report.sweep import build_sweep_report, build_toy_report

        from mesalab.report.thinking import build_extrapolation_report

        build = {"toy-model": build_toy_report, "extrapolation": build_extrapolation_report}.get(
            load_sweep_config(run_dir).get("kind"), build_sweep_report)
        console.print(f"Report: {build(run_dir)}")
        return
    if load_run_config(run_dir).get("kind") == "icl":
        from mesalab.report.icl import build_icl_report

        console.print(f"Report: {build_icl_report(run_dir)}")
        return
    path = build_report(run_dir)
    console.print(f"Report: {path}")


def main(argv: list[str] | None = None) -> int:
    try:
        rv = app(args=argv, prog_name="mesalab", standalone_mode=False)
        if isinstance(rv, int) and rv != 0:  # typer returns exit codes (130 for Ctrl-C) in this mode
            if rv == 130:
                err_console.print("interrupted: finished results are kept; unfinished ones were not written",
                                  markup=False)
            return rv
    except MesalabError as e:
        err_console.print(f"error: {e}", markup=False, highlight=False, soft_wrap=True)
        return 2
    except _click_exc.UsageError as e:
        if type(e).__name__.startswith("NoArgsIsHelp"):
            return 0
        cmd = e.ctx.command_path if e.ctx else "mesalab"
        err_console.print(f"error: {e.format_message()} (see `{cmd} --help`)", markup=False, highlight=False,
                          soft_wrap=True)
        return 2
    except OSError as e:  # a path that turned unwritable or unreadable after the up-front checks (or a full disk)
        where = f" ({e.filename})" if e.filename else ""
        err_console.print(f"error: {e.strerror or e}{where}; check that path's permissions and free space, then re-run "
                          "(finished results are kept)", markup=False, highlight=False, soft_wrap=True)
        return 2
    except typer.Abort:
        err_console.print("aborted: no results were written for unfinished seeds", markup=False)
        return 130
    except KeyboardInterrupt:
        err_console.print("interrupted: finished results are kept; unfinished ones were not written", markup=False)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())


def entry() -> None:
    """Console-script entry point."""
    sys.exit(main())
