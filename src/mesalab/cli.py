"""The ``mesalab`` command line: ``run``, ``diagnose``, ``probe``, ``sweep``, ``report``, ``tasks``.

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
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from mesalab.errors import ConfigError, MesalabError, check_output_dir
from mesalab.studies.settings import check_count as _check_count

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


@app.callback()
def _global_options(
    plugin: Optional[list[str]] = typer.Option(None, "--plugin", help="a module (or .py file) that registers tasks of "
                                               "your own; repeatable (also: MESALAB_PLUGINS=mod1,mod2)"),
) -> None:
    """mesalab: train learned algorithms, then measure what they optimize and whether it survives shift."""
    from mesalab.plugins import load_plugin

    for spec in plugin or []:
        load_plugin(spec)


@app.command()
def tasks() -> None:
    """List what `mesalab run` and `mesalab sweep` can run: every study kind's tasks and presets."""
    from mesalab.studies import all_studies

    table = Table(title="mesalab tasks")
    table.add_column("task", style="bold")
    table.add_column("description")
    table.add_column("base objective / proxies")
    table.add_column("dials (train / test)")
    for study in all_studies():
        if study.command != "run" and study.kind not in LISTED_SWEEP_KINDS:
            continue
        for t in study.names():
            table.add_row(t.task or t.name, t.description, t.objectives, t.dials)
    console.print(table)


LISTED_SWEEP_KINDS = ("extrapolation",)  # sweep kinds that train a task of their own (shown by `mesalab tasks`)


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


def _check_seeds(seeds: Optional[int], first_seed: int = 0) -> None:
    _check_count("--seeds", seeds, 1, MAX_SEEDS)
    _check_count("--first-seed", first_seed, 0, MAX_SEED - (4 if seeds is None else seeds) + 1, " (seeds are 32-bit)")


def _check_options(study, command: str, name: str, **given) -> None:
    """Refuse an option the study does not use (instead of ignoring it)."""
    _reject_unused(f"{command} {name}", **{k: v for k, v in given.items() if k not in study.options})


def _work(study, settings, folder, workers: Optional[int], backend: str = "local", address: Optional[str] = None):
    """Run a prepared study with a progress bar; return its analysis."""
    from mesalab.studies import run_study

    if backend == "local" and workers == 0:
        # in-process training blocks inside XLA where Python's Ctrl-C handler cannot run: let SIGINT end the
        # process at once (safe: configs, checkpoints and each batch's results are written atomically)
        import signal

        signal.signal(signal.SIGINT, signal.SIG_DFL)
    console.print(study.header(settings))
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed:.1f}/{task.total:.0f} cells"),
                  TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(), console=console) as progress:
        bar = progress.add_task("planning", total=1)

        def on_plan(todo, done):
            if done:
                console.print(f"resuming: {done} cell(s) already finished, {todo} to run", markup=False)
            progress.update(bar, description=study.progress_label, total=max(todo, 1), completed=0 if todo else 1)

        analysis = run_study(study, settings, folder, workers, backend, address, on_plan=on_plan,
                             on_progress=lambda n: progress.update(bar, completed=n))
    _print(study.summary(analysis))


def _print(renderables: list) -> None:
    for r in renderables:
        console.print(r)


