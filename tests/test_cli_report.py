"""End-to-end: the CLI, the run folder, the results database and the HTML report in headless Chromium."""

import json
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest
from conftest import embedded_figures, figures_loaded_in_chromium

SMALL = {"num_envs": 16, "rollout_len": 32, "width": 32, "depth": 1, "pool_size": 64, "total_steps": 4096}


def mesalab(*args, timeout=600, **kw):
    return subprocess.run([sys.executable, "-m", "mesalab", *args], capture_output=True, text=True,
                          timeout=timeout, **kw)


@pytest.mark.parametrize(
    "args, pattern",
    [
        (["run", "blue-door"], r"unknown task 'blue-door'; choose one of: .*mesalab tasks"),
        (["run", "red-door", "--seeds", "x"], r"Invalid value for '--seeds'.*--help"),
        (["run", "red-door", "--seeds", "0"], r"--seeds must be at least 1"),
        (["run", "red-door", "--episodes", "-3"], r"--episodes must be at least 1"),
        (["run", "red-door", "--frobnicate"], r"No such option.*--help"),
        (["report", "/nonexistent/run"], r"is not a folder"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, pattern):
    out = mesalab(*args, timeout=120)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert re.search(pattern, lines[0]), lines[0]
    assert "Traceback" not in out.stderr


def test_malformed_config_files(tmp_path):
    bad_json = tmp_path / "bad.json"
    bad_json.write_text("{lr: 0.1")
    unknown = tmp_path / "unknown.json"
    unknown.write_text(json.dumps({"learning_rate": 0.1}))
    wrong_type = tmp_path / "wrong.json"
    wrong_type.write_text(json.dumps({"num_envs": "many"}))
    for path, pattern in [(bad_json, "not valid JSON"), (unknown, "unknown config key"), (wrong_type, "must be int"),
                          (tmp_path / "missing.json", "not found")]:
        out = mesalab("run", "red-door", "--config", str(path), timeout=120)
        assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1 and pattern in out.stderr, out.stderr


def test_tasks_lists_families():
    out = mesalab("tasks", timeout=120)
    assert out.returncode == 0
    for name in ["red-door", "corner-goal", "maze"]:
        assert name in out.stdout


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("run") / "red-door-small"
    cfg = d.parent / "small.json"
    cfg.write_text(json.dumps(SMALL))
    out = mesalab("run", "red-door", "--seeds", "2", "--episodes", "60", "--out", str(d), "--config", str(cfg))
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Verdict:" in out.stdout
    (d.parent / "run-stdout.txt").write_text(out.stdout)
    return d


def test_a_run_that_never_learned_is_not_trained_to_competence_and_warned(run_dir):
    """4096 PPO steps learn nothing: the verdict must say so (not "capability failure"), and the CLI warns."""
    import duckdb

    con = duckdb.connect(str(run_dir / "results.duckdb"), read_only=True)
    labels = con.execute("SELECT label, text FROM verdicts ORDER BY seed").fetchall()
    train = con.execute("SELECT competent_rate FROM evaluations WHERE split = 'train' AND is_base").fetchall()
    con.close()
    assert all(rate < 0.5 for (rate,) in train), train  # the precondition: these seeds did not learn
    assert [label for label, _ in labels] == ["not trained to competence"] * 2, labels
    assert all("training episodes, below 50%" in text for _, text in labels)
    stdout = " ".join((run_dir.parent / "run-stdout.txt").read_text().split())  # undo Rich's line wrapping
    assert "never learned to pursue the base objective in training" in stdout, stdout[-2000:]


def test_diagnose_with_the_runs_own_settings_reproduces_its_stored_rows(run_dir, tmp_path):
    """`mesalab diagnose` replays the run's own episodes from its checkpoints: with the run's settings every
    objective table and the verdicts come out exactly as the run stored them."""
    import duckdb

    tables = ("irl_weights", "behavioral_objectives", "candidate_likelihoods", "optimization_power", "level_bits",
              "verdicts", "probe_readings", "probe_verdicts")
    d = tmp_path / "same"
    shutil.copytree(run_dir, d)

    def rows():
        con = duckdb.connect(str(d / "results.duckdb"), read_only=True)
        try:
            return {t: sorted(con.execute(f"SELECT * FROM {t}").fetchall(), key=repr) for t in tables}
        finally:
            con.close()

    before = rows()
    assert all(before[t] for t in tables)  # the precondition: the run stored them
    out = mesalab("diagnose", str(d), timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    after = rows()
    for t in tables:
        assert after[t] == before[t], t


def test_run_folder_contents(run_dir):
    import duckdb

    meta = json.loads((run_dir / "config.json").read_text())
    assert meta["seeds"] == [0, 1] and meta["ppo"]["num_envs"] == 16 and "jax" in meta["versions"]
    assert (run_dir / "checkpoints" / "seed-0.eqx").exists() and (run_dir / "checkpoints" / "seed-1.eqx").exists()
    con = duckdb.connect(str(run_dir / "results.duckdb"), read_only=True)
    assert con.execute("SELECT count(*) FROM verdicts").fetchone()[0] == 2
    n = con.execute("SELECT DISTINCT n_episodes FROM evaluations").fetchall()
    assert n == [(60,)]
    splits = {r[0] for r in con.execute("SELECT DISTINCT split FROM evaluations").fetchall()}
    assert splits == {"train", "test", "red-ball-box", "green-key", "factorial"}  # red-door's probe splits too
    assert con.execute("SELECT count(*) FROM training_curves WHERE metric='success_rate'").fetchone()[0] == 2 * 8
    # every run carries its objective profile: 2 seeds x 5 splits, finite numbers, one bits row per level
    assert con.execute("SELECT count(*) FROM behavioral_objectives").fetchone()[0] == 10
    assert con.execute("SELECT count(*) FROM behavioral_objectives WHERE isnan(goal_directedness) OR "
                       "isnan(fitted_ll) OR goal_directedness < 0 OR goal_directedness > 1").fetchone()[0] == 0
    assert con.execute("SELECT count(*) FROM irl_weights WHERE isnan(normalised) OR isnan(ci_low)").fetchone()[0] == 0
    assert con.execute("SELECT count(*) FROM level_bits").fetchone()[0] == 2 * 5 * 2 * 60  # seeds, splits, objectives
    # what each seed pursues: one reading per seed, a verdict per probe split, the overlap check per split
    assert con.execute("SELECT count(*) FROM probe_readings").fetchone()[0] == 2
    assert con.execute("SELECT count(DISTINCT split) FROM probe_pursuit").fetchone()[0] == 5
    assert con.execute("SELECT count(*) FROM probe_verdicts").fetchone()[0] == 2 * 3
    assert con.execute("SELECT count(*), sum(n_overlap) FROM split_overlaps").fetchone() == (2 * 5, 0)
    assert con.execute("SELECT count(*) FROM epic_distances WHERE split = 'test' AND isnan(distance)").fetchone()[0] == 0
    # an agent can never beat the shortest path, so its bits never exceed the ceiling
    assert con.execute("SELECT count(*) FROM level_bits WHERE isnan(bits) OR bits < 0 "
                       "OR bits > optimal_bits + 1e-3").fetchone()[0] == 0
    con.close()


def test_diagnose_recomputes_objectives_of_chosen_seeds(run_dir, tmp_path):
    import duckdb

    d = tmp_path / "diag"
    shutil.copytree(run_dir, d)
    before = duckdb.connect(str(d / "results.duckdb"), read_only=True).execute(
        "SELECT * FROM behavioral_objectives WHERE seed = 0 ORDER BY split").fetchall()
    out = mesalab("diagnose", str(d), "--seed", "1", "--levels", "30", "--bootstrap", "100", timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "What is it optimizing?" in out.stdout and "Report:" in out.stdout
    con = duckdb.connect(str(d / "results.duckdb"), read_only=True)
    assert con.execute("SELECT * FROM behavioral_objectives WHERE seed = 0 ORDER BY split").fetchall() == before
    assert con.execute("SELECT DISTINCT n_levels FROM behavioral_objectives WHERE seed = 1").fetchall() == [(30,)]
    assert con.execute("SELECT count(*) FROM behavioral_objectives").fetchone()[0] == 10  # 2 seeds x 5 splits
    con.close()
    assert "Objectives: what is it optimizing?" in (d / "report.html").read_text()
    for args, pattern in [(["--seed", "7"], "not in this run"), (["--levels", "500"], "exceeds the run's 60"),
                          (["--bootstrap", "3"], "at least 10")]:
        out = mesalab("diagnose", str(d), *args, timeout=300)
        assert out.returncode == 2 and re.search(pattern, out.stderr), out.stderr
        assert len(out.stderr.strip().splitlines()) == 1


def test_report_of_a_run_without_objective_tables(run_dir, tmp_path):
    """Runs written before the objectives existed still render, and say how to compute them."""
    import duckdb

    d = tmp_path / "old"
    shutil.copytree(run_dir, d)
    con = duckdb.connect(str(d / "results.duckdb"))
    for t in ("irl_weights", "behavioral_objectives", "candidate_likelihoods", "optimization_power", "level_bits"):
        con.execute(f"DROP TABLE {t}")
    con.close()
    out = mesalab("report", str(d), timeout=300)
    assert out.returncode == 0, out.stderr
    assert "mesalab diagnose RUN_DIR" in (d / "report.html").read_text()


def test_same_config_and_seed_give_identical_numbers(run_dir, tmp_path):
    import duckdb

    d2 = tmp_path / "again"
    cfg = tmp_path / "small.json"
    cfg.write_text(json.dumps(SMALL))
    out = mesalab("run", "red-door", "--seeds", "1", "--episodes", "60", "--out", str(d2), "--config", str(cfg),
                  "--workers", "1")
    assert out.returncode == 0, out.stderr[-2000:]
    q = "SELECT split, objective, competent_rate, mean_return FROM evaluations WHERE seed=0 ORDER BY split, objective"
    a = duckdb.connect(str(run_dir / "results.duckdb"), read_only=True).execute(q).fetchall()
    b = duckdb.connect(str(d2 / "results.duckdb"), read_only=True).execute(q).fetchall()
    assert a == b


def _replayed_evaluations(task, models, seeds, settings):
    """``evaluations`` rows (split, objective, competent_rate, reach_rate, mean_return) and drawn trajectories of
    a stack of models evaluated as the run evaluates them (the run's level pools and per-seed keys)."""
    import equinox as eqx
    import jax
    import jax.numpy as jnp

    from mesalab.diagnostics import summarise
    from mesalab.studies.ppo_batch import evaluate_models, evaluation_pools

    stacked = jax.tree_util.tree_map(lambda *xs: jnp.stack(xs) if eqx.is_array(xs[0]) else xs[0], *models)
    keys = jax.vmap(jax.random.key)(jnp.asarray(seeds, jnp.uint32))
    episodes = evaluate_models(task, stacked, keys, evaluation_pools(task, settings), settings.greedy)
    rows, paths = {}, {}
    for i, seed in enumerate(seeds):
        for split, ep in episodes.items():
            one = jax.tree_util.tree_map(lambda x: x[i], ep)
            for o in summarise(task, one, split).objectives:
                rows[(seed, split, o.name)] = (o.competent_rate, o.reach_rate, o.mean_return)
            for lvl in range(3):
                n = int(one.length[lvl]) + 1
                paths[(seed, split, lvl)] = (one.positions[lvl, :n, 0].tolist(), one.positions[lvl, :n, 1].tolist())
    return rows, paths


def test_loaded_checkpoints_reproduce_the_runs_stored_evaluation(run_dir, tmp_path):
    """The checkpoints, replayed on the run's evaluation levels with its keys, give exactly the stored
    per-objective rates, returns and drawn trajectories; untrained models of the same config do not (so the
    comparison can fail); a corrupt checkpoint is a one-line error."""
    import duckdb
    import jax

    from mesalab.errors import CorruptRunError
    from mesalab.optimizers import PPOConfig
    from mesalab.optimizers.ppo import init_model
    from mesalab.eval_plan import EvalPlan
    from mesalab.studies.gridworld_run import load_model, load_run_config
    from mesalab.tasks import get_task

    meta = load_run_config(run_dir)
    task = get_task(meta["task"])
    settings = EvalPlan(**{k: v for k, v in meta.get("eval", {}).items() if k in EvalPlan.__dataclass_fields__})
    assert settings.episodes == 60
    con = duckdb.connect(str(run_dir / "results.duckdb"), read_only=True)
    stored = {(s, sp, o): (c, r, m) for s, sp, o, c, r, m in con.execute(
        "SELECT seed, split, objective, competent_rate, reach_rate, mean_return FROM evaluations").fetchall()}
    stored_paths = {(s, sp, lvl): (rows, cols) for s, sp, lvl, rows, cols in con.execute(
        "SELECT seed, split, level, rows, cols FROM trajectories WHERE level < 3").fetchall()}
    con.close()
    seeds = meta["seeds"]
    models = [load_model(run_dir, s) for s in seeds]
    (logits, value), acts = models[0](jax.numpy.zeros(task.env.obs_shape, bool))
    assert logits.shape == (4,) and "hidden_0" in acts
    rows, paths = _replayed_evaluations(task, models, seeds, settings)
    assert rows.keys() == stored.keys() and len(rows) == 2 * 5 * 2  # seeds, splits (train, test, 3 probes), objectives
    for k, v in stored.items():
        assert rows[k] == pytest.approx(v, rel=1e-9, abs=1e-12), k
    assert paths == stored_paths
    # untrained models (fresh initialisations) are told apart by the same comparison
    config = PPOConfig(**meta["ppo"])
    fresh = [init_model(config, jax.random.key(100 + s)) for s in seeds]
    rows_fresh, paths_fresh = _replayed_evaluations(task, fresh, seeds, settings)
    assert any(rows_fresh[k] != pytest.approx(v, rel=1e-9, abs=1e-12) for k, v in stored.items())
    assert paths_fresh != stored_paths
    broken = tmp_path / "broken"
    shutil.copytree(run_dir, broken)
    (broken / "checkpoints" / "seed-0.eqx").write_bytes(b"garbage")
    with pytest.raises(CorruptRunError, match="corrupt"):
        load_model(broken, 0)


def test_report_rerender_and_corrupt_database(run_dir, tmp_path):
    (run_dir / "report.html").unlink()
    out = mesalab("report", str(run_dir), timeout=300)
    assert out.returncode == 0 and (run_dir / "report.html").exists()
    broken = tmp_path / "broken-db"
    shutil.copytree(run_dir, broken)
    (broken / "results.duckdb").write_bytes(b"not a database at all" * 100)
    out = mesalab("report", str(broken), timeout=300)
    assert out.returncode == 2 and "rerun `mesalab run`" in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_interrupted_run_leaves_no_results_database(tmp_path):
    d = tmp_path / "interrupted"
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({**SMALL, "total_steps": 2_000_000}))
    # Ctrl-C as in a terminal: a process started in the background of a non-interactive shell (e.g. CI run with
    # `bash .ci/run &`) inherits SIGINT *ignored*, and Python then never installs its KeyboardInterrupt handler
    p = subprocess.Popen([sys.executable, "-m", "mesalab", "run", "red-door", "--seeds", "1", "--out", str(d),
                          "--config", str(cfg), "--workers", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    while not (d / "config.json").exists() and time.time() < deadline:
        time.sleep(0.5)
    time.sleep(3)
    p.send_signal(signal.SIGINT)
    p.wait(timeout=120)
    assert p.returncode == 130, p.stderr.read()[-2000:]
    assert (d / "config.json").exists() and not (d / "results.duckdb").exists()
    out = mesalab("report", str(d), timeout=120)
    assert out.returncode == 2 and "did not finish" in out.stderr


def test_report_renders_in_headless_chromium_with_every_figure(chromium, run_dir, tmp_path):
    """Its own test: skips at its start without Chromium (fails with MESALAB_REQUIRE_CHROMIUM=1)."""
    loaded, total = figures_loaded_in_chromium(run_dir / "report.html", tmp_path, chromium)
    assert total == 8 and loaded == total  # 5 shift figures + probe pursuit + IRL weights + optimization power


def test_report_embeds_every_figure_as_a_well_formed_png(run_dir):
    """The figure checks that need no browser always run: 7 inline PNGs, each well-formed and non-empty, and
    the page script that reports how many loaded."""
    html = (run_dir / "report.html").read_text()
    sizes = embedded_figures(html)
    assert len(sizes) == 8 and all(w > 100 and h > 100 for w, h in sizes), sizes
    assert "data-figures-loaded" in html


@pytest.mark.parametrize("required", ["", "1"])
def test_missing_chromium_skips_or_fails_at_the_start(monkeypatch, required):
    import conftest

    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setenv("MESALAB_REQUIRE_CHROMIUM", required)
    expected = pytest.fail.Exception if required else pytest.skip.Exception
    with pytest.raises(expected, match="chromium"):
        conftest.chromium_browser()
