"""The behavioral objective on keys and chests: exact MCE-IRL by soft value iteration over the product state space
(taken slots x cell; :mod:`mesalab.tasks.keys_chests.mdp`), with the same model, fit, bootstrap and reading as the
static tasks (:mod:`mesalab.diagnostics.behavioral`).

Model (finite horizon ``T = max_steps``): the transition ``(s, a)`` at step ``t`` earns
``sum_f w_f phi_f(s, a) * (T - t if f is urgent else 1)`` with ``phi`` the task's event features
(:class:`~mesalab.tasks.keys_chests.task.EventFeatures`: a key picked up, a chest opened; optionally ``step``), plus
the neutral ``-log 4`` per step, so all-zero weights give the uniformly random policy::

    Q_t(s, a) = r_t(s, a) - log 4 + [s' not terminal] V_{t+1}(s'),   V_t(s) = logsumexp_a Q_t(s, a),   V_T = 0

and an episode's log-likelihood is ``sum_t Q_t(s_t, a_t) - V_t(s_t)``, its gradient in closed form
(:func:`level_log_likelihood_and_grad`; levels in small batches, so memory holds one batch). Candidate
objectives are scored as the one-feature reward ``beta * [their event]`` (urgent), like the static tasks'.

The reading (the *dominant* feature) ranks objectives, not single events: each feature's weight times the mean
number of its events a level offers (:func:`completion_scale`), i.e. its reward for completing its objective (on the
static tasks every object is reached at most once, so the two agree there). ``dominant_weight`` is on that scale.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from mesalab.diagnostics.behavioral import (BehavioralObjective, FitEngine, _dominant, check_demonstrations,
                                            fit_and_assemble)
from mesalab.diagnostics.behavioral_fit import RIDGE, cross_fit, minimise
from mesalab.diagnostics.soft_value_iteration import LOG4
from mesalab.tasks.keys_chests.mdp import encode, pool_mdp

LEVEL_BATCH = 8  # levels per step of the sequential map over levels (memory: one batch's policy tables)


class Demonstrations(NamedTuple):
    """One keys-and-chests episode per level (the first ``n`` levels of the pool; leading level axis)."""

    cells: jax.Array  # int32[n, T, 3] (row, col, taken bitmask) before each action (what policy replay reads)
    states: jax.Array  # int32[n, T] the product-MDP state before each action
    actions: jax.Array  # int32[n, T]
    length: jax.Array  # int32[n]


def demonstrations(params, episodes, n: int | None = None) -> Demonstrations:
    """Demonstrations from a keys-and-chests pool and the episodes played on it (first ``n``)."""
    n = episodes.length.shape[0] if n is None else min(n, episodes.length.shape[0])
    pos = jnp.asarray(episodes.positions[:n, :-1])
    masks = jnp.asarray(episodes.masks[:n, :-1])
    h, w = params.grid.shape[1:3]
    return Demonstrations(cells=jnp.concatenate([pos, masks[..., None]], axis=-1), states=encode(pos, masks, h, w),
                          actions=jnp.asarray(episodes.actions[:n]), length=jnp.asarray(episodes.length[:n]))


class Tables(NamedTuple):
    """The product MDPs of the demonstrated levels and their feature tables."""

    succ: jax.Array  # int32[n, 4, S]
    terminal: jax.Array  # bool[n, S]
    phi: jax.Array  # float32[n, F, 4, S]
    urgent: jax.Array  # float32[F]
    n_max: jax.Array  # int32[n, 2] keys on each level, chests it can open


def feature_tables(features, events: jax.Array) -> jax.Array:
    """``float32[F, 4, S]``: each feature of ``features`` (:class:`EventFeatures`) on each transition of one level
    (``events``: its ``ProductMDP.events``)."""
    maps = [events[e].astype(jnp.float32) for e in features.events]
    if features.step:
        maps.append(jnp.ones(events.shape[1:], jnp.float32))
    return jnp.stack(maps)


def level_tables(task, params, n: int) -> Tables:
    """Tables of the first ``n`` levels of a pool under the task's feature basis."""
    def one(level):
        mdp = pool_mdp(params, level)
        return mdp.succ, mdp.terminal, feature_tables(task.features, mdp.events), mdp.n_max

    succ, terminal, phi, n_max = jax.lax.map(one, jnp.arange(n, dtype=jnp.int32), batch_size=LEVEL_BATCH)
    return Tables(succ, terminal, phi, jnp.asarray(task.features.urgent, jnp.float32), n_max)


def completion_scale(features, tables: Tables) -> np.ndarray:
    """``float64[F]``: what one unit of each feature's weight earns when its objective is completed on these levels:
    the mean number of its events a level offers (keys on the level; chests it can open), 1 for ``step``."""
    n_max = np.asarray(tables.n_max, np.float64).mean(axis=0)
    return np.array([n_max[e] for e in features.events] + ([1.0] if features.step else []))