@app.command()
def run(
    task: str = typer.Argument(..., help="task name (see `mesalab tasks`)"),
    seeds: Optional[int] = typer.Option(None, "--seeds", help=f"number of training seeds (0, 1, ..., K-1; default 4), 1..{MAX_SEEDS}"),
    steps: Optional[int] = typer.Option(None, "--steps", help="environment steps per seed (default 300000; at most "
                                        "1e9), or Adam steps for icl-gd (at most 1e7)"),
    out: Optional[Path] = typer.Option(None, "--out", help="run folder (default runs/TASK-TIME); a new folder, or "
                                       "one holding an unfinished run of the same settings (resumed)"),
    config: Optional[Path] = typer.Option(None, "--config", help="JSON file of PPO settings to override"),
    episodes: Optional[int] = typer.Option(None, "--episodes", help="evaluation episodes per split and seed (default "
                                           f"1000), 1..{MAX_EPISODES} (seeds x episodes <= {MAX_SEED_EPISODES})"),
    workers: Optional[int] = typer.Option(None, "--workers", help="worker processes (default: one per core on CPU; "
                                          f"0 = in-process; at most {MAX_WORKERS})"),
    first_seed: int = typer.Option(0, "--first-seed", help="seeds are first_seed ... first_seed+K-1 (32-bit)"),
) -> None:
    """Train on TASK, evaluate on its shifted test distribution, print verdicts and write the report. Re-running
    the same command in the same folder resumes the seeds that did not finish."""
    from mesalab.studies import Options, find, prepare

    _check_seeds(seeds, first_seed)
    _check_count("--episodes", episodes, 1, MAX_EPISODES)
    _check_count("--workers", workers, 0, MAX_WORKERS)
    study = find("run", task)
    _check_options(study, "run", task, episodes=episodes, workers=workers)
    options = Options(seeds=seeds, first_seed=first_seed, steps=steps, episodes=episodes, workers=workers,
                      config=_read_config_file(config, study.config_what), config_given=config is not None)
    settings, folder = prepare(study, task, options, out)
    _work(study, settings, folder, workers)


@app.command()
def diagnose(
    run_dir: Optional[Path] = typer.Argument(None, help="a run folder written by `mesalab run` (or by `diagnose --policy`)"),
    levels: Optional[int] = typer.Option(None, "--levels", help="evaluation levels per split used to fit the behavioral objective (default 200, or all the run has; at most the run's episodes)"),
    bootstrap: int = typer.Option(1000, "--bootstrap", help=f"bootstrap replicates for the IRL weight intervals, {BOOTSTRAP_RANGE[0]}..{BOOTSTRAP_RANGE[1]}"),
    seed: Optional[list[int]] = typer.Option(None, "--seed", help="diagnose only this seed (repeatable; default all)"),
    policy: Optional[str] = typer.Option(None, "--policy", help="MODULE:FUNCTION of an agent trained outside mesalab: "
                                         "probs(obs uint8[B, ...]) -> float[B, 4] (with --task and --out)"),
    task: Optional[str] = typer.Option(None, "--task", help="with --policy: the task to diagnose the agent on"),
    out: Optional[Path] = typer.Option(None, "--out", help="with --policy: the run folder to write (new, or an "
                                       "unfinished one of the same settings)"),
    obs_mode: Optional[str] = typer.Option(None, "--obs-mode", help="with --policy: what the agent observes "
                                           "(egocentric, global or lean; default the task's own)"),
    episodes: Optional[int] = typer.Option(None, "--episodes", help=f"with --policy: evaluation episodes per split "
                                           f"(default 1000), 1..{MAX_EPISODES}"),
    seeds: Optional[int] = typer.Option(None, "--seeds", help="with --policy: evaluation seeds (default 1)"),
) -> None:
    """Fit the behavioral objective (exact MCE-IRL), optimization power (bits) and goal-directedness of every
    seed of a finished run, store them in its database and re-render its report. With --policy, diagnose an agent
    trained outside mesalab on --task instead, writing a run folder and report for it in --out."""
    from mesalab.report.terminal import objectives_summary
    from mesalab.studies import study_of_folder

    _check_count("--levels", levels, 1, MAX_LEVELS)
    _check_count("--bootstrap", bootstrap, *BOOTSTRAP_RANGE)
    for s in seed or []:
        _check_count("--seed", s, 0, MAX_SEED)
    if policy is not None:
        _diagnose_agent(run_dir, policy, task, out, obs_mode, episodes, seeds, levels, bootstrap, seed)
        return
    _reject_unused("diagnose RUN_DIR", task=task, out=out, obs_mode=obs_mode, episodes=episodes, seeds=seeds)
    if run_dir is None:
        raise ConfigError("pass a run folder (`mesalab diagnose RUN_DIR`) or an outside agent (`mesalab diagnose "
                          "--policy MODULE:FUNCTION --task TASK --out DIR`)")
    _check_run_folder(run_dir)
    if not (run_dir / "config.json").exists():
        raise ConfigError(f"{run_dir} is not a mesalab run folder (no config.json); pass the folder `mesalab run` wrote")
    study, meta = study_of_folder(run_dir)
    if not hasattr(study, "diagnose"):
        raise ConfigError(f"{run_dir} is an {meta.get('task', study.kind)} run (no behavioral objective to fit); pass "
                          "a folder of `mesalab run TASK`")
    study.check_diagnose(study.folder(run_dir), meta, levels, seed)
    with Progress(TextColumn("{task.description}"), TimeElapsedColumn(), console=console, transient=True) as progress:
        stage = progress.add_task("loading", total=None)
        analysis = study.diagnose(study.folder(run_dir), levels, bootstrap, seed or None,
                                  on_stage=lambda s: progress.update(stage, description=s))
    _print(objectives_summary(analysis))
    console.print(f"Report: {Path(run_dir) / 'report.html'}")


