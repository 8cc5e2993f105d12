"""Reference learning algorithms for in-context regression, computed exactly from each sequence's context.

The mesa-objective these algorithms optimize is the context's least-squares loss
``L(w) = 1/(2N) sum_i (w.x_i - y_i)^2``:
- ``gd_prediction``: k steps of gradient descent on L from ``w = 0`` with learning rate ``lr`` (one step gives
  ``w_1 = lr/N sum_i y_i x_i``);
- ``tuned_one_step_lr``: the learning rate minimising the held-out query loss of one GD step, in closed form;
- ``ridge_prediction``: the minimiser of ``L(w) + lam/2 |w|^2`` (``lam -> 0``: least squares).
All functions act on batches (leading axis) and are jittable.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def gd_weights(x: jax.Array, y: jax.Array, lr, steps: int) -> jax.Array:
    """``[B, d]``: weights after ``steps`` of gradient descent on the context loss from zero."""
    n = x.shape[1]

    def step(w, _):
        residual = jnp.einsum("bnd,bd->bn", x, w) - y
        grad = jnp.einsum("bn,bnd->bd", residual, x) / n
        return w - lr * grad, None

    w0 = jnp.zeros((x.shape[0], x.shape[2]), x.dtype)
    w, _ = jax.lax.scan(step, w0, None, length=steps)
    return w


def gd_prediction(x, y, x_query, lr, steps: int = 1) -> jax.Array:
    return jnp.einsum("bd,bd->b", gd_weights(x, y, lr, steps), x_query)


def tuned_one_step_lr(x, y, x_query, y_query) -> jax.Array:
    """The learning rate that minimises the mean squared query error of one GD step (exact: the prediction is
    linear in the learning rate, ``lr * a`` with ``a = 1/N sum_i y_i x_i.x_q``)."""
    a = jnp.einsum("bn,bnd,bd->b", y, x, x_query) / x.shape[1]
    return jnp.sum(a * y_query) / jnp.sum(a * a)


def ridge_weights(x, y, lam=0.0) -> jax.Array:
    """``[B, d]``: the ridge / least-squares solution of each context (``lam`` in units of the per-point loss,
    so ``lam = 0`` is ordinary least squares; a minimum-norm solution when ``N < d``)."""
    n, d = x.shape[1], x.shape[2]
    gram = jnp.einsum("bnd,bne->bde", x, x) / n + lam * jnp.eye(d, dtype=x.dtype)[None]
    rhs = jnp.einsum("bnd,bn->bd", x, y) / n
    return jnp.einsum("bde,be->bd", jnp.linalg.pinv(gram), rhs)


def ridge_prediction(x, y, x_query, lam=0.0) -> jax.Array:
    """Prediction of :func:`ridge_weights` at the query."""
    return jnp.einsum("bd,bd->b", ridge_weights(x, y, lam), x_query)
