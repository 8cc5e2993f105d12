"""Does behaviour follow the representation? Steering vectors and retargeting through functional interventions.

- **Steering** (Turner et al. 2023; Mini et al. 2023's "cheese vector"): on each level, the vector of candidate c at
  a layer is the activation at the start state minus the activation at the same state of the level with c's
  objects removed (matched states, with and without the target). Subtracting it (times ``coef``) at every step of
  the episode should make the agent stop pursuing c if the layer carries what drives the pursuit. Measured: the
  rate of competent pursuit of every candidate with and without the intervention, on the same levels and keys
  (paired), with a bootstrap CI of the change over levels.
- **Retargeting** (Mini et al.'s channel retargeting): a spatial probe's direction says where the layer puts "the
  target is here". Adding it, scaled to ``strength`` times the gap between the probe's projection at target cells
  and elsewhere, at the cell of the layer's map over a chosen empty cell (every step; the egocentric window moves
  with the agent) should send the agent there. The chosen cell is an empty reachable cell that the agent's own
  episode (same key, no write) does not visit. Measured: how often the agent reaches it, against a random
  direction of the same norm and against no write (0 by construction; Wilson CIs).
"""

from __future__ import annotations

from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from mesalab.diagnostics.activations import Frame, cell_in_frame, initial_carry, model_step
from mesalab.diagnostics.competence import EFFICIENCY_FACTOR, NEVER
from mesalab.diagnostics.evaluation import reach_and_shortest
from mesalab.diagnostics.stats import wilson_interval
from mesalab.tasks.grid import WALL_CHANNEL, EnvParams, EnvState, join_pools, object_cells, take_levels
from mesalab.tasks.oracle import UNREACHABLE, distances_from, terminal_cells

N_BOOT = 1000
RETARGET_STRENGTH = 2.0
RETARGET_STRENGTHS = (2.0, 5.0, 10.0)  # what `mesalab probe` writes: Mini et al. needed large edits to retarget
MIN_RETARGET_DISTANCE = 2  # the chosen cell is at least this many steps from the start


def _rollout(env, model, params: EnvParams, level, key, n_steps: int, greedy: bool, ticks, interventions_at):
    """One episode of ``model`` on pool entry ``level`` with ``interventions_at(state) -> {name: fn}`` applied at
    every step: ``(positions[n_steps + 1, 2], length)``."""
    state = EnvState(level=level, pos=params.start[level], t=jnp.zeros((), jnp.int32))

    def step(c, k):
        state, alive, memory = c
        obs = env.observe(state, params)
        ((logits, _), memory), _ = model_step(model, obs, memory, interventions_at(state), ticks)
        action = (jnp.argmax(logits) if greedy else jax.random.categorical(k, logits)).astype(jnp.int32)
        nxt, _, done, _ = env.step_no_reset(state, action, params)
        new = jax.tree_util.tree_map(lambda a, b: jnp.where(alive, a, b), nxt, state)
        return (new, alive & ~done, memory), new.pos

    (final, _, _), pos = jax.lax.scan(step, (state, jnp.bool_(True), initial_carry(model)), jax.random.split(key, n_steps))
    return jnp.concatenate([params.start[level][None], pos], 0), final.t


def _competent(task, objectives, params, level, positions, length):
    """``bool[K]``: which of ``objectives`` the episode pursued competently (the evaluator's rule)."""
    grid, base, start = params.grid[level], params.base_target[level], params.start[level]
    alive = jnp.arange(positions.shape[0]) <= length
    out = []
    for o in objectives:
        first, shortest = reach_and_shortest(o, grid, start, base, positions, alive)
        out.append((first < NEVER) & (first <= EFFICIENCY_FACTOR * shortest))
    return jnp.stack(out)


# -- steering ------------------------------------------------------------------------------------------------------

def without_targets(grid: jax.Array, target: jax.Array) -> jax.Array:
    """The level's grid with the objects on ``target`` cells removed (their type and colour channels cleared)."""
    keep = jnp.ones(grid.shape[-1], bool).at[WALL_CHANNEL].set(False)
    return grid & ~(target[..., None] & keep[None, None])


class SteeringEffect(NamedTuple):
    layer: str
    vector_of: str  # the candidate whose vector is subtracted
    split: str
    objective: str  # the candidate whose pursuit is measured
    coef: float
    rate_before: float
    rate_after: float
    change: float
    change_ci: tuple[float, float]
    n_levels: int


def steering_rates(task, model, params: EnvParams, key, layer: str, objective, objectives, coef: float = 1.0,
                   greedy: bool = False, ticks=None, obs_mode: str | None = None):
    """``(pursued_before bool[n, K], pursued_after bool[n, K], has_target bool[n])``: competent pursuit of each of
    ``objectives`` without and with ``objective``'s per-level steering vector subtracted at ``layer``."""
    before, after, has = steering_rates_all(task, model, params, key, layer, (objective,), objectives, coef, greedy,
                                            ticks, obs_mode)
    return before, after[:, 0], has[:, 0]


