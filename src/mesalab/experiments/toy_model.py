"""The analytic toy model of how optimization power is split between the base optimizer and the learned
algorithm as task diversity grows (after Hubinger et al. 2019, "Conditions for Mesa-Optimization", 2.1).

Model. Each of N training instances needs ``O`` bits of optimization to be solved. A learned algorithm that
itself applies ``x`` bits per instance (0 <= x <= O) costs the base optimizer ``f(x)`` bits to find once
(its description length: increasing and convex); the remaining ``O - x`` bits per instance the base
optimizer must supply instance by instance (memorisation). The base optimizer's total cost is

    C(x) = f(x) + N (O - x),

minimised at ``f'(x*) = N`` (clipped to [0, O]). With ``f(x) = a x^p`` (p > 1):

    x*(N) = min(O, (N / (a p)) ** (1 / (p - 1))),   and x*(∞) = O.

So the share of optimization done by the learned algorithm, ``x*/O``, rises with N and saturates: diverse
training favours mesa-optimization. Per instance the base optimizer does ``O - x* + f(x*)/N`` bits.

Measured counterpart (the ``diversity`` preset): on unseen mazes only the learned algorithm can optimize
(nothing memorised transfers), so its bits there, as a fraction of the oracle's, estimate ``x*/O``.
:func:`fit_toy_model` fits ``a`` and ``p`` to that curve by least squares (a grid search over both) and
reports the residual, so the comparison is explicit about having two free parameters.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

DEFAULT_A = 1.0
DEFAULT_P = 2.0


def mesa_share(n, a: float = DEFAULT_A, p: float = DEFAULT_P, ceiling: float = 1.0) -> np.ndarray:
    """``x*/O`` for each N in ``n`` (``np.inf`` allowed), with ``O = ceiling`` bits."""
    n = np.asarray(n, dtype=np.float64)
    if p <= 1 or a <= 0 or ceiling <= 0:
        raise ValueError("the toy model needs p > 1, a > 0 and a positive ceiling")
    with np.errstate(over="ignore", divide="ignore"):
        x = np.where(np.isinf(n), ceiling, (np.maximum(n, 0.0) / (a * p)) ** (1.0 / (p - 1.0)))
    return np.minimum(x, ceiling) / ceiling


def base_cost(x, n, a: float = DEFAULT_A, p: float = DEFAULT_P, ceiling: float = 1.0):
    """Total bits the base optimizer spends, ``f(x) + N (O - x)``."""
    return a * np.asarray(x, np.float64) ** p + np.asarray(n, np.float64) * (ceiling - np.asarray(x, np.float64))


class ToyFit(NamedTuple):
    a: float
    p: float
    rmse: float  # root mean squared error of the fitted share against the measured means
    n_points: int


def fit_toy_model(n, measured_share, ceiling: float = 1.0) -> ToyFit:
    """Least-squares fit of ``(a, p)`` to measured shares at finite N (coarse-to-fine grid search;
    deterministic), with ``O = ceiling`` bits (``a`` is in bits per bit^p, so it depends on O). Infinite N is
    predicted as 1 whatever the parameters, so it is left out of the fit."""
    n = np.asarray(n, np.float64)
    y = np.asarray(measured_share, np.float64)
    ok = np.isfinite(n) & np.isfinite(y)
    n, y = n[ok], y[ok]
    if len(y) < 2:
        return ToyFit(math.nan, math.nan, math.nan, int(len(y)))
    best = (math.inf, DEFAULT_A, DEFAULT_P)
    log_a = np.linspace(-4, 8, 121)
    ps = np.linspace(1.05, 6.0, 100)
    for la in log_a:
        for p in ps:
            err = float(np.mean((mesa_share(n, 10 ** la, p, ceiling) - y) ** 2))
            if err < best[0]:
                best = (err, 10 ** la, p)
    return ToyFit(float(best[1]), float(best[2]), math.sqrt(best[0]), int(len(y)))


DEFAULT_CEILING_BITS = 10.0  # O when no measured sweep is given (about a 9x9 maze's oracle bits)
N_GRID = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


def split_rows(curve: str, n_values, a: float, p: float, ceiling: float) -> list[tuple]:
    """Per N: the share of each instance's O bits done by the learned algorithm (x*/O), by the base optimizer
    instance by instance ((O - x*)/O), and by the base optimizer finding the algorithm, amortised (f(x*)/(N O))."""
    rows = []
    for n in n_values:
        share = float(mesa_share([n], a, p, ceiling)[0])
        x = share * ceiling
        amortised = 0.0 if np.isinf(n) else a * x ** p / (n * ceiling)
        rows.append((curve, float(n), a, p, ceiling, share, 1.0 - share, amortised))
    return rows
