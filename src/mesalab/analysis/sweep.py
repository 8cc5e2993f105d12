"""The analysed result of a sweep of cells: dial curves with bootstrap CIs over seeds, and one verdict per
hypothesis and panel (a monotone trend test along the dial, :mod:`mesalab.experiments.stats`)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mesalab.errors import ConfigError, CorruptRunError
from mesalab.experiments import stats
from mesalab.experiments.presets import Preset, configured_preset
from mesalab.results.folder import RunFolder
from mesalab.results.tables import ICL_SWEEP_SCHEMA

SWEEP_JSON = "sweep.json"


def load_sweep_config(sweep_dir: Path) -> dict:
    path = Path(sweep_dir) / SWEEP_JSON
    if not path.exists():
        raise CorruptRunError(f"{sweep_dir} is not a sweep folder (no {SWEEP_JSON}); pass the folder `mesalab sweep` wrote")
    try:
        meta = json.loads(path.read_text())
        meta["preset"], meta["seeds"]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise CorruptRunError(f"{path} is malformed ({type(e).__name__}); re-run `mesalab sweep` with a new --out") from None
    return meta


@dataclass
class MetricSeries:
    panel: str
    metric: str
    label: str
    points: list  # stats.DialPoint per dial value (in dial order)


@dataclass
class SweepAnalysis:
    preset: Preset
    meta: dict
    n_cells: int
    n_expected: int
    series: list[MetricSeries]
    verdicts: list  # stats.HypothesisVerdict
    wall_s: float  # summed (per-cell share of) batch wall time
    cells: list[tuple]  # (cell_id, panel, value, seed, config JSON, wall_s) of every finished cell
    metrics: dict[tuple[str, str], float]  # (cell_id, metric) -> value
    path: Path | None = None
    curves: list = field(default_factory=list)  # (panel, value, env steps, training success) of PPO cells
    trajectories: list = field(default_factory=list)  # (cell_id, split, level, rows, cols, outcome)
    levels: list = field(default_factory=list)  # (task, split, level, h, w, c, grid, start_row, start_col)
    matches: list = field(default_factory=list)  # ICL cells: cell_matches rows (dicts)
    sentences: list = field(default_factory=list)  # extra statements of the preset (e.g. the icl-depth verdict)
    extra_tables: list = field(default_factory=list)  # extra report tables: {"title", "header", "rows"}
    depth_verdict: object = None  # icl-depth presets: diagnostics.icl_depth.DepthVerdict
    comparison: object = None  # presets with a published curve: PublishedComparison (per panel: the first)


def _expand(metric: str, task_name: str) -> list[str]:
    if "{proxy}" not in metric:
        return [metric]
    from mesalab.tasks import get_task

    return [metric.replace("{proxy}", p.name) for p in get_task(task_name).proxies]


def depth_reading(cell_rows: list, matches: list[dict], values: dict) -> dict:
    """The icl-depth verdict (:func:`mesalab.diagnostics.icl_depth.depth_verdict`) over the finished cells: its
    sentence (and which cells diverged in training), and per depth a table of every reference's match with the
    final layer's read-out, mean [95% bootstrap CI] over seeds."""
    from mesalab.diagnostics.icl_depth import depth_verdict

    cell = {r[0]: (int(json.loads(r[4])["layers"]), int(r[3])) for r in cell_rows}
    diverged = sorted(cell[c] for c in cell if values.get((c, "train/diverged")) == 1.0)
    tables: dict = {}
    for m in matches:
        depth, seed = cell[m["cell_id"]]
        if m["layer"] == depth and (depth, seed) not in diverged:
            tables.setdefault(seed, {}).setdefault(depth, []).append(
                {"name": m["reference"], "sensitivity_cosine": m["sensitivity_cosine"],
                 "prediction_mse": m["prediction_mse"]})
    sentences = []
    if diverged:
        by_depth: dict = {}
        for d, s in diverged:
            by_depth.setdefault(d, []).append(s)
        sentences.append("Left out of the curves, the table and the verdict: cells that diverged in training (final "
                         "loss above twice its lowest and above its start), whose read-out says nothing about a "
                         "learned algorithm: " + "; ".join(
                             f"depth {d}: seed(s) {', '.join(map(str, ss))}" for d, ss in sorted(by_depth.items()))
                         + ".")
    if not tables:
        return {"sentences": sentences + ["Every finished cell diverged: no algorithm to compare."]}
    v = depth_verdict(tables)
    sentences.insert(0, v.sentence)
    rows = []
    for c in v.cells:
        ci = (f"{c.cosine_mean:.4f} [{c.cosine_low:.4f}, {c.cosine_high:.4f}]" if c.n_seeds > 1
              else f"{c.cosine_mean:.4f}")
        mse = f"{c.mse_mean:.4g} [{c.mse_low:.4g}, {c.mse_high:.4g}]" if c.n_seeds > 1 else f"{c.mse_mean:.4g}"
        rows.append([str(c.depth), c.reference, ci, mse, str(c.n_seeds)])
    table = {"title": "Which algorithm the last layer's read-out implements, per depth (mean [95% bootstrap CI] "
                      "over seeds)", "header": ["reference", "sensitivity cosine", "prediction MSE", "seeds"],
             "rows": rows}
    return {"sentences": sentences, "extra_tables": [table], "depth_verdict": v}