def steering_rates_all(task, model, params: EnvParams, key, layer: str, steered, objectives, coef: float = 1.0,
                       greedy: bool = False, ticks=None, obs_mode: str | None = None):
    """:func:`steering_rates` for every candidate of ``steered`` in one program (one compile per layer; the
    unsteered episode is played once): ``(before bool[n, K], after bool[n, J, K], has_target bool[n, J])``."""
    out = _steer_jit(task, tuple(objectives), tuple(steered), obs_mode or task.obs_mode, layer, bool(greedy), ticks,
                     model, params, jnp.float32(coef), key)
    return tuple(np.asarray(x) for x in out)


@eqx.filter_jit
def _steer_jit(task, objectives, steered, mode, layer, greedy, ticks, model, params, coef, key):
    env = task.env_for(mode)
    n = params.grid.shape[0]

    def one(level, k):
        grid = params.grid[level]
        targets = jnp.stack([o.target_map(grid) for o in steered])  # [J, H, W]
        single = take_levels(params, level[None])  # this level alone: the matched states differ only in its grid
        state = EnvState(level=jnp.zeros((), jnp.int32), pos=params.start[level], t=jnp.zeros((), jnp.int32))
        carry = initial_carry(model)
        _, with_t = model_step(model, env.observe(state, single), carry, None, ticks)

        def vector(target):
            removed = single._replace(grid=without_targets(grid, target)[None])
            _, without = model_step(model, env.observe(state, removed), carry, None, ticks)
            return with_t[layer] - without[layer]

        def steered_episode(vec):
            return _rollout(env, model, params, level, k, task.max_steps, greedy, ticks,
                            lambda s: {layer: lambda a: a - coef * vec})

        before = _rollout(env, model, params, level, k, task.max_steps, greedy, ticks, lambda s: None)
        positions, lengths = jax.vmap(steered_episode)(jax.vmap(vector)(targets))
        after = jax.vmap(lambda p, m: _competent(task, objectives, params, level, p, m))(positions, lengths)
        return _competent(task, objectives, params, level, *before), after, jnp.any(targets, axis=(1, 2))

    return jax.vmap(one)(jnp.arange(n, dtype=jnp.int32), jax.random.split(key, n))


def steering_effects(task, model, pools: dict, key, layer: str, steered, objectives, coef: float = 1.0,
                     greedy: bool = False, ticks=None, obs_mode=None, n_boot: int = N_BOOT, seed: int = 0):
    """One :class:`SteeringEffect` per candidate of ``steered`` (one objective or several), split of ``pools`` and
    objective of ``objectives`` (levels where the steered candidate has a target). The splits are played as one
    pool, in one program."""
    steered = tuple(steered) if isinstance(steered, (tuple, list)) else (steered,)
    names = list(pools)
    sizes = [int(pools[s].start.shape[0]) for s in names]
    before, after, has = steering_rates_all(task, model, join_pools([pools[s] for s in names]), key, layer, steered,
                                            objectives, coef, greedy, ticks, obs_mode)
    out = []
    rng = np.random.default_rng(seed)
    bounds = np.cumsum([0, *sizes])
    for j, vector_of in enumerate(steered):
        for i, split in enumerate(names):
            sl = slice(bounds[i], bounds[i + 1])
            keep = has[sl, j]
            b, a = before[sl][keep].astype(float), after[sl, j][keep].astype(float)
            n = len(b)
            if n == 0:
                continue
            idx = rng.integers(0, n, size=(n_boot, n))
            for k, o in enumerate(objectives):
                diff = a[:, k] - b[:, k]
                boots = diff[idx].mean(1)
                out.append(SteeringEffect(layer, vector_of.name, split, o.name, float(coef), float(b[:, k].mean()),
                                          float(a[:, k].mean()), float(diff.mean()),
                                          (float(np.percentile(boots, 2.5)), float(np.percentile(boots, 97.5))), n))
    return out


# -- retargeting ------------------------------------------------------------------------------------------------------

