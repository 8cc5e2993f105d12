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


def sweep_folder(path) -> RunFolder:
    """The folder of a sweep of cells (its database: :data:`~mesalab.results.tables.SWEEP_SCHEMA`, plus each ICL
    cell's matches)."""
    return path if isinstance(path, RunFolder) else RunFolder(
        path, ICL_SWEEP_SCHEMA, "sweep.json", "sweep.duckdb", "cells", "cell_id",
        missing="no cell of this sweep has finished; run `mesalab sweep` first",
        corrupt="move it aside and re-run `mesalab sweep` (its cells will be retrained)")


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
    if preset.cell == "ppo":
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
