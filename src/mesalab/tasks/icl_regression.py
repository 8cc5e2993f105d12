"""``icl-regression``: in-context linear regression (von Oswald et al. 2022).

Each sequence draws its own weights ``w ~ N(0, w_scale^2 I_d)``, context inputs ``x_i ~ N(0, x_scale^2 I_d)``,
targets ``y_i = w.x_i + noise_std * eps_i``, and a query ``x_q`` whose target ``y_q`` the model must predict
from the context alone. The distribution is a pytree of dials, so a train/test shift in the scale of x or w
is data (vmappable).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp


class RegressionDistribution(NamedTuple):
    x_scale: jax.Array  # float32[] std of the inputs
    w_scale: jax.Array  # float32[] std of the per-sequence weights
    noise_std: jax.Array  # float32[] std of the target noise


def make_regression_distribution(x_scale=1.0, w_scale=1.0, noise_std=0.0) -> RegressionDistribution:
    return RegressionDistribution(jnp.asarray(x_scale, jnp.float32), jnp.asarray(w_scale, jnp.float32),
                                  jnp.asarray(noise_std, jnp.float32))


class RegressionBatch(NamedTuple):
    x: jax.Array  # float32[B, N, d] context inputs
    y: jax.Array  # float32[B, N] context targets
    x_query: jax.Array  # float32[B, d]
    y_query: jax.Array  # float32[B] (noisy, like the context)
    w: jax.Array  # float32[B, d] the sequence's true weights


def sample_regression(key: jax.Array, dist: RegressionDistribution, batch: int, n_context: int, dim: int
                      ) -> RegressionBatch:
    """A batch of in-context regression sequences (jittable; ``batch``, ``n_context``, ``dim`` static)."""
    kw, kx, kq, kn, knq = jax.random.split(key, 5)
    w = dist.w_scale * jax.random.normal(kw, (batch, dim))
    x = dist.x_scale * jax.random.normal(kx, (batch, n_context, dim))
    xq = dist.x_scale * jax.random.normal(kq, (batch, dim))
    y = jnp.einsum("bnd,bd->bn", x, w) + dist.noise_std * jax.random.normal(kn, (batch, n_context))
    yq = jnp.einsum("bd,bd->b", xq, w) + dist.noise_std * jax.random.normal(knq, (batch,))
    return RegressionBatch(x, y, xq, yq, w)
