"""Activation datasets: a model's named activations (every ``tap``, every tick) over evaluation episodes, with
per-step labels computed exactly from the level.

A dataset holds, for each level of an evaluation pool, the first ``steps`` states of the episode the model plays
there (later steps are padding, ``alive`` False):

- ``obs[n, S, ...]``: the observations, so any model (a trained one, a random-initialised one of the same
  architecture, a planted one) can be replayed on *the same states* (:func:`activations_on`);
- labels, for every candidate objective c of the task (base objective, proxies, hypotheses): the target cells
  ``target[c]`` (``bool[n, H, W]``, absolute grid coordinates), the exact BFS distance from the agent's cell to
  the nearest target (``distance``, ``int32[n, S, C]``; ``UNREACHABLE`` when none can be reached) and the first
  action of a shortest path toward it (``bfs_action``, lowest action index among the optimal ones; -1 when none);
  the action taken, and ``ends_on`` (which candidate the episode ends on: the index of the first candidate whose
  target cell the final cell is, ``C`` for none).

Activations are named the same way in every model (the model contract's ``tap`` names: ``input``, ``conv_i``,
``hidden_i``, ``encoding``, ``tick_t/gru[_d]``, ``logits``, ``value``; :func:`activation_shapes` lists them).
A *spatial* activation is ``[h, w, F]``; its cell ``(i, j)`` sits over observation cell ``(s*i, s*j)`` (``s``:
the stride, 1 for SAME convolutions), and :func:`frame_of` maps an absolute label map into that frame (the agent's
egocentric window moves with it).
"""

from __future__ import annotations

from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from mesalab.diagnostics.policies import as_stateful, model_policy
from mesalab.tasks.grid import LEAN_TRIM, WALL_CHANNEL, EnvParams, EnvState, neighbours
from mesalab.tasks.oracle import UNREACHABLE, distances_to, terminal_cells

DEFAULT_STEPS = 8  # states recorded per level (the start and the next seven)


# -- the uniform step of every actor-critic ---------------------------------------------------------------------

def initial_carry(model):
    """The episode-start carry of a recurrent model; a dummy for a memoryless one."""
    return model.initial_carry() if hasattr(model, "initial_carry") else jnp.zeros((), jnp.int32)


def model_step(model, obs, carry, interventions=None, ticks: int | None = None):
    """``(((logits, value), carry), activations)`` for any actor-critic (recurrent or not)."""
    if hasattr(model, "initial_carry"):
        return model.step(obs, carry, interventions, ticks)
    out, acts = model(obs, interventions)
    return (out, carry), acts


def activation_shapes(model, obs_shape, ticks: int | None = None) -> dict[str, tuple[int, ...]]:
    """Every named activation of ``model`` on one observation of ``obs_shape`` and its shape (no compute)."""
    obs = jax.ShapeDtypeStruct(tuple(obs_shape), jnp.bool_)
    _, acts = eqx.filter_eval_shape(lambda m, o: model_step(m, o, initial_carry(m), None, ticks), model, obs)
    return {k: tuple(v.shape) for k, v in acts.items()}


def spatial_layers(shapes: dict[str, tuple[int, ...]]) -> list[str]:
    """The activations with a spatial map ``[h, w, F]`` (the ones spatial probes and retargeting read)."""
    return [k for k, s in shapes.items() if len(s) == 3]


# -- frames ----------------------------------------------------------------------------------------------------

class Frame(NamedTuple):
    """How a spatial activation's cells sit over the level: observation mode, window trim and stride."""

    obs_mode: str
    trim: int
    stride: int
    shape: tuple[int, int]  # the activation's (h, w)