SHAPE_SIMILAR_RHO = 0.8  # the curves are ordered alike when Spearman's rho between them is at least this
SHAPE_SIMILAR_SHARE = 0.15  # and their shares of the rise made by the dial's midpoint differ by less than this
COMPARISON_REPLICATES = 1000  # bootstrap replicates (seeds resampled within each dial value)


@dataclass
class PublishedComparison:
    """The measured curve against a published one (:class:`mesalab.experiments.published.PublishedCurve`), both in
    units of their own optimum, over the dial values both have (``shared``). Shape numbers, each measured one with a
    95% bootstrap interval over seeds (seeds resampled within each dial value):

    - ``rho``: Spearman's rank correlation between the two curves over the shared values (1 = ordered alike);
    - ``share``: the share of the curve's rise (first to last shared value) made by the middle of the dial range
      (linear interpolation between the shared values): 0.5 for a straight line, above it for a curve that rises
      early and saturates, below it for one that rises late."""

    panel: str
    curve: object  # PublishedCurve
    shared: tuple
    measured: tuple  # mean over seeds of the normalised metric at each shared value
    measured_ci: tuple  # (low, high) per shared value
    published: tuple  # published value / published optimum at each shared value
    rho: float
    rho_ci: tuple
    share: float
    share_ci: tuple
    published_share: float
    midpoint: float
    reading: str  # "similar", "different" or "flat" (the measured curve does not rise)
    sentence: str


def rise_share(xs, ys, at: float) -> float:
    """The share of the rise from ``ys[0]`` to ``ys[-1]`` reached at ``at`` (linear interpolation over ``xs``); nan
    when the curve does not rise."""
    xs, ys = np.asarray(xs, float), np.asarray(ys, float)
    rise = ys[-1] - ys[0]
    return float((np.interp(at, xs, ys) - ys[0]) / rise) if rise > 0 else float("nan")


def _ci(samples) -> tuple[float, float]:
    ok = np.asarray(samples, float)
    ok = ok[np.isfinite(ok)]
    if ok.size < 0.9 * len(samples):  # too many undefined replicates (a flat curve) for an interval
        return (float("nan"), float("nan"))
    return (float(np.percentile(ok, 2.5)), float(np.percentile(ok, 97.5)))


def published_comparison(preset: Preset, series: list, panel: str, seed: int = 0) -> PublishedComparison | None:
    """The shape comparison of the panel's measured curve (``preset.published.normalised_metric``) with the
    published one, or ``None`` when fewer than three dial values are shared and measured."""
    curve = preset.published
    s = next((s for s in series if s.panel == panel and s.metric == curve.normalised_metric), None)
    if curve is None or s is None:
        return None
    points = {p.value: p for p in s.points}
    shared = tuple(v for v in preset.dial.values if v in points and curve.value_at(v) is not None)
    if len(shared) < 3:
        return None
    xs = [preset.dial.order(v) for v in shared]
    measured = [points[v].mean for v in shared]
    published = [curve.value_at(v) / curve.optimum for v in shared]
    midpoint = (xs[0] + xs[-1]) / 2
    rho, share = stats.spearman(measured, published), rise_share(xs, measured, midpoint)
    published_share = rise_share(xs, published, midpoint)
    rng = np.random.default_rng(seed)
    rhos, shares = [], []
    for _ in range(COMPARISON_REPLICATES):
        means = [float(np.mean(rng.choice(points[v].per_seed, len(points[v].per_seed)))) for v in shared]
        rhos.append(stats.spearman(means, published))
        shares.append(rise_share(xs, means, midpoint))
    rho_ci, share_ci = _ci(rhos), _ci(shares)
    if not np.isfinite(share):
        reading = "flat"
    elif rho >= SHAPE_SIMILAR_RHO and abs(share - published_share) < SHAPE_SIMILAR_SHARE:
        reading = "similar"
    else:
        reading = "different"
    sentence = _comparison_sentence(preset, curve, shared, measured, published, rho, rho_ci, share, share_ci,
                                    published_share, midpoint, reading)
    return PublishedComparison(panel, curve, shared, tuple(measured),
                               tuple((points[v].ci_low, points[v].ci_high) for v in shared), tuple(published), rho,
                               rho_ci, share, share_ci, published_share, midpoint, reading, sentence)


