"""Sweeps over any kind of cell: a preset can vary an ICL or a maze-path config as well as a PPO one, through the
same engine, results layer and report path (tiny presets registered here, run in one pinned worker)."""

from __future__ import annotations

import dataclasses

import duckdb
import pytest

from mesalab.experiments import presets as P


def _read(out, sql):
    con = duckdb.connect(str(out / "sweep.duckdb"), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


@pytest.fixture
def registered():
    added = []

    def add(preset):
        P.PRESETS[preset.name] = preset
        added.append(preset.name)
        return preset

    yield add
    for name in added:
        P.PRESETS.pop(name, None)


def test_an_icl_preset_sweeps_depth_and_resumes(registered, tmp_path):
    from mesalab.studies import launch

    preset = registered(P.Preset(
        name="tiny-icl-depth", description="two depths of a tiny linear-attention model", condition="-",
        base={"dim": 3, "n_context": 6, "steps": 40, "batch": 64}, panels=({},),
        dial=P.Dial("layers", (1, 2), "layers"), cell="icl", cell_test=(("n_eval", 300),),
        hypotheses=(P.Hypothesis("the cosine to one GD step falls with depth", "match/gd-1-step/sensitivity_cosine",
                                 -1, "sensitivity cosine to one GD step"),),
        plots=(("match/gd-1-step/sensitivity_cosine", "sensitivity cosine to one GD step"),), default_seeds=2))
    out = tmp_path / "icl"
    a = launch("sweep", preset.name, out, seeds=2, workers=1)
    assert a.n_cells == a.n_expected == 4
    cells = _read(out, "SELECT cell_id, value, seed FROM cells ORDER BY cell_id")
    assert sorted((v, s) for _, v, s in cells) == [(1.0, 0), (1.0, 1), (2.0, 0), (2.0, 1)]
    layers = dict(_read(out, "SELECT c.value, max(m.layer) FROM cell_matches m JOIN cells c USING (cell_id) "
                             "GROUP BY c.value"))
    assert layers == {1.0: 1, 2.0: 2}  # every layer's read-out of each cell is matched
    metrics = {m for (m,) in _read(out, "SELECT DISTINCT metric FROM cell_metrics")}
    assert "match/gd-1-step/sensitivity_cosine" in metrics and "train/final_loss" in metrics
    series = next(s for s in a.series if s.metric == "match/gd-1-step/sensitivity_cosine")
    assert [p.value for p in series.points] == [1, 2] and all(len(p.per_seed) == 2 for p in series.points)
    assert all(p.ci_low <= p.mean <= p.ci_high for p in series.points)
    assert len(a.verdicts) == 1 and "Verdicts" in (out / "report.html").read_text()
    # a depth dial gets the depth verdict and the per-depth table of every reference, with CIs over seeds
    assert a.depth_verdict is not None and a.sentences[0] == a.depth_verdict.sentence
    assert {(r[0], r[1]) for r in a.extra_tables[0]["rows"]} >= {("1", "gd-1-step"), ("2", "gd++-2-step"),
                                                                ("2", "gd-3-step"), ("2", "least-squares")}
    assert all("[" in r[2] for r in a.extra_tables[0]["rows"])  # two seeds: an interval
    assert "sensitivity cosine" in (out / "report.html").read_text() and a.depth_verdict.sentence[:20] in \
        (out / "report.html").read_text()
    assert len(list((out / "checkpoints").glob("*.eqx"))) == 4
    before = _read(out, "SELECT cell_id, metric, value FROM cell_metrics ORDER BY cell_id, metric")
    plans = []
    launch("sweep", preset.name, out, seeds=2, workers=1, on_plan=lambda todo, done: plans.append((todo, done)))
    assert plans == [(0, 4)]  # resumed: nothing left to train
    assert _read(out, "SELECT cell_id, metric, value FROM cell_metrics ORDER BY cell_id, metric") == before


def test_a_maze_path_preset_sweeps_its_config(registered, tmp_path):
    from mesalab.studies import launch

    preset = registered(P.Preset(
        name="tiny-maze-path-width", description="two widths of a tiny recall network", condition="-",
        base={"steps": 3, "batch": 4, "width": 4, "blocks": 1, "head_width": 4, "ticks": 2, "eval_every": 3},
        panels=({},), dial=P.Dial("width", (4, 6), "width"), cell="maze-path",
        cell_test=(("sizes", (9, 13)), ("max_ticks", 4), ("mazes", 6)),
        hypotheses=(P.Hypothesis("accuracy on 13x13 rises with width", "test/accuracy@size=13", +1,
                                 "accuracy on unseen 13x13 mazes"),),
        plots=(("test/accuracy@size=13", "accuracy on unseen 13x13 mazes"),), default_seeds=1))
    out = tmp_path / "mp"
    a = launch("sweep", preset.name, out, seeds=1, workers=1)
    assert a.n_cells == a.n_expected == 2
    metrics = {m for (m,) in _read(out, "SELECT DISTINCT metric FROM cell_metrics")}
    assert {"test/accuracy@size=9", "test/accuracy@size=13", "test/best_accuracy@size=13",
            "test/compute_gain@size=13", "train/accuracy_final"} <= metrics
    values = [v for (v,) in _read(out, "SELECT value FROM cell_metrics WHERE metric LIKE 'test/%accuracy%'")]
    assert values and all(0.0 <= v <= 1.0 for v in values)
    gains = _read(out, "SELECT a.value, b.value, g.value FROM cell_metrics a JOIN cell_metrics b USING (cell_id) "
                       "JOIN cell_metrics g USING (cell_id) WHERE a.metric = 'test/accuracy@size=13' AND "
                       "b.metric = 'test/best_accuracy@size=13' AND g.metric = 'test/compute_gain@size=13'")
    assert gains and all(best >= at and g == pytest.approx(best - at) for at, best, g in gains)
    assert (out / "report.html").exists()


def test_a_preset_cell_kind_is_checked(registered):
    from mesalab.errors import ConfigError
    from mesalab.experiments.plan import cells

    preset = dataclasses.replace(P.get_preset("simplicity"), name="bad-icl", cell="icl")
    with pytest.raises(ConfigError, match="unknown config key"):  # a PPO base is not an ICL config
        cells(preset, [0])


def test_a_training_run_that_blew_up_is_marked_diverged():
    import numpy as np

    from mesalab.studies.sweep import training_outcome

    falling = np.linspace(5.0, 1.0, 100)
    assert training_outcome(falling) == (pytest.approx(np.mean(falling[-5:])), 0.0)
    noisy = falling + 0.3 * np.sin(np.arange(100))  # noise is not divergence
    assert training_outcome(noisy)[1] == 0.0
    blew_up = np.concatenate([np.linspace(5.0, 1.0, 60), np.linspace(1.0, 9.6, 40)])
    assert training_outcome(blew_up)[1] == 1.0
    came_back = np.concatenate([np.linspace(5.0, 1.0, 60), np.linspace(1.0, 4.0, 40)])  # worse, not past the start
    assert training_outcome(came_back)[1] == 0.0
    short_noise = np.array([2.91, 1.38, 1.46, 0.88, 1.78, 1.13, 2.05, 1.43, 1.86, 1.3] * 4)
    assert training_outcome(short_noise)[1] == 0.0
    assert training_outcome(np.array([5.0, 4.0, np.inf]))[1] == 1.0
