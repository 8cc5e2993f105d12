"""Optimization power in bits, computed exactly by dynamic programming over (cell, time).

For an objective "first reach a target cell" (the environment's return falls with the step at which the
target is first reached, and is 0 if it never is), an agent whose episode first reached the target at step
``t`` has power

    bits = -log2 P(a uniformly random policy first reaches a target within t steps)

(the probability that a random policy does at least as well). An episode that never reached the target
earns 0, which a random policy always matches: 0 bits. The probability is an exact sum over action sequences,
computed as a random walk's probability mass over cells, step by step, in log space (so tiny probabilities
such as 4^-60 are exact, not underflow). Episodes end on entering any object, as in the environment.
The oracle-optimal agent (shortest path) gives the ceiling of each level.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from mesalab.diagnostics.grid_mdp import level_mdp, predecessor_logsumexp
from mesalab.tasks.oracle import UNREACHABLE

LOG2 = float(np.log(2.0))


def log_reach_probability(grid: jax.Array, base_target: jax.Array, targets: jax.Array, start: jax.Array,
                          horizon: int) -> jax.Array:
    """``float32[horizon + 1]``: ``log P(first reach of targets at step <= t)`` for ``t = 0 .. horizon`` under
    the uniformly random policy (``-inf`` where impossible)."""
    mdp = level_mdp(grid, base_target)
    neg = jnp.float32(-jnp.inf)
    at_start = jnp.zeros(targets.shape, jnp.bool_).at[start[0], start[1]].set(True)
    log_mass = jnp.where(at_start, 0.0, neg).astype(jnp.float32)
    absorbing = targets | mdp.terminal
    start_hit = targets[start[0], start[1]]
    log_success0 = jnp.where(start_hit, 0.0, neg)
    log_mass = jnp.where(start_hit, neg, log_mass)

    def step(carry, _):
        log_mass, log_success = carry
        arrived = predecessor_logsumexp(log_mass, mdp)
        hit = jax.nn.logsumexp(jnp.where(targets, arrived, neg))
        log_success = jnp.logaddexp(log_success, hit)
        log_mass = jnp.where(absorbing, neg, arrived)
        return (log_mass, log_success), log_success

    _, cumulative = jax.lax.scan(step, (log_mass, log_success0), None, length=horizon)
    return jnp.concatenate([log_success0[None], cumulative])


def bits_for_first_reach(log_cdf: jax.Array, first_reach: jax.Array) -> jax.Array:
    """Bits of an episode that first reached the target at ``first_reach`` (``>= len(log_cdf)``: never)."""
    horizon = log_cdf.shape[0] - 1
    reached = first_reach <= horizon
    log_p = log_cdf[jnp.clip(first_reach, 0, horizon)]
    return jnp.where(reached, -log_p / LOG2, 0.0).astype(jnp.float32)


class LevelBits(NamedTuple):
    agent: jax.Array  # float32[n] bits of the agent's episode on each level
    optimal: jax.Array  # float32[n] bits of the oracle-optimal agent (the ceiling)


def optimization_power(grids, base_targets, targets, starts, first_reach, shortest, horizon: int) -> LevelBits:
    """Bits per level for the agent (from its first-reach steps) and for the shortest path (vmapped)."""

    def one(grid, base_target, target, start, first, best):
        log_cdf = log_reach_probability(grid, base_target, target, start, horizon)
        return bits_for_first_reach(log_cdf, first), bits_for_first_reach(log_cdf, best)

    agent, optimal = jax.vmap(one)(grids, base_targets, targets, starts, first_reach, shortest)
    return LevelBits(agent=agent, optimal=optimal)


class BitsSummary(NamedTuple):
    objective: str
    n_levels: int
    mean: float
    ci: tuple[float, float]
    optimal_mean: float  # mean ceiling
    fraction_of_ceiling: float  # mean agent bits / mean optimal bits
    histogram: tuple[tuple[float, ...], tuple[int, ...]]  # (bin edges, counts) of the agent's bits
    per_level: np.ndarray  # the agent's bits on each level
    per_level_optimal: np.ndarray  # the ceiling on each level


def summarise_bits(objective: str, bits: LevelBits, n_bins: int = 20) -> BitsSummary:
    from mesalab.diagnostics.stats import bootstrap_mean_ci

    agent = np.asarray(bits.agent, np.float64)
    optimal = np.asarray(bits.optimal, np.float64)
    mean, lo, hi = bootstrap_mean_ci(agent)
    top = max(float(np.max(optimal, initial=0.0)), float(np.max(agent, initial=0.0)), 1.0)
    counts, edges = np.histogram(agent, bins=n_bins, range=(0.0, top))
    opt_mean = float(optimal.mean()) if optimal.size else float("nan")
    return BitsSummary(
        objective=objective,
        n_levels=int(agent.size),
        mean=mean,
        ci=(lo, hi),
        optimal_mean=opt_mean,
        fraction_of_ceiling=mean / opt_mean if opt_mean > 0 else 0.0,
        histogram=(tuple(float(e) for e in edges), tuple(int(c) for c in counts)),
        per_level=agent,
        per_level_optimal=optimal,
    )


def episode_bits(task, params, episodes, horizon: int | None = None) -> dict[str, LevelBits]:
    """Bits of every evaluated episode under each candidate objective (base objective first)."""
    horizon = task.max_steps if horizon is None else horizon
    out = {}
    for j, obj in enumerate(task.candidate_objectives):
        targets = jax.vmap(obj.target_map)(params.grid)
        first = jnp.minimum(jnp.asarray(episodes.first_reach[:, j]), UNREACHABLE)
        out[obj.name] = _optimization_power_jit(params.grid, params.base_target, targets, params.start, first,
                                                jnp.asarray(episodes.shortest[:, j]), horizon)
    return out


_optimization_power_jit = jax.jit(optimization_power, static_argnums=(6,))
