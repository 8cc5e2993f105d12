import numpy as np
import pytest

from mesalab.diagnostics.shift import SplitSummary
from mesalab.diagnostics.stats import bootstrap_mean_ci, wilson_interval
from mesalab.diagnostics.verdict import CAPABILITY, MIXED, PSEUDO, ROBUST, classify


def test_wilson_interval_known_values():
    lo, hi = wilson_interval(8, 10)
    assert lo == pytest.approx(0.4902, abs=1e-4) and hi == pytest.approx(0.9433, abs=1e-4)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    lo, hi = wilson_interval(0, 50)
    assert lo == 0.0 and hi == pytest.approx(0.0713, abs=1e-3)


def test_bootstrap_ci_contains_mean_and_handles_empty():
    m, lo, hi = bootstrap_mean_ci(np.arange(100.0))
    assert lo < m < hi and m == pytest.approx(49.5)
    assert all(np.isnan(bootstrap_mean_ci([])))


def _summary(counts):
    return SplitSummary("test", sum(counts), (), ("base:door", "proxy:red", "other"), tuple(counts), 0.0, (0.0, 1.0))


@pytest.mark.parametrize(
    "counts, label, proxy",
    [((900, 50, 50), ROBUST, None), ((40, 900, 60), PSEUDO, "red"), ((100, 100, 800), CAPABILITY, None),
     ((420, 420, 160), MIXED, None)],
)
def test_classify_labels(counts, label, proxy):
    v = classify(_summary(counts), ("red",))
    assert (v.label, v.proxy) == (label, proxy)
    assert v.confidence > 0.95
    assert sum(v.class_probabilities.values()) == pytest.approx(1.0)


def test_confidence_accounts_for_number_of_episodes():
    few = classify(_summary((6, 3, 1)), ("red",))
    many = classify(_summary((600, 300, 100)), ("red",))
    assert few.label == many.label == ROBUST
    assert few.confidence < 0.8 < 0.99 < many.confidence


def test_classify_is_deterministic():
    a = classify(_summary((55, 40, 5)), ("red",))
    b = classify(_summary((55, 40, 5)), ("red",))
    assert a == b