@app.command()
def probe(
    run_dir: Path = typer.Argument(..., help="a run folder written by `mesalab run TASK`"),
    layer: Optional[list[str]] = typer.Option(None, "--layer", help="a named activation to probe (repeatable; default "
                                              "every one but the heads; an unknown name lists the model's)"),
    levels: Optional[int] = typer.Option(None, "--levels", help="held-out levels per split (default 500), 20..20000; extrapolation folders: mazes per size (default 100), 20..5000; icl-gd folders: sequences (default 2000), 100..100000"),
    steps: Optional[int] = typer.Option(None, "--steps", help="states recorded per level (default 8), 1..64"),
    seed: Optional[list[int]] = typer.Option(None, "--seed", help="probe only this seed (repeatable; default all)"),
    workers: Optional[int] = typer.Option(None, "--workers", help="worker processes (default: one per core on CPU; "
                                          f"0 = in-process; at most {MAX_WORKERS})"),
    replace: bool = typer.Option(False, "--replace", help="recompute the folder's probes (e.g. with other settings)"),
    sizes: Optional[str] = typer.Option(None, "--sizes", help="extrapolation folders only: maze sizes to probe "
                                        "(default: the training size and 21)"),
    max_ticks: Optional[int] = typer.Option(None, "--max-ticks", help="extrapolation folders only: ticks to run "
                                            "(default: 1.5 x what dead-end filling or a wavefront needs)"),
) -> None:
    """Look inside the trained models of a run for their mesa-objective: linear probes for every candidate
    target (with control tasks and a random-initialised baseline), steering vectors and retargeting. Writes
    its probe database and activation datasets into RUN_DIR and adds "Inside the model" to its report.
    On a `mesalab sweep extrapolation` folder: which maze algorithm the recall networks run (dead-end filling
    or a wavefront from the ends), from the order of their decisions and probes of their hidden state. On a
    `mesalab run icl-gd` folder: what each transformer layer writes into the query and context tokens (the
    predictions of k-step gradient descent and least squares), against the input and an untrained model."""
    from mesalab.results.folder import folder_meta
    from mesalab.studies import Options, get_study, prepare

    _check_run_folder(run_dir)
    _check_count("--workers", workers, 0, MAX_WORKERS)
    for s in seed or []:
        _check_count("--seed", s, 0, MAX_SEED)
    kind = (folder_meta(run_dir) or {}).get("kind")
    study = get_study({"extrapolation": "maze-path-probe", "icl": "icl-probe"}.get(kind, "probe"))
    options = Options(layers=layer or None, levels=levels, steps=steps, probe_seeds=seed or None, workers=workers,
                      replace=replace, sizes=_parse_sizes(sizes), max_ticks=max_ticks)
    settings, folder = prepare(study, str(run_dir), options, run_dir)
    _work(study, settings, folder, workers)


def _diagnose_agent(run_dir, policy, task, out, obs_mode, episodes, seeds, levels, bootstrap, seed) -> None:
    """``mesalab diagnose --policy``: an outside agent through the ``agent`` study kind (in this process)."""
    from mesalab.studies import Options, get_study, prepare

    if run_dir is not None:
        raise ConfigError("--policy diagnoses a new agent into --out; drop the RUN_DIR argument (or drop --policy to "
                          "re-diagnose that folder)")
    _reject_unused("diagnose --policy", levels=levels, seed=seed or None)
    if bootstrap != 1000:
        raise ConfigError("--bootstrap is not used by `mesalab diagnose --policy` (it uses the run's 1000); drop it")
    if task is None or out is None:
        raise ConfigError("`mesalab diagnose --policy` needs --task TASK and --out DIR")
    _check_seeds(seeds)
    _check_count("--episodes", episodes, 1, MAX_EPISODES)
    study = get_study("agent")
    options = Options(seeds=seeds, episodes=episodes, policy=policy, obs_mode=obs_mode, workers=0)
    settings, folder = prepare(study, task, options, out)
    _work(study, settings, folder, 0)


