"""The ``maze-path-probe`` kind: ``mesalab probe SWEEP_DIR`` on an ``extrapolation`` sweep looks inside its trained
recall networks (:mod:`mesalab.diagnostics.maze_internals`): which algorithm the order of their decisions supports
(dead-end filling or a wavefront from the ends), and what their per-cell hidden state encodes over ticks (on the
path, dead-end depth, distance from start and from goal), each beside a random-initialised network of the same
architecture and the input image.

It writes into the sweep folder it reads::

    probes.json        what was asked: sizes, mazes, ticks, seeds, versions (written first)
    probes.duckdb      probe scores, decision timing, timing curves (tables: MAZE_PROBE_SCHEMA), one seed per commit
    probes/seed-S.npz  per size: the images, exact labels, decision ticks and the hidden state at the probed ticks
                       (float16, the first DATASET_MAZES mazes), for analysis elsewhere

Its cells are the sweep's seeds; an interrupted ``mesalab probe`` resumes the seeds it has not probed, ``--replace``
recomputes. The sweep's report gains the section "Inside the network". The same mazes (fixed keys per size) are
used for every seed, so seeds are compared on the same mazes.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from mesalab.errors import ConfigError
from mesalab.results.folder import RunFolder, folder_meta
from mesalab.results.tables import MAZE_PROBE_SCHEMA
from mesalab.studies import register
from mesalab.studies.contract import Options
from mesalab.studies.engine import Batch
from mesalab.studies.probe_run import ProbesInFolder

DEFAULT_MAZES = 100
MAX_MAZES = 5000
LARGER_SIZE = 21  # probed beside the training size by default: a maze bigger than any seen in training
MAX_TICKS = 5000
DATASET_MAZES = 50
MAZE_KEY = 20_000  # the probe mazes of size S come from PRNGKey(MAZE_KEY + S): the same for every seed
STORED = ("sizes", "mazes", "max_ticks", "ticks_rule")
TICKS_RULE = "1.5x"  # how the ticks are chosen without --max-ticks (maze_internals.default_ticks); stored to resume
MAX_SIZE = 201


class MazeProbeStudy(ProbesInFolder):
    kind = "maze-path-probe"
    stored_keys, source_key = STORED, "sweep"
    schema = MAZE_PROBE_SCHEMA
    cell_table, cell_key = "maze_probe_seeds", "seed"
    progress_label = "thinking + probing"
    missing = "no seed has been probed yet; run `mesalab probe SWEEP_DIR`"
    corrupt = "rerun `mesalab probe SWEEP_DIR --replace`"

    def header(self, s: dict) -> str:
        return (f"[bold]mesalab probe {s['sweep_dir']}[/]: maze-path recall networks, {len(s['seeds'])} seed(s) x "
                f"{s['mazes']} mazes of sizes {s['sizes']}")

    def configure(self, name: str, options: Options) -> dict:
        from mesalab.optimizers.thinking import stored_config
        from mesalab.tasks.maze_path import check_size

        sweep_dir = Path(name)
        meta = folder_meta(sweep_dir)
        if meta is None or meta.get("kind") != "extrapolation":
            raise ConfigError(f"{sweep_dir} is not an extrapolation sweep folder; pass the folder `mesalab sweep "
                              "extrapolation` wrote")
        if not isinstance(meta.get("config"), dict):
            raise ConfigError(f"{sweep_dir}/sweep.json has no maze-path config; it was not written by `mesalab sweep "
                              "extrapolation` (re-run that sweep into a new --out)")
        config = stored_config(meta["config"])
        if options.steps is not None:
            raise ConfigError("--steps is not used on a maze-path folder (every cell of every maze is probed at the "
                              "recorded ticks); drop it, or set --max-ticks")
        if options.layers and set(options.layers) != {"hidden"}:
            raise ConfigError(f"--layer {options.layers}: a recall network is probed at its per-cell hidden state "
                              "('hidden', every tick); drop --layer")
        mazes = DEFAULT_MAZES if options.levels is None else options.levels
        if not 20 <= mazes <= MAX_MAZES:
            raise ConfigError(f"--levels (mazes per size) must be at least 20 and at most {MAX_MAZES}, got {mazes}")
        if options.sizes is not None and any(s > MAX_SIZE for s in options.sizes):
            raise ConfigError(f"--sizes must be at most {MAX_SIZE}, got {options.sizes}")
        sizes = sorted({config.size, LARGER_SIZE}) if options.sizes is None else sorted({check_size(s) for s in options.sizes})
        if options.max_ticks is not None and not 1 <= options.max_ticks <= MAX_TICKS:
            raise ConfigError(f"--max-ticks must be at least 1 and at most {MAX_TICKS}, got {options.max_ticks}")
        seeds = self.chosen_seeds(options, meta.get("seeds", []), "sweep")
        if not seeds:
            raise ConfigError(f"{sweep_dir} has no seeds; run `mesalab sweep extrapolation --out {sweep_dir}` first")
        missing = [s for s in seeds if not all((sweep_dir / "checkpoints" / f"seed_{s}.eqx{x}").exists()
                                               for x in ("", ".json"))]
        if missing:
            raise ConfigError(f"{sweep_dir} has no trained network of seed(s) {missing}; finish the sweep (rerun "
                              "`mesalab sweep extrapolation` with its options) or pass --seed")
        stored = {"sizes": sizes, "mazes": int(mazes), "max_ticks": options.max_ticks, "ticks_rule": TICKS_RULE}
        return {"name": str(sweep_dir), "sweep_dir": str(sweep_dir), "seeds": seeds, "stored": stored,
                "trained_ticks": int(config.ticks), "replace": bool(options.replace), "workers": options.workers,
                **stored}

    def plan(self, settings: dict, done: set) -> list[Batch]:
        return self.seed_batches(settings, done, {k: settings[k] for k in ("sweep_dir", "trained_ticks", *STORED)})

    def probe_seed(self, spec: dict, seed: int) -> tuple[int, dict, dict]:
        return probe_network(spec, seed)

    def analyse(self, folder: RunFolder):
        from mesalab.studies.extrapolation import EXTRAPOLATION

        return EXTRAPOLATION.analyse(EXTRAPOLATION.folder(folder.path))

    def report(self, folder: RunFolder, analysis) -> Path:
        from mesalab.studies.extrapolation import EXTRAPOLATION

        return EXTRAPOLATION.report(EXTRAPOLATION.folder(folder.path), analysis)

    def summary(self, analysis) -> list:
        from mesalab.report.terminal import sentences_summary

        return sentences_summary(analysis.internals.sentences if analysis.internals else [],
                                 Path(analysis.path) / "report.html")


def probe_network(spec: dict, seed: int) -> tuple[int, dict, dict]:
    """``(seed, rows, arrays)``: decision timing and tick probes of one trained recall network (and of a
    random-initialised one of the same architecture) on every probed size."""
    import jax

    from mesalab.diagnostics import maze_internals as mi
    from mesalab.optimizers.thinking import init_model, load_model, stored_config
    from mesalab.results.provenance import now
    from mesalab.results.store import dumps
    from mesalab.tasks import maze_path

    path = Path(spec["sweep_dir"]) / "checkpoints" / f"seed_{seed}.eqx"
    config = stored_config(json.loads(path.with_name(path.name + ".json").read_text()))
    model = load_model(str(path), config)
    random_model = init_model(config, jax.random.fold_in(jax.random.key(seed), 999))
    rows = {"maze_probes": [], "maze_timing": [], "maze_timing_curve": []}
    arrays, ticks_used = {}, {}
    for size in spec["sizes"]:
        images = np.asarray(maze_path.sample_batch(jax.random.PRNGKey(MAZE_KEY + size), spec["mazes"], size).image)
        labels = mi.maze_labels(images)
        ticks = spec["max_ticks"] or mi.default_ticks(labels, spec["trained_ticks"])
        record = mi.record_ticks(ticks, spec["trained_ticks"])
        ticks_used[str(size)] = {"ticks": int(ticks), "recorded": record}
        thought = mi.think(model, images, ticks, record)
        random_thought = mi.think(random_model, images, ticks, record)
        for source, th in (("trained", thought), ("random-init", random_thought)):
            for t in mi.decision_timing(th, labels, seed=seed):
                rows["maze_timing"].append((seed, size, source, t.algorithm, t.rho, *t.ci, t.margin, *t.margin_ci,
                                            t.slope, t.n_mazes, t.n_cells, t.settled, t.path_on, t.solved, ticks))
        rows["maze_timing_curve"] += [(seed, size, a, k, m, n) for a, k, m, n in mi.timing_curve(thought, labels)]
        for p in mi.probe_ticks(thought, random_thought, images, labels, seed=seed):
            rows["maze_probes"].append((seed, size, p.tick, p.source, p.label, p.metric, p.value, *p.ci, p.control,
                                        p.selectivity, *p.selectivity_ci, p.chance, p.n_fit, p.n_test))
        k = DATASET_MAZES
        arrays.update({f"{size}/image": images[:k].astype(np.uint8), f"{size}/decision_tick":
                       np.nan_to_num(mi.decision_ticks(thought)[:k], nan=-1).astype(np.int32),
                       **{f"{size}/{name}": getattr(labels, name)[:k] for name in labels._fields},
                       **{f"{size}/hidden/tick-{t}": h[:k].astype(np.float16) for t, h in thought.hidden.items()}})
    rows["maze_probe_seeds"] = [(seed, dumps(spec["sizes"]), spec["mazes"], dumps(ticks_used),
                                 f"probes/seed-{seed}.npz", now())]
    return seed, rows, arrays


MAZE_PROBE = register(MazeProbeStudy())
