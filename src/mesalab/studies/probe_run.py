"""The ``probe`` kind: ``mesalab probe RUN_DIR`` looks inside the trained models of a finished run for their
mesa-objective (:mod:`mesalab.diagnostics.mesa_objective`): activation probes for every candidate target with
control tasks and a random-initialised baseline, steering vectors, retargeting.

It writes into the run folder it reads, next to the run's own files::

    probes.json          what was asked: layers, levels, steps, strengths, seeds, versions (written first)
    probes.duckdb        probe scores, steering effects, retargeting rates (tables: PROBE_SCHEMA), one seed per commit
    probes/seed-S.npz    the activation dataset of seed S: observations, exact labels and every probed layer's
                         activations (float16) on the probe levels, for analysis elsewhere (see docs/probes.md)

Its cells are the run's seeds (``probe_seeds.seed``): an interrupted ``mesalab probe`` resumes the seeds it has not
probed; ``--replace`` recomputes everything with new settings. The run's report gains the section "Inside the
model" (rendered from both databases).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from mesalab.errors import ConfigError
from mesalab.results.folder import RunFolder, folder_meta
from mesalab.results.tables import PROBE_SCHEMA
from mesalab.studies import register
from mesalab.studies.contract import Options, Study
from mesalab.studies.engine import Batch, seed_groups

DEFAULT_LEVELS = 500  # held-out levels per split
MAX_LEVELS = 20_000
MAX_STEPS = 64
STORED = ("layers", "levels", "steps", "strengths", "level_seed", "greedy")


class ProbesInFolder(Study):
    """What every probe kind shares: it writes ``probes.json``, ``probes.duckdb`` and ``probes/seed-S.npz`` into the
    folder it reads; its cells are that folder's seeds; same settings resume, ``--replace`` recomputes. A subclass
    sets ``stored_keys`` (the settings that must match to resume), ``source_key`` (the folder the probes read, stored
    in the meta) and :meth:`probe_seed` (one seed's ``(seed, rows, arrays)``, in a worker)."""

    command = "probe"
    options = frozenset({"layers", "levels", "probe_seeds", "steps", "workers", "replace", "sizes", "max_ticks"})
    meta_name, db_name = "probes.json", "probes.duckdb"
    config_what = "probe"
    stored_keys: tuple = ()
    source_key = "run"

    def names(self):
        return []  # not started by a name: `mesalab probe DIR`

    @staticmethod
    def chosen_seeds(options: Options, folder_seeds, where: str) -> list:
        """The seeds ``--seed`` asks for (default: all of ``folder_seeds``), each one the folder has."""
        seeds = list(options.probe_seeds or folder_seeds)
        unknown = sorted(set(seeds) - set(folder_seeds))
        if unknown:
            raise ConfigError(f"--seed {unknown} not in this {where}; its seeds are {list(folder_seeds)}")
        return seeds

    def check_folder(self, folder: RunFolder, settings: dict) -> None:
        meta = folder_meta(folder.path, (self.meta_name,))
        if settings["replace"] or meta is None:
            if meta is None and folder.has_results():
                raise ConfigError(f"{folder.db_path} exists without {self.meta_name}; pass --replace to recompute it")
            return
        if meta.get("settings") != settings["stored"]:
            old = meta.get("settings") or {}
            diff = ", ".join(f"{k} {old.get(k)!r} -> {settings['stored'][k]!r}" for k in self.stored_keys
                             if old.get(k) != settings["stored"][k])
            raise ConfigError(f"{folder.path} was probed with other settings ({diff}); repeat them to resume, or pass "
                              "--replace to recompute every seed")
        if set(settings["seeds"]) <= folder.finished():
            raise ConfigError(f"{folder.path} already holds the probes of seed(s) {settings['seeds']}; `mesalab report "
                              f"{folder.path}` re-renders them, --replace recomputes them")

    def new_meta(self, settings: dict) -> dict:
        return {"kind": self.kind, self.source_key: settings["name"], "settings": settings["stored"],
                "seeds": list(settings["seeds"])}

    def start(self, folder: RunFolder, settings: dict) -> dict:
        from mesalab.results.provenance import now, versions

        if settings["replace"]:  # asked for: the old probes go (the folder's own results are not touched)
            for p in (folder.db_path, folder.meta_path):
                p.unlink(missing_ok=True)
            shutil.rmtree(folder.path / "probes", ignore_errors=True)
            settings["replace"] = False
        if folder.has_meta():
            meta = folder.read_meta()
            meta["seeds"] = sorted(set(meta["seeds"]) | set(settings["seeds"]))
            meta.setdefault("resumed", []).append(now())
        else:
            meta = {**self.new_meta(settings), "versions": versions(), "created": now()}
        folder.write_meta(meta)
        settings["created"] = meta["created"]
        return meta

    def n_cells(self, settings: dict) -> int:
        return len(settings["seeds"])

    def seed_batches(self, settings: dict, done: set, spec: dict) -> list[Batch]:
        groups = seed_groups([s for s in settings["seeds"] if s not in done], settings["workers"])
        return [Batch(f"seeds {g[0]}-{g[-1]}", tuple(g), spec, len(g)) for g in groups]

    def probe_seed(self, spec: dict, seed: int) -> tuple[int, dict, dict]:
        raise NotImplementedError

    def measure(self, batch: Batch, progress=None) -> dict:
        out = []
        for i, seed in enumerate(batch.cells):
            out.append(self.probe_seed(batch.spec, int(seed)))
            if progress:
                progress(i + 1)
        return {"seeds": out}

    def commit(self, folder: RunFolder, batch: Batch, result: dict) -> None:
        from mesalab.results.files import save_npz_atomic

        (folder.path / "probes").mkdir(exist_ok=True)
        for seed, rows, arrays in result["seeds"]:
            save_npz_atomic(folder.path / "probes" / f"seed-{seed}.npz", arrays)
            folder.commit(rows)  # the seed's rows, its seed row among them, in one transaction


class ProbeStudy(ProbesInFolder):
    kind = "probe"
    stored_keys = STORED
    schema = PROBE_SCHEMA
    cell_table, cell_key = "probe_seeds", "seed"
    progress_label = "recording + probing + steering"
    missing = "no seed has been probed yet; run `mesalab probe RUN_DIR`"
    corrupt = "rerun `mesalab probe RUN_DIR --replace`"

    def header(self, s: dict) -> str:
        return (f"[bold]mesalab probe {s['run_dir']}[/]: {s['task']}, {len(s['seeds'])} seed(s) x {s['levels']} levels "
                f"per split x {s['steps']} states, layers {', '.join(s['layers'])}")

    # -- before any work --------------------------------------------------------------------------------------
    def configure(self, name: str, options: Options) -> dict:
        """``name``: the run folder. Every input checked (one-line errors) before anything is written."""
        from mesalab.diagnostics.activations import activation_shapes
        from mesalab.diagnostics.mesa_objective import check_layers
        from mesalab.diagnostics.steering import RETARGET_STRENGTHS
        from mesalab.optimizers import PPOConfig, init_model
        from mesalab.studies.gridworld_run import load_run_config
        from mesalab.tasks import get_task

        import jax

        run_dir = Path(name)
        meta = load_run_config(run_dir)
        if meta.get("kind", "run") != "run":
            raise ConfigError(f"{run_dir} is a {meta.get('kind')} folder; `mesalab probe` reads the trained models of a "
                              "`mesalab run TASK` folder")
        for opt in ("sizes", "max_ticks"):
            if getattr(options, opt) is not None:
                raise ConfigError(f"--{opt.replace('_', '-')} is only used on `mesalab sweep extrapolation` folders "
                                  f"(maze-path networks); drop it for the run folder {run_dir}")
        levels = DEFAULT_LEVELS if options.levels is None else options.levels
        if not 20 <= levels <= MAX_LEVELS:
            raise ConfigError(f"--levels must be at least 20 and at most {MAX_LEVELS}, got {levels}")
        steps = 8 if options.steps is None else options.steps
        if not 1 <= steps <= MAX_STEPS:
            raise ConfigError(f"--steps must be at least 1 and at most {MAX_STEPS} (states recorded per level), got {steps}")
        seeds = self.chosen_seeds(options, meta["seeds"], "run")
        missing = [s for s in seeds if not (run_dir / "checkpoints" / f"seed-{s}.eqx").exists()]
        if missing:
            raise ConfigError(f"{run_dir} has no checkpoint of seed(s) {missing}; finish the run (rerun `mesalab run` "
                              "with its options) or pass --seed")
        config = PPOConfig(**meta["ppo"])
        task = get_task(meta["task"]).with_obs_mode(config.obs_mode)
        shapes = activation_shapes(init_model(config, jax.random.key(0)), task.env.obs_shape)
        try:
            layers = check_layers(shapes, options.layers)
        except ValueError as e:
            raise ConfigError(f"--layer: {e}") from None
        ev = meta.get("eval", {})
        stored = {"layers": layers, "levels": int(levels), "steps": int(steps), "strengths": list(RETARGET_STRENGTHS),
                  "level_seed": int(ev.get("level_seed", 0)), "greedy": bool(ev.get("greedy", False))}
        return {"name": str(run_dir), "run_dir": str(run_dir), "task": meta["task"], "ppo": meta["ppo"], "seeds": seeds,
                "stored": stored, "replace": bool(options.replace), "workers": options.workers,
                "level_pool": max(int(levels), int(ev.get("episodes", levels))), **stored}

    def new_meta(self, settings: dict) -> dict:
        return {**super().new_meta(settings), "task": settings["task"]}

    # -- the work ---------------------------------------------------------------------------------------------
    def plan(self, settings: dict, done: set) -> list[Batch]:
        spec = {k: settings[k] for k in ("run_dir", "task", "ppo", "created", "level_pool", *STORED)}
        return self.seed_batches(settings, done, spec)

    def probe_seed(self, spec: dict, seed: int) -> tuple[int, dict, dict]:
        return probe_seed(spec, seed)

    # -- reading it back -------------------------------------------------------------------------------------
    def analyse(self, folder: RunFolder):
        from mesalab.studies.gridworld_run import RUN

        return RUN.analyse(RUN.folder(folder.path))

    def report(self, folder: RunFolder, analysis) -> Path:
        from mesalab.report.build import build_report

        return build_report(folder.path, analysis)

    def summary(self, analysis) -> list:
        from mesalab.report.terminal import internals_summary

        return internals_summary(analysis)


# -- the measurement of one seed (in a worker) ----------------------------------------------------------------------

def probe_seed(spec: dict, seed: int) -> tuple[int, dict, dict]:
    """``(seed, rows, arrays)``: the probes, steering and retargeting of one trained seed, and its activation
    dataset."""
    import jax
    import jax.numpy as jnp

    from mesalab.diagnostics import evaluation_levels
    from mesalab.diagnostics.mesa_objective import probe_model
    from mesalab.optimizers import PPOConfig, init_model
    from mesalab.results.provenance import now
    from mesalab.results.store import dumps
    from mesalab.studies.gridworld_run import load_model
    from mesalab.tasks import get_task
    from mesalab.tasks.grid import take_levels

    config = PPOConfig(**spec["ppo"])
    task = get_task(spec["task"]).with_obs_mode(config.obs_mode)
    model = load_model(Path(spec["run_dir"]), seed)
    random_model = init_model(config, jax.random.fold_in(jax.random.key(seed), 999))  # same architecture, untrained
    # the first `levels` of the run's own evaluation pool of each split (the same levels its evaluation played, and
    # the generator program the run compiled, which the compile cache then holds)
    n_pool = int(spec.get("level_pool", spec["levels"]))
    pools = {s: take_levels(evaluation_levels(task, s, n_pool, spec["level_seed"]), jnp.arange(spec["levels"]))
             for s in task.splits}
    res = probe_model(task, model, random_model, pools, jax.random.fold_in(jax.random.key(seed), 11), spec["layers"],
                      spec["steps"], spec["greedy"], None, tuple(spec["strengths"]), seed=seed)
    rows = {
        "activation_probes": [(seed, s.layer, s.label, s.kind, s.metric, s.value, *s.ci, s.control, s.selectivity,
                               *s.selectivity_ci, s.random_init, s.random_selectivity, s.chance, s.n_fit, s.n_test)
                              for s in res.scores],
        "steering_effects": [(seed, e.layer, e.vector_of, e.split, e.objective, e.coef, e.rate_before, e.rate_after,
                              e.change, *e.change_ci, e.n_levels) for e in res.steering],
        "retargeting": [(seed, r.layer, r.probe, r.split, r.direction, r.strength, r.norm, r.reached, r.n_levels, r.rate,
                         *r.ci) for r in res.retargeting],
        "probe_seeds": [(seed, "test", int(res.data.obs.shape[0]), spec["steps"], dumps(spec["layers"]),
                         f"probes/seed-{seed}.npz", now())],
    }
    d = res.data
    arrays = {"obs": d.obs, "alive": d.alive, "pos": d.pos, "action": d.action, "target": d.target,
              "distance": d.distance, "bfs_action": d.bfs_action, "ends_on": d.ends_on,
              "candidates": np.asarray(d.candidates)}
    arrays.update({f"act/{k}": v.astype(np.float16) for k, v in res.activations.items()})
    return seed, rows, arrays


PROBE = register(ProbeStudy())
