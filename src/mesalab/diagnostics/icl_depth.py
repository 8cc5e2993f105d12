"""``icl-depth``: does the in-context learning algorithm of a linear-attention transformer move from one GD step
towards multi-step GD, GD++ or least squares as the model gets deeper?

Two parts, both free of orchestration:

- the reference set of a depth-L model (:func:`depth_references`, :func:`depth_matches`): k-step GD for
  k = 1..L+1, k-step GD++ (von Oswald et al. 2023; :func:`mesalab.diagnostics.icl_reference.gdpp_weights`) for
  k = 2..L, and least squares, each tuned on held-out sequences. GD++-1 is left out: in the paper's construction
  a layer's GD step uses the layer's *input* tokens, so the first GD++ step is exactly one GD step (gd-1-step);
  listing it twice would only create ties.
- statistics over seeds and the depth verdict (:func:`depth_statistics`, :func:`depth_verdict`), pure functions
  of plain data: for each seed and depth, the match rows of the *final* layer's read-out.

"Toward" is defined through the effective number of GD steps of the best-matching reference
(:func:`reference_steps`, an ordinal code): ``gd-k-step`` -> k, ``gd++-k-step`` -> k + 1/2 (k GD steps plus a
curvature correction: above k plain steps, and ordered by k), least squares / ridge -> 1000 (beyond any
step count here; only ranks matter). The hypothesis is **supported** when (a) depth 1's best match is
gd-1-step and it matches (mean sensitivity cosine >= ``MATCH_COSINE``), (b) the effective steps of each seed's
best match rise with depth: Spearman rho > 0 with permutation p < ``LEVEL``
(:func:`mesalab.experiments.stats.trend_test`; runs whose best reference does not match are left out, since no
algorithm is identified there), and (c) some deeper depth's best match is a matching reference other than
gd-1-step. Otherwise it is **not supported**, and the sentence says which part failed.
"""

from __future__ import annotations

import math
import re
from typing import Iterable, Mapping, NamedTuple, Sequence

import numpy as np

from mesalab.diagnostics.stats import bootstrap_mean_ci

MATCH_COSINE = 0.99  # a reference "matches" when the sensitivity cosine reaches this (icl-gd runs and sweeps)
LEVEL = 0.05  # significance level of the trend test (as in experiments.stats)
LEAST_SQUARES_STEPS = 1000.0  # effective GD steps given to least squares / ridge: beyond any k used here
SUPPORTED, NOT_SUPPORTED = "supported", "not supported"


# ------------------------------------------------------------------------------------------- reference set


class DepthReferences(NamedTuple):
    gd_lrs: dict  # k -> learning rate of k-step GD (k = 1..L+1)
    gdpp_params: dict  # k -> (learning rate, gamma) of k-step GD++ (k = 2..L)


def depth_references(tune, layers: int) -> DepthReferences:
    """The tuned reference set of a ``layers``-deep model on held-out sequences ``tune`` (a RegressionBatch):
    GD learning rates as ``icl_analysis.tuned_lr`` chooses them (same grid, computed in one jitted pass) and GD++
    ``(lr, gamma)`` from :func:`mesalab.diagnostics.icl_reference.tuned_gdpp_params`. Deterministic."""
    from mesalab.diagnostics.icl_reference import tuned_gd_lr, tuned_gdpp_params

    args = (tune.x, tune.y, tune.x_query, tune.y_query)
    gd = {k: tuned_gd_lr(*args, k) for k in range(1, max(layers, 1) + 2)}
    gdpp = {k: tuned_gdpp_params(*args, k) for k in range(2, layers + 1)}
    return DepthReferences(gd, gdpp)


def depth_matches(model, config, n_eval: int = 4000, seed: int = 12345) -> tuple[list[dict], DepthReferences]:
    """Rows ``{"layer", "name", "test_loss", "model_test_loss", "prediction_mse", "sensitivity_cosine"}`` of
    the read-out after every layer against the full depth reference set (the rows ``analyse_model`` writes, with
    GD++ added), and the references. Tuning and test sequences are drawn as in ``analyse_model`` (keys ``seed``
    and ``seed + 1``); no out-of-distribution curves."""
    import jax

    from mesalab.diagnostics.algorithm_match import compare_to_references
    from mesalab.tasks.icl_regression import make_regression_distribution, sample_regression

    dist = make_regression_distribution(config.x_scale, config.w_scale, config.noise_std)
    tune = sample_regression(jax.random.key(seed), dist, n_eval, config.n_context, config.dim)
    test = sample_regression(jax.random.key(seed + 1), dist, n_eval, config.n_context, config.dim)
    refs = depth_references(tune, config.layers)
    rows = []
    for layer in range(config.layers):
        def predict(x, y, xq, layer=layer):
            _, acts = model(x, y, xq)
            return acts[f"layer_{layer}/residual"][-1, -1]

        rows += [{"layer": layer + 1, **r._asdict()}
                 for r in compare_to_references(predict, test, refs.gd_lrs, gdpp_params=refs.gdpp_params)]
    return rows, refs


