"""``mesalab run icl-gd``: train in-context regression transformers, find which learning algorithm they
implement (one GD step, k GD steps, least squares), and write a run folder with a report."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np

from mesalab.errors import ConfigError

OOD_SCALES = (0.25, 0.5, 1.0, 1.5, 2.0, 3.0)


def tuned_lr(steps: int, batch) -> float:
    """The GD learning rate minimising the query loss of ``steps`` steps on held-out sequences (exact for one
    step; a fine grid for more)."""
    import jax.numpy as jnp

    from mesalab.diagnostics.icl_reference import gd_prediction, tuned_one_step_lr

    if steps == 1:
        return float(tuned_one_step_lr(batch.x, batch.y, batch.x_query, batch.y_query))
    grid = np.geomspace(0.01, 2.0, 60)
    losses = [float(jnp.mean((gd_prediction(batch.x, batch.y, batch.x_query, jnp.float32(g), steps)
                              - batch.y_query) ** 2)) for g in grid]
    return float(grid[int(np.nanargmin(losses))])


def analyse_model(model, config, n_eval: int = 10_000, seed: int = 12345) -> dict:
    """Algorithm match of the whole model and of each layer's read-out, plus out-of-distribution curves."""
    import jax

    from mesalab.diagnostics.algorithm_match import compare_to_references
    from mesalab.diagnostics.icl_reference import gd_prediction, ridge_prediction
    from mesalab.tasks.icl_regression import make_regression_distribution, sample_regression

    dist = make_regression_distribution(config.x_scale, config.w_scale, config.noise_std)
    tune = sample_regression(jax.random.key(seed), dist, n_eval, config.n_context, config.dim)
    test = sample_regression(jax.random.key(seed + 1), dist, n_eval, config.n_context, config.dim)
    steps = tuple(range(1, max(config.layers, 1) + 2))
    lrs = {k: tuned_lr(k, tune) for k in steps}
    rows = []
    for layer in range(config.layers):
        def predict(x, y, xq, layer=layer):
            _, acts = model(x, y, xq)
            return acts[f"layer_{layer}/residual"][-1, -1]

        rows += [{"layer": layer + 1, **r._asdict()} for r in compare_to_references(predict, test, lrs)]
    ood = []
    for which in ("x_scale", "w_scale"):
        for s in OOD_SCALES:
            kw = {"x_scale": config.x_scale, "w_scale": config.w_scale, "noise_std": config.noise_std, which: s * getattr(config, which)}
            b = sample_regression(jax.random.key(seed + 2), make_regression_distribution(**kw), 4000,
                                  config.n_context, config.dim)
            pm = jax.vmap(lambda x, y, q: model(x, y, q)[0])(b.x, b.y, b.x_query)
            loss = lambda p: float(0.5 * np.mean((np.asarray(p) - np.asarray(b.y_query)) ** 2))  # noqa: E731
            ood.append({"shift": which, "scale": s, "model": loss(pm),
                        "gd-1-step": loss(gd_prediction(b.x, b.y, b.x_query, lrs[1])),
                        "least-squares": loss(ridge_prediction(b.x, b.y, b.x_query))})
    return {"matches": rows, "ood": ood, "learning_rates": lrs}


def best_match(matches: list[dict], layers: int) -> dict:
    """The reference the final layer's read-out matches best (highest sensitivity cosine)."""
    final = [m for m in matches if m["layer"] == layers]
    return max(final, key=lambda m: m["sensitivity_cosine"])


MATCH_COSINE = 0.99  # a reference "matches" when the sensitivity cosine reaches this


