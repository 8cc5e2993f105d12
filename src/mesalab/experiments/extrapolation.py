"""The ``extrapolation`` preset: train a recall "thinking" network on small ``maze-path`` mazes (9×9 by default),
then measure its exact accuracy on unseen mazes of growing size after every tick up to ``max_ticks``.

It answers two questions with one table (see :mod:`mesalab.diagnostics.compute_scaling`): does the network
solve mazes bigger than any it was trained on (*size extrapolation*), and does it need — and use — more
iterations of thought to do so (*test-time compute scaling*)?

Results land in ``SWEEP_DIR/sweep.duckdb`` like every sweep: one cell per seed in ``cells`` (with its config,
versions and wall time), its training curve in ``cell_curves``, and the accuracy per (size, tick) in
``thinking_accuracy`` plus a per-size summary in ``thinking_summary``, all committed in one transaction per
seed, with the trained weights in ``checkpoints/``. Re-running the same command trains only the seeds that
are missing.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from mesalab.errors import ConfigError

PRESET = "extrapolation"
DEFAULT_SIZES = (9, 13, 21, 33, 45)
DEFAULT_MAX_TICKS = 400
DEFAULT_MAZES = 100

THINKING_SCHEMA = """
CREATE TABLE IF NOT EXISTS thinking_accuracy (cell_id VARCHAR, size INTEGER, ticks INTEGER, accuracy DOUBLE,
    n_mazes INTEGER, PRIMARY KEY (cell_id, size, ticks));
CREATE TABLE IF NOT EXISTS thinking_summary (cell_id VARCHAR, size INTEGER, n_mazes INTEGER,
    accuracy_at_trained_ticks DOUBLE, ci_low_trained DOUBLE, ci_high_trained DOUBLE, best_ticks INTEGER,
    accuracy_at_best_ticks DOUBLE, ci_low_best DOUBLE, ci_high_best DOUBLE, gain DOUBLE, gain_ci_low DOUBLE,
    gain_ci_high DOUBLE, PRIMARY KEY (cell_id, size));
"""


def settings_of(overrides: dict | None, sizes, max_ticks: int, mazes: int) -> dict:
    from mesalab.optimizers.thinking import ThinkingConfig
    from mesalab.tasks.maze_path import check_size

    config = ThinkingConfig.from_dict(dict(overrides or {}))
    sizes = sorted({check_size(int(s)) for s in sizes})
    if max_ticks < config.ticks:
        raise ConfigError(f"--max-ticks ({max_ticks}) must be at least the training ticks ({config.ticks})")
    if mazes < 1:
        raise ConfigError(f"--mazes must be at least 1, got {mazes}")
    return {"config": config.to_dict(), "sizes": sizes, "max_ticks": int(max_ticks), "mazes": int(mazes)}


def run_extrapolation(out: Path | None, seeds: list[int], overrides: dict | None = None, sizes=DEFAULT_SIZES,
                      max_ticks: int = DEFAULT_MAX_TICKS, mazes: int = DEFAULT_MAZES,
                      on_progress: Callable[[str, int, int], None] | None = None) -> Path:
    """Train and evaluate every missing seed, committing each; write the report. Returns the sweep folder."""
    import json

    import jax

    from mesalab.diagnostics.compute_scaling import maze_path_compute_scaling
    from mesalab.experiments.store import commit_batch, finished_cells, open_sweep
    from mesalab.experiments.sweep import load_sweep_config
    from mesalab.optimizers.thinking import ThinkingConfig, make_train, save_model, stored_config
    from mesalab.results.files import write_json_atomic
    from mesalab.results.provenance import now, versions

    out = Path("sweeps") / PRESET if out is None else Path(out)
    settings = settings_of(overrides, sizes, max_ticks, mazes)
    meta = {"kind": PRESET, "preset": PRESET, **settings}
    if (out / "sweep.json").exists():
        old = load_sweep_config(out)
        # Compare resolved configs: a folder written before a config key existed resumes if it was trained as the
        # requested config would be (the key's value then was what ADDED_KEYS_AS_BEFORE records).
        old["config"] = stored_config(old.get("config") or {}).to_dict()
        if any(old.get(k) != v for k, v in meta.items()):
            raise ConfigError(f"{out} holds an extrapolation sweep with other settings; pass a new --out or the "
                              f"same settings to resume it")
        seeds = sorted(set(seeds) | set(old.get("seeds", [])))
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "sweep.json", {**meta, "seeds": seeds, "versions": versions(), "created": now()})
    config = ThinkingConfig.from_dict(settings["config"])
    con = open_sweep(out)
    try:
        con.execute(THINKING_SCHEMA)
        done = finished_cells(con)
        for seed in seeds:
            cell_id = f"seed={seed}"
            if cell_id in done:
                continue
            t0 = time.time()
            progress = None if on_progress is None else (lambda i, n, s=seed: on_progress(f"seed {s}: training", i, n))
            model, metrics = make_train(config, progress)(jax.random.PRNGKey(seed))
            train_s = time.time() - t0
            if on_progress is not None:
                on_progress(f"seed {seed}: testing sizes {settings['sizes']}", 0, 1)
            cs = maze_path_compute_scaling(model, jax.random.PRNGKey(10_000 + seed), settings["sizes"],
                                           settings["max_ticks"], settings["mazes"], trained_size=config.size)
            ckpt = out / "checkpoints"
            ckpt.mkdir(exist_ok=True)
            save_model(str(ckpt / f"seed_{seed}.eqx"), model, config)
            rows = {
                "cells": [(cell_id, cell_id, "maze-path", "size", float(config.size), seed,
                           json.dumps(config.to_dict()), json.dumps({**versions(), "train_wall_s": train_s}),
                           time.time() - t0, now())],
                "cell_curves": [(cell_id, int(s), int(s) * config.batch, float(a))
                                for s, a in zip(metrics["eval_step"], metrics["train_accuracy"])],
                "thinking_accuracy": [(cell_id, int(size), int(t), float(cs.accuracy[k, t - 1]), int(settings["mazes"]))
                                      for k, size in enumerate(cs.sizes) for t in cs.ticks],
                "thinking_summary": [(cell_id, r["size"], r["mazes"], r["accuracy_at_trained_ticks"],
                                      *r["ci_at_trained_ticks"], r["best_ticks"], r["accuracy_at_best_ticks"],
                                      *r["ci_at_best_ticks"], r["gain"], *r["gain_ci"]) for r in cs.summary()],
            }
            commit_batch(con, rows)
    finally:
        con.close()
    from mesalab.report.thinking import build_extrapolation_report

    build_extrapolation_report(out)
    return out