def candidate_tables(task, objective, tables: Tables, params) -> Tables:
    """The one-feature reward of a candidate objective (urgent, its event), zero features after it (one
    compiled fit serves the basis and the candidates)."""
    n, f = tables.phi.shape[:2]

    def one(level):
        return pool_mdp(params, level).events[objective.event].astype(jnp.float32)

    target = jax.lax.map(one, jnp.arange(n, dtype=jnp.int32), batch_size=LEVEL_BATCH)
    phi = jnp.zeros_like(tables.phi).at[:, 0].set(target)
    return tables._replace(phi=phi, urgent=jnp.zeros((f,), jnp.float32).at[0].set(1.0))


def _rewards(w, phi, urgent):
    """``(urgent part, flat part)`` ``[4, S]`` of the transition reward (the flat part holds the neutral -log 4)."""
    return jnp.tensordot(w * urgent, phi, axes=1), jnp.tensordot(w * (1.0 - urgent), phi, axes=1) - LOG4


def _soft_value_iteration(w, phi, urgent, succ, terminal, states, actions, length, keep_policy: bool):
    """Backward soft value iteration of one level: ``(log-likelihood, log_pi[T, 4, S] or None)``."""
    horizon = actions.shape[0]
    r_urgent, r_flat = _rewards(w, phi, urgent)
    cont = ~terminal[succ]

    def backup(v_next, x):
        steps_left, s, a, on = x
        q = r_urgent * steps_left + r_flat + jnp.where(cont, v_next[succ], 0.0)
        v = jax.nn.logsumexp(q, axis=0)
        log_pi = q - v[None]
        return v, (jnp.where(on, log_pi[a, s], 0.0), log_pi if keep_policy else None)

    t = jnp.arange(horizon - 1, -1, -1)
    xs = ((horizon - t).astype(phi.dtype), states[t], actions[t], t < length)
    _, (lps, log_pi) = jax.lax.scan(backup, jnp.zeros(terminal.shape, phi.dtype), xs)
    return jnp.sum(lps), (None if log_pi is None else log_pi[::-1])


def level_log_likelihood(w, phi, urgent, succ, terminal, states, actions, length) -> jax.Array:
    """One episode's log-likelihood under the soft-optimal policy for weights ``w`` (see the module docstring)."""
    return _soft_value_iteration(w, phi, urgent, succ, terminal, states, actions, length, False)[0]


def level_log_likelihood_and_grad(w, phi, urgent, succ, terminal, states, actions, length):
    """``(log-likelihood, d/dw)`` of one episode, the gradient in closed form: at each observed step ``t`` the signed
    measure ``[a = a_t] - pi_t(a | s_t)`` is injected at ``s_t`` and carried forward under the soft-optimal policy;
    the gradient is the feature value (times the steps left, for urgent features) of every transition it crosses.
    (Empirical minus expected feature counts, conditioned on the visited states; equal to reverse-mode autodiff of
    :func:`level_log_likelihood`, tested, at about half its cost.)"""
    horizon = actions.shape[0]
    ll, log_pi = _soft_value_iteration(w, phi, urgent, succ, terminal, states, actions, length, True)
    pi = jnp.exp(log_pi)
    n_states = terminal.shape[0]
    cont = ~terminal[succ]

    def forward(carry, x):
        mass, grad = carry
        pi_t, t, s, a = x
        on = (t < length).astype(pi.dtype)
        inject = (jax.nn.one_hot(a, 4, dtype=pi.dtype) - pi_t[:, s]) * on
        moved = (mass[None] * pi_t).at[:, s].add(inject)  # [4, S] measure on each transition
        weight = urgent * (horizon - t).astype(pi.dtype) + (1.0 - urgent)  # [F]
        grad = grad + weight * jnp.tensordot(phi, moved, axes=((1, 2), (0, 1)))
        mass = jnp.zeros((n_states,), pi.dtype).at[succ].add(jnp.where(cont, moved, 0.0))
        return (mass, grad), None

    t = jnp.arange(horizon)
    init = (jnp.zeros((n_states,), pi.dtype), jnp.zeros(w.shape, pi.dtype))
    (_, grad), _ = jax.lax.scan(forward, init, (pi, t, states, actions))
    return ll, grad


def _levels(tables: Tables, demos: Demonstrations):
    return (tables.phi, tables.succ, tables.terminal, demos.states, demos.actions, demos.length)


def per_level_log_likelihood(w, tables: Tables, demos: Demonstrations) -> jax.Array:
    """``float32[n]``: each level's episode log-likelihood (levels mapped in batches)."""
    def one(x):
        phi, succ, terminal, states, actions, length = x
        return level_log_likelihood(w, phi, tables.urgent, succ, terminal, states, actions, length)

    return jax.lax.map(one, _levels(tables, demos), batch_size=LEVEL_BATCH)


