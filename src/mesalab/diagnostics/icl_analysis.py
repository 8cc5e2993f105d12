"""Which learning algorithm an in-context regression transformer implements: the algorithm match of the whole
model and of each layer's read-out against reference learners, out-of-distribution curves, and the sentence
that names the implied mesa-objective."""

from __future__ import annotations

import numpy as np

from mesalab.diagnostics.icl_depth import MATCH_COSINE  # one threshold for icl-gd runs and sweeps
from mesalab.eval_plan import ICL_EVAL_SEED

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


def analyse_model(model, config, n_eval: int = 10_000, seed: int = ICL_EVAL_SEED, ood: bool = True) -> dict:
    """Algorithm match of the whole model and of each layer's read-out, plus out-of-distribution curves (left
    out when ``ood`` is false)."""
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
    shifts, ood = (("x_scale", "w_scale") if ood else ()), []
    for which in shifts:
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




def mesa_objective_sentence(best: dict, lr: float) -> str:
    name = best["name"]
    if best["sensitivity_cosine"] < MATCH_COSINE:
        return (f"No reference algorithm matches (best: {name}, sensitivity cosine {best['sensitivity_cosine']:.4f} "
                f"< {MATCH_COSINE}); no mesa-objective is implied.")
    objective = "the context's least-squares loss L(w) = 1/(2N) sum_i (w.x_i - y_i)^2"
    if name.startswith("gd-"):
        k = name.split("-")[1]
        how = f"{k} step(s) of gradient descent from w = 0" + (f" (learning rate {lr:.3f})" if k == "1" else "")
    elif name.startswith("gd++-"):
        k = name.split("-")[1]
        how = (f"{k} step(s) of GD++ from w = 0 (gradient descent whose inputs are transformed by I - gamma X^T X / N "
               "at every step, a curvature correction; von Oswald et al. 2023)")
    else:
        how = "its exact minimiser"
    return (f"Best match: {name} (sensitivity cosine {best['sensitivity_cosine']:.4f}, prediction MSE "
            f"{best['prediction_mse']:.4f}). Implied mesa-objective: {objective}, optimized in the forward pass by {how}.")


def icl_cell_measurement(model, config, n_eval: int = 4000, seed: int = ICL_EVAL_SEED) -> tuple[dict, list[tuple]]:
    """The measurement of one ICL sweep cell against the depth reference set (k-step GD for k = 1..L+1, k-step
    GD++ for k = 2..L, least squares; :func:`mesalab.diagnostics.icl_depth.depth_matches`): ``(metrics, matches)``.
    ``matches``: (layer, reference, reference_loss, model_loss, prediction_mse, sensitivity_cosine) for the
    read-out after every layer. ``metrics``: ``match/REF/sensitivity_cosine`` and ``match/REF/prediction_mse`` of
    the final layer against every reference, ``test/model_loss``, ``best/sensitivity_cosine`` (the final layer's
    best reference) and, only when that reference matches (cosine >= MATCH_COSINE), ``best/effective_steps``
    (:func:`~mesalab.diagnostics.icl_depth.reference_steps`: no algorithm is identified otherwise)."""
    from mesalab.diagnostics.icl_depth import depth_matches, reference_steps

    rows, _ = depth_matches(model, config, n_eval, seed)
    matches = [(m["layer"], m["name"], m["test_loss"], m["model_test_loss"], m["prediction_mse"],
                m["sensitivity_cosine"]) for m in rows]
    final = [m for m in rows if m["layer"] == config.layers]
    metrics = {}
    for m in final:
        metrics[f"match/{m['name']}/sensitivity_cosine"] = float(m["sensitivity_cosine"])
        metrics[f"match/{m['name']}/prediction_mse"] = float(m["prediction_mse"])
    metrics["test/model_loss"] = float(final[0]["model_test_loss"]) if final else float("nan")
    if final:
        best = max(final, key=lambda m: m["sensitivity_cosine"])
        metrics["best/sensitivity_cosine"] = float(best["sensitivity_cosine"])
        if best["sensitivity_cosine"] >= MATCH_COSINE:
            metrics["best/effective_steps"] = float(reference_steps(best["name"]))
    return metrics, matches
