"""The ``mesalab`` command line: ``run``, ``diagnose``, ``sweep``, ``report``, ``tasks``.

User errors (unknown task, bad option values, malformed config, corrupt run folder) print one line that
names the fix and exit with status 2; no traceback.
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

from mesalab.errors import ConfigError, MesalabError

try:  # typer >= 0.20 vendors click
    from typer._click import exceptions as _click_exc
except ImportError:  # pragma: no cover - older typer with click as a dependency
    import click.exceptions as _click_exc

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


def _read_config_file(config_path: Optional[Path], what: str) -> dict:
    """The JSON object of ``--config`` (``{}`` when not given), with one-line errors naming the fix."""
    if config_path is None:
        return {}
    if not config_path.exists():
        raise ConfigError(f"config file {config_path} not found; pass an existing JSON file to --config")
    try:
        overrides = json.loads(config_path.read_text())
    except json.JSONDecodeError as e:
        raise ConfigError(f"config file {config_path} is not valid JSON ({e.msg} at line {e.lineno}); fix the file") from None
    if not isinstance(overrides, dict):
        raise ConfigError(f"config file {config_path} must hold a JSON object of {what} settings")
    return overrides


def _load_config(task: str, config_path: Optional[Path], steps: Optional[int]):
    from mesalab.optimizers import PPOConfig
    from mesalab.tasks import get_task

    get_task(task)
    overrides = _read_config_file(config_path, "PPO")
    if overrides.get("task", task) != task:
        raise ConfigError(f"config file names task {overrides['task']!r} but the command names {task!r}; make them agree")
    overrides["task"] = task
    if steps is not None:
        overrides["total_steps"] = steps
    return PPOConfig.from_dict(overrides)


@app.command()
def run(
    task: str = typer.Argument(..., help="task name (see `mesalab tasks`)"),
    seeds: int = typer.Option(4, "--seeds", help="number of training seeds (0, 1, ..., K-1)"),
    steps: Optional[int] = typer.Option(None, "--steps", help="environment steps per seed (default 300000)"),
    out: Optional[Path] = typer.Option(None, "--out", help="run folder (default runs/TASK-TIME)"),
    config: Optional[Path] = typer.Option(None, "--config", help="JSON file of PPO settings to override"),
    episodes: int = typer.Option(1000, "--episodes", help="evaluation episodes per split and seed"),
    workers: Optional[int] = typer.Option(None, "--workers", help="worker processes (default: one per core on CPU; 0 = in-process)"),
    first_seed: int = typer.Option(0, "--first-seed", help="seeds are first_seed ... first_seed+K-1"),
) -> None:
    """Train on TASK, evaluate on its shifted test distribution, print verdicts and write the report."""
    from mesalab.pipeline import run_experiment
    from mesalab.runner import EvalSettings

    if seeds < 1:
        raise ConfigError(f"--seeds must be at least 1, got {seeds}")
    if task == "icl-gd":
        return _run_icl(seeds, steps, out, config, first_seed)
    if task == "maze-path":
        raise ConfigError("maze-path is trained and tested across sizes by `mesalab sweep extrapolation`; run that")
    if episodes < 1:
        raise ConfigError(f"--episodes must be at least 1, got {episodes}")
    if workers is not None and workers < 0:
        raise ConfigError(f"--workers must be >= 0, got {workers}")
    cfg = _load_config(task, config, steps if steps is not None else (None if config else 300_000))
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


def _run_icl(seeds: int, steps: Optional[int], out: Optional[Path], config_path: Optional[Path], first_seed: int) -> None:
    from mesalab.icl_pipeline import run_icl
    from mesalab.optimizers.supervised import ICLConfig

    overrides = _read_config_file(config_path, "ICLConfig")
    if steps is not None:
        overrides["steps"] = steps
    cfg = ICLConfig.from_dict(overrides)
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
    table.add_column("train success")
    table.add_column(f"test {task.base_objective.name} (base)")
    for p in task.proxies:
        table.add_column(f"test {p.name} (proxy)")
    table.add_column("verdict")
    get = {(r["seed"], r["split"], r["objective"]): r for r in ev}

    def fmt(r):
        return f"{r['competent_rate']:.2f} [{r['ci_low']:.2f}, {r['ci_high']:.2f}]"

    for v in verdicts:
        s = v["seed"]
        label = v["label"] + (f" toward '{v['proxy']}'" if v["proxy"] else "") + f" (conf {v['confidence']:.2f})"
        table.add_row(str(s), fmt(get[(s, "train", task.base_objective.name)]),
                      fmt(get[(s, "test", task.base_objective.name)]),
                      *[fmt(get[(s, "test", p.name)]) for p in task.proxies], label)
    console.print(table)
    console.print(f"[bold]Verdict:[/] {verdict_summary(verdicts)}")
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
    levels: Optional[int] = typer.Option(None, "--levels", help="evaluation levels per split used to fit the behavioral objective (default 200, or all the run has)"),
    bootstrap: int = typer.Option(1000, "--bootstrap", help="bootstrap replicates for the IRL weight intervals"),
    seed: Optional[list[int]] = typer.Option(None, "--seed", help="diagnose only this seed (repeatable; default all)"),
) -> None:
    """Fit the behavioral objective (exact MCE-IRL), optimization power (bits) and goal-directedness of every
    seed of a finished run, store them in its database and re-render its report."""
    from mesalab.pipeline import diagnose_run

    if not run_dir.is_dir():
        raise ConfigError(f"{run_dir} is not a folder; pass a run folder written by `mesalab run`")
    with Progress(TextColumn("{task.description}"), TimeElapsedColumn(), console=console, transient=True) as progress:
        stage = progress.add_task("loading", total=None)
        diagnose_run(run_dir, levels, bootstrap, seed or None,
                     on_stage=lambda s: progress.update(stage, description=s))
    print_objectives(run_dir)
    console.print(f"Report: {Path(run_dir) / 'report.html'}")


@app.command()
def sweep(
    preset: str = typer.Argument(..., help="pseudo-alignment-alpha | diversity | capacity | simplicity | statefulness | "
                                 "time-penalty | extrapolation | toy-model"),
    seeds: Optional[int] = typer.Option(None, "--seeds", help="seeds per dial value (default: the preset's, 5)"),
    backend: str = typer.Option("local", "--backend", help="local (pinned worker processes) or ray"),
    out: Optional[Path] = typer.Option(None, "--out", help="sweep folder (default sweeps/PRESET); re-running resumes it"),
    workers: Optional[int] = typer.Option(None, "--workers", help="parallel workers (default: one per core on CPU; 0 = in-process, local only)"),
    address: Optional[str] = typer.Option(None, "--address", help="Ray cluster address (default: start a local Ray for this command)"),
    steps: Optional[int] = typer.Option(None, "--steps", help="override the environment steps of every cell"),
    config: Optional[Path] = typer.Option(None, "--config", help="JSON file of PPO settings to override in every cell"),
    episodes: Optional[int] = typer.Option(None, "--episodes", help="override the evaluation levels per split and cell"),
    irl_levels: Optional[int] = typer.Option(None, "--irl-levels", help="override the levels used for goal-directedness (0 skips it)"),
    compare: Optional[Path] = typer.Option(None, "--compare", help="toy-model only: a diversity sweep folder to set beside the model"),
    sizes: str = typer.Option("9,13,21,33,45", "--sizes", help="extrapolation only: maze sizes to test"),
    max_ticks: int = typer.Option(400, "--max-ticks", help="extrapolation only: test every tick count up to this"),
    mazes: int = typer.Option(100, "--mazes", help="extrapolation only: unseen mazes per size"),
) -> None:
    """Run a preset experiment (a grid of dial values x seeds), commit each finished batch, test the
    hypothesis for a trend along the dial and write the sweep report. Re-running the same command resumes."""
    from mesalab.experiments.presets import EXTRAPOLATION, TOY_MODEL, get_preset

    if preset == TOY_MODEL:
        from mesalab.experiments.toy_model import run_toy_model

        if compare is not None and not compare.is_dir():
            raise ConfigError(f"--compare {compare} is not a folder; pass a diversity sweep folder")
        print_report_sentences(run_toy_model(out, compare) / "report.html", r"<li[^>]*>([^<]*)</li>")
        return
    if preset == EXTRAPOLATION:
        _sweep_extrapolation(out, 1 if seeds is None else seeds, steps, config, sizes, max_ticks, mazes)
        return
    p = get_preset(preset)
    n_seeds = p.default_seeds if seeds is None else seeds
    if n_seeds < 1:
        raise ConfigError(f"--seeds must be at least 1, got {n_seeds}")
    if workers is not None and workers < 0:
        raise ConfigError(f"--workers must be >= 0, got {workers}")
    if compare is not None:
        raise ConfigError("--compare is for the toy-model preset only")
    overrides = _read_config_file(config, "PPO")
    if steps is not None:
        overrides["total_steps"] = steps
    eval_overrides = {k: v for k, v in (("episodes", episodes), ("irl_levels", irl_levels)) if v is not None}
    if eval_overrides.get("episodes", 1) < 1 or eval_overrides.get("irl_levels", 0) < 0:
        raise ConfigError("--episodes must be at least 1 and --irl-levels at least 0")
    from mesalab.experiments.sweep import run_sweep

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


def _sweep_extrapolation(out, n_seeds: int, steps, config, sizes: str, max_ticks: int, mazes: int) -> None:
    from mesalab.experiments.extrapolation import run_extrapolation

    if n_seeds < 1:
        raise ConfigError(f"--seeds must be at least 1, got {n_seeds}")
    overrides = _read_config_file(config, "maze-path")
    if steps is not None:
        overrides["steps"] = steps
    try:
        size_list = [int(x) for x in sizes.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"--sizes must be comma-separated odd integers, e.g. 9,13,33; got {sizes!r}") from None
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

    if not run_dir.is_dir():
        raise ConfigError(f"{run_dir} is not a folder; pass a run folder written by `mesalab run`")
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
        rv = app(args=argv, standalone_mode=False)
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