def _interval(ci, fmt: str) -> str:
    return "" if not np.all(np.isfinite(ci)) else f" [{format(ci[0], fmt)}, {format(ci[1], fmt)}]"


def _comparison_sentence(preset, curve, shared, measured, published, rho, rho_ci, share, share_ci, published_share,
                         midpoint, reading) -> str:
    dial = preset.dial
    sides = ", ".join(dial.display(v) for v in shared)
    base = preset.base
    shape = {"similar": "The shapes agree", "different": "The shapes differ",
             "flat": "The measured curve does not rise, so there is no shape to compare"}[reading]
    share_txt = ("" if reading == "flat" else
                 f"; by the middle of the dial ({dial.name} = {midpoint:g}) the measured curve has made "
                 f"{share:.0%}{_interval(share_ci, '.0%')} of its rise, the published {published_share:.0%} (50% is a "
                 f"straight line, more rises early and saturates)")
    rho_txt = "n/a" if not np.isfinite(rho) else f"{rho:+.2f}{_interval(rho_ci, '+.2f')}"
    return (f"Shape against {curve.name}, both as a fraction of their own optimum over {dial.name} = {sides}: "
            f"measured {measured[0]:.2f} to {measured[-1]:.2f}, published {published[0]:.2f} to {published[-1]:.2f}. "
            f"{shape} (rule: Spearman rho between the curves at least {SHAPE_SIMILAR_RHO} and midpoint shares within "
            f"{SHAPE_SIMILAR_SHARE:.0%}): rho = {rho_txt}{share_txt} (95% bootstrap intervals over seeds). Absolute "
            f"values are not comparable: the published run is {curve.setup}; this sweep trains a "
            f"{base.get('model', 'mlp')} policy ({_obs_mode(preset)} observations) for "
            f"{base.get('total_steps', 0):,} steps on {base.get('n_levels') or 'unlimited'} training levels per "
            f"seed and scores one episode per evaluation level with the environment's reward (1 - 0.9 t / max_steps "
            f"on reaching the goal at step t) instead of a discounted 1.")


def _obs_mode(preset) -> str:
    from mesalab.tasks import get_task

    return preset.base.get("obs_mode") or get_task(preset.panel_task(preset.panels[0])).obs_mode


def comparison_table(c: PublishedComparison, display=str) -> dict:
    """The comparison as a report table (its rows start with the dial value, shown by ``display``)."""
    rows = [[display(v), f"{m:.3f} [{lo:.3f}, {hi:.3f}]", f"{p:.3f}"]
            for v, m, (lo, hi), p in zip(c.shared, c.measured, c.measured_ci, c.published)]
    return {"title": f"Measured against published ({c.curve.name}), each over its own optimum",
            "header": ["measured: mean [95% CI] over seeds", "published (one seed)"], "rows": rows}


def sweep_folder(path) -> RunFolder:
    """The folder of a sweep of cells (its database: :data:`~mesalab.results.tables.SWEEP_SCHEMA`, plus each ICL
    cell's matches)."""
    return path if isinstance(path, RunFolder) else RunFolder(
        path, ICL_SWEEP_SCHEMA, "sweep.json", "sweep.duckdb", "cells", "cell_id",
        missing="no cell of this sweep has finished; run `mesalab sweep` first",
        corrupt="move it aside and re-run `mesalab sweep` (its cells will be retrained)")


def overlap_sentence(cell_rows: list, values: dict) -> str:
    """"Unseen levels, checked: ..." from the cells' ``{split}/training_overlap`` metrics (evaluation levels equal,
    by hash, to a level the cell's model trained on); empty when no cell recorded the check."""
    parts = []
    for split in ("test", "train"):
        counts = [values[(r[0], f"{split}/training_overlap")] for r in cell_rows
                  if (r[0], f"{split}/training_overlap") in values]
        if counts:
            worst, n_with = int(max(counts)), sum(c > 0 for c in counts)
            parts.append(f"{split} pool: " + ("no level equals a training level in any cell" if worst == 0 else
                                               f"{n_with} of {len(counts)} cells trained on some of its levels "
                                               f"(at most {worst} levels per cell)"))
    if not parts:
        return ""
    return ("Unseen levels, checked (each evaluation level compared by hash with every level the cell's model trained "
            "on): " + "; ".join(parts) + ".")