def mesa_objective_sentence(best: dict, lr: float) -> str:
    name = best["name"]
    if best["sensitivity_cosine"] < MATCH_COSINE:
        return (f"No reference algorithm matches (best: {name}, sensitivity cosine {best['sensitivity_cosine']:.4f} "
                f"< {MATCH_COSINE}); no mesa-objective is implied.")
    objective = "the context's least-squares loss L(w) = 1/(2N) sum_i (w.x_i - y_i)^2"
    if name.startswith("gd-"):
        k = name.split("-")[1]
        how = f"{k} step(s) of gradient descent from w = 0" + (f" (learning rate {lr:.3f})" if k == "1" else "")
    else:
        how = "its exact minimiser"
    return (f"Best match: {name} (sensitivity cosine {best['sensitivity_cosine']:.4f}, prediction MSE "
            f"{best['prediction_mse']:.4f}). Implied mesa-objective: {objective}, optimized in the forward pass by {how}.")


def run_icl(config, seeds: list[int], out: Path | None = None) -> Path:
    """Train ``seeds``, analyse each model, write ``config.json``, ``results.duckdb`` and ``report.html``."""
    import jax
    import jax.numpy as jnp

    from mesalab.optimizers.supervised import make_train
    from mesalab.results.files import write_json_atomic
    from mesalab.results.provenance import now, versions

    config = config.validate()
    out = Path(out) if out is not None else Path("runs") / f"icl-gd-{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"
    if (out / "results.duckdb").exists():
        raise ConfigError(f"{out} already holds a finished run; pass a new --out folder")
    out.mkdir(parents=True, exist_ok=True)
    meta = {"kind": "icl", "task": "icl-gd", "icl": config.to_dict(), "seeds": list(seeds), "versions": versions(),
            "created": now()}
    write_json_atomic(out / "config.json", meta)
    train = jax.jit(make_train(config))
    results = []
    for seed in seeds:  # one seed at a time: robust on CPU (see runner.py on vmap over seeds)
        model, metrics = train(jax.random.key(jnp.uint32(seed)))
        loss = np.asarray(metrics["loss"])
        if not np.all(np.isfinite(loss)):
            from mesalab.errors import TrainingDivergedError

            raise TrainingDivergedError(f"training loss became NaN/inf for seed {seed}; lower lr (now {config.lr})")
        results.append((seed, loss, analyse_model(model, config)))
    _write_icl_results(out, config, meta, results)
    from mesalab.report.icl import build_icl_report

    build_icl_report(out)
    return out


ICL_SCHEMA = """
CREATE TABLE runs (seed INTEGER, task VARCHAR, config JSON, versions JSON, created VARCHAR);
CREATE TABLE icl_training (seed INTEGER, step INTEGER, loss DOUBLE);
CREATE TABLE icl_matches (seed INTEGER, layer INTEGER, reference VARCHAR, reference_loss DOUBLE, model_loss DOUBLE,
    prediction_mse DOUBLE, sensitivity_cosine DOUBLE);
CREATE TABLE icl_ood (seed INTEGER, shift VARCHAR, scale DOUBLE, model DOUBLE, gd_one_step DOUBLE, least_squares DOUBLE);
CREATE TABLE icl_learning_rates (seed INTEGER, gd_steps INTEGER, lr DOUBLE);
"""


def _write_icl_results(out: Path, config, meta, results) -> None:
    from mesalab.results.store import dumps, write_results

    rows: dict[str, list[tuple]] = {"runs": [], "icl_training": [], "icl_matches": [], "icl_ood": [],
                                    "icl_learning_rates": []}
    for seed, loss, a in results:
        rows["runs"].append((seed, "icl-gd", dumps(config.to_dict()), dumps(meta["versions"]), meta["created"]))
        every = max(1, len(loss) // 500)
        rows["icl_training"] += [(seed, i, float(v)) for i, v in enumerate(loss)
                                 if i % every == 0 or i == len(loss) - 1]
        rows["icl_matches"] += [(seed, m["layer"], m["name"], m["test_loss"], m["model_test_loss"],
                                 m["prediction_mse"], m["sensitivity_cosine"]) for m in a["matches"]]
        rows["icl_ood"] += [(seed, o["shift"], o["scale"], o["model"], o["gd-1-step"], o["least-squares"])
                            for o in a["ood"]]
        rows["icl_learning_rates"] += [(seed, k, v) for k, v in a["learning_rates"].items()]
    write_results(out, rows, ICL_SCHEMA)
