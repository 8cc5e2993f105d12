"""The ``icl`` kind: ``mesalab run icl-gd`` trains in-context regression transformers, finds which learning
algorithm each implements (one GD step, k GD steps, GD++, least squares) and writes a run folder with a report.

Its cells are seeds (the resume rule reads ``runs.seed``), one seed per batch: each is trained as one jitted
program (``optimizers.supervised.make_train``) and analysed (:mod:`mesalab.diagnostics.icl_analysis`).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np

from mesalab.errors import TrainingDivergedError
from mesalab.results.folder import RunFolder
from mesalab.results.store import dumps
from mesalab.results.tables import ICL_LEARNING_RATES, ICL_MATCHES, ICL_OOD, ICL_RUNS, ICL_SCHEMA, ICL_TRAINING
from mesalab.studies import register
from mesalab.studies.contract import Listing, Options, SeedRun
from mesalab.studies.engine import Batch


@functools.lru_cache(maxsize=None)
def _icl_trainer(config_json: str):
    """The jitted trainer of one ICL config, compiled once per worker process."""
    import jax

    from mesalab.optimizers.supervised import ICLConfig, make_train

    return jax.jit(make_train(ICLConfig(**json.loads(config_json))))


def train_icl_seed(config, seed: int):
    """``(model, loss curve)`` of one seed (one-line error if the loss diverged)."""
    import jax
    import jax.numpy as jnp

    model, metrics = _icl_trainer(json.dumps(config.to_dict(), sort_keys=True))(jax.random.key(jnp.uint32(seed)))
    loss = np.asarray(metrics["loss"])
    if not np.all(np.isfinite(loss)):
        raise TrainingDivergedError(f"training loss became NaN/inf for seed {seed}; lower lr (now {config.lr})")
    return model, loss


class ICLRun(SeedRun):
    kind = "icl"
    resume_keys = ("icl",)
    options = frozenset({"seeds", "first_seed", "steps", "config"})
    schema = ICL_SCHEMA
    config_what = "ICLConfig"
    missing = "the run did not finish; rerun `mesalab run icl-gd` with the same options to resume it"
    corrupt = "rerun `mesalab run icl-gd` with a new --out"

    def names(self) -> list[Listing]:
        return [Listing("icl-gd", "In-context linear regression for transformers (supervised; `mesalab run icl-gd`): "
                        "which learning algorithm does the trained model implement?", "query squared error / -",
                        "dim, n_context, noise_std, x_scale, w_scale (ICLConfig; OOD curves over x and w scale)")]

    def configure(self, name: str, options: Options) -> dict:
        from mesalab.optimizers.supervised import ICLConfig
        from mesalab.studies.settings import supervised_overrides

        cfg = ICLConfig.from_dict(supervised_overrides(ICLConfig, options.config, options.steps)).validate()
        seeds = 4 if options.seeds is None else options.seeds
        return {"name": name, "task": "icl-gd", "icl": cfg.to_dict(), "seeds": list(range(options.first_seed, options.first_seed + seeds))}

    def header(self, s: dict) -> str:
        c = s["icl"]
        return (f"[bold]mesalab run icl-gd[/]: {len(s['seeds'])} seed(s) x {c['steps']} Adam steps, {c['layers']} "
                f"layer(s), {'softmax' if c['softmax'] else 'linear'} attention")

    def plan(self, settings: dict, done: set) -> list[Batch]:
        spec = {k: settings.get(k) for k in ("icl", "created", "versions")}
        return [Batch(f"seed {s}", (s,), spec) for s in settings["seeds"] if s not in done]

    def measure(self, batch: Batch, progress=None) -> dict:
        from mesalab.diagnostics.icl_analysis import analyse_model
        from mesalab.optimizers.supervised import ICLConfig

        config = ICLConfig(**batch.spec["icl"])
        (seed,) = batch.cells
        model, loss = train_icl_seed(config, seed)
        a = analyse_model(model, config)
        every = max(1, len(loss) // 500)
        rows = {
            "runs": [ICL_RUNS.row(seed=seed, task="icl-gd", config=dumps(config.to_dict()),
                                  versions=dumps(batch.spec["versions"]), created=batch.spec["created"])],
            "icl_training": [ICL_TRAINING.row(seed=seed, step=i, loss=float(v)) for i, v in enumerate(loss)
                             if i % every == 0 or i == len(loss) - 1],
            "icl_matches": [ICL_MATCHES.row(seed=seed, layer=m["layer"], reference=m["name"],
                                            reference_loss=m["test_loss"], model_loss=m["model_test_loss"],
                                            prediction_mse=m["prediction_mse"],
                                            sensitivity_cosine=m["sensitivity_cosine"]) for m in a["matches"]],
            "icl_ood": [ICL_OOD.row(seed=seed, shift=o["shift"], scale=o["scale"], model=o["model"],
                                    gd_one_step=o["gd-1-step"], least_squares=o["least-squares"]) for o in a["ood"]],
            "icl_learning_rates": [ICL_LEARNING_RATES.row(seed=seed, gd_steps=k, lr=v)
                                   for k, v in a["learning_rates"].items()],
        }
        return {"rows": {t: [tuple(r) for r in v] for t, v in rows.items()}, "models": [(seed, model)]}

    def commit(self, folder: RunFolder, batch: Batch, result: dict) -> None:
        for seed, model in result["models"]:
            folder.save_checkpoint(f"seed-{seed}.eqx", model)
        folder.commit(result["rows"])

    def analyse(self, folder: RunFolder):
        from mesalab.analysis.icl import analyse_icl_run

        return analyse_icl_run(folder)

    def report(self, folder: RunFolder, analysis) -> Path:
        from mesalab.report.icl import build_icl_report

        return build_icl_report(folder.path, analysis)

    def summary(self, analysis) -> list:
        from mesalab.report.terminal import icl_summary

        return icl_summary(analysis)


ICL = register(ICLRun())
