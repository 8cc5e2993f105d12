"""Soft value iteration on one level, solved exactly: the soft-optimal policy of a reward over cells and the
log-likelihood of an episode under it, with its gradient in closed form.

Model (maximum causal entropy, Ziebart et al. 2010, finite horizon): the reward of entering cell ``s'`` is
``r(s')`` (plus, for an *urgent* reward on a terminal cell, ``u(s') * (T - t)``: worth more the sooner). The
soft-optimal policy with ``T`` steps left is given by soft value iteration over the level's cells (no sampling):

    Q_t(s, a) = r(s') + [s' not terminal] V_{t+1}(s'),   V_t(s) = log sum_a exp Q_t(s, a),   V_T = 0
    pi_t(a | s) = exp(Q_t(s, a) - V_t(s))

Each step also earns the neutral ``-log 4``, so all-zero rewards give the uniformly random policy (``-log 4``
nats per action). :func:`level_log_likelihood` builds the two reward maps from linear weights over a feature
basis; the fit of those weights is in :mod:`mesalab.diagnostics.behavioral_fit`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from mesalab.diagnostics.grid_mdp import LevelMDP, predecessor_sum, successor

LOG4 = float(np.log(4.0))


def soft_policy_log_probs(urgent_map: jax.Array, reward_map: jax.Array, mdp: LevelMDP, horizon: int) -> jax.Array:
    """``float32[T, 4, H, W]``: ``log pi_t(a | s)`` of the soft-optimal policy at step ``t = 0 .. T-1`` when
    entering cell ``s'`` by the action at step ``t`` earns ``urgent_map[s'] * (T - t) + reward_map[s']`` on top
    of the neutral ``-log 4`` per step (so all-zero maps give the uniformly random policy)."""
    u_next = successor(urgent_map, mdp)
    r_next = successor(reward_map, mdp) - LOG4
    cont = ~successor(mdp.terminal, mdp)

    def backup(v_next, steps_left):
        q = u_next * steps_left + r_next + jnp.where(cont, successor(v_next, mdp), 0.0)
        v = jax.nn.logsumexp(q, axis=0)
        return v, q - v[None]

    steps_left = jnp.arange(1, horizon + 1, dtype=reward_map.dtype)  # T - t for t = T-1 ... 0
    _, log_pi = jax.lax.scan(backup, jnp.zeros_like(reward_map), steps_left)
    return log_pi[::-1]


def _observed(log_pi, cells, actions, length):
    t = jnp.arange(actions.shape[0])
    return log_pi[t, actions, cells[:, 0], cells[:, 1]], t < length


@jax.custom_vjp
def episode_log_likelihood(urgent_map: jax.Array, reward_map: jax.Array, mdp: LevelMDP, cells: jax.Array,
                           actions: jax.Array, length: jax.Array) -> jax.Array:
    """Sum of ``log pi(a_t | s_t)`` over one episode under the soft-optimal policy for the reward maps.

    Its gradient is computed in closed form (``_ll_bwd``), several times faster than differentiating
    through the value-iteration scan on CPU."""
    return _ll_fwd(urgent_map, reward_map, mdp, cells, actions, length)[0]


def _ll_fwd(urgent_map, reward_map, mdp, cells, actions, length):
    log_pi = soft_policy_log_probs(urgent_map, reward_map, mdp, actions.shape[0])
    lp, mask = _observed(log_pi, cells, actions, length)
    return jnp.sum(jnp.where(mask, lp, 0.0)), (log_pi, mdp, cells, actions, length)


def _ll_bwd(res, g):
    """d LL / d r(c) = sum_t [expected entries of c after (s_t, a_t)] - [the same after (s_t, a ~ pi_t)]:
    a signed measure injected at each observed step and carried forward under the soft policy. Entries at
    step t count ``T - t`` times for the urgent map."""
    log_pi, mdp, cells, actions, length = res
    horizon = actions.shape[0]
    pi = jnp.exp(log_pi)
    h, w = mdp.free.shape
    t = jnp.arange(horizon)
    pi_here = pi[t, :, cells[:, 0], cells[:, 1]]  # [T, 4]
    weight = (jax.nn.one_hot(actions, 4, dtype=pi.dtype) - pi_here) * (t < length)[:, None].astype(pi.dtype)
    rows, cols = jnp.arange(h)[:, None], jnp.arange(w)[None, :]
    steps_left = (horizon - t).astype(pi.dtype)

    def forward(carry, xs):
        mass, total, total_urgent = carry
        pi_t, weight_t, cell, left = xs
        at_cell = ((rows == cell[0]) & (cols == cell[1])).astype(pi.dtype)
        entered = predecessor_sum(mass[None] * pi_t + weight_t[:, None, None] * at_cell[None], mdp)
        return (jnp.where(mdp.terminal, 0.0, entered), total + entered, total_urgent + left * entered), None

    zeros = jnp.zeros((h, w), pi.dtype)
    (_, entered, entered_urgent), _ = jax.lax.scan(forward, (zeros, zeros, zeros), (pi, weight, cells, steps_left))
    return g * entered_urgent, g * entered, None, None, None, None


episode_log_likelihood.defvjp(_ll_fwd, _ll_bwd)


def level_log_likelihood(w: jax.Array, maps: jax.Array, urgent: jax.Array, mdp: LevelMDP, cells: jax.Array,
                         actions: jax.Array, length: jax.Array) -> jax.Array:
    """Episode log-likelihood for reward weights ``w`` over one level's feature ``maps`` (``[F, H, W]``)."""
    urgent_part = jnp.tensordot(w * urgent, maps, axes=1)
    urgent_map = jnp.where(mdp.terminal, urgent_part, 0.0)
    reward_map = jnp.tensordot(w * (1.0 - urgent), maps, axes=1) + jnp.where(mdp.terminal, 0.0, urgent_part)
    return episode_log_likelihood(urgent_map, reward_map, mdp, cells, actions, length)

