"""The study contract: what every experiment kind provides, so that one engine runs it, one results layer
stores it and one report path renders it.

A kind is one object (a subclass of :class:`Study`, registered with :func:`mesalab.studies.register`)::

    configure(name, options) -> settings        check every input, before anything is written (one-line errors)
    check_folder(folder, settings)              a new folder, or one holding this study with the same settings
    start(folder, settings) -> meta             write the folder's config (first, atomically; merged on resume)
    plan(settings, done) -> [Batch]             the batches of cells still to measure (``done``: finished cells)
    measure(batch, progress) -> result          pure; runs in a worker (pinned process, GPU, or Ray actor)
    commit(folder, batch, result)               checkpoints, then the batch's rows in one transaction
    analyse(folder) -> analysis                 read the results back into one analysed object
    report(folder, analysis) -> Path            the HTML report, rendered from that object
    summary(analysis) -> [renderable]           the terminal summary, rendered from the same object

``mesalab run NAME`` / ``mesalab sweep NAME`` find the kind that answers to NAME (:meth:`Study.names`),
``mesalab report FOLDER`` the kind stored in the folder's config, ``mesalab tasks`` lists every kind's names.
:func:`run_study` is the whole data path: configure -> folder -> plan -> execute (engine) -> analyse -> report.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from mesalab.errors import ConfigError, check_output_dir
from mesalab.results.folder import RunFolder, folder_meta


@dataclass(frozen=True)
class Listing:
    """One name a kind answers to, as ``mesalab tasks`` shows it."""

    name: str
    description: str
    objectives: str = "-"  # base objective / proxies
    dials: str = "-"  # what can be varied (train / test)
    task: str | None = None  # the task `mesalab tasks` lists it under, when not its name (e.g. maze-path)


@dataclass
class Options:
    """The command-line options of ``mesalab run`` and ``mesalab sweep`` (``None``: not given)."""

    seeds: int | None = None
    first_seed: int = 0
    steps: int | None = None
    config: dict = field(default_factory=dict)  # the --config file's JSON object ({} when not given)
    config_given: bool = False
    episodes: int | None = None
    irl_levels: int | None = None
    workers: int | None = None
    backend: str = "local"
    address: str | None = None
    compare: Path | None = None
    sizes: list[int] | None = None
    max_ticks: int | None = None
    mazes: int | None = None
    policy: str | None = None  # diagnose --policy MODULE:FUNCTION (an agent from outside mesalab)
    obs_mode: str | None = None  # diagnose --obs-mode: what that agent observes
    layers: list[str] | None = None  # probe --layer: the named activations to probe (default all but the heads)
    levels: int | None = None  # probe --levels: held-out levels per split
    probe_seeds: list[int] | None = None  # probe --seed: only these seeds of the run
    replace: bool = False  # probe --replace: recompute the folder's probes with new settings


class Study:
    """Base class of a study kind; see the module docstring for the contract."""

    kind: str = ""  # stored as the folder config's ``kind``
    command: str = "run"  # the command that starts it: "run" or "sweep"
    options: frozenset = frozenset({"seeds"})  # the Options fields it uses (others given are refused)
    meta_name: str = "config.json"
    db_name: str = "results.duckdb"
    cell_table: str = "cells"
    cell_key: str = "cell_id"
    schema = None  # a mesalab.results.tables.Schema
    config_what = "PPO"  # what a --config file holds, as error messages name it
    progress_label = "compiling + training"  # what the progress bar says while cells are measured
    missing = "no cell of it has finished; run it first"  # what the error says when its database is missing
    corrupt = "move it aside and re-run the command (its cells will be retrained)"  # ... or unreadable

    # -- what it is -------------------------------------------------------------------------------------------
    def names(self) -> list[Listing]:
        raise NotImplementedError

    def default_out(self, name: str) -> Path:
        import datetime as dt

        return Path("runs") / f"{name}-{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"

    def folder(self, path: Path | str) -> RunFolder:
        return RunFolder(path, self.schema, self.meta_name, self.db_name, self.cell_table, self.cell_key, self.missing,
                         self.corrupt)

    def header(self, settings) -> str:
        """The line printed before the work starts."""
        return f"mesalab {self.command} {settings['name']}"

    # -- before any work ----------------------------------------------------------------------------------------
    def configure(self, name: str, options: Options) -> dict:
        raise NotImplementedError

    def check_folder(self, folder: RunFolder, settings: dict) -> None:
        """Refuse a folder that holds something else, or this study with other settings (default: the folder
        must hold nothing or this kind and name with identical settings)."""
        meta = folder_meta(folder.path)
        if meta is None:
            if any((folder.path / n).exists() for n in ("results.duckdb", "sweep.duckdb")):
                raise ConfigError(f"{folder.path} holds results without a config; pass a new --out folder")
            return
        if meta.get("kind") != self.kind or meta.get("name", settings["name"]) != settings["name"]:
            raise ConfigError(f"{folder.path} holds {describe(meta)}, not {self.kind} {settings['name']!r}; pass a "
                              "new --out folder")
        if not self.same_settings(meta, settings):
            raise ConfigError(f"{folder.path} holds {describe(meta)} run with other settings; repeat its options to "
                              "resume it, or pass a new --out folder")
        if folder.has_results() and not self.plan(settings, folder.finished()):
            raise ConfigError(f"{folder.path} already holds a finished {self.kind} study of these settings; pass a new "
                              "--out folder")

    def same_settings(self, meta: dict, settings: dict) -> bool:
        return meta.get("settings") == settings.get("stored")

    def start(self, folder: RunFolder, settings: dict) -> dict:
        from mesalab.results.provenance import now, versions

        folder.create()
        if folder.has_meta():
            meta = folder.read_meta()
            meta["seeds"] = sorted(set(meta.get("seeds", [])) | set(settings.get("seeds", [])))
            meta.setdefault("resumed", []).append(now())
        else:
            meta = {"kind": self.kind, "name": settings["name"], "settings": settings.get("stored"),
                    "seeds": list(settings.get("seeds", [])), "versions": versions(), "created": now()}
        folder.write_meta(meta)
        return meta

    # -- the work ------------------------------------------------------------------------------------------------
    def plan(self, settings: dict, done: set):
        raise NotImplementedError

    def n_cells(self, settings: dict) -> int:
        """Cells of the whole study (finished or not)."""
        return sum(len(b.cells) for b in self.plan(settings, set()))

    def measure(self, batch, progress: Callable[[int], None] | None) -> Any:
        raise NotImplementedError

    def commit(self, folder: RunFolder, batch, result) -> None:
        raise NotImplementedError

    # -- reading it back -----------------------------------------------------------------------------------------
    def analyse(self, folder: RunFolder):
        raise NotImplementedError

    def report(self, folder: RunFolder, analysis) -> Path:
        raise NotImplementedError

    def summary(self, analysis) -> list:
        raise NotImplementedError


class SeedRun(Study):
    """A study whose cells are seeds of one config (``mesalab run``): ``config.json`` holds its kind, task,
    ``resume_keys`` settings and seeds; the ``runs`` table has one row per finished seed. A folder holding a run
    of the same task and settings is resumed (its missing seeds are trained); anything else is refused."""

    command = "run"
    cell_table, cell_key = "runs", "seed"
    resume_keys: tuple[str, ...] = ()  # the settings that must match to resume (and that config.json records)

    def check_folder(self, folder: RunFolder, settings: dict) -> None:
        from mesalab.errors import CorruptRunError

        meta = folder_meta(folder.path)
        if (folder.path / "sweep.json").exists():
            raise ConfigError(f"{folder.path} holds a sweep, not a run; pass a new --out folder")
        if meta is None:
            if folder.has_results():
                raise ConfigError(f"{folder.path} holds results without a config; pass a new --out folder")
            return
        if meta.get("kind", "run") != self.kind or meta.get("task") != settings["task"]:
            raise ConfigError(f"{folder.path} already holds a finished run of {meta.get('task')!r}; pass a new --out folder")
        if any(meta.get(k) != settings[k] for k in self.resume_keys):
            raise ConfigError(f"{folder.path} holds a run of {settings['task']} with other settings; repeat its options to "
                              "resume it, or pass a new --out folder")
        try:
            done = folder.finished()
        except CorruptRunError:
            raise ConfigError(f"{folder.path} holds a run whose results cannot be read; pass a new --out folder") from None
        if set(settings["seeds"]) <= done:
            raise ConfigError(f"{folder.path} already holds a finished run of these seeds; pass a new --out folder")

    def start(self, folder: RunFolder, settings: dict) -> dict:
        from mesalab.results.provenance import now, versions

        folder.create()
        if folder.has_meta():
            meta = folder.read_meta()
            meta["seeds"] = sorted(set(meta["seeds"]) | set(settings["seeds"]))
            meta.setdefault("resumed", []).append(now())
        else:
            meta = {"kind": self.kind, "task": settings["task"], **{k: settings[k] for k in self.resume_keys},
                    "seeds": list(settings["seeds"]), "versions": versions(), "created": now()}
        folder.write_meta(meta)
        settings["created"], settings["versions"] = meta["created"], meta["versions"]
        return meta


def check_sweep_folder(folder: RunFolder, kind: str, name: str) -> dict | None:
    """The config of a sweep folder of ``kind`` (``None`` for a new folder); one-line errors for a folder that
    holds a run or another kind of sweep."""
    meta = folder_meta(folder.path)
    if meta is None or not (folder.path / "sweep.json").exists():
        if meta is not None or (folder.path / "results.duckdb").exists():
            raise ConfigError(f"{folder.path} holds a run, not a sweep; pass a new --out folder")
        if (folder.path / "sweep.duckdb").exists():
            raise ConfigError(f"{folder.path} holds results without a config; pass a new --out folder")
        return None
    if meta.get("kind") != kind:
        raise ConfigError(f"{folder.path} holds {describe(meta)}, not of {name!r}; pass a new --out folder")
    return meta


def describe(meta: dict) -> str:
    """How a folder's config reads in an error message: ``a sweep of 'diversity'``, ``a run``..."""
    kind = meta.get("kind")
    if kind in ("run", "icl"):
        return "a run"
    name = meta.get("preset") or meta.get("name") or kind
    return f"a sweep of {name!r}" if meta.get("preset") or kind in ("sweep", "extrapolation", "toy-model") else \
        f"a {kind} study {name!r}"