def final_layer_rows(matches: Iterable, layers: int) -> list[dict]:
    """The final layer's rows, as ``{"name", "sensitivity_cosine", "prediction_mse"}``, from ``analyse_model`` /
    :func:`depth_matches` rows (dicts with ``layer``) or ``icl_cell_measurement`` tuples ``(layer, reference,
    reference_loss, model_loss, prediction_mse, sensitivity_cosine)``."""
    out = []
    for m in matches:
        if isinstance(m, Mapping):
            if m["layer"] == layers:
                out.append(_row(m))
        else:
            layer, name, _, _, mse, cos = m
            if layer == layers:
                out.append({"name": name, "sensitivity_cosine": float(cos), "prediction_mse": float(mse)})
    return out


# ----------------------------------------------------------------------------------------------- statistics


def reference_steps(name: str) -> float:
    """Effective number of GD steps of a reference (ordinal; see the module notes); nan for an unknown name."""
    m = re.fullmatch(r"gd(\+\+)?-(\d+)-step", name)
    if m:
        return int(m.group(2)) + (0.5 if m.group(1) else 0.0)
    if name == "least-squares" or name.startswith("ridge("):
        return LEAST_SQUARES_STEPS
    return math.nan


def _row(r) -> dict:
    """A match row as a dict: accepts dicts (``name`` or ``reference``), AlgorithmMatch, or (name, cos, mse)."""
    if isinstance(r, Mapping):
        name = r["name"] if "name" in r else r["reference"]
        return {"name": name, "sensitivity_cosine": float(r["sensitivity_cosine"]),
                "prediction_mse": float(r["prediction_mse"])}
    if hasattr(r, "_asdict"):
        return _row(r._asdict())
    name, cos, mse = r
    return {"name": name, "sensitivity_cosine": float(cos), "prediction_mse": float(mse)}


class RefCell(NamedTuple):
    depth: int
    reference: str
    n_seeds: int
    cosine_mean: float
    cosine_low: float  # 95% percentile-bootstrap CI over seeds (equal to the mean with one seed)
    cosine_high: float
    mse_mean: float
    mse_low: float
    mse_high: float


class DepthBest(NamedTuple):
    depth: int
    reference: str  # highest mean sensitivity cosine over seeds
    n_seeds: int
    agree: int  # seeds whose own best reference (highest cosine) is ``reference``
    matched: int  # seeds whose own best reference reaches MATCH_COSINE
    cosine_mean: float
    cosine_low: float
    cosine_high: float
    mse_mean: float
    steps: float  # reference_steps(reference)
    per_seed: tuple  # (seed, own best reference, its cosine) per seed

    @property
    def is_match(self) -> bool:
        return self.cosine_mean >= MATCH_COSINE


def _tables(tables: Mapping) -> dict:
    """``{seed: {depth: [row dicts]}}`` with every row normalised by :func:`_row`."""
    return {s: {int(d): [_row(r) for r in rows] for d, rows in by_depth.items() if len(rows)}
            for s, by_depth in tables.items()}


def depth_statistics(tables: Mapping, seed: int = 0) -> tuple[list[RefCell], list[DepthBest]]:
    """``tables``: ``{seed: {depth: rows}}``, rows being the final layer's match rows of that seed's model of that
    depth. Returns per (depth, reference) the mean and 95% bootstrap CI over seeds of the sensitivity cosine and
    prediction MSE, and per depth the best-matching reference (highest mean cosine) with how many seeds agree."""
    t = _tables(tables)
    depths = sorted({d for by_depth in t.values() for d in by_depth})
    cells, best = [], []
    for d in depths:
        runs = {s: by_depth[d] for s, by_depth in t.items() if d in by_depth}
        names = list(dict.fromkeys(r["name"] for rows in runs.values() for r in rows))
        depth_cells = []
        for name in names:
            vals = [r for rows in runs.values() for r in rows if r["name"] == name]
            cm, cl, ch = bootstrap_mean_ci([r["sensitivity_cosine"] for r in vals], seed=seed)
            mm, ml, mh = bootstrap_mean_ci([r["prediction_mse"] for r in vals], seed=seed)
            depth_cells.append(RefCell(d, name, len(vals), cm, cl, ch, mm, ml, mh))
        cells += depth_cells
        top = max(depth_cells, key=lambda c: (np.nan_to_num(c.cosine_mean, nan=-np.inf), -names.index(c.reference)))
        per_seed = []
        for s, rows in runs.items():
            own = max(rows, key=lambda r: r["sensitivity_cosine"])
            per_seed.append((s, own["name"], own["sensitivity_cosine"]))
        best.append(DepthBest(d, top.reference, len(runs), sum(p[1] == top.reference for p in per_seed),
                              sum(p[2] >= MATCH_COSINE for p in per_seed), top.cosine_mean, top.cosine_low,
                              top.cosine_high, top.mse_mean, reference_steps(top.reference), tuple(per_seed)))
    return cells, best


class DepthVerdict(NamedTuple):
    verdict: str  # SUPPORTED / NOT_SUPPORTED
    reason: str  # why (one clause)
    cells: list
    best: list
    trend: object  # experiments.stats.Trend of per-seed best-match effective steps against depth
    sentence: str


