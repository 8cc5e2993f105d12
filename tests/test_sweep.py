"""Sweeps end to end: data dials under vmap, per-batch commits, resume after interruption or SIGKILL,
Ray = local, the sweep report in headless Chromium, and one-line errors."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import numpy as np
import pytest
from conftest import embedded_figures, figures_loaded_in_chromium

SMALL = {"num_envs": 16, "rollout_len": 32, "width": 32, "depth": 1, "pool_size": 64, "total_steps": 4096}
EVAL = {"episodes": 30, "irl_levels": 0}


def mesalab(*args, timeout=600, **kw):
    return subprocess.run([sys.executable, "-m", "mesalab", *args], capture_output=True, text=True,
                          timeout=timeout, **kw)


def read(sweep_dir, sql):
    con = duckdb.connect(str(Path(sweep_dir) / "sweep.duckdb"), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def test_vmapped_data_dials_equal_separate_runs_with_those_configs():
    import jax
    import jax.numpy as jnp

    from mesalab.optimizers import PPOConfig, make_train

    cfg = PPOConfig(task="red-door", **SMALL)
    keys = jax.vmap(jax.random.key)(jnp.asarray([3, 3], jnp.uint32))
    for dial, values in [("train_alpha", [0.0, 1.0]), ("weight_decay", [0.0, 0.5])]:
        _, met = jax.jit(jax.vmap(make_train(cfg)))(keys, {dial: jnp.asarray(values, jnp.float32)})
        assert not np.allclose(met["loss"][0], met["loss"][1])  # the dial changes training
        for i, v in enumerate(values):
            _, single = jax.jit(make_train(PPOConfig(**{**cfg.to_dict(), dial: v})))(jax.random.key(3))
            np.testing.assert_allclose(met["loss"][i], single["loss"], rtol=1e-4, atol=1e-6)
    with pytest.raises(Exception, match="not data dials"):
        make_train(cfg)(jax.random.key(0), {"width": 3})
    with pytest.raises(Exception, match="train_alpha must be in"):
        PPOConfig(train_alpha=2.0).validate()


def test_interrupted_sweep_keeps_finished_batches_and_resumes_only_the_rest(tmp_path, monkeypatch):
    from mesalab.studies import engine, launch
    from mesalab.studies import sweep

    out = tmp_path / "simplicity"
    commits = []
    real_commit = sweep.commit_batch

    def commit_then_fail_on_second(con, rows):
        if commits:  # the second batch fails half-way through its transaction
            rows = dict(rows, cell_metrics=rows["cell_metrics"] + [("x", None, None)])
        commits.append(len(rows["cells"]))
        real_commit(con, rows)

    monkeypatch.setattr(sweep, "commit_batch", commit_then_fail_on_second)
    with pytest.raises(Exception):
        launch("sweep", "simplicity", out, seeds=2, workers=1, config=SMALL, **EVAL)
    first = read(out, "SELECT cell_id FROM cells")
    assert len(first) == 5 and commits == [5, 5]  # batch 1 kept; batch 2 rolled back entirely
    assert read(out, "SELECT count(DISTINCT cell_id) FROM cell_metrics")[0][0] == 5
    before = dict(((c, m), v) for c, m, v in read(out, "SELECT * FROM cell_metrics"))

    monkeypatch.setattr(sweep, "commit_batch", real_commit)
    ran = []
    real_run_local = engine.run_local
    monkeypatch.setattr(engine, "run_local", lambda study, todo, *a, **k: (ran.extend(todo),
                                                                           real_run_local(study, todo, *a, **k)))
    launch("sweep", "simplicity", out, seeds=2, workers=1, config=SMALL, **EVAL)
    assert len(ran) == 1 and {c.seed for c in ran[0].cells} == {1}  # only the unfinished batch was trained
    cells = read(out, "SELECT cell_id FROM cells")
    assert len(cells) == 10 == len(set(cells))
    after = dict(((c, m), v) for c, m, v in read(out, "SELECT * FROM cell_metrics"))
    assert all(after[k] == v for k, v in before.items())  # finished cells untouched
    per_cell = read(out, "SELECT cell_id, count(*) FROM cell_metrics GROUP BY cell_id")
    assert len({n for _, n in per_cell}) == 1  # every cell has the complete set of metrics
    ran.clear()
    launch("sweep", "simplicity", out, seeds=2, workers=1, config=SMALL, **EVAL)
    assert ran == [] or all(not b.cells for b in ran)  # nothing left to do
    assert len(list((out / "checkpoints").glob("*.eqx"))) == 10


def committed_cells(sweep_dir, scratch):
    """Cell ids committed so far in a sweep database another process writes to; None if no stable copy could be
    read yet (retry). The sweep opens the database only while it commits a batch and checkpoints it on closing,
    so between commits the file alone holds every committed batch: copy it while it is unchanged (same size and
    modification time before and after the copy, no write-ahead log beside it) and read the copy."""
    import shutil

    db = Path(sweep_dir) / "sweep.duckdb"
    wal = db.with_name(db.name + ".wal")
    scratch.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(scratch)
    scratch.mkdir()
    try:
        before = db.stat()
        if wal.exists():
            return None  # a commit is under way
        shutil.copyfile(db, scratch / "sweep.duckdb")
        after = db.stat()
        if wal.exists() or (before.st_size, before.st_mtime_ns) != (after.st_size, after.st_mtime_ns):
            return None  # it changed while being copied
        con = duckdb.connect(str(scratch / "sweep.duckdb"), read_only=True)
        try:
            return [r[0] for r in con.execute("SELECT cell_id FROM cells").fetchall()]
        finally:
            con.close()
    except (OSError, duckdb.Error):
        return None


@pytest.mark.slow
def test_sigkilled_sweep_has_no_partial_rows_and_the_rerun_finishes_it(tmp_path):
    """SIGKILL the sweep (parent and worker at once) right after its first batch is committed, while the next
    one trains: the database holds whole committed batches only, and the re-run trains just the rest, so every
    cell is stored exactly once."""
    config = tmp_path / "small.json"
    config.write_text(json.dumps(SMALL))
    out = tmp_path / "alpha"
    args = ["sweep", "simplicity", "--seeds", "3", "--config", str(config), "--episodes", "30", "--irl-levels", "0",
            "--workers", "1", "--out", str(out)]
    proc = subprocess.Popen([sys.executable, "-m", "mesalab", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.time() + 600
    seen = None
    try:
        while time.time() < deadline and proc.poll() is None:
            seen = committed_cells(out, tmp_path / "copy")
            if seen:
                break
            time.sleep(0.5)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the parent and its worker, at once
        except ProcessLookupError:  # it had already exited (checked below)
            pass
        proc.wait()
    if not seen:
        pytest.fail(f"no batch was committed before the deadline or the sweep's exit (rc {proc.returncode}): "
                    + proc.stderr.read().decode()[-2000:])
    assert proc.returncode == -signal.SIGKILL  # killed, not finished on its own
    cells_before = [r[0] for r in read(out, "SELECT cell_id FROM cells")]
    n_before = len(cells_before)
    assert set(seen) <= set(cells_before)
    assert n_before in (5, 10), n_before  # >= 1 whole batch of 5 finished, not all 15: something left to resume
    per_cell = read(out, "SELECT cell_id, count(*) FROM cell_metrics GROUP BY cell_id")
    assert {c for c, _ in per_cell} == set(cells_before) and len({n for _, n in per_cell}) == 1  # no partial cell
    res = mesalab(*args)
    assert res.returncode == 0, res.stderr
    assert f"{n_before} cell(s) already finished" in res.stdout
    cells = [r[0] for r in read(out, "SELECT cell_id FROM cells")]
    assert len(cells) == 15 == len(set(cells)) and set(cells_before) <= set(cells)
    per_cell = read(out, "SELECT cell_id, count(*) FROM cell_metrics GROUP BY cell_id")
    assert len(per_cell) == 15 and len({n for _, n in per_cell}) == 1
    assert "15 of 15 cells finished" in res.stdout and "Spearman rho" in res.stdout


@pytest.mark.slow
def test_ray_backend_gives_the_same_numbers_as_local(tmp_path):
    pytest.importorskip("ray")
    from mesalab.studies import launch

    runs = {}
    for backend in ("local", "ray"):
        out = tmp_path / backend
        launch("sweep", "simplicity", out, seeds=1, backend=backend, workers=1, config=SMALL, **EVAL)
        runs[backend] = sorted(read(out, "SELECT cell_id, metric, value FROM cell_metrics"))
    assert len(runs["local"]) > 20
    assert runs["local"] == runs["ray"]


def test_sweep_cli_errors_are_one_line(tmp_path):
    config = tmp_path / "small.json"
    config.write_text(json.dumps({**SMALL, "task": "maze"}))
    cases = [
        (["sweep", "no-such-preset"], "unknown preset 'no-such-preset'; choose one of"),
        (["sweep", "diversity", "--seeds", "0"], "--seeds must be at least 1"),
        (["sweep", "diversity", "--backend", "spark"], "unknown backend 'spark'"),
        (["sweep", "capacity", "--config", str(config)], "sets the task itself"),
        (["sweep", "diversity", "--compare", str(tmp_path)], "--compare is not used by `mesalab sweep diversity`"),
        (["report", str(tmp_path)], "not a mesalab run folder"),
    ]
    for args, pattern in cases:
        res = mesalab(*args, timeout=120)
        assert res.returncode == 2, (args, res.stderr)
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and pattern in lines[0], (args, res.stderr)


def _fake_diversity_sweep(path: Path, success_by_n: dict[int, list[float]]):
    """A diversity sweep folder whose cells hold given metrics (for the analysis and the toy model)."""
    from mesalab.experiments.plan import cells
    from mesalab.experiments.presets import get_preset
    from mesalab.studies.sweep import SWEEP

    preset = get_preset("diversity")
    n_seeds = len(next(iter(success_by_n.values())))
    folder = SWEEP.folder(path)
    SWEEP.start(folder, {"preset": "diversity", "seeds": list(range(n_seeds)), "overrides": {}, "eval_overrides": {}})
    rows = {"cells": [], "cell_metrics": []}
    for c in cells(preset, list(range(n_seeds))):
        v = success_by_n[c.value][c.seed]
        rows["cells"].append((c.cell_id, "b", c.panel, "n_levels", float(c.value), c.seed, "{}", "{}", 1.0, "now"))
        rows["cell_metrics"] += [(c.cell_id, m, v) for m in ("test/success", "test/bits_fraction",
                                                             "test/goal_directedness", "train/success")]
        rows["cell_metrics"].append((c.cell_id, "test/bits_ceiling", 9.0))
    folder.commit(rows)


def test_analysis_and_toy_model_comparison_on_a_known_diversity_sweep(tmp_path):
    from mesalab.analysis.sweep import analyse_sweep

    rising = {1: [0.1, 0.12, 0.08], 4: [0.2, 0.22, 0.18], 16: [0.3, 0.33, 0.29], 64: [0.45, 0.5, 0.4],
              256: [0.55, 0.6, 0.5], 0: [0.6, 0.62, 0.58]}
    _fake_diversity_sweep(tmp_path / "div", rising)
    a = analyse_sweep(tmp_path / "div")
    assert a.n_cells == a.n_expected == 18
    v = {x.metric: x for x in a.verdicts}
    assert v["test/success"].verdict == "supported" and v["test/success"].trend.rho > 0.9
    assert v["test/success"].first.mean == pytest.approx(0.1) and v["test/success"].last.mean == pytest.approx(0.6)
    res = mesalab("sweep", "toy-model", "--compare", str(tmp_path / "div"), "--out", str(tmp_path / "toy"), timeout=120)
    assert res.returncode == 0, res.stderr
    assert "Fitted to the measured curve" in res.stdout and "agrees with" in res.stdout
    fit = read(tmp_path / "toy", "SELECT a, p, rmse, ceiling_bits FROM toy_fit")[0]
    assert fit[2] < 0.1 and fit[3] == pytest.approx(9.0)
    flat = {k: [0.3, 0.31, 0.29] for k in rising}
    _fake_diversity_sweep(tmp_path / "flat", flat)
    assert {x.verdict for x in analyse_sweep(tmp_path / "flat").verdicts} == {"inconclusive"}


@pytest.fixture(scope="module")
def small_sweep(tmp_path_factory):
    """A finished one-seed simplicity sweep with IRL (shared; tests change copies of it)."""
    from mesalab.studies import launch

    out = tmp_path_factory.mktemp("sweep") / "cap"
    launch("sweep", "simplicity", out, seeds=1, workers=1, config=SMALL, episodes=30, irl_levels=10)
    return out


def test_sweep_report_has_every_figure_rerenders_and_rejects_a_corrupt_database(small_sweep, tmp_path):
    import shutil

    out = tmp_path / "cap"
    shutil.copytree(small_sweep, out)
    metrics = {m for (m,) in read(out, "SELECT DISTINCT metric FROM cell_metrics")}
    assert {"test/success", "test/bits_fraction", "test/goal_directedness", "test/outcome:base", "train/success",
            "train_curve/success_final"} <= metrics
    html = (out / "report.html").read_text()
    assert "Verdicts" in html and "Spearman rho" in html and len(embedded_figures(html)) == 3
    (out / "report.html").unlink()
    res = mesalab("report", str(out), timeout=120)
    assert res.returncode == 0 and (out / "report.html").exists()
    sizes = embedded_figures((out / "report.html").read_text())
    assert len(sizes) == 3 and all(w > 100 and h > 100 for w, h in sizes), sizes
    (out / "sweep.duckdb").write_bytes(b"not a database")
    res = mesalab("report", str(out), timeout=120)
    assert res.returncode == 2 and "not a readable sweep database" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def test_sweep_report_renders_in_headless_chromium(chromium, small_sweep, tmp_path):
    """Its own test: skips at its start without Chromium (fails with MESALAB_REQUIRE_CHROMIUM=1)."""
    assert figures_loaded_in_chromium(small_sweep / "report.html", tmp_path, chromium) == (3, 3)


def test_pin_to_core_pins_threads_started_before_it():
    """Worker processes import JAX (unpickling their arguments) before pinning themselves; every XLA thread
    must end up on the one core, or vmapped PPO can deadlock on a 2-core CPU."""
    code = ("import os, jax.numpy as jnp; jnp.ones(3).block_until_ready(); from mesalab.studies.engine import pin_to_core; "
            "pin_to_core(0); print(sorted({tuple(os.sched_getaffinity(int(t))) for t in os.listdir('/proc/self/task')}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "[(0,)]", out.stderr


def test_sweep_worker_entry_does_not_start_jax_before_pinning():
    """A spawned worker unpickles its target and a Batch (importing these modules) before it pins itself; if
    that started JAX's backend, XLA would size its thread pool for every core and can deadlock when pinned
    (this hung the first full alpha sweep)."""
    code = ("import pickle; from jax._src import xla_bridge as xb; import mesalab.studies.engine, "
            "mesalab.experiments.plan, mesalab.studies.sweep, mesalab.studies.gridworld_run, mesalab.studies.icl_run, "
            "mesalab.studies.extrapolation, mesalab.studies.ppo_batch; print(xb.backends_are_initialized())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "False", out.stderr
