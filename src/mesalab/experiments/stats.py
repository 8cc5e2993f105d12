"""Statistics of a sweep: per-dial-value means with bootstrap CIs over seeds, a Spearman trend test with a
permutation p-value, and a verdict sentence per hypothesis (NumPy, host side, deterministic)."""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from mesalab.diagnostics.stats import bootstrap_mean_ci

LEVEL = 0.05  # significance level of the trend test
N_PERMUTATIONS = 10_000
SUPPORTED, CONTRADICTED, INCONCLUSIVE = "supported", "contradicted", "inconclusive"


def ranks(x) -> np.ndarray:
    """Average ranks (1-based; ties share the mean of their positions), like ``scipy.stats.rankdata``."""
    x = np.asarray(x, dtype=np.float64)
    order = np.argsort(x, kind="mergesort")
    r = np.empty(len(x), dtype=np.float64)
    sx = x[order]
    i = 0
    while i < len(x):
        j = i
        while j + 1 < len(x) and sx[j + 1] == sx[i]:
            j += 1
        r[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return r


def spearman(x, y) -> float:
    """Spearman's rank correlation (Pearson correlation of average ranks); nan if either side is constant."""
    rx, ry = ranks(x), ranks(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denom = math.sqrt(float((rx * rx).sum() * (ry * ry).sum()))
    return float((rx * ry).sum() / denom) if denom > 0 else float("nan")


class Trend(NamedTuple):
    rho: float  # Spearman correlation of the metric with the dial (over all cells, seeds as replicates)
    p_value: float  # two-sided permutation p-value of rho = 0 (metric values shuffled across cells)
    n: int  # cells used


def trend_test(dial_positions, values, n_permutations: int = N_PERMUTATIONS, seed: int = 0) -> Trend:
    """Test for a monotone trend of ``values`` along the dial (``dial_positions``, any increasing coding;
    ∞ allowed). The p-value is ``(1 + #{|rho_perm| >= |rho|}) / (1 + n_permutations)``."""
    x = np.asarray(dial_positions, dtype=np.float64)
    y = np.asarray(values, dtype=np.float64)
    ok = np.isfinite(y)
    x, y = x[ok], y[ok]
    if len(y) < 3:
        return Trend(float("nan"), float("nan"), int(len(y)))
    rx = ranks(x)
    rho = spearman(rx, y)
    if not np.isfinite(rho):
        return Trend(float("nan"), 1.0, int(len(y)))
    rng = np.random.default_rng(seed)
    ry = ranks(y)
    rx_c = rx - rx.mean()
    ry_c = ry - ry.mean()
    denom = math.sqrt(float((rx_c ** 2).sum() * (ry_c ** 2).sum()))
    perms = np.argsort(rng.random((n_permutations, len(y))), axis=1)
    rhos = (ry_c[perms] * rx_c).sum(axis=1) / denom
    p = (1 + int(np.sum(np.abs(rhos) >= abs(rho) - 1e-12))) / (1 + n_permutations)
    return Trend(rho, p, int(len(y)))


class DialPoint(NamedTuple):
    value: float
    mean: float
    ci_low: float
    ci_high: float
    per_seed: tuple[float, ...]


def dial_points(values_by_dial: dict, seed: int = 0) -> list[DialPoint]:
    """Per dial value: mean over seeds with a 95% percentile-bootstrap CI, and the per-seed values."""
    out = []
    for v, per_seed in values_by_dial.items():
        mean, lo, hi = bootstrap_mean_ci(per_seed, seed=seed)
        out.append(DialPoint(v, mean, lo, hi, tuple(float(x) for x in per_seed)))
    return out


class HypothesisVerdict(NamedTuple):
    panel: str
    statement: str
    metric: str
    verdict: str  # SUPPORTED / CONTRADICTED / INCONCLUSIVE
    trend: Trend
    first: DialPoint  # the lowest dial value
    last: DialPoint  # the highest
    sentence: str


def verdict(panel: str, statement: str, metric: str, label: str, direction: int, points: list[DialPoint],
            trend: Trend, dial_label: str, display=str, level: float = LEVEL) -> HypothesisVerdict:
    """Supported: a significant trend (p < level) in the hypothesised direction; contradicted: a significant
    trend the other way; inconclusive otherwise (or too few cells). The sentence carries the numbers."""
    first, last = points[0], points[-1]
    if not np.isfinite(trend.p_value) or not np.isfinite(trend.rho):
        v = INCONCLUSIVE
    elif trend.p_value < level and np.sign(trend.rho) == direction:
        v = SUPPORTED
    elif trend.p_value < level:
        v = CONTRADICTED
    else:
        v = INCONCLUSIVE

    def point(p):
        return f"{p.mean:.2f} [{p.ci_low:.2f}, {p.ci_high:.2f}] at {display(p.value)}"

    where = "" if panel == "all" else f" ({panel})"
    rho = "n/a" if not np.isfinite(trend.rho) else f"{trend.rho:+.2f}"
    p = "n/a" if not np.isfinite(trend.p_value) else f"{trend.p_value:.3g}"
    sentence = (f"{v.capitalize()}{where}: {statement}. The {label} goes from {point(first)} to {point(last)} "
                f"along {dial_label} (mean [95% bootstrap CI] over {len(first.per_seed)} seeds); Spearman rho = "
                f"{rho} over {trend.n} runs, permutation p = {p} (level {level}).")
    return HypothesisVerdict(panel, statement, metric, v, trend, first, last, sentence)