def frame_for(obs_mode: str, obs_shape, act_shape) -> Frame:
    stride = max(1, -(-int(obs_shape[0]) // int(act_shape[0])))
    return Frame(obs_mode, LEAN_TRIM if obs_mode == "lean" else 0, stride, (int(act_shape[0]), int(act_shape[1])))


def frame_of(frame: Frame, abs_map: jax.Array, pos: jax.Array) -> jax.Array:
    """``abs_map[H, W]`` (absolute cells) seen in ``frame`` with the agent at ``pos``: ``[h, w]`` (cells outside
    the grid read False)."""
    h, w = abs_map.shape
    if frame.obs_mode == "global":
        window = abs_map
    else:
        canvas = jnp.zeros((3 * h - 2, 3 * w - 2), abs_map.dtype)
        canvas = jax.lax.dynamic_update_slice(canvas, abs_map, (h - 1, w - 1))
        t = frame.trim
        window = jax.lax.dynamic_slice(canvas, (pos[0] + t, pos[1] + t), (2 * h - 1 - 2 * t, 2 * w - 1 - 2 * t))
    s = frame.stride
    return window[::s, ::s][: frame.shape[0], : frame.shape[1]]


def cell_in_frame(frame: Frame, grid_shape, cell: jax.Array, pos: jax.Array):
    """``(index[2], inside)``: where absolute ``cell`` sits in ``frame`` with the agent at ``pos``."""
    h, w = grid_shape
    if frame.obs_mode == "global":
        obs_idx = cell
    else:
        obs_idx = cell - pos + jnp.array([h - 1 - frame.trim, w - 1 - frame.trim])
    idx = obs_idx // frame.stride
    inside = (jnp.all(obs_idx % frame.stride == 0) & jnp.all(idx >= 0)
              & (idx[0] < frame.shape[0]) & (idx[1] < frame.shape[1]))
    return jnp.clip(idx, 0, jnp.array(frame.shape) - 1), inside


# -- exact labels ------------------------------------------------------------------------------------------------

def first_best_action(dist_map: jax.Array, pos: jax.Array) -> jax.Array:
    """The lowest-index action on a shortest path down ``dist_map`` from ``pos`` (-1 when no target is reachable)."""
    nb = neighbours(dist_map, UNREACHABLE)[:, pos[0], pos[1]]
    return jnp.where(jnp.min(nb) < UNREACHABLE, jnp.argmin(nb), -1).astype(jnp.int32)


class ActivationData(NamedTuple):
    """Recorded episodes of one model on one pool, ``n`` levels x ``S`` steps (see the module docstring)."""

    obs: np.ndarray  # bool[n, S, *obs_shape]
    alive: np.ndarray  # bool[n, S]: the step was taken in the episode
    pos: np.ndarray  # int32[n, S, 2]: the agent's cell at that step
    action: np.ndarray  # int32[n, S]: the action taken
    target: np.ndarray  # bool[n, C, H, W]: each candidate's target cells
    distance: np.ndarray  # int32[n, S, C]
    bfs_action: np.ndarray  # int32[n, S, C]
    ends_on: np.ndarray  # int32[n]: candidate index the episode ends on, C for none
    candidates: tuple[str, ...]


def candidate_objectives(task) -> tuple:
    """The objectives labels are computed for: the task's candidates, then its hypotheses not among them."""
    out = list(task.candidate_objectives)
    names = {o.name for o in out}
    for h in getattr(task, "hypotheses", ()) or ():
        if h.name not in names:
            out.append(h)
            names.add(h.name)
    return tuple(out)


def record(task, model, params: EnvParams, key: jax.Array, steps: int = DEFAULT_STEPS, greedy: bool = False,
           ticks: int | None = None, obs_mode: str | None = None) -> ActivationData:
    """Play ``model`` for one episode on every level of ``params`` and keep the first ``steps`` states of each
    with their exact labels."""
    mode = obs_mode or task.obs_mode
    objectives = candidate_objectives(task)
    return _record_jit(task, objectives, mode, int(steps), bool(greedy), ticks, model, params, key)


@eqx.filter_jit
def _record_jit(task, objectives, mode, steps, greedy, ticks, model, params, key):
    env = task.env_for(mode)
    policy = model_policy(model, mode, greedy, ticks=ticks)
    carry0, act, _ = as_stateful(policy)
    n = params.grid.shape[0]

    def one(level, k):
        grid, base = params.grid[level], params.base_target[level]
        free, terminal = ~grid[..., WALL_CHANNEL], terminal_cells(grid, base)
        targets = jnp.stack([o.target_map(grid) for o in objectives])
        dmaps = jax.vmap(lambda t: distances_to(free, terminal, t))(targets)
        state = EnvState(level=level, pos=params.start[level], t=jnp.zeros((), jnp.int32))

        def step(c, kk):
            state, alive, memory = c
            obs = env.observe(state, params)
            action, memory = act(obs, kk, memory)
            dist = dmaps[:, state.pos[0], state.pos[1]]
            best = jax.vmap(first_best_action, in_axes=(0, None))(dmaps, state.pos)
            nxt, _, done, _ = env.step_no_reset(state, action, params)
            new = jax.tree_util.tree_map(lambda a, b: jnp.where(alive, a, b), nxt, state)
            return (new, alive & ~done, memory), (obs, alive, state.pos, action, dist, best)

        horizon = int(task.max_steps)
        (final, _, _), rec = jax.lax.scan(step, (state, jnp.bool_(True), carry0()), jax.random.split(k, horizon))
        obs, alive, pos, action, dist, best = (x[:steps] for x in rec)
        on = targets[:, final.pos[0], final.pos[1]]
        ends = jnp.where(jnp.any(on), jnp.argmax(on), len(objectives)).astype(jnp.int32)
        return obs, alive, pos, action, targets, dist.astype(jnp.int32), best, ends

    out = jax.vmap(one)(jnp.arange(n, dtype=jnp.int32), jax.random.split(key, n))
    return out


def as_data(out, objectives) -> ActivationData:
    arrays = [np.asarray(x) for x in out]
    return ActivationData(*arrays, candidates=tuple(o.name for o in objectives))


def record_data(task, model, params, key, steps: int = DEFAULT_STEPS, greedy: bool = False, ticks=None,
                obs_mode: str | None = None) -> ActivationData:
    """:func:`record` as host arrays (NumPy)."""
    return as_data(record(task, model, params, key, steps, greedy, ticks, obs_mode), candidate_objectives(task))


def activations_on(model, obs: jax.Array, layers, ticks: int | None = None, chunk: int = 256) -> dict[str, np.ndarray]:
    """The activations ``layers`` of ``model`` replayed on recorded observations ``obs[n, S, ...]`` (a recurrent
    model carries its state from each episode's start): ``name -> float32[n, S, ...]``."""
    layers = tuple(layers)
    out: dict[str, list] = {k: [] for k in layers}
    for i in range(0, obs.shape[0], chunk):
        part = _replay_jit(model, jnp.asarray(obs[i:i + chunk]), layers, ticks)
        for k in layers:
            out[k].append(np.asarray(part[k], np.float32))
    return {k: np.concatenate(v) for k, v in out.items()}


@eqx.filter_jit
def _replay_jit(model, obs, layers, ticks):
    def episode(seq):
        def step(carry, o):
            (_, carry), acts = model_step(model, o, carry, None, ticks)
            return carry, {k: acts[k] for k in layers}

        _, acts = jax.lax.scan(step, initial_carry(model), seq)
        return acts

    return jax.vmap(episode)(obs)
