"""Which learning algorithm does an in-context learner implement? Compare a model's predictions and its
sensitivity to the query input (d y_hat / d x_q) with exact reference algorithms on the same sequences."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from mesalab.diagnostics.icl_reference import gd_weights, gdpp_weights, ridge_weights


class AlgorithmMatch(NamedTuple):
    name: str
    test_loss: float  # 0.5 * mean squared query error of the reference
    model_test_loss: float
    prediction_mse: float  # mean (model - reference)^2 over sequences
    sensitivity_cosine: float  # mean cosine between d y_hat / d x_q of model and reference


def model_sensitivity(predict, x, y, xq) -> jax.Array:
    """``[B, d]``: gradient of each prediction with respect to its query input."""
    return jax.vmap(jax.grad(lambda q, a, b: predict(a, b, q)))(xq, x, y)


def _cosine(a, b):
    num = jnp.sum(a * b, axis=-1)
    den = jnp.linalg.norm(a, axis=-1) * jnp.linalg.norm(b, axis=-1)
    return jnp.mean(num / jnp.maximum(den, 1e-12))


def gdpp_name(steps: int) -> str:
    return f"gd++-{steps}-step"


def compare_to_references(predict, batch, gd_lrs: dict[int, float], ridge_lam=0.0,
                          gdpp_params: dict[int, tuple[float, float]] | None = None) -> list[AlgorithmMatch]:
    """``predict(x [N, d], y [N], x_q [d]) -> scalar`` (one sequence) against k-step GD from 0 for each
    ``k -> learning rate`` in ``gd_lrs`` (``gd-k-step``), k-step GD++ for each ``k -> (learning rate, gamma)`` in
    ``gdpp_params`` (scalars, or one per step) (``gd++-k-step``, :func:`mesalab.diagnostics.icl_reference.gdpp_weights`), and ridge / least
    squares, in that order. The model's predictions and sensitivities are computed once; for a linear reference
    the sensitivity is its weight vector."""
    x, y, xq, yq = batch.x, batch.y, batch.x_query, batch.y_query
    pm = jax.vmap(predict)(x, y, xq)
    sm = model_sensitivity(predict, x, y, xq)
    model_loss = float(0.5 * jnp.mean((pm - yq) ** 2))
    refs = [(f"gd-{k}-step", gd_weights(x, y, lr, k)) for k, lr in sorted(gd_lrs.items())]
    refs += [(gdpp_name(k), gdpp_weights(x, y, jnp.asarray(lr, jnp.float32), k, jnp.asarray(g, jnp.float32)))
             for k, (lr, g) in sorted((gdpp_params or {}).items())]
    refs.append(("least-squares" if ridge_lam == 0 else f"ridge({ridge_lam})", ridge_weights(x, y, ridge_lam)))
    out = []
    for name, w in refs:
        pr = jnp.einsum("bd,bd->b", w, xq)
        out.append(AlgorithmMatch(name, float(0.5 * jnp.mean((pr - yq) ** 2)), model_loss,
                                  float(jnp.mean((pm - pr) ** 2)), float(_cosine(sm, w))))
    return out
