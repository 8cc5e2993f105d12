"""The ``icl-probe`` kind: ``mesalab probe RUN_DIR`` on an ``icl-gd`` run folder looks inside its trained
transformers (:mod:`mesalab.diagnostics.icl_internals`): what each layer writes into the query token and into the
context tokens, probed for the predictions of k-step gradient descent, least squares and the true function, beside
the input alone, a random-initialised transformer of the same architecture and a control task.

It writes into the run folder it reads::

    probes.json        what was asked: sequences, layers, seeds, versions (written first)
    probes.duckdb      the token probes (tables: ICL_PROBE_SCHEMA), one seed per commit
    probes/seed-S.npz  the probe sequences' input tokens, exact labels and every probed layer's residual stream
                       (trained and random-initialised, float16), for analysis elsewhere

Its cells are the run's seeds; an interrupted ``mesalab probe`` resumes the seeds it has not probed, ``--replace``
recomputes. The run's report gains the section "Inside the transformer". Every seed is probed on the same
sequences (a fixed key), with the learning rates its own algorithm match used (the run's ``icl_learning_rates``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mesalab.errors import ConfigError
from mesalab.results.folder import RunFolder
from mesalab.results.tables import ICL_PROBE_SCHEMA
from mesalab.studies import register
from mesalab.studies.contract import Options
from mesalab.studies.engine import Batch
from mesalab.studies.probe_run import ProbesInFolder

DEFAULT_SEQUENCES = 2000
MIN_SEQUENCES, MAX_SEQUENCES = 100, 100_000
SEQUENCE_KEY = 54_321  # the probe sequences: PRNGKey(SEQUENCE_KEY), the same for every seed
STORED = ("sequences", "layers")


def residual_names(layers: int) -> list[str]:
    return [f"layer_{i}/residual" for i in range(layers)]


class ICLProbeStudy(ProbesInFolder):
    kind = "icl-probe"
    stored_keys = STORED
    schema = ICL_PROBE_SCHEMA
    cell_table, cell_key = "icl_probe_seeds", "seed"
    progress_label = "probing the token stream"
    missing = "no seed has been probed yet; run `mesalab probe RUN_DIR`"
    corrupt = "rerun `mesalab probe RUN_DIR --replace`"

    def header(self, s: dict) -> str:
        return (f"[bold]mesalab probe {s['run_dir']}[/]: icl-gd transformers, {len(s['seeds'])} seed(s) x "
                f"{s['sequences']} sequences, layers {', '.join(s['layers'])}")

    def configure(self, name: str, options: Options) -> dict:
        from mesalab.studies.gridworld_run import load_run_config
        from mesalab.studies.icl_run import ICL

        run_dir = Path(name)
        meta = load_run_config(run_dir)
        if meta.get("kind") != "icl":
            raise ConfigError(f"{run_dir} is not an icl-gd run folder; pass the folder `mesalab run icl-gd` wrote")
        for opt, why in (("steps", "every token of every sequence is probed"), ("sizes", "it has no mazes"),
                         ("max_ticks", "it has no ticks")):
            if getattr(options, opt) is not None:
                raise ConfigError(f"--{opt.replace('_', '-')} is not used on an icl-gd folder ({why}); drop it")
        sequences = DEFAULT_SEQUENCES if options.levels is None else options.levels
        if not MIN_SEQUENCES <= sequences <= MAX_SEQUENCES:
            raise ConfigError(f"--levels (probe sequences) must be at least {MIN_SEQUENCES} and at most "
                              f"{MAX_SEQUENCES}, got {sequences}")
        names = residual_names(int(meta["icl"]["layers"]))
        unknown = [n for n in options.layers or () if n not in names]
        if unknown:
            raise ConfigError(f"--layer {unknown}: this transformer's residual streams are {names}")
        layers = [n for n in names if n in (options.layers or names)]
        seeds = self.chosen_seeds(options, meta["seeds"], "run")
        run = ICL.folder(run_dir)
        rates: dict = {}
        for r in run.tables("icl_learning_rates")["icl_learning_rates"] if run.has_results() else []:
            rates.setdefault(int(r["seed"]), {})[int(r["gd_steps"])] = float(r["lr"])
        missing = [s for s in seeds if s not in rates or not (run_dir / "checkpoints" / f"seed-{s}.eqx").exists()]
        if missing:
            raise ConfigError(f"{run_dir} has no finished seed(s) {missing}; finish the run (rerun `mesalab run icl-gd` "
                              "with its options) or pass --seed")
        stored = {"sequences": int(sequences), "layers": layers}
        return {"name": str(run_dir), "run_dir": str(run_dir), "seeds": seeds, "stored": stored, "icl": meta["icl"],
                "learning_rates": {str(s): {str(k): v for k, v in rates[s].items()} for s in seeds},
                "replace": bool(options.replace), "workers": options.workers, **stored}

    def plan(self, settings: dict, done: set) -> list[Batch]:
        return self.seed_batches(settings, done, {k: settings[k] for k in ("run_dir", "icl", "learning_rates", *STORED)})

    def probe_seed(self, spec: dict, seed: int) -> tuple[int, dict, dict]:
        return probe_transformer_seed(spec, seed)

    def analyse(self, folder: RunFolder):
        from mesalab.studies.icl_run import ICL

        return ICL.analyse(ICL.folder(folder.path))

    def report(self, folder: RunFolder, analysis) -> Path:
        from mesalab.studies.icl_run import ICL

        return ICL.report(ICL.folder(folder.path), analysis)

    def summary(self, analysis) -> list:
        from mesalab.report.terminal import sentences_summary

        return sentences_summary(analysis.internals.sentences if analysis.internals else [],
                                 Path(analysis.path) / "report.html")


def probe_transformer_seed(spec: dict, seed: int) -> tuple[int, dict, dict]:
    """``(seed, rows, arrays)``: the token probes of one trained transformer (and of a random-initialised one of the
    same architecture) on the probe sequences."""
    import jax

    from mesalab.diagnostics import icl_internals as ii
    from mesalab.optimizers.supervised import ICLConfig, init_model
    from mesalab.results.provenance import now
    from mesalab.results.store import dumps
    from mesalab.studies.icl_run import ICL
    from mesalab.tasks.icl_regression import make_regression_distribution, sample_regression

    config = ICLConfig(**spec["icl"])
    folder = ICL.folder(spec["run_dir"])
    model = folder.load_checkpoint(f"seed-{seed}.eqx", init_model(config, jax.random.key(0)), f"seed {seed}")
    random_model = init_model(config, jax.random.fold_in(jax.random.key(seed), 999))
    dist = make_regression_distribution(config.x_scale, config.w_scale, config.noise_std)
    batch = sample_regression(jax.random.key(SEQUENCE_KEY), dist, spec["sequences"], config.n_context, config.dim)
    lrs = {int(k): float(v) for k, v in spec["learning_rates"][str(seed)].items()}
    probes, streams, labels = ii.probe_transformer(model, random_model, batch, lrs, seed=seed, layers=spec["layers"])
    rows = {"icl_token_probes": [(seed, p.layer, p.source, p.tokens, p.label, p.r2, *p.ci, p.control, p.selectivity,
                                  *p.selectivity_ci, p.gain, *p.gain_ci, p.margin, *p.margin_ci, p.n_fit, p.n_test)
                                 for p in probes],
            "icl_probe_seeds": [(seed, spec["sequences"], dumps(spec["layers"]), dumps(lrs), f"probes/seed-{seed}.npz",
                                 now())]}
    arrays = {"w": np.asarray(batch.w), "y_query": np.asarray(batch.y_query),
              **{f"label/{k}": v.astype(np.float32) for k, v in labels.items()},
              **{f"tokens/{k}": v.astype(np.float16) for k, v in streams.items()}}
    return seed, rows, arrays


ICL_PROBE = register(ICLProbeStudy())
