"""``mesalab sweep PRESET``: run a preset's grid of cells, committing each finished batch, resuming a
previous run of the same command in the same folder; then analyse it (:func:`analyse_sweep`).

Sweep folder::

    sweep.json          preset, seeds, evaluation plan, versions (rewritten when seeds are added)
    sweep.duckdb        cells, cell_metrics, cell_curves, cell_trajectories, levels (one transaction per batch)
    checkpoints/<cell>.eqx
    figures/*.png, report.html
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from mesalab.errors import ConfigError, CorruptRunError
from mesalab.experiments import stats
from mesalab.experiments.plan import Batch, batches, cells
from mesalab.experiments.presets import Preset, configured_preset
from mesalab.experiments.store import commit_batch, finished_cells, open_sweep
from mesalab.results.provenance import now, versions
from mesalab.results.store import dumps

SWEEP_JSON = "sweep.json"


def checkpoint_name(cell_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", cell_id) + ".eqx"


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


def check_sweep_dir(preset: Preset, out: Path | None, overrides: dict, eval_overrides: dict) -> Path:
    """The sweep folder (default ``sweeps/PRESET``), checked before anything is written: a folder that can be
    written (not an existing file, a read-only place or under a file), holding nothing yet, or a sweep of this
    preset run with the same settings (which is then resumed), never a run or another kind of sweep."""
    from mesalab.errors import check_output_dir

    out = check_output_dir(Path("sweeps") / preset.name if out is None else out)
    if (out / SWEEP_JSON).exists():
        meta = load_sweep_config(out)
        if meta["preset"] != preset.name:
            raise ConfigError(f"{out} holds a sweep of preset {meta['preset']!r}; pass a new --out for {preset.name!r}")
        before = (meta.get("overrides", {}), meta.get("eval_overrides", {}))
        if before != (overrides, eval_overrides):
            raise ConfigError(f"{out} was run with settings {before[0] | before[1]}, not {overrides | eval_overrides}; "
                              "repeat its options to resume it, or pass a new --out")
    elif (out / "results.duckdb").exists():
        raise ConfigError(f"{out} holds a run, not a sweep; pass a new --out folder")
    return out


def check_sweep_inputs(preset_name: str, seeds: list[int], out: Path | None = None, backend: str = "local",
                       overrides: dict | None = None, eval_overrides: dict | None = None) -> tuple[Preset, list, Path]:
    """Every input of :func:`run_sweep` checked before anything is written, started or displayed (one-line
    :class:`ConfigError` naming the fix): backend, preset, overrides, every cell's config, the seeds and the
    folder. Returns ``(configured preset, its cells, sweep folder)``."""
    if backend not in ("local", "ray"):
        raise ConfigError(f"unknown backend {backend!r}; use --backend local or --backend ray")
    overrides, eval_overrides = dict(overrides or {}), dict(eval_overrides or {})
    preset = configured_preset(preset_name, overrides, eval_overrides)
    all_cells = cells(preset, seeds)  # validates seeds and every cell's config
    return preset, all_cells, check_sweep_dir(preset, out, overrides, eval_overrides)


def prepare_sweep_dir(preset: Preset, seeds: list[int], out: Path | None, overrides: dict,
                      eval_overrides: dict) -> tuple[Path, dict]:
    from mesalab.results.files import write_json_atomic

    out = check_sweep_dir(preset, out, overrides, eval_overrides)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"--out {out} cannot be created ({e.strerror or e}); pass a folder you can write to") from None
    if (out / SWEEP_JSON).exists():
        meta = load_sweep_config(out)
        meta["seeds"] = sorted(set(meta["seeds"]) | set(seeds))
        meta.setdefault("resumed", []).append(now())
    else:
        meta = {"kind": "sweep", "preset": preset.name, "seeds": sorted(seeds), "overrides": overrides,
                "eval_overrides": eval_overrides, "eval": asdict(preset.eval), "versions": versions(), "created": now()}
    write_json_atomic(out / SWEEP_JSON, meta)
    return out, meta


def batch_rows(batch: Batch, results: list, meta: dict, preset: Preset) -> dict[str, list[tuple]]:
    by_id = {c.cell_id: c for c in batch.cells}
    rows: dict[str, list[tuple]] = {"cells": [], "cell_metrics": [], "cell_curves": [], "cell_trajectories": []}
    stamp = now()
    for r in results:
        c = by_id[r.cell_id]
        rows["cells"].append((c.cell_id, batch.batch_id, c.panel, preset.dial.name, preset.dial.stored(c.value), c.seed,
                              dumps(c.config), dumps(meta["versions"]), r.wall_s, stamp))
        rows["cell_metrics"] += [(c.cell_id, k, float(v)) for k, v in sorted(r.metrics.items())]
        rows["cell_curves"] += [(c.cell_id, u, s, v) for u, s, v in r.curve]
        rows["cell_trajectories"] += [(c.cell_id, *t) for t in r.trajectories]
    return rows


def save_cell_checkpoints(sweep_dir: Path, batch: Batch, results: list) -> None:
    import equinox as eqx
    import jax

    from mesalab.optimizers import PPOConfig, init_model
    from mesalab.results.files import save_leaves_atomic

    (sweep_dir / "checkpoints").mkdir(exist_ok=True)
    by_id = {c.cell_id: c for c in batch.cells}
    for r in results:
        skeleton = init_model(PPOConfig(**by_id[r.cell_id].config), jax.random.key(0))
        params, static = eqx.partition(skeleton, eqx.is_array)
        treedef = jax.tree_util.tree_structure(params)
        model = eqx.combine(jax.tree_util.tree_unflatten(treedef, r.model_leaves), static)
        path = sweep_dir / "checkpoints" / checkpoint_name(r.cell_id)
        save_leaves_atomic(path, model)


def store_levels(con, preset: Preset) -> None:
    """The first drawn levels of each task's evaluation pools (for the trajectory drawings)."""
    from mesalab.diagnostics import evaluation_levels
    from mesalab.experiments.cells import LEVEL_SEED
    from mesalab.tasks import get_task

    tasks = sorted({preset.panel_task(panel) for panel in preset.panels})
    n = preset.eval.drawn_levels
    rows = []
    for name in tasks:
        task = get_task(name)
        for split in ("train", "test"):
            params = evaluation_levels(task, split, preset.eval.episodes, LEVEL_SEED)
            for lvl in range(n):
                g = np.asarray(params.grid[lvl])
                h, w, ch = g.shape
                rows.append((name, split, lvl, h, w, ch, g.reshape(-1).tolist(), int(params.start[lvl, 0]),
                             int(params.start[lvl, 1])))
    con.executemany("INSERT OR IGNORE INTO levels VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)


def run_sweep(preset_name: str, seeds: list[int], out: Path | None = None, backend: str = "local",
              workers: int | None = None, address: str | None = None, overrides: dict | None = None,
              eval_overrides: dict | None = None,
              on_plan: Callable[[int, int], None] | None = None,
              on_progress: Callable[[float], None] | None = None) -> Path:
    """Run (or resume) a preset's sweep; returns the sweep folder. ``on_plan(n_todo, n_done)`` is told the
    number of cells left and already finished; ``on_progress(cells_done)`` as training advances.
    ``overrides``/``eval_overrides``: PPO and evaluation settings changed for every cell (recorded; a resumed
    sweep must repeat them)."""
    from mesalab.optimizers import PPOConfig
    from mesalab.runner import default_workers

    overrides, eval_overrides = dict(overrides or {}), dict(eval_overrides or {})
    preset, all_cells, _ = check_sweep_inputs(preset_name, seeds, out, backend, overrides, eval_overrides)
    sweep_dir, meta = prepare_sweep_dir(preset, seeds, out, overrides, eval_overrides)
    con = open_sweep(sweep_dir)
    try:
        done = finished_cells(con)
        todo = batches(preset, seeds, done)
        n_todo = sum(len(b.cells) for b in todo)
        if on_plan:
            on_plan(n_todo, len(all_cells) - n_todo)
        store_levels(con, preset)
        updates = {b.batch_id: PPOConfig(**b.config).num_updates for b in todo}
        progress: dict[str, float] = {}

        def report_progress(batch_id: str, n_updates: int) -> None:
            b = next(b for b in todo if b.batch_id == batch_id)
            progress[batch_id] = len(b.cells) * min(1.0, n_updates / updates[batch_id]) * 0.95
            if on_progress:
                on_progress(sum(progress.values()))

        def on_result(batch: Batch, results: list) -> None:
            save_cell_checkpoints(sweep_dir, batch, results)
            commit_batch(con, batch_rows(batch, results, meta, preset))
            progress[batch.batch_id] = float(len(batch.cells))
            if on_progress:
                on_progress(sum(progress.values()))

        if backend == "ray":
            from mesalab.experiments.backends import run_ray

            run_ray(todo, preset.eval, on_result, address=address, workers=workers)
        else:
            from mesalab.experiments.backends import run_local

            n_workers = default_workers(len(todo)) if workers is None else workers
            run_local(todo, preset.eval, n_workers, on_result, report_progress)
    finally:
        con.close()
    from mesalab.report.sweep import build_sweep_report

    build_sweep_report(sweep_dir)
    return sweep_dir


# -- analysis ------------------------------------------------------------------------------------------------

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


def _expand(metric: str, task_name: str) -> list[str]:
    if "{proxy}" not in metric:
        return [metric]
    from mesalab.tasks import get_task

    return [metric.replace("{proxy}", p.name) for p in get_task(task_name).proxies]


def analyse_sweep(sweep_dir: Path) -> SweepAnalysis:
    """Dial curves (mean, bootstrap CI, per-seed values) and one verdict per hypothesis and panel, from the
    finished cells of a sweep folder."""
    meta = load_sweep_config(sweep_dir)
    if meta.get("kind") != "sweep":
        raise ConfigError(f"{sweep_dir} holds a {meta.get('kind')} result, not a sweep of cells")
    preset = configured_preset(meta["preset"], meta.get("overrides"), meta.get("eval_overrides"))
    con = open_sweep(sweep_dir, read_only=True)
    try:
        cell_rows = con.execute("SELECT cell_id, panel, value, seed, config, wall_s FROM cells").fetchall()
        metric_rows = con.execute("SELECT cell_id, metric, value FROM cell_metrics").fetchall()
    finally:
        con.close()
    values: dict[tuple[str, str], float] = {(c, m): v for c, m, v in metric_rows}
    dial = preset.dial
    series, verdicts = [], []
    for panel in preset.panels:
        pname = preset.panel_name(panel)
        task_name = preset.panel_task(panel)
        pcells = [r for r in cell_rows if r[1] == pname]
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
    return SweepAnalysis(preset, meta, len(cell_rows), n_expected, series, verdicts,
                         float(sum(r[5] for r in cell_rows)), cell_rows, values)
