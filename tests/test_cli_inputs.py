"""Every option of every command fed its edge values: bad input is rejected before any work starts.

For each case: exit status 2, exactly one non-empty line on stderr that names the option or setting to fix, nothing
on stdout (no header, no progress line), no traceback, and nothing written (the working folder, including existing
run and sweep folders, is byte-for-byte unchanged and gains no file or folder).

The cases run in-process through ``mesalab.cli.main`` (what the ``mesalab`` entry point calls), with every entry
point that trains, evaluates or writes results replaced by one that fails the test: no case may reach training. A
few cases also run as ``python -m mesalab`` subprocesses, the honest check that no traceback escapes.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mesalab import cli
from mesalab.optimizers import PPOConfig
from mesalab.optimizers.supervised import ICLConfig
from mesalab.optimizers.thinking import ThinkingConfig

HUGE = 10**12
REAL_TRAINERS = {"ppo": __import__("mesalab.optimizers.ppo", fromlist=["make_train"]).make_train,
                 "thinking": __import__("mesalab.optimizers.thinking", fromlist=["make_train"]).make_train,
                 "icl": __import__("mesalab.optimizers.supervised", fromlist=["make_train"]).make_train}


class ReachedWork(BaseException):
    """Raised by the stand-ins of the training / evaluation / writing entry points (never caught by the CLI)."""


WORK = [
    ("mesalab.studies", "run_study"),
    ("mesalab.studies.contract", "run_study"),
    ("mesalab.studies.gridworld_run", "diagnose_run"),
    ("mesalab.studies.engine", "execute"),
    ("mesalab.studies.engine", "run_local"),
    ("mesalab.studies.engine", "run_ray"),
    ("mesalab.analysis.run", "analyse_run"),
    ("mesalab.analysis.sweep", "analyse_sweep"),
    ("mesalab.analysis.icl", "analyse_icl_run"),
    ("mesalab.analysis.extrapolation", "analyse_extrapolation"),
    ("mesalab.analysis.toy", "analyse_toy"),
    ("mesalab.report.build", "build_report"),
    ("mesalab.optimizers", "make_train"),
    ("mesalab.optimizers.ppo", "make_train"),
    ("mesalab.optimizers.ppo", "make_train_stages"),
    ("mesalab.optimizers.thinking", "make_train"),
    ("mesalab.optimizers.supervised", "make_train"),
    ("mesalab.report", "build_report"),
    ("mesalab.report.sweep", "build_sweep_report"),
    ("mesalab.report.sweep", "build_toy_report"),
    ("mesalab.report.icl", "build_icl_report"),
    ("mesalab.report.thinking", "build_extrapolation_report"),
]


@pytest.fixture(autouse=True)
def no_work(monkeypatch):
    import importlib

    for module, name in WORK:
        def reached(*a, _name=f"{module}.{name}", **k):
            raise ReachedWork(_name)

        monkeypatch.setattr(importlib.import_module(module), name, reached)


# ---- folders the cases point at --------------------------------------------------------------------------------

@pytest.fixture
def world(tmp_path, monkeypatch):
    """A working folder (the cwd, so default output folders land in it) holding a file, a finished run, an icl run,
    a sweep of each kind and a diversity sweep to compare with; returns a dict of their paths."""
    from mesalab.studies.extrapolation import settings_of

    monkeypatch.chdir(tmp_path)
    w = {"root": tmp_path, "file": tmp_path / "a-file.txt", "new": tmp_path / "new-folder"}
    w["file"].write_text("not a folder")
    run = tmp_path / "finished-run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"kind": "run", "task": "red-door", "seeds": [0, 1], "ppo": {},
                                                 "eval": {"episodes": 60}}))
    (run / "results.duckdb").write_bytes(b"finished results")
    (run / "report.html").write_text("<html>report</html>")
    w["run"] = run
    icl = tmp_path / "icl-run"
    icl.mkdir()
    (icl / "config.json").write_text(json.dumps({"kind": "icl", "task": "icl-gd", "seeds": [0], "icl": {}}))
    (icl / "results.duckdb").write_bytes(b"finished results")
    w["icl"] = icl
    corrupt = tmp_path / "corrupt-run"
    corrupt.mkdir()
    (corrupt / "config.json").write_text("{not json")
    w["corrupt"] = corrupt

    def sweep_dir(name, meta):
        d = tmp_path / name
        d.mkdir()
        (d / "sweep.json").write_text(json.dumps(meta))
        (d / "sweep.duckdb").write_bytes(b"finished cells")
        return d

    w["diversity"] = sweep_dir("diversity-sweep", {"kind": "sweep", "preset": "diversity", "seeds": [0],
                                                   "overrides": {}, "eval_overrides": {}})
    w["simplicity"] = sweep_dir("simplicity-sweep", {"kind": "sweep", "preset": "simplicity", "seeds": [0],
                                                     "overrides": {"total_steps": 8192}, "eval_overrides": {}})
    w["extrapolation"] = sweep_dir("extrapolation-sweep", {"kind": "extrapolation", "preset": "extrapolation",
                                                           **settings_of({}, [9], 400, 100), "seeds": [0]})
    w["toy"] = sweep_dir("toy-sweep", {"kind": "toy-model", "preset": "toy-model", "seeds": []})
    w["malformed-sweep"] = tmp_path / "malformed-sweep"
    w["malformed-sweep"].mkdir()
    (w["malformed-sweep"] / "sweep.json").write_text("[")
    return w


def snapshot(root: Path) -> dict:
    """Every path under ``root`` with, for files, its size and bytes (folders: presence only)."""
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else "dir") for p in sorted(root.rglob("*"))}


def config_file(root: Path, content, name="config.json") -> Path:
    path = root / "configs" / name
    path.parent.mkdir(exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif isinstance(content, str):
        path.write_text(content)
    else:
        path.write_text(json.dumps(content))  # NaN / Infinity are written as JSON's non-standard literals
    return path


def assert_rejected(capsys, world, args, expect):
    """Run ``mesalab ARGS`` in-process and assert the one-line, exit-2, nothing-written contract."""
    before = snapshot(world["root"])
    rc = cli.main([str(a) for a in args])
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.strip()]
    shown = f"mesalab {' '.join(map(str, args))}\nstdout: {out!r}\nstderr: {err!r}"
    assert rc == 2, shown
    assert len(lines) == 1 and lines[0].startswith("error: "), shown
    assert "Traceback" not in out + err, shown
    assert out.strip() == "", shown  # no header, no progress line before the error
    for word in [expect] if isinstance(expect, str) else expect:
        assert word in lines[0], f"{shown}\nexpected {word!r} in the message"
    after = snapshot(world["root"])
    assert after == before, f"{shown}\nchanged: {sorted(set(after.items()) ^ set(before.items()))[:5]}"
    return lines[0]


# ---- count options: every option of every command at and past its limits -------------------------------------

NOT_INTEGERS = ["abc", "1.5", "nan", "inf", "-inf", "", "1e3", "0x10"]


def _bad_counts(option, lo, hi):
    """Edge values of an integer option with allowed range [lo, hi]: below, above, huge, negative huge, and text."""
    values = sorted({v for v in (lo - 1, hi + 1, HUGE, -HUGE, -1, 0) if not lo <= v <= hi})
    return [(option, str(v)) for v in values] + [(option, v) for v in NOT_INTEGERS]


COUNT_OPTIONS = {
    # command prefix (after the world's new folder is added as --out where the command takes one) -> option ranges
    ("run", "red-door"): {"--seeds": (1, 100), "--steps": (1, 10**9), "--episodes": (1, 100_000),
                          "--workers": (0, 256), "--first-seed": (0, 2**31 - 4)},
    ("run", "icl-gd"): {"--seeds": (1, 100), "--steps": (1, 10**7), "--first-seed": (0, 2**31 - 4)},
    ("sweep", "diversity"): {"--seeds": (1, 100), "--steps": (1, 10**9), "--episodes": (1, 20_000),
                             "--irl-levels": (0, 20_000), "--workers": (0, 256)},
    ("sweep", "extrapolation"): {"--seeds": (1, 100), "--steps": (1, 10**7), "--max-ticks": (1, 5000),
                                 "--mazes": (1, 10_000)},
    ("sweep", "toy-model"): {"--seeds": (1, 100), "--workers": (0, 256), "--episodes": (1, 20_000)},
}
COUNT_CASES = [(cmd, opt, val) for cmd, opts in COUNT_OPTIONS.items() for o, (lo, hi) in opts.items()
               for opt, val in _bad_counts(o, lo, hi)]


@pytest.mark.parametrize("cmd, option, value", COUNT_CASES, ids=[f"{' '.join(c)} {o} {v!r}" for c, o, v in COUNT_CASES])
def test_count_options_out_of_range_or_not_integers(capsys, world, cmd, option, value):
    assert_rejected(capsys, world, [*cmd, option, value, "--out", world["new"]], option)


DIAGNOSE_CASES = _bad_counts("--levels", 1, 60) + _bad_counts("--bootstrap", 10, 100_000) + \
    [("--seed", "-1"), ("--seed", "7"), ("--seed", str(HUGE)), ("--seed", "x")]


@pytest.mark.parametrize("option, value", DIAGNOSE_CASES, ids=[f"{o} {v!r}" for o, v in DIAGNOSE_CASES])
def test_diagnose_options(capsys, world, option, value):
    assert_rejected(capsys, world, ["diagnose", world["run"], option, value], option)


def test_products_of_counts_are_bounded(capsys, world):
    assert_rejected(capsys, world, ["run", "red-door", "--seeds", "100", "--episodes", "100000"], ["--seeds", "--episodes"])
    assert_rejected(capsys, world, ["run", "red-door", "--seeds", "3", "--first-seed", str(2**31 - 2)], "--first-seed")
    assert_rejected(capsys, world, ["run", "red-door", "--steps", "100"], "--steps")  # less than one PPO update
    assert_rejected(capsys, world, ["sweep", "diversity", "--irl-levels", "600"], "--irl-levels")  # > 500 episodes
    assert_rejected(capsys, world, ["sweep", "diversity", "--episodes", "50", "--irl-levels", "60"], "--irl-levels")
    assert_rejected(capsys, world, ["sweep", "extrapolation", "--max-ticks", "10"], "--max-ticks")  # < 30 ticks


SIZES = ["8", "3", "1001", "-9", "", ",", "9,x", "9.5", "nan", ",".join(["9"] * 17), str(HUGE * 2 + 1)]


@pytest.mark.parametrize("sizes", SIZES)
def test_extrapolation_sizes(capsys, world, sizes):
    assert_rejected(capsys, world, ["sweep", "extrapolation", "--sizes", sizes, "--out", world["new"]], "--sizes")


# ---- options a command does not use, unknown names, wrong choices ---------------------------------------------

OTHER_CASES = [
    (["run", "blue-door"], "mesalab tasks"),
    (["run", "maze-path"], "mesalab sweep extrapolation"),
    (["run", "red-door", "--frobnicate", "1"], "--frobnicate"),
    (["run", "icl-gd", "--episodes", "10"], "--episodes"),
    (["run", "icl-gd", "--workers", "1"], "--workers"),
    (["sweep", "no-such-preset"], "unknown preset"),
    (["sweep", "diversity", "--backend", "spark"], "--backend"),
    (["sweep", "diversity", "--backend", ""], "--backend"),
    (["sweep", "diversity", "--address", "auto"], "--address"),
    (["sweep", "diversity", "--backend", "ray", "--workers", "0"], "--backend"),
    (["sweep", "diversity", "--sizes", "9"], "--sizes"),
    (["sweep", "diversity", "--max-ticks", "10"], "--max-ticks"),
    (["sweep", "diversity", "--mazes", "10"], "--mazes"),
    (["sweep", "diversity", "--compare", "."], "--compare"),
    (["sweep", "extrapolation", "--episodes", "10"], "--episodes"),
    (["sweep", "extrapolation", "--irl-levels", "0"], "--irl-levels"),
    (["sweep", "extrapolation", "--workers", "1"], "--workers"),
    (["sweep", "extrapolation", "--backend", "ray"], "--backend"),
    (["sweep", "extrapolation", "--compare", "."], "--compare"),
    (["sweep", "toy-model", "--seeds", "3"], "--seeds"),
    (["sweep", "toy-model", "--steps", "4096"], "--steps"),
    (["sweep", "toy-model", "--irl-levels", "0"], "--irl-levels"),
    (["sweep", "toy-model", "--mazes", "10"], "--mazes"),
    (["sweep", "toy-model", "--sizes", "9"], "--sizes"),
    (["sweep", "toy-model", "--address", "auto"], "--address"),
    (["sweep", "toy-model", "--backend", "ray"], "--backend"),
    (["diagnose"], "mesalab diagnose RUN_DIR"),
    (["nosuchcommand"], "nosuchcommand"),
]


@pytest.mark.parametrize("args, expect", OTHER_CASES, ids=[" ".join(a) for a, _ in OTHER_CASES])
def test_unknown_names_and_unused_options(capsys, world, args, expect):
    assert_rejected(capsys, world, [*args, *(["--out", world["new"]] if args[0] in ("run", "sweep") else [])], expect)


def test_compare_folder(capsys, world):
    for compare, expect in [(world["file"], "--compare"), (world["new"], "--compare"), (world["run"], "sweep"),
                            (world["simplicity"], "diversity"), (world["malformed-sweep"], "malformed")]:
        assert_rejected(capsys, world, ["sweep", "toy-model", "--compare", compare, "--out", world["new"]], expect)
    empty = world["root"] / "empty-diversity"
    empty.mkdir()
    (empty / "sweep.json").write_text(json.dumps({"kind": "sweep", "preset": "diversity", "seeds": [0]}))
    assert_rejected(capsys, world, ["sweep", "toy-model", "--compare", empty, "--out", world["new"]], "no finished cells")


# ---- output folders: files, unwritable places, folders holding something else ----------------------------------

OUT_COMMANDS = [["run", "red-door"], ["run", "icl-gd"], ["sweep", "diversity"], ["sweep", "extrapolation"],
                ["sweep", "toy-model"]]


@pytest.mark.parametrize("cmd", OUT_COMMANDS, ids=" ".join)
def test_out_that_cannot_be_written(capsys, world, cmd):
    bad = [world["file"], world["file"] / "sub", world["file"] / "a" / "b", Path("/proc/mesalab-test/run"),
           Path("/proc/mesalab-test"), "bad\x00name"]
    if os.geteuid() != 0:  # root writes into read-only folders; /proc covers it there
        ro = world["root"] / "read-only"
        ro.mkdir(mode=0o555)
        bad += [ro, ro / "run"]
    for out in bad:
        assert_rejected(capsys, world, [*cmd, "--out", out], "--out")


@pytest.mark.parametrize("cmd, holder, expect", [
    (["run", "red-door"], "run", "holds a run"),
    (["run", "red-door"], "icl", "finished run"),
    (["run", "red-door"], "diversity", "sweep"),
    (["run", "icl-gd"], "run", "finished run"),
    (["run", "icl-gd"], "toy", "sweep"),
    (["sweep", "diversity"], "run", "holds a run"),
    (["sweep", "diversity"], "simplicity", "'simplicity'"),
    (["sweep", "diversity"], "extrapolation", "'extrapolation'"),
    (["sweep", "diversity"], "malformed-sweep", "malformed"),
    (["sweep", "simplicity", "--steps", "4096"], "simplicity", "repeat its options"),  # resume with other settings
    (["sweep", "extrapolation"], "run", "holds a run"),
    (["sweep", "extrapolation"], "diversity", "'diversity'"),
    (["sweep", "extrapolation", "--mazes", "50"], "extrapolation", "other settings"),  # resume with other settings
    (["sweep", "toy-model"], "run", "holds a run"),
    (["sweep", "toy-model"], "diversity", "'diversity'"),
    (["sweep", "toy-model"], "extrapolation", "'extrapolation'"),
], ids=lambda x: " ".join(x) if isinstance(x, list) else x)
def test_out_holding_other_results_is_left_alone(capsys, world, cmd, holder, expect):
    assert_rejected(capsys, world, [*cmd, "--out", world[holder]], ["--out", expect])


@pytest.mark.parametrize("cmd", [["diagnose"], ["report"]], ids=" ".join)
def test_run_folder_arguments(capsys, world, cmd):
    for folder, expect in [(world["new"], "not a folder"), (world["file"], "not a folder"),
                           (world["root"], "not a mesalab run folder"), (world["corrupt"], "malformed"),
                           (Path("/proc/self/nonexistent"), "not a folder")]:
        assert_rejected(capsys, world, [*cmd, folder], expect)
    if cmd == ["diagnose"]:
        assert_rejected(capsys, world, ["diagnose", world["icl"]], "icl-gd")
        assert_rejected(capsys, world, ["diagnose", world["diversity"]], "not a mesalab run folder")
    else:
        assert_rejected(capsys, world, ["report", world["malformed-sweep"]], "malformed")


# ---- --config files: malformed, wrong types, NaN/Infinity and out-of-range values of every setting -------------

def _bad_values(typ, rng):
    """Edge values for a setting of type ``typ`` with allowed Range ``rng`` (None for strings and bools): wrong
    types, NaN, infinities, an integer too big for a float, just past each end, and huge."""
    values = [None, [1], {"x": 1}]
    if typ is bool:
        return values + [1, 0, "true", 1.0]
    if typ is str:
        return values + [3, True]
    step = 1 if typ is int else 0.5
    below = rng.lo if rng.lo_open else rng.lo - step
    above = rng.hi if rng.hi_open else rng.hi + step
    values += ["fast", "1", True, False, math.nan, math.inf, -math.inf, 10**400, below, above, -HUGE, HUGE]
    if typ is int:
        values += [3.5, float(max(rng.lo, 1))]  # a float where an int is expected, even a whole one
    return values


def _config_cases(cls, skip=()):
    cases = []
    defaults = cls()
    for name in (f.name for f in __import__("dataclasses").fields(cls)):
        if name in skip:
            continue
        typ = type(getattr(defaults, name))
        for value in _bad_values(typ, cls.RANGES.get(name)):
            cases.append((name, value))
    return cases


CONFIG_COMMANDS = {  # command -> (config class, its settings not in a --config file of this command)
    "run red-door": (PPOConfig, ()),
    "run icl-gd": (ICLConfig, ()),
    "sweep extrapolation": (ThinkingConfig, ()),
}
SETTING_CASES = [(cmd, name, value) for cmd, (cls, skip) in CONFIG_COMMANDS.items()
                 for name, value in _config_cases(cls, skip)]


@pytest.mark.parametrize("cmd, name, value", SETTING_CASES,
                         ids=[f"{c} {n}={v!r}"[:80] for c, n, v in SETTING_CASES])
def test_every_setting_of_every_config_is_checked(capsys, world, cmd, name, value):
    path = config_file(world["root"], {name: value})
    assert_rejected(capsys, world, [*cmd.split(), "--config", path, "--out", world["new"]], name)


# the sweep's PPO settings go through the same checks: a sample of them (the full set is covered by `run` above)
SWEEP_SETTING_CASES = [(n, v) for n, v in _config_cases(PPOConfig, skip=("task", "n_levels"))
                       if n in ("lr", "ent_coef", "vf_coef", "max_grad_norm", "weight_decay", "total_steps", "width",
                                "model")]


@pytest.mark.parametrize("name, value", SWEEP_SETTING_CASES, ids=[f"{n}={v!r}"[:60] for n, v in SWEEP_SETTING_CASES])
def test_sweep_config_settings(capsys, world, name, value):
    path = config_file(world["root"], {name: value})
    assert_rejected(capsys, world, ["sweep", "diversity", "--config", path, "--out", world["new"]], name)


MALFORMED = [
    ({"unknown_key": 1}, "unknown_key"),
    ([], "JSON object"), ([{"lr": 0.1}], "JSON object"), ("3", "JSON object"), ('"lr"', "JSON object"),
    ("null", "JSON object"), ("", "not valid JSON"), ("{lr: 0.1}", "not valid JSON"), ('{"lr": 0.1', "not valid JSON"),
    ('{"lr": 0.1, "lr": 0.2}', "more than once"), ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    (b"\xff\xfe\x00binary", "UTF-8"), (" " * 1_000_001 + "{}", "larger than"),
]
MALFORMED_CASES = [(cmd, content, expect) for cmd in ["run red-door", "run icl-gd", "sweep diversity",
                                                      "sweep extrapolation"] for content, expect in MALFORMED]


@pytest.mark.parametrize("cmd, content, expect", MALFORMED_CASES,
                         ids=[f"{c} {str(x)[:20]!r}" for c, x, _ in MALFORMED_CASES])
def test_malformed_config_files(capsys, world, cmd, content, expect):
    path = config_file(world["root"], content)
    assert_rejected(capsys, world, [*cmd.split(), "--config", path, "--out", world["new"]], expect)


@pytest.mark.parametrize("cmd", ["run red-door", "run icl-gd", "sweep diversity", "sweep extrapolation"])
def test_config_paths(capsys, world, cmd):
    for path, expect in [(world["root"] / "missing.json", "not found"), (world["root"], "folder"),
                         (Path("/dev/zero"), "not a regular file"), (world["file"] / "x.json", "--config")]:
        assert_rejected(capsys, world, [*cmd.split(), "--config", path, "--out", world["new"]], expect)


def test_config_values_are_checked_before_command_line_overrides(capsys, world):
    """--steps must not hide a bad total_steps / steps in the file."""
    for cmd, key in [("run red-door", "total_steps"), ("sweep simplicity", "total_steps"), ("run icl-gd", "steps"),
                     ("sweep extrapolation", "steps")]:
        for bad in (-5, 0, "many", math.nan, 2.5):
            path = config_file(world["root"], {key: bad})
            assert_rejected(capsys, world, [*cmd.split(), "--config", path, "--steps", "8192", "--out", world["new"]], key)


def test_relations_between_settings(capsys, world):
    for cmd, settings, expect in [
        ("run red-door", {"total_steps": 10}, "total_steps"),
        ("run red-door", {"num_envs": 16384, "rollout_len": 4096}, "num_envs*rollout_len"),
        ("run red-door", {"num_minibatches": 3}, "num_minibatches"),
        ("run red-door", {"model": "lstm"}, "unknown model"),
        ("run red-door", {"task": "maze"}, "make them agree"),
        ("run red-door", {"model": "gru", "num_envs": 6, "rollout_len": 32}, "num_envs"),
        ("run icl-gd", {"batch": 65536, "n_context": 4096}, "lower batch"),
        ("sweep extrapolation", {"size": 8}, "odd"),
        ("sweep extrapolation", {"size": 201, "batch": 4096, "width": 1024}, "lower batch"),
        ("sweep diversity", {"task": "maze"}, "sets the task itself"),
        ("sweep diversity", {"n_levels": 4}, "n_levels"),
        ("sweep statefulness", {"width": 64}, "equal parameters"),
    ]:
        path = config_file(world["root"], settings)
        assert_rejected(capsys, world, [*cmd.split(), "--config", path, "--out", world["new"]], expect)


# ---- the Python API gets the same checks -----------------------------------------------------------------------

@pytest.mark.parametrize("cls", [PPOConfig, ThinkingConfig, ICLConfig], ids=lambda c: c.__name__)
def test_config_classes_check_every_field_in_python(cls):
    from mesalab.errors import ConfigError

    cls().validate()  # every numeric field has a declared range (a missing one raises TypeError)
    defaults = cls()
    for name, value in _config_cases(cls):
        with pytest.raises(ConfigError, match=name):
            cls.from_dict({name: value})
        with pytest.raises(ConfigError, match=name):
            cls(**{**defaults.to_dict(), name: value}).validate()
    for name, rng in cls.RANGES.items():  # both ends of every range are accepted by the per-setting checks
        typ = type(getattr(defaults, name))
        for end, is_open in ((rng.lo, rng.lo_open), (rng.hi, rng.hi_open)):
            if not is_open:
                assert cls.check_dict({name: typ(end)}) == {name: typ(end)}


def test_non_finite_hyperparameters_never_reach_training():
    """The trainers validate their config before building anything (the real ones, not the stand-ins)."""
    from mesalab.errors import ConfigError

    for make_train, cfg, name in [
        (REAL_TRAINERS["ppo"], PPOConfig(ent_coef=math.nan), "ent_coef"),
        (REAL_TRAINERS["ppo"], PPOConfig(vf_coef=math.inf), "vf_coef"),
        (REAL_TRAINERS["ppo"], PPOConfig(max_grad_norm=-math.inf), "max_grad_norm"),
        (REAL_TRAINERS["ppo"], PPOConfig(weight_decay=math.nan), "weight_decay"),
        (REAL_TRAINERS["ppo"], PPOConfig(width=3.5), "width"),
        (REAL_TRAINERS["thinking"], ThinkingConfig(state_noise=math.nan), "state_noise"),
        (REAL_TRAINERS["thinking"], ThinkingConfig(ticks=True), "ticks"),
        (REAL_TRAINERS["icl"], ICLConfig(noise_std=math.inf), "noise_std"),
        (REAL_TRAINERS["icl"], ICLConfig(lr="fast"), "lr"),
    ]:
        with pytest.raises(ConfigError, match=name):
            make_train(cfg)


def test_eval_settings_of_a_sweep_are_checked_in_python():
    from mesalab.errors import ConfigError
    from mesalab.experiments.presets import configured_preset

    for overrides, expect in [({"episodes": 0}, "episodes"), ({"episodes": 10**9}, "episodes"),
                              ({"episodes": 1.5}, "episodes"), ({"irl_levels": -1}, "irl_levels"),
                              ({"episodes": 30, "irl_levels": 40}, "irl_levels"), ({"bootstrap": 3}, "bootstrap"),
                              ({"test_ticks": (0,)}, "test_ticks"), ({"nope": 1}, "nope")]:
        with pytest.raises(ConfigError, match=expect):
            configured_preset("diversity", {}, overrides)


def test_output_folder_checks_in_python(tmp_path):
    from mesalab.errors import ConfigError
    from mesalab.studies import Options, find, prepare

    f = tmp_path / "f"
    f.write_text("x")
    for out in (f, f / "x", Path("/proc/mesalab-test")):
        with pytest.raises(ConfigError, match="--out"):
            prepare(find("run", "red-door"), "red-door", Options(), out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]


# ---- valid input at the limits is accepted (and reaches the work, which the stand-ins stop) --------------------

VALID = [
    ["run", "red-door", "--seeds", "100", "--out", "{new}"],
    ["run", "red-door", "--seeds", "1", "--episodes", "100000", "--steps", "1000000000", "--out", "{new}"],
    ["run", "red-door", "--seeds", "2", "--first-seed", str(2**31 - 2), "--workers", "256", "--out", "{new}"],
    ["run", "icl-gd", "--seeds", "100", "--steps", "10000000", "--out", "{new}"],
    ["sweep", "diversity", "--seeds", "100", "--episodes", "20000", "--irl-levels", "20000", "--out", "{new}"],
    ["sweep", "simplicity", "--steps", "8192", "--out", "{simplicity}"],  # resumes with the same settings
    ["sweep", "extrapolation", "--seeds", "100", "--sizes", "5,201", "--max-ticks", "5000", "--mazes", "10000",
     "--steps", "10000000", "--out", "{new}"],
    ["sweep", "extrapolation", "--out", "{extrapolation}", "--sizes", "9"],  # resumes with the same settings
    ["sweep", "toy-model", "--out", "{new}"],
    ["sweep", "toy-model", "--out", "{toy}", "--compare", "{diversity}"],
    ["diagnose", "{run}", "--levels", "60", "--bootstrap", "100000", "--seed", "1"],
    ["report", "{run}"],
]


@pytest.mark.parametrize("args", VALID, ids=" ".join)
def test_valid_input_at_the_limits_reaches_the_work(capsys, world, args):
    args = [a.format(**world) for a in args]
    with pytest.raises(ReachedWork):
        cli.main(args)
    assert "Traceback" not in capsys.readouterr().err
    assert not world["new"].exists()  # checked, not created: the work (stopped here) creates it


# ---- the same contract through a real process: no traceback escapes --------------------------------------------

def test_subprocess_cases_print_one_line_and_no_traceback(world):
    nan = config_file(world["root"], {"ent_coef": math.nan}, "nan.json")
    cases = [
        (["run", "red-door", "--out", world["file"], "--steps", "4096"], "--out"),
        (["sweep", "toy-model", "--out", "/proc/mesalab-test"], "--out"),
        (["run", "red-door", "--config", nan, "--steps", "8192"], "ent_coef"),
        (["sweep", "diversity", "--out", world["simplicity"]], "--out"),
        (["run", "red-door", "--seeds", "100000000"], "--seeds"),
    ]
    before = snapshot(world["root"])
    for args, expect in cases:
        res = subprocess.run([sys.executable, "-m", "mesalab", *map(str, args)], capture_output=True, text=True,
                             timeout=60, cwd=world["root"])
        lines = [line for line in res.stderr.splitlines() if line.strip()]
        shown = f"{args}\nstdout: {res.stdout!r}\nstderr: {res.stderr!r}"
        assert res.returncode == 2 and len(lines) == 1 and expect in lines[0], shown
        assert "Traceback" not in res.stdout + res.stderr and res.stdout.strip() == "", shown
    assert snapshot(world["root"]) == before
