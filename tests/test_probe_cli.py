"""End-to-end (slow: compile-bound, minutes per seed on one core; the input checks run by default): `mesalab probe RUN_DIR` on a small CNN run: the probe folder files, the database rows, the
activation dataset against the run's checkpoint, the report section, resume/replace and one-line errors."""

import json
import re
import subprocess
import sys

import numpy as np
import pytest

SMALL_CNN = {"model": "cnn", "obs_mode": "lean", "num_envs": 16, "rollout_len": 32, "width": 16, "depth": 1,
             "pool_size": 64, "total_steps": 4096}


def mesalab(*args, timeout=900):
    return subprocess.run([sys.executable, "-m", "mesalab", *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def probed(tmp_path_factory):
    d = tmp_path_factory.mktemp("probe") / "red-door-cnn"
    cfg = d.parent / "cnn.json"
    cfg.write_text(json.dumps(SMALL_CNN))
    out = mesalab("run", "red-door", "--seeds", "1", "--episodes", "40", "--workers", "1", "--out", str(d),
                  "--config", str(cfg))
    assert out.returncode == 0, out.stderr[-3000:]
    out = mesalab("probe", str(d), "--levels", "40", "--layer", "input", "--layer", "conv_0", "--workers", "1")
    assert out.returncode == 0, out.stderr[-3000:]
    return d, out.stdout


@pytest.mark.slow
def test_probe_writes_its_files_rows_and_report_section(probed):
    d, stdout = probed
    assert "Inside the model" in stdout
    for f in ("probes.json", "probes.duckdb", "probes/seed-0.npz", "report.html"):
        assert (d / f).exists(), f
    meta = json.loads((d / "probes.json").read_text())
    assert meta["kind"] == "probe" and meta["seeds"] == [0] and meta["settings"]["levels"] == 40
    from mesalab.analysis.internals import probes_folder

    t = probes_folder(d).tables("probe_seeds", "activation_probes", "steering_effects", "retargeting")
    assert sorted(r["seed"] for r in t["probe_seeds"]) == [0]
    labels = {r["label"] for r in t["activation_probes"]}
    assert {"target:door", "target:red", "ends_on", "bfs_action:door", "distance:red"} <= labels
    for r in t["activation_probes"]:
        assert r["n_test"] > 0 and r["n_fit"] > 0
        if r["metric"] == "accuracy":
            assert 0 <= r["value"] <= 1 and r["ci_low"] <= r["value"] + 1e-9 <= r["ci_high"] + 2e-9
            assert abs(r["selectivity"] - (r["value"] - r["control"])) < 1e-6
    assert {r["layer"] for r in t["activation_probes"]} >= {"input", "conv_0"}
    assert t["steering_effects"] and t["retargeting"]
    for r in t["retargeting"]:
        if r["direction"] == "none":
            assert r["reached"] == 0  # the chosen cell is one the agent's own episode never visits
    html = (d / "report.html").read_text()
    assert "Inside the model: mesa-objective vs behavioral objective" in html
    assert "Not measured for this run" not in html


@pytest.mark.slow
def test_the_stored_activations_are_the_checkpoints_on_the_stored_observations(probed):
    import jax.numpy as jnp

    from mesalab.diagnostics.activations import activations_on
    from mesalab.studies.gridworld_run import load_model

    d, _ = probed
    z = np.load(d / "probes" / "seed-0.npz")
    model = load_model(d, 0)
    again = activations_on(model, jnp.asarray(z["obs"]), ["conv_0"])["conv_0"]
    np.testing.assert_allclose(z["act/conv_0"].astype(np.float32), again, rtol=1e-2, atol=1e-2)
    assert z["target"].shape[1] == len(z["candidates"]) and z["alive"][:, 0].all()


@pytest.fixture(scope="module")
def fake_run(tmp_path_factory):
    """A run folder with an untrained checkpoint and one seed's probe record (no work needed to refuse input)."""
    import jax

    from mesalab.analysis.internals import probes_folder
    from mesalab.optimizers import PPOConfig, init_model
    from mesalab.results.files import save_leaves_atomic

    d = tmp_path_factory.mktemp("fake") / "run"
    (d / "checkpoints").mkdir(parents=True)
    c = PPOConfig(task="red-door", **{k: v for k, v in SMALL_CNN.items() if k != "total_steps"})
    (d / "config.json").write_text(json.dumps({"kind": "run", "task": "red-door", "seeds": [0, 1], "ppo": c.to_dict(),
                                               "eval": {"episodes": 40, "level_seed": 0}}))
    for s in (0, 1):
        save_leaves_atomic(d / "checkpoints" / f"seed-{s}.eqx", init_model(c, jax.random.key(s)))
    settings = {"layers": ["conv_0", "hidden_0", "input"], "levels": 40, "steps": 8, "strengths": [2.0, 5.0, 10.0], "level_seed": 0,
                "greedy": False}
    (d / "probes.json").write_text(json.dumps({"kind": "probe", "seeds": [0, 1], "settings": settings}))
    folder = probes_folder(d)
    folder.commit({"probe_seeds": [(s, "test", 40, 8, "[]", f"probes/seed-{s}.npz", "now") for s in (0, 1)]})
    return d


def test_probe_refuses_bad_input_in_one_line(fake_run, tmp_path):
    d = fake_run
    cases = [
        (["probe", str(d), "--layer", "conv_9"], r"unknown layer\(s\) \['conv_9'\]; this model's activations are: conv_0"),
        (["probe", str(d), "--levels", "40"], r"already holds the probes of seed\(s\) \[0, 1\].*--replace"),
        (["probe", str(d), "--levels", "60"], r"probed with other settings \(levels 40 -> 60\).*--replace"),
        (["probe", str(d)], r"probed with other settings \(levels 40 -> 500\)"),
        (["probe", str(d), "--seed", "7"], r"--seed \[7\] not in this run; its seeds are \[0, 1\]"),
        (["probe", str(d), "--levels", "3"], r"--levels must be at least 20"),
        (["probe", str(d), "--steps", "0"], r"--steps must be at least 1"),
        (["probe", str(tmp_path / "nothing")], r"is not a folder"),
        (["probe", str(tmp_path)], r"not a mesalab run folder"),
    ]
    for args, pattern in cases:
        out = mesalab(*args, timeout=300)
        assert out.returncode == 2, (args, out.stderr[-2000:])
        assert len(out.stderr.strip().splitlines()) == 1 and re.search(pattern, out.stderr), (args, out.stderr)
    assert (d / "probes.duckdb").exists() and (d / "probes.json").exists()  # nothing finished was lost
    (d / "checkpoints" / "seed-1.eqx").rename(d / "seed-1.eqx.aside")
    try:
        out = mesalab("probe", str(d), "--replace", timeout=300)
        assert out.returncode == 2 and "no checkpoint of seed(s) [1]" in out.stderr
    finally:
        (d / "seed-1.eqx.aside").rename(d / "checkpoints" / "seed-1.eqx")


@pytest.mark.slow
def test_replace_recomputes_with_new_settings(probed, tmp_path):
    import shutil

    d, _ = probed
    copy = tmp_path / "copy"
    shutil.copytree(d, copy)
    out = mesalab("probe", str(copy), "--levels", "24", "--layer", "conv_0", "--replace", "--workers", "0")
    assert out.returncode == 0, out.stderr[-3000:]
    meta = json.loads((copy / "probes.json").read_text())
    assert meta["seeds"] == [0] and meta["settings"]["levels"] == 24 and meta["settings"]["layers"] == ["conv_0"]
    from mesalab.analysis.internals import probes_folder

    layers = {r["layer"] for r in probes_folder(copy).tables("activation_probes")["activation_probes"]}
    assert layers == {"conv_0"}  # the old probes (input, conv_0 at 40 levels) were replaced
