"""icl-depth statistics and verdict on planted match tables with known answers, and the depth reference set."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mesalab.diagnostics.icl_depth import (
    LEAST_SQUARES_STEPS,
    MATCH_COSINE,
    NOT_SUPPORTED,
    SUPPORTED,
    depth_statistics,
    depth_verdict,
    final_layer_rows,
    reference_steps,
    tables_from_rows,
)
from mesalab.diagnostics.stats import bootstrap_mean_ci

REFS = ["gd-1-step", "gd-2-step", "gd-3-step", "gd-4-step", "gd-5-step", "gd++-2-step", "gd++-3-step",
        "gd++-4-step", "least-squares"]


def planted(best_by_depth: dict, seeds=range(5), top=0.997, others=0.9, spread=0.002, seed=0) -> dict:
    """``{seed: {depth: rows}}``: at each depth the planted reference has cosine ~``top`` and every other one
    ~``others`` (uniform jitter of +-``spread`` per seed); prediction MSE is 1 - cosine."""
    rng = np.random.default_rng(seed)
    out = {}
    for s in seeds:
        out[s] = {}
        for depth, best in best_by_depth.items():
            rows = []
            for name in REFS:
                cos = (top if name == best else others) + rng.uniform(-spread, spread)
                rows.append({"name": name, "sensitivity_cosine": float(min(cos, 1.0)), "prediction_mse": 1.0 - cos})
            out[s][depth] = rows
    return out


def test_reference_steps_codes_the_algorithms():
    assert reference_steps("gd-1-step") == 1 and reference_steps("gd-4-step") == 4
    assert reference_steps("gd++-2-step") == 2.5 and reference_steps("gd++-3-step") == 3.5
    assert reference_steps("least-squares") == LEAST_SQUARES_STEPS == reference_steps("ridge(0.1)")
    assert math.isnan(reference_steps("model"))


def test_best_match_moving_to_more_steps_is_supported():
    tables = planted({1: "gd-1-step", 2: "gd-2-step", 3: "gd-3-step", 4: "least-squares"})
    v = depth_verdict(tables)
    assert v.verdict == SUPPORTED and v.reason == ""
    assert [b.reference for b in v.best] == ["gd-1-step", "gd-2-step", "gd-3-step", "least-squares"]
    assert all(b.agree == 5 and b.matched == 5 and b.n_seeds == 5 for b in v.best)
    assert v.trend.n == 20 and v.trend.rho > 0.9 and v.trend.p_value < 0.001
    s = v.sentence
    assert s.startswith("Supported: the best-matching algorithm moves from gd-1-step at depth 1 to least-squares")
    assert "depth 3: gd-3-step (sensitivity cosine 0.99" in s and "best for 5/5 seeds" in s and "[0.99" in s
    assert "No reference algorithm matches" not in s


def test_gdpp_counts_as_more_than_its_plain_steps():
    tables = planted({1: "gd-1-step", 2: "gd++-2-step", 3: "gd++-3-step", 4: "gd++-4-step"})
    v = depth_verdict(tables)
    assert v.verdict == SUPPORTED and [b.steps for b in v.best] == [1, 2.5, 3.5, 4.5]


def test_always_one_gd_step_is_not_supported():
    v = depth_verdict(planted({d: "gd-1-step" for d in (1, 2, 3, 4)}))
    assert v.verdict == NOT_SUPPORTED
    assert "no significant rise" in v.reason and math.isnan(v.trend.rho)
    assert v.sentence.startswith("Not supported (the effective GD steps")
    assert all(b.reference == "gd-1-step" and b.agree == 5 for b in v.best)


def test_a_falling_trend_and_a_wrong_start_are_not_supported():
    back = depth_verdict(planted({1: "gd-1-step", 2: "gd-3-step", 3: "gd-2-step", 4: "gd-1-step"}))
    assert back.verdict == NOT_SUPPORTED and back.trend.p_value > 0.05 and "no significant rise" in back.reason
    start = depth_verdict(planted({1: "gd-2-step", 2: "gd-3-step", 3: "gd-4-step", 4: "least-squares"}))
    assert start.verdict == NOT_SUPPORTED and "at depth 1 the best match is not a matching one-step GD" in start.reason


def test_no_match_tables_get_the_honest_wording():
    # every reference below the match threshold, best references noisy across seeds
    tables = planted({1: "gd-1-step", 2: "gd-3-step", 3: "gd++-2-step", 4: "gd-2-step"}, top=0.95, others=0.93,
                     spread=0.03, seed=3)
    v = depth_verdict(tables)
    assert v.verdict == NOT_SUPPORTED
    assert all(not b.is_match for b in v.best) and all(b.cosine_mean < MATCH_COSINE for b in v.best)
    assert "No reference algorithm matches at depth 1, 2, 3, 4" in v.sentence
    assert "no mesa-objective is implied" in v.sentence and "depth 2: no reference matches (best: " in v.sentence
    # only the deeper models fail to match: depth 1 is fine, the rest is named honestly
    mixed = planted({1: "gd-1-step", 2: "gd-3-step", 3: "gd-3-step", 4: "gd-3-step"})
    for s in mixed:
        for d in (2, 3, 4):
            for r in mixed[s][d]:
                r["sensitivity_cosine"] -= 0.05
    m = depth_verdict(mixed)
    assert m.verdict == NOT_SUPPORTED and m.best[0].is_match and not any(b.is_match for b in m.best[1:])
    assert "No reference algorithm matches at depth 2, 3, 4" in m.sentence


def test_single_seed_gives_an_interval_free_statement():
    v = depth_verdict(planted({1: "gd-1-step", 2: "gd-2-step", 3: "gd-3-step", 4: "least-squares"}, seeds=[7]))
    assert v.verdict == NOT_SUPPORTED  # 4 runs: the permutation test cannot reach p < 0.05
    assert v.trend.n == 4 and v.trend.rho == pytest.approx(1.0) and v.trend.p_value > 0.05
    assert "(1 seed, no interval)" in v.sentence and "[0." not in v.sentence
    assert "With a single seed there are no confidence intervals" in v.sentence
    assert [b.reference for b in v.best] == ["gd-1-step", "gd-2-step", "gd-3-step", "least-squares"]


def test_cells_are_means_with_bootstrap_intervals_over_seeds():
    tables = planted({1: "gd-1-step", 2: "gd-2-step"}, spread=0.004)
    cells, best = depth_statistics(tables)
    cell = next(c for c in cells if c.depth == 2 and c.reference == "gd-2-step")
    cos = [next(r for r in tables[s][2] if r["name"] == "gd-2-step")["sensitivity_cosine"] for s in tables]
    assert (cell.cosine_mean, cell.cosine_low, cell.cosine_high) == pytest.approx(bootstrap_mean_ci(cos))
    assert min(cos) <= cell.cosine_low < cell.cosine_mean < cell.cosine_high <= max(cos)
    assert cell.mse_mean == pytest.approx(np.mean([1 - c for c in cos]))
    assert len(cells) == 2 * len(REFS) and best[1].reference == "gd-2-step"


def test_agreement_counts_seeds_whose_own_best_differs():
    tables = planted({1: "gd-1-step", 2: "gd-2-step"})
    for s in (0, 1):  # two seeds prefer gd++-2 at depth 2
        for r in tables[s][2]:
            if r["name"] == "gd++-2-step":
                r["sensitivity_cosine"] = 0.9995
    best = depth_statistics(tables)[1][1]
    assert best.reference == "gd-2-step" and best.agree == 3 and best.matched == 5


def test_rows_in_every_input_form_give_the_same_verdict():
    tables = planted({1: "gd-1-step", 2: "gd-2-step", 3: "gd-3-step"}, seeds=range(3))
    flat = [(s, d, r["name"], r["sensitivity_cosine"], r["prediction_mse"])
            for s, by_d in tables.items() for d, rows in by_d.items() for r in rows]
    as_tuples = {s: {d: [(r["name"], r["sensitivity_cosine"], r["prediction_mse"]) for r in rows]
                     for d, rows in by_d.items()} for s, by_d in tables.items()}
    as_reference = {s: {d: [{"reference": r["name"], **r} for r in rows] for d, rows in by_d.items()}
                    for s, by_d in tables.items()}
    sentences = {depth_verdict(t).sentence for t in (tables, tables_from_rows(flat), as_tuples, as_reference)}
    assert len(sentences) == 1


def test_final_layer_rows_reads_analysis_dicts_and_cell_tuples():
    dicts = [{"layer": 1, "name": "gd-1-step", "sensitivity_cosine": 0.5, "prediction_mse": 2.0},
             {"layer": 2, "name": "gd-2-step", "sensitivity_cosine": 0.99, "prediction_mse": 0.1, "test_loss": 1.0}]
    tuples = [(1, "gd-1-step", 1.0, 1.0, 2.0, 0.5), (2, "gd-2-step", 1.0, 1.0, 0.1, 0.99)]
    want = [{"name": "gd-2-step", "sensitivity_cosine": 0.99, "prediction_mse": 0.1}]
    assert final_layer_rows(dicts, 2) == want and final_layer_rows(tuples, 2) == want


def test_depth_references_lists_gd_to_depth_plus_one_and_gdpp_from_two_to_depth():
    from mesalab.diagnostics.icl_depth import depth_references
    from mesalab.diagnostics.icl_reference import tuned_gd_lr
    from mesalab.tasks.icl_regression import make_regression_distribution, sample_regression

    tune = sample_regression(jax.random.key(0), make_regression_distribution(), 500, 10, 10)
    refs = depth_references(tune, 2)
    assert sorted(refs.gd_lrs) == [1, 2, 3] and sorted(refs.gdpp_params) == [2]
    assert refs.gd_lrs[3] == tuned_gd_lr(tune.x, tune.y, tune.x_query, tune.y_query, 3)
    assert all(g > 0 and lr > 0 for lr, g in refs.gdpp_params.values())
    assert depth_references(tune, 2) == refs  # deterministic
    assert depth_references(tune, 1).gdpp_params == {}


def test_depth_matches_of_a_constructed_one_step_model():
    from mesalab.diagnostics.icl_depth import depth_matches
    from mesalab.optimizers.supervised import ICLConfig
    from test_icl_reference import one_gd_step_transformer

    model = one_gd_step_transformer(10, jnp.float32(0.4))
    rows, refs = depth_matches(model, ICLConfig(layers=1), n_eval=200)
    assert [r["name"] for r in rows] == ["gd-1-step", "gd-2-step", "least-squares"]
    final = final_layer_rows(rows, 1)
    best = max(final, key=lambda r: r["sensitivity_cosine"])
    assert best["name"] == "gd-1-step" and best["sensitivity_cosine"] > 0.9999
    assert depth_verdict({0: {1: final}}).best[0].is_match
