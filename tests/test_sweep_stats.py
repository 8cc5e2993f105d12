"""Sweep statistics, planning and the toy model against known answers (fast, no training)."""

import numpy as np
import pytest
import scipy.stats

from mesalab.experiments import stats
from mesalab.experiments.plan import batches, cells
from mesalab.experiments.presets import PRESETS, configured_preset, get_preset, preset_names
from mesalab.experiments.toy_model import fit_toy_model, mesa_share, split_rows
from reference import toy_optimum_grid


def test_ranks_and_spearman_match_scipy():
    rng = np.random.default_rng(0)
    for _ in range(20):
        x = rng.integers(0, 5, 25).astype(float)  # many ties
        y = rng.normal(size=25).round(1)
        np.testing.assert_allclose(stats.ranks(x), scipy.stats.rankdata(x))
        assert stats.spearman(x, y) == pytest.approx(scipy.stats.spearmanr(x, y).statistic, abs=1e-12)


def test_trend_test_detects_monotone_trends_and_handles_infinity():
    x = np.repeat([1, 4, 16, 64, 256, np.inf], 5)
    y = np.repeat(np.arange(6.0), 5) + np.tile(np.linspace(-0.1, 0.1, 5), 6)
    t = stats.trend_test(x, y)
    assert t.rho > 0.95 and t.p_value == pytest.approx(1 / (1 + stats.N_PERMUTATIONS))
    t = stats.trend_test(x, -y)
    assert t.rho < -0.95 and t.p_value < 0.001
    assert np.isnan(stats.trend_test([1, 2], [0.1, 0.2]).rho)  # too few runs
    assert stats.trend_test(x, np.ones_like(y)).p_value == 1.0  # constant metric: no trend


def test_permutation_p_value_is_calibrated_under_the_null():
    rng = np.random.default_rng(1)
    x = np.repeat(np.arange(6), 5)
    p = np.array([stats.trend_test(x, rng.normal(size=30), n_permutations=400, seed=i).p_value for i in range(300)])
    assert 0.02 <= np.mean(p < 0.05) <= 0.09
    assert 0.4 <= np.mean(p) <= 0.6


def test_permutation_p_value_matches_the_spearman_null_distribution():
    rng = np.random.default_rng(2)
    x = np.repeat(np.arange(6), 5)
    y = 0.15 * x + rng.normal(size=30)
    t = stats.trend_test(x, y)
    # scipy's large-sample p-value (t distribution) agrees with the exact permutation p-value roughly
    assert t.p_value == pytest.approx(scipy.stats.spearmanr(x, y).pvalue, abs=0.02)


def _points(means, n=5):
    return stats.dial_points({v: [m] * n for v, m in enumerate(means)})


def test_verdicts_say_supported_contradicted_or_inconclusive():
    x = np.repeat(np.arange(6), 5)
    rising = x + np.tile(np.linspace(-0.2, 0.2, 5), 6)
    for direction, values, expected in [(+1, rising, "supported"), (-1, rising, "contradicted"),
                                        (+1, np.tile(np.linspace(0, 1, 5), 6), "inconclusive")]:
        t = stats.trend_test(x, values)
        v = stats.verdict("all", "the metric rises", "m", "metric", direction, _points(values[::5]), t, "the dial")
        assert v.verdict == expected
        assert v.sentence.startswith(expected.capitalize())
        assert "Spearman rho" in v.sentence and "permutation p" in v.sentence and "[" in v.sentence


def test_dial_points_bootstrap_over_seeds():
    pts = stats.dial_points({0.0: [0.1, 0.2, 0.3], 1.0: [0.9, 0.9, 0.9]})
    assert pts[0].mean == pytest.approx(0.2) and pts[0].ci_low < 0.2 < pts[0].ci_high
    assert pts[1].ci_low == pts[1].ci_high == pytest.approx(0.9)


def test_presets_are_well_formed():
    assert set(preset_names()) >= {"pseudo-alignment-alpha", "diversity", "capacity", "simplicity", "toy-model"}
    for p in PRESETS.values():
        cs = cells(p, [0, 1])
        assert len(cs) == len(p.panels) * len(p.dial.values) * 2
        assert len({c.cell_id for c in cs}) == len(cs)
        assert [p.dial.order(v) for v in p.dial.values] == sorted(p.dial.order(v) for v in p.dial.values)
    assert get_preset("diversity").dial.display(0) == "∞"


