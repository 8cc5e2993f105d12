"""Optimization power on keys and chests, exact by dynamic programming over the product state space.

The static tasks' definition (:mod:`mesalab.diagnostics.optimization_power`) is ``-log2 P(a uniformly random
policy first reaches the target within t steps)`` for an agent that first reached it at step ``t``. Here an
objective counts events (keys picked up, chests opened) and an episode can score several; the same definition,
generalised: an agent whose episode had ``n >= 1`` events of the objective's kind, the ``n``-th at step ``t``, has

    bits = -log2 P(a uniformly random policy has had at least n such events by step t)

(0 bits for ``n = 0``, which a random policy always matches). With one event (a single target) this is the static
definition. The probabilities are exact: ``P_k(s)[n]``, the chance of at least ``n`` events after ``k`` more
random steps from state ``s``, obeys ``P_{k+1}(s) = mean_a P_k(succ(s, a))`` (a terminal state keeps its count),
swept backward over the horizon (linear space is exact here: any action sequence of at most 60 steps has
probability at least ``4^-60``, far above float32's smallest normal number). The ceiling of a level is the best
any agent can score: the maximum over ``n`` of the bits of ``n`` events at the fewest steps they take.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from mesalab.diagnostics.optimization_power import LevelBits, summarise_bits
from mesalab.tasks.keys_chests.mdp import ProductMDP, pool_mdp

MAX_HORIZON = 60


def count_reach_probabilities(mdp: ProductMDP, event: int, horizon: int, n_slots: int) -> jax.Array:
    """``float32[horizon + 1, n_slots + 1]``: ``P(at least n events of kind event by step t)`` from the start under
    the uniformly random policy, for ``t = 0 .. horizon`` and ``n = 0 .. n_slots``."""
    if horizon > MAX_HORIZON:
        raise ValueError(f"horizon {horizon} exceeds {MAX_HORIZON}: 4^-horizon would underflow float32")
    q0 = (mdp.counts[event][None, :] >= jnp.arange(n_slots + 1)[:, None]).astype(jnp.float32)  # [N, S]

    def step(q, _):
        nxt = jnp.where(mdp.terminal[None], q0, jnp.mean(q[:, mdp.succ], axis=1))
        return nxt, q[:, mdp.start]

    q_last, firsts = jax.lax.scan(step, q0, None, length=horizon)
    return jnp.concatenate([firsts, q_last[None, :, mdp.start]])


def level_bits(p: jax.Array, n_events: jax.Array, last_event: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(agent bits, ceiling)`` of one level from its table ``p`` (:func:`count_reach_probabilities`): the agent
    had ``n_events`` events, the last at step ``last_event``."""
    horizon = p.shape[0] - 1
    bits = -jnp.log2(jnp.maximum(p, jnp.float32(1e-38)))
    agent = jnp.where(n_events > 0, bits[jnp.clip(last_event, 0, horizon), n_events], 0.0)
    possible = p > 0
    first = jnp.argmax(possible, axis=0)  # fewest steps to n events (where possible at all)
    at_first = bits[first, jnp.arange(p.shape[1])]
    best = jnp.max(jnp.where(jnp.any(possible, axis=0) & (jnp.arange(p.shape[1]) > 0), at_first, 0.0))
    return agent.astype(jnp.float32), best.astype(jnp.float32)


def episode_bits(task, params, episodes) -> dict[str, LevelBits]:
    """Bits of every evaluated episode under each candidate objective (base objective first)."""
    out = {}
    for j, obj in enumerate(task.candidate_objectives):
        agent, ceiling = _bits_jit(task, params, jnp.asarray(episodes.counts[:, j]),
                                   jnp.asarray(episodes.last_event[:, j]), j)
        out[obj.name] = LevelBits(agent=agent, optimal=ceiling)
    return out


def _bits_impl(task, params, counts, last, j):
    event = task.candidate_objectives[j].event

    def one(x):
        level, n, t = x
        p = count_reach_probabilities(pool_mdp(params, level), event, task.max_steps, task.n_slots)
        return level_bits(p, n, t)

    levels = jnp.arange(counts.shape[0], dtype=jnp.int32)
    return jax.lax.map(one, (levels, counts, last), batch_size=32)


_bits_jit = jax.jit(_bits_impl, static_argnums=(0, 4))


def bits_summaries(task, params, episodes) -> tuple:
    """One :class:`~mesalab.diagnostics.optimization_power.BitsSummary` per candidate objective."""
    bits = episode_bits(task, params, episodes)
    names = ("base:" + task.base_objective.name, *("proxy:" + p.name for p in task.proxies))
    return tuple(summarise_bits(label, bits[obj.name]) for label, obj in zip(names, task.candidate_objectives))