def per_level_log_likelihood_and_grads(w, tables: Tables, demos: Demonstrations):
    """``(float32[n], float32[n, F])``: each level's log-likelihood and its gradient at ``w``."""
    def one(x):
        phi, succ, terminal, states, actions, length = x
        return level_log_likelihood_and_grad(w, phi, tables.urgent, succ, terminal, states, actions, length)

    return jax.lax.map(one, _levels(tables, demos), batch_size=LEVEL_BATCH)


@jax.custom_vjp
def _weighted_ll(w, tables, demos, level_weights):
    """``sum_i level_weights[i] * LL_i(w)``, differentiable in ``w`` by the closed-form gradients (one level batch
    in memory at a time)."""
    return _weighted_ll_fwd(w, tables, demos, level_weights)[0]


def _weighted_ll_fwd(w, tables, demos, level_weights):
    ll, grads = per_level_log_likelihood_and_grads(w, tables, demos)
    return jnp.sum(level_weights * ll), level_weights @ grads


def _weighted_ll_bwd(grad, g):
    return g * grad, None, None, None


_weighted_ll.defvjp(_weighted_ll_fwd, _weighted_ll_bwd)


def _objective(w, tables, demos, level_weights):
    n_actions = jnp.sum(level_weights * demos.length.astype(level_weights.dtype))
    return (-_weighted_ll(w, tables, demos, level_weights) / jnp.maximum(n_actions, 1.0)
            + 0.5 * RIDGE * jnp.sum(w * w))


@jax.jit
def fit_weights(tables: Tables, demos: Demonstrations, level_weights: jax.Array, w0: jax.Array) -> jax.Array:
    """Maximum-likelihood reward weights (ridge-penalised; see :func:`mesalab.diagnostics.behavioral_fit.fit_weights`)."""
    return minimise(lambda w: _objective(w, tables, demos, level_weights), w0)


@jax.jit
def per_level_grads(w, tables: Tables, demos: Demonstrations) -> jax.Array:
    """``[n, F]``: gradient of each level's log-likelihood at ``w``."""
    return per_level_log_likelihood_and_grads(w, tables, demos)[1]


_per_level_ll_jit = jax.jit(per_level_log_likelihood)


def per_level_hessians(w, tables: Tables, demos: Demonstrations, eps: float = 1e-2) -> np.ndarray:
    """``[n, F, F]``: each level's log-likelihood Hessian at ``w`` by central differences of its exact gradient."""
    cols = []
    for j in range(w.shape[0]):
        e = jnp.zeros_like(w).at[j].set(eps)
        cols.append(np.asarray(per_level_grads(w + e, tables, demos) - per_level_grads(w - e, tables, demos),
                               np.float64) / (2 * eps))
    h = np.stack(cols, axis=-1)
    return 0.5 * (h + np.swapaxes(h, -1, -2))


def cross_fitted_level_ll(tables: Tables, demos: Demonstrations, w0) -> np.ndarray:
    """``float64[n]``: each level's held-out log-likelihood (:func:`mesalab.diagnostics.behavioral_fit.cross_fit`)."""
    return cross_fit(lambda mask: fit_weights(tables, demos, mask, w0),
                     lambda w: _per_level_ll_jit(w, tables, demos), demos.length)


def fit_behavioral_objective(task, params, demos: Demonstrations, ceiling_log_probs: np.ndarray | None = None,
                             n_boot: int = 1000, seed: int = 0) -> BehavioralObjective:
    """The behavioral objective of the agent behind ``demos`` (levels: the first entries of ``params``) and the
    candidates' fits, as :func:`mesalab.diagnostics.behavioral.fit_behavioral_objective` computes them for the
    static tasks (same fields, same rules; the items ranked are the event features)."""
    n, _ = check_demonstrations(demos.length)
    names = task.features.names
    tables = level_tables(task, params, n)
    # Rank objectives, not single events: a level offers several keys but one chest at test, so an agent that
    # collects every key and then opens the chest earns most of its fitted reward from keys even when one chest is
    # worth more than one key. Each feature is compared by its reward for completing its objective.
    scale = completion_scale(task.features, tables)

    def dominant(norm, norm_reps, gd):
        def normalise(w):
            return w / np.maximum(np.sum(np.abs(w), axis=-1, keepdims=True), 1e-12)

        return _dominant([], names, 0, normalise(norm * scale), normalise(norm_reps * scale[None]), gd)

    engine = FitEngine(fit_weights, cross_fitted_level_ll, per_level_grads, per_level_hessians)
    return fit_and_assemble(task, engine, tables, demos, lambda obj: candidate_tables(task, obj, tables, params),
                            dominant, tables.phi, ceiling_log_probs, n_boot, seed)
