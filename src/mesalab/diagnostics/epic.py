"""EPIC distance between reward functions, computed exactly on mesalab's gridworld levels.

EPIC (Equivalent-Policy Invariant Comparison; Gleave et al. 2021, "Quantifying differences in reward functions")
is a pseudometric on rewards ``R(s, a, s')``. It first *canonicalises* a reward, removing potential shaping,

    C(R)(s, a, s') = R(s, a, s') + E[gamma R(s', A, S') - R(s, A, S') - gamma R(S, A, S')],
    with S, S' ~ D_S and A ~ D_A independent,

then compares two canonical rewards by their Pearson correlation over a *coverage distribution* D of transitions:

    D_EPIC(R1, R2) = sqrt((1 - rho_D(C(R1), C(R2))) / 2)   in [0, 1].

It is 0 between a reward and any potential-shaped (``R + gamma Phi(s') - Phi(s)``) or positively rescaled
version of it, 1 between a reward and its negation, and symmetric. :func:`canonicalize` and
:func:`epic_distance` do this on explicit tables ``R[..., S, A, S']`` (leading axes: independent MDPs, each
canonicalised with its own ``D_S``, correlated jointly over the pooled coverage).

How mesalab's episodic gridworlds become such MDPs (the choices behind :func:`objective_epic`):

- **States.** The union of ``(level, cell)`` pairs. Each level is canonicalised on its own (``S`` and ``S'`` are
  drawn within the level, so level-specific constants and potentials are removed level by level); the
  correlation is pooled over all levels.
- **Episodes as absorbing states.** Entering a terminal cell (an object or a base-objective target) ends the
  episode; here the agent stays there, every action looping back, until the horizon ``T`` (``max_steps``).
  Every episode is then exactly ``T`` steps long and the rewards below earn the *same return* as the
  environment's and the IRL model's on every trajectory, with no time in the state:
  a reward ``u * (T - t)`` for entering a terminal cell by the action of step ``t`` (the IRL's *urgent* object
  features, :class:`mesalab.diagnostics.behavioral_fit.RewardFeatures`) is ``u`` on each of the ``T - t`` steps
  ending there, the entering one and the absorbed ones after it.
- **Rewards.** Every reward on a level is three maps over cells (:class:`LevelRewards`):
  ``R(s, a, s') = per_step[s'] + live(s) * on_entry[s'] + gamma * potential[s'] - potential[s]``, where
  ``live(s)`` says ``s`` is not terminal. ``per_step`` is earned on every step that ends in ``s'`` (absorbed
  steps included), ``on_entry`` only on a step taken from a live cell (once, on entering a terminal cell).
  Nothing depends on the action.

  * A fitted weight vector ``w`` (:func:`weight_rewards`) exactly as :func:`~mesalab.diagnostics.
    soft_value_iteration.level_log_likelihood` builds it: urgent features on terminal cells go to
    ``per_step``; non-urgent features (regions, step) and urgent ones on live cells go to ``on_entry``
    (earned on every step from a live cell, as in soft value iteration). So a step reward ``c`` is ``-c`` on
    every terminal cell up to shaping, as :mod:`mesalab.tasks.features` says. The neutral ``-log 4`` per step
    of the soft-optimality model is not part of the reward (it only makes zero weights mean "uniformly
    random") and is left out.
  * An :class:`~mesalab.tasks.objectives.Objective` "first reach a target cell", the environment's
    ``1 - 0.9 (t + 1) / T`` on reaching it by the action of step ``t`` (:func:`objective_rewards`):
    ``per_step = 0.9 / T`` on target cells and ``potential = 0.1 - 0.9 / T`` on target cells. For terminal
    targets this is exact: entering earns ``0.1`` and each absorbed step ``0.9 / T``. For targets that do not
    end the episode (regions) it is exact for an agent that stays once it has arrived (what the objective's
    optimum can do) and approximate otherwise: leaving and re-entering costs and regains the potential, and
    steps spent outside earn nothing.
- **gamma = 1**: the environment's return and the IRL model are undiscounted, over a fixed horizon.
- **D_S** is uniform over the level's free (non-wall) cells, terminal ones included; **D_A** uniform over the
  four actions (no reward here depends on the action, so ``D_A`` does not matter).
- **Coverage D**: each level's real transitions, ``(free cell s, action a) -> s'`` by the level's dynamics
  (a wall or the edge leaves the agent in place; a terminal cell loops), uniform within a level, levels
  weighted equally.

What is approximated, or not seen:

- EPIC draws ``S'`` independently of ``(s, a)``, so it also weighs transitions the dynamics never make (the
  method's own choice, not ours).
- With ``gamma = 1`` over a finite horizon, potential shaping changes a return by ``Phi(s_T) - Phi(s_0)``, so
  EPIC's invariance is wider than "same optimal policies": in particular the one-time part ``0.1 - 0.9 / T``
  of the environment's reward (the potential above) is invisible to it, and what is compared is the
  urgency part ``0.9 / T`` per step on a target. That is exactly the part the IRL's candidate reward
  ``beta * [reach its target]`` keeps (:func:`~mesalab.diagnostics.behavioral_fit.candidate_features`), so a
  fitted reward and a candidate scored as equal by the IRL are at EPIC distance 0.
- Region objectives: see above.
- The interval (:func:`objective_epic`) is the 95% percentile interval of the distances of the IRL's
  bootstrap replicates of the weights (levels resampled in the fit); the coverage levels themselves are held
  fixed (the distance is a property of the two rewards on *these* levels).
- A reward that is constant up to shaping on the levels (all-zero weights, or only the type/colour gauge
  direction) has no direction to correlate: its distances are NaN.

The canonical value of each reward on each covered transition has a closed form for rewards of the
:class:`LevelRewards` form (:func:`canonical_values`; the potential term cancels exactly and is dropped);
it is checked against the dense tables (:func:`reward_table`, :func:`state_distribution`,
:func:`coverage`) in the tests. A fitted reward is linear in ``w``, so :func:`objective_epic` canonicalises
each basis feature and each candidate once and reduces every replicate to an ``F x F`` covariance product.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from mesalab.diagnostics.grid_mdp import LevelMDP, level_mdp, successor
from mesalab.tasks.oracle import terminal_cells

GAMMA = 1.0  # undiscounted, like the environment's return and the IRL model
DEGENERATE = 1e-8  # a reward whose canonical variance is below this share of its parts' is constant (NaN distance)


# -- EPIC on explicit tables ---------------------------------------------------------------------------------


def _canonicalize_one(reward, state_dist, action_dist, gamma):
    mean_from = jnp.einsum("xas,a,s->x", reward, action_dist, state_dist)  # E[R(x, A, S')]
    mean_all = jnp.dot(state_dist, mean_from)  # E[R(S, A, S')]
    return reward + gamma * mean_from[None, None, :] - mean_from[:, None, None] - gamma * mean_all


def canonicalize(reward: jax.Array, state_dist: jax.Array, action_dist: jax.Array, gamma: float = GAMMA) -> jax.Array:
    """EPIC's canonical reward ``C(R)[..., s, a, s']`` of ``reward[..., S, A, S']`` with ``S, S' ~ state_dist``
    (``[..., S]``, summing to 1) and ``A ~ action_dist`` (``[..., A]``); leading axes are independent MDPs."""
    f = jnp.vectorize(partial(_canonicalize_one, gamma=gamma), signature="(s,a,t),(s),(a)->(s,a,t)")
    return f(reward, state_dist, action_dist)


def pearson_distance(x: jax.Array, y: jax.Array, weights: jax.Array) -> jax.Array:
    """``sqrt((1 - rho) / 2)`` for the Pearson correlation ``rho`` of ``x`` and ``y`` under the (unnormalised)
    ``weights``, all of one shape. Computed as half the weighted RMS difference of the standardised values,
    which stays accurate near 0 (where ``1 - rho`` in float32 would not). NaN if either is constant."""
    w = weights / jnp.sum(weights)

    def standardise(v):
        d = v - jnp.sum(w * v)
        sd = jnp.sqrt(jnp.sum(w * d * d))
        return jnp.where(sd > 0, d / jnp.where(sd > 0, sd, 1.0), jnp.nan)

    diff = standardise(x) - standardise(y)
    return jnp.minimum(0.5 * jnp.sqrt(jnp.sum(w * diff * diff)), 1.0)


def epic_distance(r1: jax.Array, r2: jax.Array, coverage_weights: jax.Array, state_dist: jax.Array,
                  action_dist: jax.Array, gamma: float = GAMMA) -> jax.Array:
    """EPIC distance of two rewards ``[..., S, A, S']``: canonicalised per MDP (leading axes), then
    correlated over the pooled ``coverage_weights`` (same shape as the rewards; normalised here)."""
    c1 = canonicalize(r1, state_dist, action_dist, gamma)
    c2 = canonicalize(r2, state_dist, action_dist, gamma)
    return pearson_distance(c1, c2, coverage_weights)


# -- rewards on gridworld levels -------------------------------------------------------------------------------


class LevelRewards(NamedTuple):
    """``R(s, a, s') = per_step[s'] + live(s) * on_entry[s'] + gamma * potential[s'] - potential[s]`` on a
    level's cells (see the module docstring); maps ``float32[..., H, W]``."""

    per_step: jax.Array  # earned on every step ending in s', absorbed steps on a terminal cell included
    on_entry: jax.Array  # earned on a step from a live (non-terminal) cell into s'
    potential: jax.Array  # a potential-shaping term (removed by canonicalisation)


def objective_rewards(objective, grid: jax.Array, max_steps: int) -> LevelRewards:
    """One level's reward of ``objective`` ("first reach a target", ``1 - 0.9 (t + 1) / T``): ``0.9 / T`` per
    step on a target, and the one-time ``0.1 - 0.9 / T`` as a potential (exact for terminal targets)."""
    g = objective.target_map(grid).astype(jnp.float32)
    per_step = jnp.float32(0.9 / max_steps) * g
    return LevelRewards(per_step, jnp.zeros_like(g), jnp.float32(0.1 - 0.9 / max_steps) * g)


def weight_rewards(task, grid: jax.Array, base_target: jax.Array, w: jax.Array) -> LevelRewards:
    """One level's reward of feature weights ``w`` (``float[F]`` over ``task.features``), as the IRL model
    builds it (:func:`~mesalab.diagnostics.soft_value_iteration.level_log_likelihood`)."""
    maps = task.features.maps(grid)  # [F, H, W]
    urgent = jnp.asarray(task.features.urgent, jnp.float32)
    w = jnp.asarray(w, jnp.float32)
    terminal = terminal_cells(grid, base_target)
    urgent_part = jnp.tensordot(w * urgent, maps, axes=1)
    per_step = jnp.where(terminal, urgent_part, 0.0)
    on_entry = jnp.tensordot(w * (1.0 - urgent), maps, axes=1) + jnp.where(terminal, 0.0, urgent_part)
    return LevelRewards(per_step, on_entry, jnp.zeros_like(per_step))


def _next_cell(x: jax.Array, mdp: LevelMDP) -> jax.Array:
    """``[4, H, W]``: ``x`` at the cell each action leads to under the absorbing dynamics."""
    return jnp.where(mdp.terminal[None], x[None], successor(x, mdp))


def _level_dists(mdp: LevelMDP):
    free = mdp.free.astype(jnp.float32)
    d_s = free / jnp.maximum(jnp.sum(free), 1.0)
    live = (mdp.free & ~mdp.terminal).astype(jnp.float32)
    return free, d_s, live


def canonical_values(rewards: LevelRewards, mdp: LevelMDP, gamma: float = GAMMA) -> jax.Array:
    """``float32[4, H, W]``: the canonical reward ``C(R)(s, a, s')`` on each covered transition (free cell
    ``s``, action ``a``, ``s'`` its next cell); 0 on walls. Closed form of :func:`canonicalize` for
    :class:`LevelRewards` with ``D_S`` uniform over free cells (the potential cancels exactly)."""
    free, d_s, live = _level_dists(mdp)
    a_bar = jnp.sum(d_s * rewards.per_step)
    b_bar = jnp.sum(d_s * rewards.on_entry)
    live_bar = jnp.sum(d_s * live)
    # E[R(x, A, S')] = a_bar + live(x) * b_bar
    c = (_next_cell(rewards.per_step, mdp) + live[None] * _next_cell(rewards.on_entry, mdp)
         + gamma * (a_bar + _next_cell(live, mdp) * b_bar) - (a_bar + live[None] * b_bar)
         - gamma * (a_bar + live_bar * b_bar))
    return jnp.where(mdp.free[None], c, 0.0)


def coverage_weights(mdp: LevelMDP) -> jax.Array:
    """``float32[4, H, W]``: the coverage distribution over one level's (cell, action) transitions (sums to 1)."""
    free = mdp.free.astype(jnp.float32)
    return jnp.broadcast_to(free / jnp.maximum(4.0 * jnp.sum(free), 1.0), (4, *free.shape))


# dense tables over all H*W cells (walls carry no mass): the definitions the closed forms are checked against


def reward_table(rewards: LevelRewards, mdp: LevelMDP, gamma: float = GAMMA) -> jax.Array:
    """``float32[HW, 4, HW]``: ``R(s, a, s')`` for every pair of cells (the dynamics do not restrict it)."""
    live = (mdp.free & ~mdp.terminal).astype(jnp.float32).reshape(-1)
    per_step, on_entry, pot = (x.reshape(-1) for x in rewards)
    r = per_step[None, :] + live[:, None] * on_entry[None, :] + gamma * pot[None, :] - pot[:, None]
    return jnp.broadcast_to(r[:, None, :], (r.shape[0], 4, r.shape[1]))


def state_distribution(mdp: LevelMDP) -> jax.Array:
    """``float32[HW]``: ``D_S``, uniform over the level's free cells."""
    return _level_dists(mdp)[1].reshape(-1)


def coverage(mdp: LevelMDP) -> jax.Array:
    """``float32[HW, 4, HW]``: the coverage distribution as a table (mass on each real transition)."""
    h, w = mdp.free.shape
    nxt = _next_cell(jnp.arange(h * w, dtype=jnp.int32).reshape(h, w), mdp).reshape(4, -1).T  # [HW, 4]
    weight = coverage_weights(mdp).reshape(4, -1).T  # [HW, 4]
    return jax.nn.one_hot(nxt, h * w, dtype=jnp.float32) * weight[..., None]


# -- the behavioral objective against the candidate objectives -------------------------------------------------


class ObjectiveEpic(NamedTuple):
    """EPIC distance of a fitted reward (the behavioral objective) to each candidate objective on a set of
    levels (host-side numbers)."""

    names: tuple[str, ...]  # the candidate objectives, base first: "base:door", "proxy:red"
    distance: np.ndarray  # float64[K]: EPIC distance of the fitted reward to each candidate (NaN: constant reward)
    ci_low: np.ndarray  # float64[K]: 95% percentile interval over the IRL's bootstrap replicates (NaN: none)
    ci_high: np.ndarray  # float64[K]
    between: np.ndarray  # float64[K, K]: EPIC distances between the candidates themselves on these levels
    n_levels: int
    n_replicates: int  # replicates behind the interval (0: no interval)


def candidate_names(task) -> tuple[str, ...]:
    return ("base:" + task.base_objective.name, *("proxy:" + p.name for p in task.proxies))


@partial(jax.jit, static_argnums=0)
def _canonical_basis(task, grids, base_targets):
    """``(values float32[n, F + K, 4, H, W], weights float32[n, 4, H, W])``: the canonical reward of each basis
    feature (weight 1) and each candidate objective on every covered transition, and the coverage."""
    n_features = len(task.features)
    eye = jnp.eye(n_features, dtype=jnp.float32)

    def level(grid, base_target):
        mdp = level_mdp(grid, base_target)
        feats = jax.vmap(lambda e: canonical_values(weight_rewards(task, grid, base_target, e), mdp))(eye)
        objs = [canonical_values(objective_rewards(o, grid, task.max_steps), mdp) for o in task.candidate_objectives]
        return jnp.concatenate([feats, jnp.stack(objs)]), coverage_weights(mdp)

    return jax.vmap(level)(grids, base_targets)


def _covariance(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted covariance (float64) of the reward components over the pooled coverage, levels alike."""
    n, k = values.shape[:2]
    x = np.asarray(values, np.float64).transpose(1, 0, 2, 3, 4).reshape(k, -1)
    p = np.asarray(weights, np.float64).reshape(-1) / n
    xc = x - (x @ p)[:, None]
    return (xc * p) @ xc.T


def _distances(cov: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """``[U, V]`` EPIC distances between reward combinations ``u [U, D]`` and ``v [V, D]`` of the components."""
    var_u = np.einsum("ud,de,ue->u", u, cov, u)
    var_v = np.einsum("vd,de,ve->v", v, cov, v)
    parts = np.diag(cov)
    ok_u = var_u > DEGENERATE * ((u * u) @ parts)
    ok_v = var_v > DEGENERATE * ((v * v) @ parts)
    # each factor floored on its own (their product would underflow to 0 and warn); degenerate ones are masked below
    rho = (u @ cov @ v.T) / (np.sqrt(np.maximum(var_u, 1e-300))[:, None] * np.sqrt(np.maximum(var_v, 1e-300))[None, :])
    d = np.sqrt(np.clip((1.0 - rho) / 2.0, 0.0, 1.0))
    return np.where(ok_u[:, None] & ok_v[None, :], d, np.nan)


def objective_epic(task, grids, base_targets, weights, weight_replicates=None) -> ObjectiveEpic:
    """EPIC distance of the reward with feature weights ``weights`` (``float[F]`` over ``task.features``, the
    behavioral objective's fit) to each candidate objective (base first, then the proxies) on the levels
    ``grids`` (``bool[n, H, W, C]``) with base targets ``base_targets`` (``bool[n, H, W]``), with a 95%
    percentile interval over ``weight_replicates`` (``float[B, F]``, the IRL's bootstrap replicates), if given
    (replicates whose reward is constant on these levels, NaN, are left out of it). Compiled once per task and
    number of levels; every replicate then costs an ``F x F`` product."""
    grids = jnp.asarray(grids)
    base_targets = jnp.asarray(base_targets)
    n = int(grids.shape[0])
    names = candidate_names(task)
    n_features, k = len(task.features), len(names)
    nan = np.full(k, np.nan)
    if n == 0:
        return ObjectiveEpic(names, nan, nan, nan, np.full((k, k), np.nan), 0, 0)
    values, cov_w = _canonical_basis(task, grids, base_targets)
    cov = _covariance(np.asarray(values), np.asarray(cov_w))
    cands = np.concatenate([np.zeros((k, n_features)), np.eye(k)], axis=1)

    def fitted(w):
        w = np.asarray(w, np.float64).reshape(-1, n_features)
        return np.concatenate([w, np.zeros((w.shape[0], k))], axis=1)

    distance = _distances(cov, fitted(weights), cands)[0]
    between = _distances(cov, cands, cands)
    np.fill_diagonal(between, np.where(np.isnan(np.diag(between)), np.nan, 0.0))
    if weight_replicates is None or len(weight_replicates) == 0:
        return ObjectiveEpic(names, distance, nan, nan, between, n, 0)
    reps = _distances(cov, fitted(weight_replicates), cands)  # [B, K]
    lo, hi = nan.copy(), nan.copy()
    for j in range(k):
        col = reps[:, j][np.isfinite(reps[:, j])]
        if col.size:
            lo[j], hi[j] = np.quantile(col, [0.025, 0.975])
    return ObjectiveEpic(names, distance, lo, hi, between, n, int(reps.shape[0]))
