"""Study kinds and the catalogue the command line reads.

Every experiment kind is a :class:`~mesalab.studies.contract.Study` registered here. ``mesalab run NAME`` and
``mesalab sweep NAME`` ask :func:`find` for the kind that answers to NAME, ``mesalab report FOLDER`` asks
:func:`study_of_folder`, ``mesalab tasks`` lists :func:`all_studies`. A new kind registers itself with
:func:`register` when its module is imported; nothing else (no CLI edit) is needed. See
``docs/architecture.md`` and ``tests/test_study_contract.py`` for a complete example kind.

Imports here stay light: worker processes import this package before pinning themselves to a core, and JAX
must not start before that.
"""

from __future__ import annotations

from pathlib import Path

from mesalab.errors import ConfigError, CorruptRunError
from mesalab.studies.contract import Listing, Options, Study, prepare, run_study

BUILTIN = ("mesalab.studies.gridworld_run", "mesalab.studies.agent_run", "mesalab.studies.icl_run", "mesalab.studies.sweep",
           "mesalab.studies.extrapolation", "mesalab.studies.toy_model", "mesalab.studies.probe_run",
           "mesalab.studies.maze_probe_run", "mesalab.studies.icl_probe_run")
_KINDS: dict[str, Study] = {}
_loaded = [False]


def register(study: Study) -> Study:
    """Add a kind to the catalogue (replacing one of the same ``kind``); returns it."""
    if not study.kind or study.command not in ("run", "sweep", "probe"):
        raise ValueError("a study needs a kind and a command ('run', 'sweep' or 'probe')")
    _KINDS[study.kind] = study
    return study


def _load_builtin() -> None:
    if not _loaded[0]:
        import importlib

        for module in BUILTIN:
            importlib.import_module(module)
        _loaded[0] = True


def all_studies() -> list[Study]:
    _load_builtin()
    return list(_KINDS.values())


def get_study(kind: str) -> Study:
    _load_builtin()
    if kind not in _KINDS:
        raise CorruptRunError(f"unknown study kind {kind!r}; kinds: {sorted(_KINDS)} (a folder of a newer mesalab, or "
                              "of a kind whose module is not imported?)")
    return _KINDS[kind]


def find(command: str, name: str) -> Study:
    """The kind that answers to ``mesalab COMMAND NAME`` (one-line error listing the names if none does)."""
    from mesalab.experiments.user_presets import is_preset_file

    if command == "sweep" and is_preset_file(name):
        return get_study("sweep")  # a preset file of the user's
    names, tasks = {}, {}
    for s in all_studies():
        for listing in s.names():
            names.setdefault(s.command, {})[listing.name] = s
            if listing.task:
                tasks[listing.task] = (s.command, listing.name)
    if name in names.get(command, {}):
        return names[command][name]
    if name in tasks:
        other, runner = tasks[name]
        raise ConfigError(f"{name} is trained and tested by `mesalab {other} {runner}`; run that")
    other = "sweep" if command == "run" else "run"
    if name in names.get(other, {}):
        raise ConfigError(f"{name} is run by `mesalab {other} {name}`; run that")
    known = ", ".join(names.get(command, {}))
    if command == "run":
        raise ConfigError(f"unknown task {name!r}; choose one of: {known} (see `mesalab tasks`; a task of your own: "
                          "pass --plugin MODULE before the command, or install its package)")
    raise ConfigError(f"unknown preset {name!r}; choose one of: {known}")


def study_of_folder(path: Path) -> tuple[Study, dict]:
    """The kind of a results folder (from its config) and that config."""
    from mesalab.results.folder import folder_meta

    from mesalab.studies.contract import load_folder_plugins

    meta = folder_meta(path)
    if meta is None:
        raise CorruptRunError(f"{path} is not a mesalab run folder (no config.json or sweep.json); pass the folder "
                              "`mesalab run` or `mesalab sweep` wrote")
    load_folder_plugins(path, meta)
    return get_study(meta.get("kind", "run")), meta


def launch(command: str, name: str, out: Path | str | None = None, *, workers: int | None = None,
           backend: str = "local", address: str | None = None, on_plan=None, on_progress=None, **options):
    """Run (or resume) ``mesalab COMMAND NAME`` from Python and return its analysis, e.g.
    ``launch("sweep", "simplicity", "sweeps/s", seeds=2, config={"total_steps": 8192}, episodes=30)``.
    ``options``: the fields of :class:`Options` (``seeds`` is a count; ``config`` a dict of settings)."""
    study = find(command, name)
    options.setdefault("config_given", bool(options.get("config")))
    opts = Options(**options, workers=workers, backend=backend, address=address)
    settings, folder = prepare(study, name, opts, None if out is None else Path(out))
    return run_study(study, settings, folder, workers, backend, address, on_plan=on_plan, on_progress=on_progress)


__all__ = ["launch", "Listing", "Options", "Study", "all_studies", "find", "get_study", "prepare", "register", "run_study",
           "study_of_folder"]
