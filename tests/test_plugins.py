"""The plugin API's contract: register_task's checks, discovery through MESALAB_PLUGINS in a fresh process, and a
plugin that cannot be loaded or a preset file that is malformed as one-line errors with exit 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mesalab.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "examples" / "green_door" / "src"


def _mesalab(*args, env_extra=None, cwd=None):
    env = {k: v for k, v in os.environ.items() if k not in ("MESALAB_PLUGINS", "PYTHONPATH")}
    env.update({"PYTHONPATH": str(SRC), "COLUMNS": "200", **(env_extra or {})})
    return subprocess.run([sys.executable, "-m", "mesalab", *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=300)


def test_register_task_refuses_builtin_and_duplicate_names():
    import dataclasses

    from mesalab.tasks import get_task, register_task

    red = get_task("red-door")
    with pytest.raises(ConfigError, match="built-in task"):
        register_task(red)
    mine = dataclasses.replace(red, name="my-red-door-copy")
    assert register_task(mine) is mine and get_task("my-red-door-copy") is mine
    assert register_task(mine) is mine  # the same object again is fine
    with pytest.raises(ConfigError, match="already registered"):
        register_task(dataclasses.replace(red, name="my-red-door-copy"))
    with pytest.raises(ConfigError, match="without spaces"):
        register_task(dataclasses.replace(red, name="has space"))
    with pytest.raises(ConfigError, match="takes a mesalab.tasks.Task"):
        register_task("red-door")


def test_plugins_from_the_environment_variable():
    proc = _mesalab("tasks", env_extra={"MESALAB_PLUGINS": "mesalab_green_door.tasks"})
    assert proc.returncode == 0 and "green-door" in proc.stdout


@pytest.mark.parametrize("spec, words", [("no_such_plugin_module", ["no module named 'no_such_plugin_module'"]),
                                         ("/nonexistent/plugin.py", ["no such Python file"])])
def test_a_plugin_that_cannot_load_is_one_line(spec, words):
    proc = _mesalab("--plugin", spec, "tasks")
    lines = [x for x in proc.stderr.splitlines() if x.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and all(w in lines[0] for w in words), proc.stderr


def test_a_plugin_that_raises_is_one_line(tmp_path):
    bad = tmp_path / "broken_plugin.py"
    bad.write_text("raise RuntimeError('boom')\n")
    proc = _mesalab("--plugin", bad, "tasks")
    assert proc.returncode == 2 and "RuntimeError: boom" in proc.stderr and "Traceback" not in proc.stderr


def test_unknown_task_names_the_plugin_route():
    proc = _mesalab("run", "green-door", "--steps", "10")
    assert proc.returncode == 2 and "--plugin" in proc.stderr


PRESET = """name = "p"
description = "d"
condition = "c"
[base]
task = "red-door"
total_steps = 4096
[dial]
name = "train_alpha"
values = [0.0, 0.5]
label = "alpha"
[[hypotheses]]
statement = "s"
metric = "test/outcome:proxy:{proxy}"
direction = -1
label = "l"
"""


@pytest.mark.parametrize("edit, words", [
    (lambda t: t.replace('name = "p"\n', ""), "lacks ['name']"),
    (lambda t: t.replace("direction = -1", "direction = 2"), "direction must be +1"),
    (lambda t: t.replace("test/outcome:proxy:{proxy}", "test/sucess"), "unknown cell metric 'test/sucess'"),
    (lambda t: t.replace("values = [0.0, 0.5]", "values = [0.0]"), "at least two values"),
    (lambda t: t.replace('name = "p"', 'name = "diversity"'), "built-in preset"),
    (lambda t: t.replace('task = "red-door"', 'task = "nope"'), "unknown task 'nope'"),
    (lambda t: t.replace('name = "train_alpha"', 'name = "not_a_setting"'), "not_a_setting"),
    (lambda t: t + "[[[", "not valid TOML"),
])
def test_malformed_preset_files_are_one_line(tmp_path, edit, words):
    path = tmp_path / "preset.toml"
    path.write_text(edit(PRESET))
    proc = _mesalab("sweep", path, "--out", tmp_path / "out", cwd=tmp_path)
    lines = [x for x in proc.stderr.splitlines() if x.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and words in lines[0], proc.stderr
    assert not (tmp_path / "out").exists()  # nothing written


def test_preset_definition_round_trips():
    from mesalab.experiments.user_presets import preset_from_dict, preset_to_dict
    import tomllib

    p = preset_from_dict(tomllib.loads(PRESET), "test")
    assert preset_from_dict(preset_to_dict(p), "again") == p
    assert p.default_seeds == 5 and p.plots[0] == ("test/outcome:proxy:{proxy}", "l")