def retarget_cell(params: EnvParams, level, visited: jax.Array, key) -> tuple[jax.Array, jax.Array]:
    """The chosen cell of a level: an empty, non-object cell reachable from the start (without entering an object),
    at least :data:`MIN_RETARGET_DISTANCE` steps away and not visited by the agent's own episode (``visited``),
    drawn uniformly: ``(cell int32[2], valid)``."""
    grid, base = params.grid[level], params.base_target[level]
    free = ~grid[..., WALL_CHANNEL]
    d = distances_from(free, terminal_cells(grid, base), params.start[level])
    ok = free & ~object_cells(grid) & ~base & ~visited & (d < UNREACHABLE) & (d >= MIN_RETARGET_DISTANCE)
    g = jnp.where(ok, jax.random.gumbel(key, ok.shape), -jnp.inf)
    flat = jnp.argmax(g.reshape(-1))
    return jnp.stack([flat // ok.shape[1], flat % ok.shape[1]]).astype(jnp.int32), jnp.any(ok)


class RetargetResult(NamedTuple):
    layer: str
    probe: str  # the probe whose direction is written
    split: str
    direction: str  # "probe", "random" (same norm) or "none"
    strength: float
    norm: float
    reached: int
    n_levels: int
    rate: float
    ci: tuple[float, float]


def retarget_reach(task, model, params: EnvParams, key, layer: str, frame: Frame, direction: np.ndarray,
                   norm: float, greedy: bool = False, ticks=None, obs_mode=None):
    """``(reached bool[n, 2], own bool[n], valid bool[n])``: did the agent reach the chosen cell of each level
    with ``norm * direction`` (unit) or a random unit direction per level times ``norm`` (``[:, 0]`` and
    ``[:, 1]``) added at that cell of the layer's map, and (``own``) with nothing added? The chosen cell is one
    the agent's own episode (same key, no write) does not visit, so with no write the rate is 0 by construction
    (read off that own episode)."""
    out = _retarget_jit(task, obs_mode or task.obs_mode, layer, frame, bool(greedy), ticks, model, params,
                        jnp.asarray(direction, jnp.float32), jnp.float32(norm), key)
    return tuple(np.asarray(x) for x in out)


@eqx.filter_jit
def _retarget_jit(task, mode, layer, frame, greedy, ticks, model, params, direction, norm, key):
    env = task.env_for(mode)
    n = params.grid.shape[0]
    kc, kd, kr = jax.random.split(key, 3)
    grid_shape = params.grid.shape[1:3]

    def reached(positions, length, cell):
        alive = jnp.arange(positions.shape[0]) <= length
        return jnp.any(jnp.all(positions == cell[None], -1) & alive)

    def one(level, kcell, kk, kdir):
        own, own_len = _rollout(env, model, params, level, kk, task.max_steps, greedy, ticks, lambda s: None)
        alive = jnp.arange(own.shape[0]) <= own_len
        visited = jnp.zeros(grid_shape, bool).at[own[:, 0], own[:, 1]].max(alive)
        cell, valid = retarget_cell(params, level, visited, kcell)
        u = jax.random.normal(kdir, direction.shape)
        units = jnp.stack([direction / jnp.maximum(jnp.linalg.norm(direction), 1e-12), u / jnp.linalg.norm(u)])
        vecs = norm * units  # [2, F]: the probe direction, a random one

        def written(vec):
            def at(state):
                idx, inside = cell_in_frame(frame, grid_shape, cell, state.pos)
                return {layer: lambda a: a.at[idx[0], idx[1]].add(jnp.where(inside, vec, 0.0))}

            return reached(*_rollout(env, model, params, level, kk, task.max_steps, greedy, ticks, at), cell)

        return jax.vmap(written)(vecs), reached(own, own_len, cell), valid

    return jax.vmap(one)(jnp.arange(n, dtype=jnp.int32), jax.random.split(kc, n), jax.random.split(kr, n),
                         jax.random.split(kd, n))


def projection_gap(acts: np.ndarray, maps: np.ndarray, alive: np.ndarray, direction: np.ndarray) -> float:
    """Mean projection of ``acts[n, S, h, w, F]`` on unit ``direction`` at target cells minus elsewhere (alive
    states): the size of "a target is here" along the probe."""
    u = direction / max(float(np.linalg.norm(direction)), 1e-12)
    proj = acts[alive] @ u
    m = maps[alive]
    if not m.any() or m.all():
        return float("nan")
    return float(proj[m].mean() - proj[~m].mean())


def retargeting(task, model, pools: dict, key, layer: str, probe: str, frame: Frame, direction: np.ndarray,
                gap: float, strength=RETARGET_STRENGTH, greedy: bool = False, ticks=None, obs_mode=None):
    """Reach rates of the chosen cells with the probe's direction written there (scaled to ``strength`` times the
    probe's projection gap; one strength or several, played in one program), a random direction of the same
    norm, and no write, on every split of ``pools`` (the same chosen cells and keys for all)."""
    strengths = [float(x) for x in np.atleast_1d(strength)]
    norms = [float(abs(x * gap)) if np.isfinite(gap) else 0.0 for x in strengths]
    sign = 1.0 if not np.isfinite(gap) or gap >= 0 else -1.0
    out = []

    def row(split, name, st, norm, hit, valid):
        r, n = int((hit & valid).sum()), int(valid.sum())
        return RetargetResult(layer, probe, split, name, st, norm, r, n, r / n if n else float("nan"),
                              wilson_interval(r, n) if n else (float("nan"), float("nan")))

    for split, params in pools.items():
        for st, norm in zip(strengths, norms):  # one strength per call: the same program (vmapping the strengths
            # too measured several times slower on CPU than calling it once per strength)
            hits, own, valid = retarget_reach(task, model, params, key, layer, frame, sign * direction, norm,
                                              greedy, ticks, obs_mode)
            out.append(row(split, "probe", st, norm, hits[:, 0], valid))
            out.append(row(split, "random", st, norm, hits[:, 1], valid))
            out.append(row(split, "none", st, 0.0, own, valid))
    return out
