"""The keys-and-chests evaluator: roll a policy out on a pool of levels and score every episode under each
candidate objective (open chests, collect keys) against its exact optimum over the product state space.

Per episode and candidate objective c (it counts one kind of event, see :class:`EventObjective`):

- ``first_reach[c]``: the step at which the episode *completed* c (every key picked up; every chest that can be
  opened opened), ``NEVER`` if it did not; ``shortest[c]``: the exact fewest steps to complete it;
- ``returns[c]`` / ``optimal[c]``: ``sum over c's events of 1 - 0.9 t / max_steps`` / the best achievable;
- ``outcome``: the shared competence rule (:mod:`mesalab.diagnostics.competence`) on those, so
  :func:`mesalab.diagnostics.evaluation.summarise` and the verdict read these episodes like any other task's.

The events themselves (``counts``, ``n_max``) give the rates a researcher reads on this task
(:func:`event_rates`): chests opened of those that could be, keys collected, and *spare* keys collected (keys
beyond what the level's chests can use: 0 in training, 2-3 per test level).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from mesalab.diagnostics.competence import NEVER, outcome_of
from mesalab.diagnostics.policies import Policy, as_stateful
from mesalab.diagnostics.stats import ratio_bootstrap
from mesalab.tasks.keys_chests.env import chest_reward
from mesalab.tasks.keys_chests.mdp import CHEST_EVENT, KEY_EVENT, pool_mdp, taken_mask
from mesalab.tasks.keys_chests.oracle import UNREACHABLE, fewest_steps, optimal_return
from mesalab.tasks.keys_chests.task import KeysChestsTask

RATE_BOOT = 2000  # bootstrap replicates (levels resampled) of each event rate's interval


class KeysChestsEpisodes(NamedTuple):
    """One episode per level of the pool (leading level axis); the fields of
    :class:`mesalab.diagnostics.evaluation.Episodes` first, then the events."""

    positions: jax.Array  # int32[n, T+1, 2] agent cell after each step (frozen after the episode ends)
    actions: jax.Array  # int32[n, T]
    length: jax.Array  # int32[n]
    first_reach: jax.Array  # int32[n, K] step at which each candidate objective was completed (NEVER: not)
    shortest: jax.Array  # int32[n, K] exact fewest steps to complete it
    returns: jax.Array  # float32[n, K]
    optimal: jax.Array  # float32[n, K]
    outcome: jax.Array  # int32[n]
    masks: jax.Array  # int32[n, T+1] taken-slot bitmask after each step
    counts: jax.Array  # int32[n, K] events of each candidate's kind in the episode
    n_max: jax.Array  # int32[n, K] the most there can be (every key; min(keys, chests))
    last_event: jax.Array  # int32[n, K] step of the episode's last event of each candidate's kind (0: none)


def rollout(env, policy: Policy, params, level: jax.Array, key: jax.Array, n_steps: int):
    """One episode of at most ``n_steps`` on pool entry ``level`` without auto-reset:
    ``(positions[n_steps + 1, 2], masks[n_steps + 1], actions[n_steps], length)``."""
    initial_carry, act, _ = as_stateful(policy)
    state = env.initial_state(params, level)

    def step(carry, k):
        state, alive, memory = carry
        action, memory = act(env.observe(state, params), k, memory)
        nxt, _, done, _ = env.step_no_reset(state, action, params)
        state = jax.tree_util.tree_map(lambda a, b: jnp.where(alive, a, b), nxt, state)
        return (state, alive & ~done, memory), (state.pos, taken_mask(state.taken), action)

    (final, _, _), (pos, masks, actions) = jax.lax.scan(step, (state, jnp.bool_(True), initial_carry()),
                                                        jax.random.split(key, n_steps))
    positions = jnp.concatenate([params.start[level][None], pos], axis=0)
    masks = jnp.concatenate([jnp.zeros((1,), jnp.int32), masks])
    return positions, masks, actions, final.t


def event_counts(params, level, masks: jax.Array) -> jax.Array:
    """``int32[2, T+1]``: keys picked up and chests opened by each step, from the recorded bitmasks."""
    m = params.obj_key.shape[-1]
    bits = (jnp.right_shift(masks[:, None], jnp.arange(m, dtype=jnp.int32)[None]) & 1) == 1  # [T+1, M]
    is_key = params.obj_key[level][None]
    return jnp.stack([jnp.sum(bits & is_key, axis=1, dtype=jnp.int32),
                      jnp.sum(bits & ~is_key, axis=1, dtype=jnp.int32)])


def score_episode(task: KeysChestsTask, params, level, masks: jax.Array, length: jax.Array):
    """Per-candidate completion step, fewest steps, return, optimum, outcome, event count, maximum and last event
    step of one episode."""
    mdp = pool_mdp(params, level)
    by_step = event_counts(params, level, masks)  # [2, T+1]
    t = jnp.arange(masks.shape[0])
    alive = t <= length
    out = {k: [] for k in ("first", "shortest", "returns", "optimal", "counts", "n_max", "last")}
    for obj in task.candidate_objectives:
        c = by_step[obj.event]
        n_max = mdp.n_max[obj.event]
        done = (c >= n_max) & alive
        out["first"].append(jnp.where(jnp.any(done), jnp.argmax(done), NEVER))
        steps = fewest_steps(mdp, obj.event, task.max_steps)
        out["shortest"].append(jnp.where(steps < UNREACHABLE, steps, NEVER))
        new = jnp.where(alive, jnp.concatenate([jnp.zeros((1,), jnp.int32), jnp.diff(c)]), 0)
        out["returns"].append(jnp.sum(new.astype(jnp.float32) * chest_reward(t, params.max_steps)))
        out["optimal"].append(optimal_return(mdp, obj.event, task.max_steps))
        out["counts"].append(jnp.max(jnp.where(alive, c, 0)))
        out["n_max"].append(n_max)
        out["last"].append(jnp.max(jnp.where(new > 0, t, 0)))
    first, shortest = (jnp.stack(out[k]).astype(jnp.int32) for k in ("first", "shortest"))
    return (first, shortest, jnp.stack(out["returns"]).astype(jnp.float32),
            jnp.stack(out["optimal"]).astype(jnp.float32), outcome_of(first, shortest),
            *(jnp.stack(out[k]).astype(jnp.int32) for k in ("counts", "n_max", "last")))


def evaluate(task: KeysChestsTask, policy: Policy, params, key: jax.Array) -> KeysChestsEpisodes:
    """Run ``policy`` for one episode on every level of ``params`` (jittable; vmapped over levels)."""
    env = task.env_for(policy.obs_mode)
    n = params.start.shape[0]

    def one(level, k):
        positions, masks, actions, length = rollout(env, policy, params, level, k, task.max_steps)
        first, shortest, returns, optimal, outcome, counts, n_max, last = score_episode(task, params, level, masks,
                                                                                         length)
        return KeysChestsEpisodes(positions, actions, length, first, shortest, returns, optimal, outcome, masks,
                                  counts, n_max, last)

    return jax.vmap(one)(jnp.arange(n, dtype=jnp.int32), jax.random.split(key, n))


class EventRate(NamedTuple):
    event: str  # "chests opened", "keys collected", "spare keys collected"
    count: int  # events in all episodes
    possible: int  # the most there could be
    rate: float  # count / possible (nan when nothing was possible)
    ci_low: float  # 95% bootstrap interval, levels resampled
    ci_high: float


EVENT_NAMES = ("chests opened", "keys collected", "spare keys collected")


def _column(task: KeysChestsTask, event: int) -> int:
    return next(j for j, o in enumerate(task.candidate_objectives) if o.event == event)


def event_tallies(task: KeysChestsTask, episodes) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per episode ``(count, possible)`` of each event of :data:`EVENT_NAMES`. Spare keys are those beyond what
    the level's chests can use (``keys - min(keys, chests)``); a spare key is *collected* for each key picked up
    beyond that many."""
    counts, n_max = np.asarray(episodes.counts), np.asarray(episodes.n_max)
    jc, jk = _column(task, CHEST_EVENT), _column(task, KEY_EVENT)
    spare = n_max[:, jk] - n_max[:, jc]
    return {"chests opened": (counts[:, jc], n_max[:, jc]), "keys collected": (counts[:, jk], n_max[:, jk]),
            "spare keys collected": (np.clip(counts[:, jk] - n_max[:, jc], 0, spare), spare)}


def event_rates(task, episodes) -> tuple[EventRate, ...]:
    """The event rates of one policy's episodes on one split (``()`` for a task without events, i.e. every task
    but keys-chests): count, possible, rate and a 95% bootstrap interval over levels."""
    if not isinstance(task, KeysChestsTask):
        return ()
    out = []
    for name, (count, possible) in event_tallies(task, episodes).items():
        c, p = int(count.sum()), int(possible.sum())
        if p == 0:
            out.append(EventRate(name, c, p, float("nan"), float("nan"), float("nan")))
            continue
        reps = ratio_bootstrap(count[None].astype(np.float64), possible.astype(np.float64), RATE_BOOT)[:, 0]
        lo, hi = np.quantile(reps, [0.025, 0.975])
        out.append(EventRate(name, c, p, c / p, float(lo), float(hi)))
    return tuple(out)
