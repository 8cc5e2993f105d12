"""Reference learning algorithms for in-context regression, computed exactly from each sequence's context.

The mesa-objective these algorithms optimize is the context's least-squares loss
``L(w) = 1/(2N) sum_i (w.x_i - y_i)^2``:
- ``gd_prediction``: k steps of gradient descent on L from ``w = 0`` with learning rate ``lr`` (one step gives
  ``w_1 = lr/N sum_i y_i x_i``);
- ``tuned_one_step_lr``: the learning rate minimising the held-out query loss of one GD step, in closed form;
- ``ridge_prediction``: the minimiser of ``L(w) + lam/2 |w|^2`` (``lam -> 0``: least squares);
- ``gdpp_prediction``: k steps of GD++ (von Oswald et al. 2023), GD with an iterative curvature correction of
  the inputs, i.e. preconditioned GD (see the notes above ``gdpp_weights``); ``tuned_gdpp_params`` tunes its
  (lr, gamma) on held-out sequences, ``tuned_gd_lr`` the k-step GD learning rate.
The reference algorithms act on batches (leading axis) and are jittable; the tuners return Python floats.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np


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


# ---------------------------------------------------------------------------------------------------------------
# GD++ (von Oswald et al. 2023, "Transformers Learn In-Context by Gradient Descent", ICML, PMLR 202:35151-35174;
# main text Sec. 3 "multiple steps" and Appendix A.10 "Details of curvature correction", Eq. 23).
#
# The paper's construction of one linear self-attention layer updates every token e_j = (x_j, y_j), the query
# (x_q, 0) included, from the layer's *input* tokens:
#     x_j <- x_j - gamma X X^T x_j          (curvature correction, X = the context inputs at this layer)
#     y_j <- y_j - Delta W x_j              (one GD step on the squared loss, on the same layer inputs)
# and the prediction is read (negated) from the query's label slot. We write X X^T in this module's per-point
# units, H = X^T X / N (rows x_i), so ``gamma`` here is the paper's gamma times N. Both updates of a layer use the
# same input tokens, so layer 1 is a plain GD step and its transform preconditions the steps of layers 2, 3, ...
# In weight space (derivation in ``gdpp_weights``) k steps of GD++ are preconditioned GD from w = 0,
#     w_{l+1} = w_l - lr * P_l grad L(w_l),   P_l = M_l^T M_l,   M_1 = I,   M_{l+1} = (I - gamma M_l H M_l^T) M_l,
# with L the context loss of this module. Hence 1 step of GD++ is exactly 1 GD step, gamma = 0 is plain GD, and
# the prediction is linear in the query (its sensitivity d y_hat / d x_q is the weight vector).
# ---------------------------------------------------------------------------------------------------------------


def gdpp_weights(x, y, lr, steps: int, gamma) -> jax.Array:
    """``[B, d]``: the weight vector of ``steps`` GD++ steps (module notes above); ``lr`` and ``gamma`` are scalars
    or ``[steps]`` arrays (one per step / layer, the paper's non-recurrent variant).

    Token picture -> weights: at layer l the inputs are ``M_l x`` (context rows ``X_l = X M_l^T``), the context
    label slots hold the residuals ``r_l = y - X w_l`` and the query slot ``-w_l.x_q``; the layer subtracts
    ``lr/N sum_i r_{l,i} (M_l x_i).(M_l x_j)`` from the label slot of every token j, i.e.
    ``w_{l+1} = w_l + lr/N M_l^T M_l X^T r_l``, and sets ``M_{l+1} = (I - gamma X_l^T X_l / N) M_l``. (The paper
    reads the prediction as minus the query's label slot; ``models.transformer.ICLTransformer`` reads the slot
    itself.)
    """
    b, n, d = x.shape
    lrs = jnp.broadcast_to(jnp.asarray(lr, x.dtype), (steps,))
    gammas = jnp.broadcast_to(jnp.asarray(gamma, x.dtype), (steps,))
    eye = jnp.eye(d, dtype=x.dtype)

    def step(carry, lr_gamma):
        w, m = carry  # m: [B, d, d] the accumulated input transform M_l
        eta, g = lr_gamma
        xl = jnp.einsum("bnd,bed->bne", x, m)  # current context inputs x_i^(l) = M_l x_i
        residual = y - jnp.einsum("bnd,bd->bn", x, w)
        w = w + eta / n * jnp.einsum("bed,bne,bn->bd", m, xl, residual)
        hl = jnp.einsum("bnd,bne->bde", xl, xl) / n
        m = jnp.einsum("bde,bef->bdf", eye[None] - g * hl, m)
        return (w, m), None

    w0 = jnp.zeros((b, d), x.dtype)
    m0 = jnp.broadcast_to(eye, (b, d, d))
    (w, _), _ = jax.lax.scan(step, (w0, m0), (lrs, gammas))
    return w


def gdpp_prediction(x, y, x_query, lr, steps: int, gamma) -> jax.Array:
    """``[B]``: prediction at the query of ``steps`` GD++ steps (see :func:`gdpp_weights`)."""
    return jnp.einsum("bd,bd->b", gdpp_weights(x, y, lr, steps, gamma), x_query)


def spectral_terms(x, y, x_query) -> tuple[jax.Array, jax.Array]:
    """``(lam, c)``, each ``[B, d]``: eigenvalues ``lam_m`` of ``H = X^T X / N`` and ``c_m = (u_m.x_q)(u_m.b)``
    with ``b = X^T y / N``. Every GD / GD++ weight vector is a polynomial ``q(H) b`` (all transforms are
    polynomials in H), so its query prediction is ``sum_m c_m q(lam_m)``: cheap to evaluate on a grid of
    hyper-parameters (used by the tuners)."""
    n = x.shape[1]
    h = jnp.einsum("bnd,bne->bde", x, x) / n
    lam, u = jnp.linalg.eigh(h)
    bvec = jnp.einsum("bnd,bn->bd", x, y) / n
    c = jnp.einsum("bdm,bd->bm", u, x_query) * jnp.einsum("bdm,bd->bm", u, bvec)
    return lam, c


def spectral_gdpp_prediction(lam, c, lr, gamma, steps: int) -> jax.Array:
    """``[B]``: the GD++ prediction from :func:`spectral_terms`: ``q_{l+1} = q_l + lr f_l^2 (1 - lam q_l)``,
    ``f_{l+1} = f_l (1 - gamma lam f_l^2)``, ``q_0 = 0``, ``f_1 = 1`` (``gamma = 0``: plain GD)."""
    q = jnp.zeros_like(lam)
    f = jnp.ones_like(lam)
    for _ in range(steps):
        q = q + lr * f * f * (1 - lam * q)
        f = f * (1 - gamma * lam * f * f)
    return jnp.sum(c * q, axis=-1)


LR_GRID = (0.01, 2.0, 60)  # geomspace of icl_analysis.tuned_lr (k-step GD; formerly icl_pipeline)
GDPP_LR_GRID = (0.01, 4.0, 64)
GDPP_GAMMA_GRID = (0.0, 1.5, 31)  # linspace, in units of 1 / (mean eigenvalue of H)


@partial(jax.jit, static_argnames="steps")
def _chunk_losses(lam, c, y_query, lrs, gammas, steps: int):
    def one(lr_g):
        return jnp.mean((spectral_gdpp_prediction(lam, c, lr_g[0], lr_g[1], steps) - y_query) ** 2)

    # lax.map, not vmap: on jax 0.10.2 CPU the vmapped version of this reduction returned wrong losses
    # (periodic in the grid index); the sequential map is correct and faster here
    return jax.lax.map(one, (lrs, gammas))


GRID_CHUNK = 128


def _grid_losses(lam, c, y_query, lrs, gammas, steps: int) -> np.ndarray:
    """``[G]``: mean squared query error of GD++ for each ``(lrs[g], gammas[g])`` (float32 numpy inputs),
    evaluated in chunks of ``GRID_CHUNK`` grid points (one compilation per step count)."""
    g = len(lrs)
    pad = (-g) % GRID_CHUNK
    lrs = np.concatenate([lrs, np.full(pad, lrs[-1])]).astype(np.float32)
    gammas = np.concatenate([gammas, np.full(pad, gammas[-1])]).astype(np.float32)
    out = [np.asarray(_chunk_losses(lam, c, y_query, jnp.asarray(lrs[i:i + GRID_CHUNK]),
                                    jnp.asarray(gammas[i:i + GRID_CHUNK]), steps))
           for i in range(0, len(lrs), GRID_CHUNK)]
    return np.concatenate(out)[:g]


def _argmin(losses) -> int:
    losses = np.where(np.isfinite(losses), losses, np.inf)
    return int(np.argmin(losses))


def tuned_gd_lr(x, y, x_query, y_query, steps: int) -> float:
    """The k-step GD learning rate of ``diagnostics.icl_analysis.tuned_lr`` (closed form for one step, otherwise the same
    60-point geometric grid on [0.01, 2]), computed from :func:`spectral_terms` in one jitted pass instead of one
    GD run per grid point."""
    if steps == 1:
        return float(tuned_one_step_lr(x, y, x_query, y_query))
    lam, c = spectral_terms(x, y, x_query)
    grid = np.geomspace(*LR_GRID).astype(np.float32)
    losses = _grid_losses(lam, c, y_query, grid, np.zeros_like(grid), steps)
    return float(grid[_argmin(losses)])


def tuned_gdpp_params(x, y, x_query, y_query, steps: int, refine: int = 2) -> tuple[float, float]:
    """``(lr, gamma)`` of ``steps``-step GD++ minimising the mean squared query error on held-out sequences
    (deterministic): a grid of 64 learning rates (geometric, [0.01, 4]) x 31 gammas (linear, [0, 1.5] / s with s
    the mean eigenvalue of H, gamma = 0 included so GD++ is never worse than k-step GD on these sequences), then
    ``refine`` rounds of a 21 x 21 grid spanning one coarse cell either side of the best point. One step: gamma
    has no effect (returns the closed-form GD learning rate and gamma = 0)."""
    if steps == 1:
        return float(tuned_one_step_lr(x, y, x_query, y_query)), 0.0
    lam, c = spectral_terms(x, y, x_query)
    scale = float(jnp.mean(lam))
    lr_axis = np.geomspace(*GDPP_LR_GRID[:2], GDPP_LR_GRID[2])
    g_axis = np.linspace(*GDPP_GAMMA_GRID[:2], GDPP_GAMMA_GRID[2]) / scale
    lr_ratio, g_step = lr_axis[1] / lr_axis[0], g_axis[1] - g_axis[0]

    def best(lr_axis, g_axis):
        lr_g, g_g = np.meshgrid(lr_axis, g_axis, indexing="ij")
        lr_g, g_g = lr_g.ravel().astype(np.float32), g_g.ravel().astype(np.float32)
        losses = _grid_losses(lam, c, y_query, lr_g, g_g, steps)
        i = _argmin(losses)
        return float(lr_g[i]), float(g_g[i])

    lr, g = best(lr_axis, g_axis)
    for _ in range(refine):
        lr_axis = np.geomspace(lr / lr_ratio, lr * lr_ratio, 21)
        g_axis = np.linspace(max(g - g_step, 0.0), g + g_step, 21)
        lr, g = best(lr_axis, g_axis)
        lr_ratio, g_step = lr_ratio ** 0.1, g_step / 10
    return lr, g

