"""Exact oracles of keys and chests over the enlarged state space (cell x taken keys x opened chests; the
inventory follows): fewest steps to an objective, optimal returns and the shortest-path policy. Pure JAX, only
gathers over :class:`~mesalab.tasks.keys_chests.mdp.ProductMDP` tables, vmappable over levels.

An objective here counts one kind of event (``KEY_EVENT``: keys picked up, ``CHEST_EVENT``: chests opened); it
is *completed* when its count reaches the level's maximum (every key; every chest that can be opened). Its
return, like the environment's reward, is ``1 - 0.9 * t / max_steps`` for each event at step ``t``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from mesalab.tasks.keys_chests.env import chest_reward
from mesalab.tasks.keys_chests.mdp import ProductMDP

UNREACHABLE = jnp.iinfo(jnp.int32).max // 2


def steps_to(mdp: ProductMDP, goal: jax.Array, horizon: int) -> jax.Array:
    """``int32[S]``: fewest steps from each state to a ``goal`` state (``UNREACHABLE`` beyond ``horizon`` steps or
    never), backward BFS: a terminal state that is not a goal is a dead end (the episode is over)."""
    d0 = jnp.where(goal, 0, UNREACHABLE).astype(jnp.int32)

    def sweep(d):
        best = jnp.min(d[mdp.succ], axis=0) + 1
        return jnp.where(goal, 0, jnp.where(mdp.terminal, UNREACHABLE, jnp.minimum(best, UNREACHABLE)))

    def cond(carry):
        i, d, prev = carry
        return (i < horizon) & jnp.any(d != prev)

    def body(carry):
        i, d, _ = carry
        return i + 1, sweep(d), d

    # sweep k leaves every distance <= k exact; stop at a fixed point or after `horizon` sweeps
    _, d, _ = jax.lax.while_loop(cond, body, (jnp.int32(1), sweep(d0), d0))
    return jnp.where(d <= horizon, d, UNREACHABLE)


def fewest_steps(mdp: ProductMDP, event: int, horizon: int, n: jax.Array | None = None) -> jax.Array:
    """Fewest steps from the start until ``n`` events of kind ``event`` have happened (default: completion)."""
    n = mdp.n_max[event] if n is None else n
    return steps_to(mdp, mdp.counts[event] >= n, horizon)[mdp.start]


def fewest_steps_per_count(mdp: ProductMDP, event: int, horizon: int, n_slots: int) -> jax.Array:
    """``int32[n_slots + 1]``: fewest steps to ``n`` events for ``n = 0 .. n_slots`` (``UNREACHABLE``: never)."""
    return jnp.stack([fewest_steps(mdp, event, horizon, jnp.int32(n)) for n in range(n_slots + 1)])


def optimal_values(mdp: ProductMDP, event: int, max_steps: int) -> jax.Array:
    """``float32[S]``: the optimal return from each state at ``t = 0`` of the reward ``1 - 0.9 t / T`` per event
    (finite-horizon value iteration over ``T = max_steps`` steps)."""
    ev = mdp.events[event].astype(jnp.float32)
    cont = ~mdp.terminal[mdp.succ]

    def backup(v_next, t):  # the action at step t (0-based) earns at step t + 1
        q = ev * chest_reward(t + 1, max_steps) + jnp.where(cont, v_next[mdp.succ], 0.0)
        return jnp.max(q, axis=0), None

    steps = jnp.arange(max_steps - 1, -1, -1, dtype=jnp.int32)
    v, _ = jax.lax.scan(backup, jnp.zeros(mdp.terminal.shape, jnp.float32), steps)
    return v


def optimal_return(mdp: ProductMDP, event: int, max_steps: int) -> jax.Array:
    """Exact optimal return of the objective "events of kind ``event``, sooner is better" from the start."""
    return optimal_values(mdp, event, max_steps)[mdp.start]


def shortest_path_action(mdp: ProductMDP, state: jax.Array, goal: jax.Array, horizon: int,
                         key: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(action, log_probs[4])``: an action on a shortest path from ``state`` to a ``goal`` state, ties broken
    uniformly at random (``log_probs``: that uniform tie-break); uniform over all actions when no goal is
    reachable or ``state`` is one."""
    d = steps_to(mdp, goal, horizon)
    nb = d[mdp.succ[:, state]]
    best = (nb == jnp.min(nb)) & ~goal[state]
    best = jnp.where(jnp.any(best), best, True)
    log_probs = jnp.where(best, -jnp.log(jnp.sum(best).astype(jnp.float32)), -jnp.inf)
    g = jax.random.gumbel(key, (4,))
    return jnp.argmax(jnp.where(best, g, -jnp.inf)).astype(jnp.int32), log_probs
