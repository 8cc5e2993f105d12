"""The analysed result of a toy-model folder: the predicted split of optimization power against N and, when
compared with a diversity sweep, the measured curve, the fit and what they say."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mesalab.errors import ConfigError
from mesalab.experiments.toy_model import (DEFAULT_A, DEFAULT_CEILING_BITS, DEFAULT_P, N_GRID, fit_toy_model,
                                           split_rows)


@dataclass
class ToyAnalysis:
    path: Path
    meta: dict
    model: list  # (curve, n, a, p, ceiling_bits, mesa_share, base_instance_share, base_amortised_share)
    measured: list  # (n, mean, ci_low, ci_high, n_seeds)
    fit: list  # (a, p, rmse, n_points, ceiling_bits)
    sentences: list = field(default_factory=list)
    verdicts: list = field(default_factory=list)  # the compared diversity sweep's verdict on bits (stats.HypothesisVerdict)


def toy_model_rows(compare: Path | None = None) -> dict:
    """The toy model's rows (and, with ``compare`` = a finished ``diversity`` sweep folder, the measured curve and
    the fit to it): ``{"rows": table -> rows, "ceiling": O in bits}``."""
    measured = None
    if compare is not None:
        from mesalab.analysis.sweep import analyse_sweep, sweep_folder

        analysis = analyse_sweep(compare)
        if analysis.preset.name != "diversity":
            raise ConfigError(f"--compare needs a diversity sweep folder; {compare} holds {analysis.preset.name!r}")
        series = {s.metric: s for s in analysis.series}
        if "test/bits_fraction" not in series:
            raise ConfigError(f"{compare} has no finished cells yet; run `mesalab sweep diversity` first")
        dial = analysis.preset.dial
        measured = [(dial.order(p.value), p.mean, p.ci_low, p.ci_high, len(p.per_seed))
                    for p in series["test/bits_fraction"].points]
        # O = the oracle's mean bits per unseen maze, over every finished cell
        (ceiling,) = sweep_folder(compare).sql("SELECT avg(value) FROM cell_metrics WHERE metric = 'test/bits_ceiling'")[0]
        ceiling = DEFAULT_CEILING_BITS if ceiling is None else float(ceiling)
    else:
        ceiling = DEFAULT_CEILING_BITS
    grid = [*N_GRID, float("inf")]
    rows = {"toy_model": split_rows("default", grid, DEFAULT_A, DEFAULT_P, ceiling), "toy_measured": [], "toy_fit": []}
    if measured is not None:
        rows["toy_measured"] = [tuple(m) for m in measured]
        fit = fit_toy_model([m[0] for m in measured], [m[1] for m in measured], ceiling)
        if np.isfinite(fit.a):
            rows["toy_model"] += split_rows("fitted", grid, fit.a, fit.p, ceiling)
        rows["toy_fit"] = [(fit.a, fit.p, fit.rmse, fit.n_points, ceiling, str(compare))]
    return {"rows": rows, "ceiling": ceiling}


def analyse_toy(folder) -> ToyAnalysis:
    from mesalab.analysis.sweep import analyse_sweep

    meta = folder.read_meta()
    model = folder.sql("SELECT curve, n, a, p, ceiling_bits, mesa_share, base_instance_share, base_amortised_share "
                       "FROM toy_model ORDER BY curve, n")
    measured = folder.sql("SELECT n, mean, ci_low, ci_high, n_seeds FROM toy_measured ORDER BY n")
    fit = folder.sql("SELECT a, p, rmse, n_points, ceiling_bits FROM toy_fit")
    a = ToyAnalysis(folder.path, meta, model, measured, fit)
    a.sentences.append(f"With f(x) = a·x^p, the learned algorithm's share rises as (N/(a·p))^(1/(p-1)) and saturates "
                       f"at 1 (O = {model[0][4]:.1f} bits per instance).")
    if measured and fit:
        fa, fp, rmse, n_points, _ = fit[0]
        a.sentences.append(f"Fitted to the measured curve: a = {fa:.3g}, p = {fp:.2f}, RMS error {rmse:.3f} over "
                           f"{n_points} finite N (two free parameters: a good fit is weak evidence on its own).")
        at_inf = [m for m in measured if not np.isfinite(m[0])]
        if at_inf:
            a.sentences.append(f"At N = ∞ the model puts all of each instance's {model[0][4]:.1f} bits in the learned "
                               f"algorithm; the measured agents reach {at_inf[0][1]:.2f} [{at_inf[0][2]:.2f}, "
                               f"{at_inf[0][3]:.2f}] of the oracle's bits: the model assumes every instance is solved "
                               "optimally, which these agents are far from.")
        div = analyse_sweep(Path(meta["compare"]))
        a.verdicts = [v for v in div.verdicts if v.metric == "test/bits_fraction"]
        if a.verdicts:
            v = a.verdicts[0]
            agrees = {"supported": "agrees with", "contradicted": "contradicts",
                      "inconclusive": "neither confirms nor contradicts"}[v.verdict]
            a.sentences.append(f"The measured curve {agrees} the toy model's predicted rise: {v.sentence}")
    return a
