"""Plugins: Python modules that define tasks (or agents, or presets) outside ``src/mesalab``.

A plugin is any module that calls :func:`mesalab.tasks.register_task` when imported. mesalab finds plugins in three
ways, in every process it starts (the command line, its pinned worker processes, Ray actors) and in later commands:

- **installed packages** declare an entry point in the group ``mesalab.tasks`` (``pyproject.toml``)::

      [project.entry-points."mesalab.tasks"]
      green-door = "green_door.tasks"

  Entry points are loaded the first time a task name is not found among the registered ones, so installing a
  package is enough: ``mesalab run green-door`` finds it.
- ``--plugin MODULE`` on the command line (repeatable; a module name on ``sys.path`` or a path to a ``.py`` file);
- the environment variable ``MESALAB_PLUGINS`` (the same specs, separated by ``,``).

A plugin loaded by ``--plugin`` is added to ``MESALAB_PLUGINS`` of this process, so the worker processes it spawns
load it too. A run or sweep folder records the plugin that defined each of its tasks (``config.json``:
``plugins``), so ``mesalab report``, ``mesalab diagnose`` and resuming load it again; when it cannot be imported
the command says, in one line, what to install.

This module only imports; it knows nothing of tasks (the registry records which plugin is loading while a task
registers, through :func:`current_plugin`).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

from mesalab.errors import ConfigError

ENV_VAR = "MESALAB_PLUGINS"
ENTRY_POINT_GROUP = "mesalab.tasks"

_loaded: dict[str, ModuleType] = {}  # plugin spec -> its module
_loading: list[str] = []  # the specs being imported now (innermost last)
_entry_points_loaded = [False]


def is_file_spec(spec: str) -> bool:
    return spec.endswith(".py") or os.sep in spec or "/" in spec


def normalise(spec: str) -> str:
    """A spec as recorded: a ``.py`` path made absolute (so a later command from another folder finds it); a module
    name as given."""
    spec = spec.strip()
    return str(Path(spec).expanduser().resolve()) if is_file_spec(spec) else spec


def import_module_or_file(spec: str, what: str) -> ModuleType:
    """Import the module ``spec`` names (an importable module name, or a path to a ``.py`` file); one-line
    :class:`ConfigError` naming the fix when it cannot be imported (``what`` says which input named it)."""
    spec = spec.strip()
    if is_file_spec(spec):
        path = Path(spec).expanduser().resolve()
        if not path.is_file():
            raise ConfigError(f"{what}: no such Python file {path}; pass an existing .py file or an importable module")
        name = f"mesalab_plugin_{path.stem}_{hashlib.sha1(str(path).encode()).hexdigest()[:8]}"
        if name in sys.modules:
            return sys.modules[name]
        loader_spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(loader_spec)
        sys.modules[name] = module
        try:
            loader_spec.loader.exec_module(module)
        except Exception as e:
            del sys.modules[name]
            raise ConfigError(f"{what}: importing {path} failed ({type(e).__name__}: {e}); fix that file") from None
        return module
    try:
        return importlib.import_module(spec)
    except ModuleNotFoundError as e:
        if e.name and (spec == e.name or spec.startswith(e.name + ".")):
            raise ConfigError(f"{what}: no module named {spec!r}; install the package that provides it (pip install "
                              "...) or put it on PYTHONPATH") from None
        raise ConfigError(f"{what}: importing {spec} failed (ModuleNotFoundError: {e}); install what it needs") from None
    except Exception as e:
        raise ConfigError(f"{what}: importing {spec} failed ({type(e).__name__}: {e}); fix that module") from None


def current_plugin() -> str | None:
    """The spec of the plugin being imported now (``None`` outside a plugin import)."""
    return _loading[-1] if _loading else None


@contextmanager
def _importing(spec: str):
    _loading.append(spec)
    try:
        yield
    finally:
        _loading.pop()


def load_plugin(spec: str, what: str = "--plugin") -> ModuleType:
    """Import one plugin (once per process) and export it in ``MESALAB_PLUGINS`` for the processes this one starts."""
    spec = normalise(spec)
    if spec not in _loaded:
        with _importing(spec):
            _loaded[spec] = import_module_or_file(spec, f"{what} {spec}")
    listed = env_plugins()
    if spec not in listed:
        os.environ[ENV_VAR] = ",".join([*listed, spec])
    return _loaded[spec]


def env_plugins() -> list[str]:
    """The plugin specs of ``MESALAB_PLUGINS``."""
    return [s.strip() for s in os.environ.get(ENV_VAR, "").split(",") if s.strip()]


def load_entry_points() -> None:
    """Import every installed package's ``mesalab.tasks`` entry point (once per process). An entry point naming a
    callable (``pkg.mod:register``) is called after its module is imported."""
    if _entry_points_loaded[0]:
        return
    _entry_points_loaded[0] = True
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        with _importing(ep.module):
            try:
                obj = ep.load()
            except Exception as e:
                dist = getattr(ep.dist, "name", None) or "its package"
                raise ConfigError(f"the mesalab.tasks entry point {ep.name!r} of {dist} ({ep.value}) failed to import "
                                  f"({type(e).__name__}: {e}); reinstall or uninstall {dist}") from None
            if callable(obj) and not isinstance(obj, ModuleType):
                obj()
        _loaded.setdefault(ep.module, sys.modules.get(ep.module))


def load_plugins() -> None:
    """Every plugin this process can know of: ``MESALAB_PLUGINS`` and the installed entry points."""
    for spec in env_plugins():
        load_plugin(spec, ENV_VAR)
    load_entry_points()


def require(spec: str, task: str, where: str) -> None:
    """Load the plugin ``spec`` that a results folder ``where`` recorded for ``task``; a one-line error naming what to
    install when it cannot be imported."""
    try:
        load_plugin(spec, "plugin")
    except ConfigError as e:
        hint = (f"restore the file {spec}" if is_file_spec(spec) else
                f"install the package that provides module {spec.split('.')[0]!r} (pip install ...) or put it on "
                "PYTHONPATH")
        raise ConfigError(f"{where}: its task {task!r} is defined by plugin {spec!r}, which cannot be loaded "
                          f"({str(e).split(': ', 1)[-1].split(';')[0]}); {hint}, then re-run") from None


__all__ = ["ENTRY_POINT_GROUP", "ENV_VAR", "current_plugin", "env_plugins", "import_module_or_file", "load_entry_points",
           "load_plugin", "load_plugins", "require"]