def test_batches_vmap_data_dials_and_do_not_depend_on_the_number_of_seeds():
    alpha = get_preset("pseudo-alignment-alpha")
    b5 = batches(alpha, list(range(5)))
    assert all(b.data_dial == "train_alpha" for b in b5)
    assert all(len({c.value for c in b.cells}) == len(alpha.dial.values) for b in b5)  # every α in one program
    b2 = {b.batch_id: b for b in batches(alpha, [0, 1])}
    for b in b5:  # a sweep with more seeds contains the same batches for the first seeds
        if b.batch_id in b2:
            assert b2[b.batch_id].cells == b.cells
    div = get_preset("diversity")
    bd = batches(div, list(range(5)))
    assert len(bd) == len(div.dial.values) and all(b.data_dial is None for b in bd)  # N changes shapes
    assert all(len({c.value for c in b.cells}) == 1 for b in bd)
    done = {c.cell_id for c in bd[0].cells}
    left = batches(div, list(range(5)), done)
    assert len(left) == len(bd) - 1 and not done & {c.cell_id for b in left for c in b.cells}


def test_configured_preset_rejects_overriding_the_dial():
    with pytest.raises(Exception, match="is the dial"):
        configured_preset("capacity", {"width": 8})
    assert configured_preset("capacity", {"total_steps": 4096}).base["total_steps"] == 4096


def test_toy_model_optimum_equals_a_grid_search_of_the_documented_cost():
    """x*/O against the argmin of C(x) = a x^p + N (O - x) over a fine grid of x in [0, O], the cost re-derived
    from the module's docstring (tests/reference.py), not the module's own ``base_cost``; and the split of
    each instance's bits (learned, base per instance, base amortised) from that same x."""
    for ceiling in (1.0, 10.0, 19.0):
        for a, p in [(1.0, 2.0), (0.3, 3.0), (5.0, 1.5), (0.05, 2.5)]:
            ns = [1, 3, 10, 40, 200, 5000, np.inf]
            share = mesa_share(ns, a, p, ceiling)
            for n, s in zip(ns, share):
                x = toy_optimum_grid(n, a, p, ceiling)
                assert s * ceiling == pytest.approx(x, abs=ceiling * 2e-5), (ceiling, a, p, n)
            rows = split_rows("c", ns[:-1], a, p, ceiling)
            for n, row in zip(ns[:-1], rows):
                x = toy_optimum_grid(n, a, p, ceiling)
                learned, instance, amortised = row[-3:]  # (curve, n, a, p, O, x*/O, (O - x*)/O, f(x*)/(N O))
                assert learned == pytest.approx(x / ceiling, abs=2e-5)
                assert instance == pytest.approx((ceiling - x) / ceiling, abs=2e-5)
                # a grid step dx moves f(x)/(N O) by about f'(x) dx / (N O) = dx / O near the optimum
                assert amortised == pytest.approx(a * x ** p / (n * ceiling), abs=2e-5)
    # the cases above include interior optima and optima capped at O, e.g.
    assert toy_optimum_grid(1, 1.0, 2.0, 10.0) == pytest.approx(0.5, abs=1e-4)  # f'(x) = 2x = 1
    assert toy_optimum_grid(40, 1.0, 2.0, 10.0) == 10.0  # 2x = 40 beyond O: capped
    share = mesa_share([1, 4, 16, 64, 256, np.inf], 1.0, 2.0, 10.0)
    assert np.all(np.diff(share) >= 0) and share[-1] == 1.0 and share[0] < 0.1


def test_toy_model_fit_recovers_planted_parameters():
    n = np.array([1, 4, 16, 64, 256])
    for ceiling in (1.0, 19.0):  # the fitted a depends on O: fit and prediction must use the same O
        y = mesa_share(n, 0.5, 4.0, ceiling)
        fit = fit_toy_model(n, y, ceiling)
        assert fit.rmse < 0.01
        np.testing.assert_allclose(mesa_share(n, fit.a, fit.p, ceiling), y, atol=0.02)