def _check_run_folder(run_dir: Path) -> None:
    """A one-line error unless ``run_dir`` is a folder this command can rewrite (its report and tables)."""
    if not run_dir.is_dir():
        raise ConfigError(f"{run_dir} is not a folder; pass a run folder written by `mesalab run`")
    check_output_dir(run_dir, "run folder")


def _parse_sizes(sizes: Optional[str]) -> Optional[list[int]]:
    if sizes is None:
        return None
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


@app.command()
def sweep(
    preset: str = typer.Argument(..., help="a preset (pseudo-alignment-alpha | diversity | capacity | simplicity | "
                                 "statefulness | time-penalty | icl-depth | ...), extrapolation or toy-model"),
    seeds: Optional[int] = typer.Option(None, "--seeds", help=f"seeds per dial value (default: the preset's, 5), 1..{MAX_SEEDS}"),
    backend: str = typer.Option("local", "--backend", help="local (pinned worker processes) or ray"),
    out: Optional[Path] = typer.Option(None, "--out", help="sweep folder (default sweeps/PRESET); re-running resumes it"),
    workers: Optional[int] = typer.Option(None, "--workers", help="parallel workers (default: one per core on CPU; 0 = in-process, local only; at most "
                                          f"{MAX_WORKERS})"),
    address: Optional[str] = typer.Option(None, "--address", help="Ray cluster address (default: start a local Ray for this command)"),
    steps: Optional[int] = typer.Option(None, "--steps", help="override the environment steps of every cell (at most 1e9; "
                                        "ICL and extrapolation: SGD steps, at most 1e7)"),
    config: Optional[Path] = typer.Option(None, "--config", help="JSON file of settings to override in every cell"),
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
    from mesalab.experiments.presets import EVAL_RANGES
    from mesalab.studies import Options, find, prepare
    from mesalab.studies.engine import check_backend

    _check_count("--seeds", seeds, 1, MAX_SEEDS)
    _check_count("--workers", workers, 0, MAX_WORKERS)
    _check_count("--episodes", episodes, *EVAL_RANGES["episodes"])
    _check_count("--irl-levels", irl_levels, *EVAL_RANGES["irl_levels"])
    _check_count("--max-ticks", max_ticks, 1, MAX_TICKS)
    _check_count("--mazes", mazes, 1, MAX_MAZES)
    if backend not in ("local", "ray"):
        raise ConfigError(f"unknown backend {backend!r}; use --backend local or --backend ray")
    study = find("sweep", preset)
    _check_options(study, "sweep", preset, seeds=seeds, workers=workers, address=address, steps=steps, config=config,
                   episodes=episodes, irl_levels=irl_levels, compare=compare, sizes=sizes, max_ticks=max_ticks,
                   mazes=mazes, backend=None if backend == "local" else backend)
    check_backend(backend, workers, address)
    options = Options(seeds=seeds, steps=steps, episodes=episodes, irl_levels=irl_levels, workers=workers,
                      backend=backend, address=address, compare=compare, sizes=_parse_sizes(sizes),
                      max_ticks=max_ticks, mazes=mazes,
                      config=_read_config_file(config, study.config_what), config_given=config is not None)
    settings, folder = prepare(study, preset, options, out)
    _work(study, settings, folder, workers, backend, address)


@app.command()
def report(run_dir: Path = typer.Argument(..., help="a run or sweep folder written by `mesalab run` or `mesalab sweep`")) -> None:
    """Re-render report.html (and figures) of a run or sweep folder from its config and results database."""
    from mesalab.studies import study_of_folder

    _check_run_folder(run_dir)
    study, _ = study_of_folder(run_dir)
    folder = study.folder(run_dir)
    console.print(f"Report: {study.report(folder, study.analyse(folder))}")


def main(argv: list[str] | None = None) -> int:
    from mesalab.compile_cache import enable

    enable()  # compiled programs are kept on disk for the next run (MESALAB_COMPILE_CACHE=off turns it off)
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