STEPS_CODE = "gd-k-step = k, gd++-k-step = k + 1/2, least squares = beyond any k"


def _interval(mean: float, lo: float, hi: float, n: int) -> str:
    if n <= 1:
        return f"{mean:.4f} (1 seed, no interval)"
    return f"{mean:.4f} [{lo:.4f}, {hi:.4f}]"


def _describe(b: DepthBest) -> str:
    cos = _interval(b.cosine_mean, b.cosine_low, b.cosine_high, b.n_seeds)
    if not b.is_match:
        return (f"depth {b.depth}: no reference matches (best: {b.reference}, sensitivity cosine {cos} < "
                f"{MATCH_COSINE}; {b.matched}/{b.n_seeds} seeds match any reference)")
    return (f"depth {b.depth}: {b.reference} (sensitivity cosine {cos}, prediction MSE {b.mse_mean:.4f}; best for "
            f"{b.agree}/{b.n_seeds} seeds)")


def depth_verdict(tables: Mapping, level: float = LEVEL, n_permutations: int | None = None,
                  seed: int = 0) -> DepthVerdict:
    """The icl-depth verdict from ``tables`` (``{seed: {depth: final-layer match rows}}``; see the module notes
    for the definition of "supported"), with the per-depth best matches, their CIs and the trend test in the
    sentence."""
    from mesalab.experiments.stats import N_PERMUTATIONS, trend_test

    cells, best = depth_statistics(tables, seed=seed)
    if not best:
        raise ValueError("no match rows: tables is empty")
    n_seeds = len(tables)
    xs, ys = [], []
    for b in best:
        for _, name, cos in b.per_seed:
            if cos >= MATCH_COSINE:
                xs.append(b.depth)
                ys.append(reference_steps(name))
    trend = trend_test(xs, ys, n_permutations or N_PERMUTATIONS, seed=seed)
    first, deeper = best[0], best[1:]
    rho = "n/a" if not np.isfinite(trend.rho) else f"{trend.rho:+.2f}"
    p = "n/a" if not np.isfinite(trend.p_value) else f"{trend.p_value:.3g}"
    moved = [b for b in deeper if b.is_match and b.steps > 1]
    if not (first.reference == "gd-1-step" and first.is_match):
        reason = (f"at depth {first.depth} the best match is not a matching one-step GD "
                  f"({first.reference}, cosine {first.cosine_mean:.4f})")
    elif not deeper:
        reason = "only one depth was measured"
    elif not any(b.matched for b in deeper):
        reason = (f"no model deeper than depth {first.depth} matches any reference for any seed (sensitivity "
                  f"cosine < {MATCH_COSINE})")
    elif trend.n < 3:
        reason = f"too few runs with a matching reference for a trend test ({trend.n} < 3)"
    elif not (np.isfinite(trend.rho) and trend.rho > 0 and trend.p_value < level):
        reason = f"the effective GD steps of the best match show no significant rise with depth (rho {rho}, p {p})"
    elif not moved:
        reason = "no deeper model's best match is a matching reference beyond one GD step"
    else:
        reason = ""
    verdict = NOT_SUPPORTED if reason else SUPPORTED
    if verdict == SUPPORTED:
        head = (f"Supported: the best-matching algorithm moves from {first.reference} at depth {first.depth} to "
                f"{best[-1].reference if best[-1].is_match else 'no matching reference'} at depth {best[-1].depth}")
    else:
        head = f"Not supported ({reason})"
    unmatched = [b.depth for b in best if not b.is_match]
    honest = (f" No reference algorithm matches at depth {', '.join(map(str, unmatched))} (sensitivity cosine "
              f"< {MATCH_COSINE}): there the model implements none of the listed algorithms, and no mesa-objective "
              f"is implied." if unmatched else "")
    few = (" With a single seed there are no confidence intervals, and a permutation test over so few runs cannot "
           f"reach p < {level}." if n_seeds == 1 else "")
    sentence = (f"{head}. Per depth (final layer's read-out, mean [95% bootstrap CI] over {n_seeds} seed"
                f"{'s' if n_seeds != 1 else ''}): {'; '.join(_describe(b) for b in best)}.{honest} Effective GD steps "
                f"of each seed's best matching reference ({STEPS_CODE}) against depth: Spearman rho = {rho} over "
                f"{trend.n} runs, permutation p = {p} (level {level}).{few}")
    return DepthVerdict(verdict, reason, cells, best, trend, sentence)


def tables_from_rows(rows: Iterable[Sequence]) -> dict:
    """``{seed: {depth: rows}}`` from flat tuples ``(seed, depth, reference, sensitivity_cosine,
    prediction_mse)`` (e.g. a sweep database's final-layer rows)."""
    out: dict = {}
    for s, d, name, cos, mse in rows:
        out.setdefault(s, {}).setdefault(int(d), []).append({"name": name, "sensitivity_cosine": float(cos),
                                                              "prediction_mse": float(mse)})
    return out
