"""The ``extrapolation`` kind: train a recall "thinking" network on small ``maze-path`` mazes (9×9 by default),
then measure its exact accuracy on unseen mazes of growing size after every tick up to ``max_ticks``.

It answers two questions with one table (see :mod:`mesalab.diagnostics.compute_scaling`): does the network
solve mazes bigger than any it was trained on (*size extrapolation*), and does it need — and use — more
iterations of thought to do so (*test-time compute scaling*)?

Its cells are seeds (``seed=S``), one per batch. Results land in ``FOLDER/sweep.duckdb``
(:data:`~mesalab.results.tables.EXTRAPOLATION_SCHEMA`): one row per seed in ``cells`` (config, versions, wall
time), its training curve in ``cell_curves``, the accuracy per (size, tick) in ``thinking_accuracy`` and a
per-size summary in ``thinking_summary``, committed in one transaction per seed, with the trained weights in
``checkpoints/``. Re-running the same command trains only the seeds that are missing.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from mesalab.errors import ConfigError
from mesalab.results.folder import RunFolder
from mesalab.results.tables import CELL_CURVES, CELLS, EXTRAPOLATION_SCHEMA, THINKING_ACCURACY, THINKING_SUMMARY
from mesalab.studies import register
from mesalab.studies.contract import Listing, Options, Study, check_sweep_folder
from mesalab.studies.engine import Batch

PRESET = "extrapolation"
DEFAULT_SIZES = (9, 13, 21, 33, 45)
DEFAULT_MAX_TICKS = 400
DEFAULT_MAZES = 100


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


class Extrapolation(Study):
    kind = PRESET
    command = "sweep"
    options = frozenset({"seeds", "steps", "config", "sizes", "max_ticks", "mazes"})
    schema = EXTRAPOLATION_SCHEMA
    config_what = "maze-path"
    meta_name, db_name = "sweep.json", "sweep.duckdb"
    missing = "no seed of this sweep has finished; run `mesalab sweep extrapolation` first"
    corrupt = "move it aside and re-run `mesalab sweep extrapolation` (its seeds will be retrained)"

    def names(self) -> list[Listing]:
        return [Listing(PRESET, "Maze image in, shortest-path mask out, procedurally generated at any size "
                        "(supervised): does a recall network that iterates longer solve bigger mazes than it was "
                        "trained on?", "exact match with the BFS path / -",
                        "size (train 9, test up to 45), ticks (ThinkingConfig)", task="maze-path")]

    def default_out(self, name: str) -> Path:
        return Path("sweeps") / PRESET

    def configure(self, name: str, options: Options) -> dict:
        from mesalab.optimizers.thinking import ThinkingConfig
        from mesalab.studies.settings import supervised_overrides

        overrides = supervised_overrides(ThinkingConfig, options.config, options.steps)
        sizes = list(DEFAULT_SIZES) if options.sizes is None else options.sizes
        max_ticks = DEFAULT_MAX_TICKS if options.max_ticks is None else options.max_ticks
        mazes = DEFAULT_MAZES if options.mazes is None else options.mazes
        settings = settings_of(overrides, sizes, max_ticks, mazes)
        n = 1 if options.seeds is None else options.seeds
        return {"name": PRESET, "seeds": list(range(n)), "test": settings}

    def header(self, s: dict) -> str:
        t = s["test"]
        return (f"[bold]mesalab sweep extrapolation[/]: {len(s['seeds'])} seed(s), test sizes {t['sizes']}, up to "
                f"{t['max_ticks']} ticks, {t['mazes']} mazes per size")

    def check_folder(self, folder: RunFolder, settings: dict) -> None:
        from mesalab.optimizers.thinking import stored_config

        meta = check_sweep_folder(folder, PRESET, PRESET)
        if meta is None:
            return
        # Compare resolved configs: a folder written before a config key existed resumes if it was trained as the
        # requested config would be (the key's value then was what ADDED_KEYS_AS_BEFORE records).
        old = dict(meta, config=stored_config(meta.get("config") or {}).to_dict())
        if any(old.get(k) != v for k, v in {"kind": PRESET, "preset": PRESET, **settings["test"]}.items()):
            raise ConfigError(f"{folder.path} holds an extrapolation sweep with other settings; pass a new --out or "
                              "the same settings to resume it")

    def start(self, folder: RunFolder, settings: dict) -> dict:
        from mesalab.results.provenance import now, versions

        folder.create()
        seeds = list(settings["seeds"])
        if folder.has_meta():
            seeds = sorted(set(seeds) | set(folder.read_meta().get("seeds", [])))
        meta = {"kind": PRESET, "preset": PRESET, **settings["test"], "seeds": seeds, "versions": versions(),
                "created": now()}
        folder.write_meta(meta)
        settings["seeds"] = seeds
        return meta

    def plan(self, settings: dict, done: set) -> list[Batch]:
        t = settings["test"]
        return [Batch(f"seed={s}", (f"seed={s}",), {"seed": s, **t}, t["config"]["steps"]) for s in settings["seeds"]
                if f"seed={s}" not in done]

    def measure(self, batch: Batch, progress=None) -> dict:
        import jax

        from mesalab.diagnostics.compute_scaling import maze_path_compute_scaling
        from mesalab.optimizers.thinking import ThinkingConfig, make_train
        from mesalab.results.provenance import now, versions

        spec = batch.spec
        seed, cell_id = spec["seed"], batch.cells[0]
        config = ThinkingConfig.from_dict(spec["config"])
        t0 = time.time()
        model, metrics = make_train(config, None if progress is None else (lambda i, n: progress(i)))(
            jax.random.PRNGKey(seed))
        train_s = time.time() - t0
        cs = maze_path_compute_scaling(model, jax.random.PRNGKey(10_000 + seed), spec["sizes"], spec["max_ticks"],
                                       spec["mazes"], trained_size=config.size)
        rows = {
            "cells": [CELLS.row(cell_id=cell_id, batch_id=cell_id, panel="maze-path", dial="size",
                                value=float(config.size), seed=seed, config=json.dumps(config.to_dict()),
                                versions=json.dumps({**versions(), "train_wall_s": train_s}), wall_s=time.time() - t0,
                                finished=now())],
            "cell_curves": [CELL_CURVES.row(cell_id, int(s), int(s) * config.batch, float(a))
                            for s, a in zip(metrics["eval_step"], metrics["train_accuracy"])],
            "thinking_accuracy": [THINKING_ACCURACY.row(cell_id, int(size), int(t), float(cs.accuracy[k, t - 1]),
                                                        int(spec["mazes"]))
                                  for k, size in enumerate(cs.sizes) for t in cs.ticks],
            "thinking_summary": [THINKING_SUMMARY.row(cell_id, r["size"], r["mazes"], r["accuracy_at_trained_ticks"],
                                                      *r["ci_at_trained_ticks"], r["best_ticks"],
                                                      r["accuracy_at_best_ticks"], *r["ci_at_best_ticks"], r["gain"],
                                                      *r["gain_ci"]) for r in cs.summary()],
        }
        return {"rows": {t: [tuple(r) for r in v] for t, v in rows.items()}, "model": model, "config": config}

    def commit(self, folder: RunFolder, batch: Batch, result: dict) -> None:
        from mesalab.optimizers.thinking import save_model

        (folder.path / "checkpoints").mkdir(exist_ok=True)
        save_model(str(folder.checkpoint_path(f"seed_{batch.spec['seed']}.eqx")), result["model"], result["config"])
        folder.commit(result["rows"])

    def analyse(self, folder: RunFolder):
        from mesalab.analysis.extrapolation import analyse_extrapolation

        return analyse_extrapolation(folder)

    def report(self, folder: RunFolder, analysis) -> Path:
        from mesalab.report.thinking import build_extrapolation_report

        return build_extrapolation_report(folder.path, analysis)

    def summary(self, analysis) -> list:
        from mesalab.report.terminal import sentences_summary

        inside = analysis.internals.sentences if analysis.internals is not None else []
        return sentences_summary(analysis.sentences + inside, Path(analysis.path) / "report.html")


EXTRAPOLATION = register(Extrapolation())