def task_plugins(task_names) -> dict[str, str]:
    """``{task: plugin}`` for the tasks among ``task_names`` that a plugin registered (what a folder records)."""
    from mesalab.tasks import task_plugin

    return {t: task_plugin(t) for t in sorted(set(task_names)) if t and task_plugin(t)}


def load_folder_plugins(path: Path, meta: dict | None = None) -> None:
    """Load the plugins a results folder recorded for its tasks (a one-line error naming what to install when one
    cannot be loaded); nothing for a new folder or one of built-in tasks only."""
    from mesalab import plugins
    from mesalab.tasks import TASKS

    meta = folder_meta(path) if meta is None and Path(path).is_dir() else meta
    recorded = (meta or {}).get("plugins") or {}
    if isinstance(recorded, dict):
        for task, spec in recorded.items():
            if task not in TASKS and isinstance(spec, str):
                plugins.require(spec, task, str(path))
    if (meta or {}).get("preset_def"):  # a sweep of a user's preset file: its definition, as recorded
        from mesalab.experiments.presets import PRESETS
        from mesalab.experiments.user_presets import preset_from_dict

        preset = preset_from_dict(meta["preset_def"], f"{path}/sweep.json preset_def")
        PRESETS.setdefault(preset.name, preset)


def prepare(study: Study, name: str, options: Options, out: Path | None) -> tuple[dict, RunFolder]:
    """Every input checked (settings, then the folder), nothing written: ``(settings, folder)``."""
    path = check_output_dir(study.default_out(name) if out is None else out)
    load_folder_plugins(path)  # resuming a folder of a plugin's task: its plugin first
    settings = study.configure(name, options)
    settings.setdefault("name", name)
    folder = study.folder(path)
    study.check_folder(folder, settings)
    return settings, folder


def run_study(study: Study, settings: dict, folder: RunFolder, workers: int | None = None, backend: str = "local",
              address: str | None = None, on_plan: Callable[[int, int], None] | None = None,
              on_progress: Callable[[float], None] | None = None):
    """The data path of every kind: write the config, measure the cells the folder lacks (through the engine,
    committing each batch), analyse, render the report. Returns the analysis."""
    from mesalab.studies.engine import execute

    meta = study.start(folder, settings)
    plugins = settings.get("plugins") or {}
    if isinstance(meta, dict) and plugins and any(meta.get("plugins", {}).get(t) != p for t, p in plugins.items()):
        meta["plugins"] = {**meta.get("plugins", {}), **plugins}  # where each task of the folder comes from
        folder.write_meta(meta)
    batches = study.plan(settings, folder.finished())
    if on_plan:
        todo = sum(len(b.cells) for b in batches)
        on_plan(todo, study.n_cells(settings) - todo)
    execute(study, folder, batches, workers, backend, address, on_progress)
    analysis = study.analyse(folder)
    study.report(folder, analysis)
    return analysis