def analyse_sweep(sweep_dir) -> SweepAnalysis:
    """Dial curves (mean, bootstrap CI, per-seed values) and one verdict per hypothesis and panel, from the
    finished cells of a sweep folder (a path or a :class:`RunFolder`)."""
    folder = sweep_folder(sweep_dir)
    sweep_dir = folder.path
    meta = load_sweep_config(sweep_dir)
    if meta.get("kind") != "sweep":
        raise ConfigError(f"{sweep_dir} holds a {meta.get('kind')} result, not a sweep of cells")
    preset = configured_preset(meta["preset"], meta.get("overrides"), meta.get("eval_overrides"))
    cell_rows = folder.sql("SELECT cell_id, panel, value, seed, config, wall_s FROM cells")
    metric_rows = folder.sql("SELECT cell_id, metric, value FROM cell_metrics")
    values: dict[tuple[str, str], float] = {(c, m): v for c, m, v in metric_rows}
    dial = preset.dial
    series, verdicts = [], []
    for panel in preset.panels:
        pname = preset.panel_name(panel)
        task_name = preset.panel_task(panel)
        # a cell that diverged in training (ICL cells measure it) has no algorithm to speak of: left out, and said
        pcells = [r for r in cell_rows if r[1] == pname and values.get((r[0], "train/diverged")) != 1.0]
        for metric_t, label in preset.plots:
            for metric in _expand(metric_t, task_name):
                by_value: dict = {}
                for v in dial.values:
                    got = [values.get((r[0], metric)) for r in pcells if r[2] == dial.stored(v)]
                    got = [x for x in got if x is not None]
                    if got:
                        by_value[v] = got
                if by_value:
                    series.append(MetricSeries(pname, metric, label.replace("proxy", f"proxy '{metric.split(':')[-1]}'")
                                               if "{proxy}" in metric_t else label, stats.dial_points(by_value)))
        for h in preset.hypotheses:
            for metric in _expand(h.metric, task_name):
                xs, ys, by_value = [], [], {}
                for r in pcells:
                    y = values.get((r[0], metric))
                    if y is not None and np.isfinite(y):
                        value = next(v for v in dial.values if dial.stored(v) == r[2])
                        xs.append(dial.order(value))
                        ys.append(y)
                        by_value.setdefault(value, []).append(y)
                if not by_value:
                    continue
                ordered = {v: by_value[v] for v in dial.values if v in by_value}
                points = stats.dial_points(ordered)
                trend = stats.trend_test(np.array(xs), np.array(ys))
                label = h.label.replace("proxy", f"proxy '{metric.split(':')[-1]}'") if "{proxy}" in h.metric else h.label
                verdicts.append(stats.verdict(pname, h.statement, metric, label, h.direction, points, trend,
                                              dial.label, dial.display))
    n_expected = len(preset.panels) * len(dial.values) * len(meta["seeds"])
    extra = {}
    if preset.published is not None:
        comparisons = [c for c in (published_comparison(preset, series, preset.panel_name(p)) for p in preset.panels)
                       if c is not None]
        if comparisons:
            extra.update(comparison=comparisons[0], sentences=[c.sentence for c in comparisons],
                         extra_tables=[comparison_table(c, dial.display) for c in comparisons])
    if preset.cell in ("ppo", "alphazero"):
        overlap = overlap_sentence(cell_rows, values)
        if overlap:
            extra["sentences"] = [*extra.get("sentences", []), overlap]
        extra["curves"] = folder.sql("SELECT c.panel, c.value, k.env_steps, k.success_rate FROM cell_curves k "
                                     "JOIN cells c USING (cell_id)")
        extra["trajectories"] = folder.sql("SELECT cell_id, split, level, rows, cols, outcome FROM cell_trajectories")
        extra["levels"] = folder.sql("SELECT task, split, level, height, width, channels, grid, start_row, start_col "
                                     "FROM levels")
    else:
        extra["matches"] = folder.tables("cell_matches", order={"cell_matches": "cell_id, layer, reference"})["cell_matches"]
        if preset.cell == "icl" and preset.dial.name == "layers" and extra["matches"]:
            extra.update(depth_reading(cell_rows, extra["matches"], values))
        else:
            n_div = sum(values.get((r[0], "train/diverged")) == 1.0 for r in cell_rows)
            if n_div:
                extra["sentences"] = [f"{n_div} cell(s) diverged in training (final loss above twice its lowest and "
                                      "its start) and are left out of the curves and verdicts."]
    return SweepAnalysis(preset, meta, len(cell_rows), n_expected, series, verdicts,
                         float(sum(r[5] for r in cell_rows)), cell_rows, values, path=sweep_dir, **extra)
