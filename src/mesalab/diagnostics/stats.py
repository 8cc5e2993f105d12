"""Small, exact statistics helpers used by the diagnostics (NumPy, host side)."""

from __future__ import annotations

import math

import numpy as np

Z95 = 1.959963984540054


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a binomial rate (95% by default); ``(0, 1)`` when ``n == 0``."""
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    lo = 0.0 if successes == 0 else max(0.0, centre - half)
    hi = 1.0 if successes == n else min(1.0, centre + half)
    return lo, hi


def bootstrap_mean_ci(values, n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> tuple[float, float, float]:
    """Mean and percentile-bootstrap CI of ``values`` (NaNs dropped); ``(nan, nan, nan)`` if empty."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return math.nan, math.nan, math.nan
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, v.size, (n_boot, v.size))].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(v.mean()), float(lo), float(hi)


def dirichlet_posterior_samples(counts, n_samples: int = 20000, prior: float = 0.5, seed: int = 0) -> np.ndarray:
    """Samples ``[n_samples, K]`` of category probabilities given ``counts`` under a Dirichlet(prior) prior
    (Jeffreys by default). Deterministic for a given seed."""
    rng = np.random.default_rng(seed)
    return rng.dirichlet(np.asarray(counts, dtype=np.float64) + prior, size=n_samples)


def ratio_bootstrap(numerators, denominator, n_boot: int = 2000, seed: int = 0) -> np.ndarray:
    """``[n_boot, K]`` percentile-bootstrap replicates of the ratios ``sum(numerators[k]) / sum(denominator)``,
    resampling the ``n`` units (levels) with replacement, the same resample for every ``k`` (paired).
    ``numerators``: ``[K, n]``; ``denominator``: ``[n]`` (e.g. per-level log-likelihoods and action counts:
    replicates of a per-action log-likelihood). Deterministic for a given seed."""
    num = np.atleast_2d(np.asarray(numerators, np.float64))
    den = np.asarray(denominator, np.float64)
    n = den.shape[0]
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot).astype(np.float64)  # [B, n]
    return (counts @ num.T) / np.maximum(counts @ den, 1e-12)[:, None]
