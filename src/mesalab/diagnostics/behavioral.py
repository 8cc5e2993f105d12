"""The behavioral objective: maximum-causal-entropy inverse reinforcement learning, solved exactly.

Model (Ziebart et al. 2010, finite horizon): on a level, the reward of entering cell ``s'`` is
``w . phi(s')`` for the task's :class:`~mesalab.tasks.features.FeatureBasis` ``phi``. The soft-optimal policy
with ``T`` steps left is given by soft value iteration over the level's cells (exact, no sampling):

    Q_t(s, a) = r(s') + [s' not terminal] V_{t+1}(s'),   V_t(s) = log sum_a exp Q_t(s, a),   V_T = 0
    pi_t(a | s) = exp(Q_t(s, a) - V_t(s))

The weights are in nats: their scale is the inverse temperature. The behavioral objective is the ``w`` that
maximises the log-likelihood of the agent's observed actions over many levels (concave in ``w``; a small
ridge penalty keeps it finite for deterministic agents), found by L-BFGS. Everything is vmapped over levels
and jitted; bootstrap replicates are a vmapped axis of level weights.

Candidate objectives (base objective, proxies) are scored the same way with the one-feature reward
``beta * [reach its target]``: the objective at its best inverse temperature ``beta``. The uniform policy
scores ``-log 4`` nats per action.
"""

from __future__ import annotations

from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from mesalab.diagnostics.grid_mdp import LevelMDP, level_mdp, predecessor_sum, successor

RIDGE = 1e-3  # L2 penalty on w, per action (nats): bounds the weights of a deterministic agent, shrinks unidentified ones to 0
MAX_ITERS = 100
TOLERANCE = 1e-5  # max |gradient| (nats per action) at which L-BFGS stops
LOG4 = float(np.log(4.0))


class Demonstrations(NamedTuple):
    """What IRL consumes: one episode per level (arrays with a leading level axis)."""

    grid: jax.Array  # bool[n, H, W, C]
    base_target: jax.Array  # bool[n, H, W]
    cells: jax.Array  # int32[n, T, 2] the agent's cell before each action
    actions: jax.Array  # int32[n, T]
    length: jax.Array  # int32[n] number of actions taken (the rest is padding)


def demonstrations(params, episodes, n: int | None = None) -> Demonstrations:
    """Demonstrations from an evaluation pool (``EnvParams``) and the episodes played on it (first ``n``)."""
    n = episodes.length.shape[0] if n is None else min(n, episodes.length.shape[0])
    return Demonstrations(
        grid=jnp.asarray(params.grid[:n]),
        base_target=jnp.asarray(params.base_target[:n]),
        cells=jnp.asarray(episodes.positions[:n, :-1]),
        actions=jnp.asarray(episodes.actions[:n]),
        length=jnp.asarray(episodes.length[:n]),
    )


class RewardFeatures(NamedTuple):
    """Feature maps of a batch of levels and which features are *urgent*: on a terminal cell (an object,
    which ends the episode) an urgent feature's reward is multiplied by the steps left, ``T - t``, like the
    environment's own reward that falls with time, so "reach it sooner" is part of reaching it. Elsewhere,
    and for the step feature, rewards are earned as is on every step."""

    maps: jax.Array  # float32[n, F, H, W]
    urgent: jax.Array  # float32[F] 1 for urgent features, else 0


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


def per_level_log_likelihood(w: jax.Array, features: RewardFeatures, demos: Demonstrations) -> jax.Array:
    """``float32[n]``: each level's episode log-likelihood."""
    mdps = jax.vmap(level_mdp)(demos.grid, demos.base_target)
    return jax.vmap(level_log_likelihood, in_axes=(None, 0, None, 0, 0, 0, 0))(
        w, features.maps, features.urgent, mdps, demos.cells, demos.actions, demos.length
    )


def _objective(w, features, demos, level_weights):
    ll = per_level_log_likelihood(w, features, demos)
    n_actions = jnp.sum(level_weights * demos.length.astype(level_weights.dtype))
    return -jnp.sum(level_weights * ll) / jnp.maximum(n_actions, 1.0) + 0.5 * RIDGE * jnp.sum(w * w)


def fit_weights(features: RewardFeatures, demos: Demonstrations, level_weights: jax.Array,
                w0: jax.Array) -> jax.Array:
    """Maximum-likelihood reward weights (ridge-penalised) by L-BFGS. ``level_weights``: ``float32[n]``
    multiplicities of the levels (ones for the sample itself; bootstrap counts for a replicate; 0 to hold a
    level out); ``w0``: the starting weights. Jittable and vmappable over ``level_weights``."""
    w = w0

    def f(w):
        return _objective(w, features, demos, level_weights)

    with jax.numpy_dtype_promotion("standard"):  # optax mixes weak float constants and int32 counters
        solver = optax.lbfgs()
        value_and_grad = optax.value_and_grad_from_state(f)
        state = solver.init(w)

        def cond(carry):
            _, _, i, gnorm, stalls = carry
            # stop at a small gradient, or after 3 iterations in a row that no longer lower the objective
            # (line searches failing at float32's resolution)
            return (i < MAX_ITERS) & (gnorm > TOLERANCE) & (stalls < 3)

        def body(carry):
            w, state, i, _, stalls = carry
            value, grad = value_and_grad(w, state=state)
            updates, state = solver.update(grad, state, w, value=value, grad=grad, value_fn=f)
            w_new = optax.apply_updates(w, updates)
            progress = (value - optax.tree_utils.tree_get(state, "value")) / jnp.maximum(1.0, jnp.abs(value))
            stalls = jnp.where(progress > 1e-7, 0, stalls + 1)
            return w_new, state, i + 1, jnp.max(jnp.abs(grad)), stalls

        init = (w, state, jnp.int32(0), jnp.float32(jnp.inf), jnp.int32(0))
        w, *_ = jax.lax.while_loop(cond, body, init)
    return w


_fit_jit = jax.jit(fit_weights)


@jax.jit
def _per_level_grads(w, features, demos):
    """``[n, F]``: gradient of each level's log-likelihood at ``w`` (one batched pass)."""
    mdps = jax.vmap(level_mdp)(demos.grid, demos.base_target)
    grad = jax.grad(level_log_likelihood)
    return jax.vmap(grad, in_axes=(None, 0, None, 0, 0, 0, 0))(w, features.maps, features.urgent, mdps, demos.cells,
                                                               demos.actions, demos.length)


_per_level_ll_jit = jax.jit(per_level_log_likelihood)


def per_level_hessians(w: jax.Array, features: RewardFeatures, demos: Demonstrations, eps: float = 1e-2) -> np.ndarray:
    """``[n, F, F]``: each level's log-likelihood Hessian at ``w``, by central differences of its exact
    gradient (symmetrised)."""
    cols = []
    for j in range(w.shape[0]):
        e = jnp.zeros_like(w).at[j].set(eps)
        g_plus = _per_level_grads(w + e, features, demos)
        g_minus = _per_level_grads(w - e, features, demos)
        cols.append(np.asarray(g_plus - g_minus, np.float64) / (2 * eps))
    h = np.stack(cols, axis=-1)
    return 0.5 * (h + np.swapaxes(h, -1, -2))


def linearised_bootstrap(w_hat, grads, hessians, lengths, n_boot: int, seed: int = 0) -> np.ndarray:
    """``[n_boot, F]`` bootstrap replicates of the fitted weights, resampling levels with replacement.

    Each replicate's refit is replaced by one exact Newton step from the full-sample fit ``w_hat`` on the
    replicate's own objective (its level counts weight the per-level gradients and Hessians): the
    one-step bootstrap, accurate to second order near ``w_hat`` and ~100x cheaper than refitting. It agrees
    with full refits along the directions the data determine (tested); along near-flat directions (features
    almost identical on the levels, e.g. "door" and "blue" when every door is blue) replicates are only
    ridge-bounded, and their wide intervals say exactly that those weights are not separately identified.
    """
    rng = np.random.default_rng(seed)
    n, f = grads.shape
    counts = rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot).astype(np.float64)  # [B, n]
    n_actions = np.maximum(counts @ lengths, 1.0)  # [B]
    w_hat = np.asarray(w_hat, np.float64)
    # objective J_b(w) = -sum_i c_i LL_i(w) / N_b + ridge/2 |w|^2
    g = -(counts @ grads) / n_actions[:, None] + RIDGE * w_hat[None]
    h = -np.einsum("bn,nij->bij", counts, hessians) / n_actions[:, None, None] + RIDGE * np.eye(f)[None]
    step = np.linalg.solve(h, g[..., None])[..., 0]
    return w_hat[None] - step


class CandidateFit(NamedTuple):
    name: str  # "base:door", "proxy:red"
    beta: float  # best inverse temperature of "reach the objective's target" (nats per step left)
    held_out_ll: float  # nats per action, 2-fold cross-fitted
    level_ll: np.ndarray  # float64[n]: each level's held-out log-likelihood (nats; the fold that held it out)


class BehavioralObjective(NamedTuple):
    """The behavioral objective of one agent on one set of levels (host-side numbers)."""

    feature_names: tuple[str, ...]
    weights: np.ndarray  # float[F] fitted reward weights (nats)
    scale: float  # sum |w| (nats): the inverse temperature; near 0 means "indistinguishable from random"
    normalised: np.ndarray  # weights / sum |weights|
    ci_low: np.ndarray  # 95% bootstrap CI of the normalised weights (levels resampled)
    ci_high: np.ndarray
    aliases: tuple[tuple[str, ...], ...]  # groups of features identical on every level used (not separable)
    absent: tuple[str, ...]  # features that never occur on these levels (weight not identifiable)
    dominant: str  # what the reward ranks highest (see _dominant): a feature "door", features identical on these
    #                levels "key=red", an object kind "door+blue", alternatives rewarded alike "ball~box"; "none"
    #                when the fit explains too little
    dominant_weight: float  # the top item's normalised reward (an object kind: the sum of its features' weights)
    fitted_ll: float  # held-out log-likelihood per action of the fitted reward (2-fold cross-fitted)
    candidates: tuple[CandidateFit, ...]
    uniform_ll: float  # -log 4
    ceiling_ll: float | None  # the agent's own log-probability of its actions, when known
    goal_directedness: float  # in [0, 1]
    goal_directedness_nats: float  # fitted_ll - uniform_ll (nats per action)
    n_levels: int
    n_actions: int
    level_ll: np.ndarray  # float64[n]: each level's held-out log-likelihood under the fitted reward
    level_lengths: np.ndarray  # float64[n]: actions per level (the denominators of the per-action rates)
    all_objects_alike: bool = False  # the dominant set is every kind of object on the levels (at least two)
    not_told_apart: str = ""  # what the levels cannot rank below the dominant (a label like ``dominant``'s), or ""


def _feature_identity(feature_maps: np.ndarray, names) -> tuple[list[list[int]], list[int]]:
    """Alias groups (features equal on every cell of every level) and absent features (never non-zero)."""
    flat = feature_maps.transpose(1, 0, 2, 3).reshape(feature_maps.shape[1], -1)
    absent = [i for i in range(len(names)) if not np.any(flat[i])]
    groups: list[list[int]] = []
    for i in range(len(names)):
        if i in absent:
            continue
        for g in groups:
            if np.array_equal(flat[g[0]], flat[i]):
                g.append(i)
                break
        else:
            groups.append([i])
    return groups, absent


def object_kinds(grids: np.ndarray, feature_maps: np.ndarray, n_object_features: int) -> list[tuple[int, ...]]:
    """The kinds of object on the levels: each distinct set of object features (types, colours of the basis) that
    an object cell carries, e.g. ``(door, blue)`` and ``(key, red)``. Reaching an object earns the sum of its
    features' rewards, so the kinds, not the single features, are what a reward ranks."""
    from mesalab.tasks.grid import object_cells

    cells = np.asarray(object_cells(np.asarray(grids)))  # [n, H, W]
    vectors = np.moveaxis(np.asarray(feature_maps)[:, :n_object_features], 1, -1)[cells] > 0  # [cells, F_obj]
    kinds = {tuple(int(i) for i in np.flatnonzero(v)) for v in vectors}
    return sorted(k for k in kinds if k)


class Dominant(NamedTuple):
    label: str  # alternatives joined by "~": a feature "door", identical features "key=red", a kind "door+blue"
    weight: float  # the top item's normalised reward
    all_objects_alike: bool  # the top set is every kind of object on the levels (at least two kinds)
    not_told_apart: str = ""  # label of the items the bootstrap cannot rank below the top (not in the top set)


def _describe_kinds(kinds_set, all_kinds, names, n_object_features) -> list[str]:
    """Labels naming exactly the object kinds ``kinds_set`` among ``all_kinds``: one feature (or features
    identical on these levels, "key=red") whose objects are exactly the set; else a union of features each
    naming a part of it ("ball", "box"); else the kinds themselves ("door+blue")."""
    def with_feature(f):
        return {k for k in all_kinds if f in k}

    exact = [f for f in range(n_object_features) if with_feature(f) and with_feature(f) == kinds_set]
    if exact:
        return ["=".join(names[f] for f in exact)]
    parts = sorted((f for f in range(n_object_features) if with_feature(f) and with_feature(f) <= kinds_set),
                   key=lambda f: -len(with_feature(f)))
    chosen, covered = [], set()
    for f in parts:
        if not with_feature(f) <= covered:
            same = [g for g in parts if with_feature(g) == with_feature(f)]  # identical on these levels
            chosen.append("=".join(names[g] for g in same))
            covered |= with_feature(f)
    if covered == kinds_set:
        return chosen
    labels = []
    for k in sorted(kinds_set):  # each kind by the features that pick it alone ("door=red"), else by its parts
        alone = [f for f in k if with_feature(f) == {k}]
        labels.append("=".join(names[f] for f in alone) if alone else "+".join(names[f] for f in k))
    return labels


def _dominant(kinds, names, n_object_features, norm, norm_reps, gd) -> Dominant:
    """What the fitted reward ranks highest. The items compared are the *kinds of object* on the levels (each
    earns the sum of its features' weights: reaching a blue door earns w_door + w_blue) and the non-object
    features (regions). The top item must have its bootstrap interval above 0; it is joined by every item
    rewarded alike: one with at least ``TIE_RATIO`` of its reward. Items the paired bootstrap cannot rank below
    the top, but with less reward than that, are *not told apart* by these levels: named as such, not as
    rewarded alike. The top set is then named in features (see :func:`_describe_kinds`); when it is every kind of object
    the label reads "all objects alike". Items below the top set are not named: an item's reward is identified
    only relative to the top (reaching a blue ball may carry a large weight through "blue" when every door is
    blue, and still never be chosen over the door), so "also rewarded" would claim what the fit does not show.
    "none" when the fitted reward barely explains behaviour (goal-directedness < MIN_GOAL_DIRECTEDNESS)."""
    items = [("kind", k) for k in kinds]
    items += [("feature", (i,)) for i in range(n_object_features, len(names)) if names[i] != "step"]
    if gd < MIN_GOAL_DIRECTEDNESS or not items:
        return Dominant("none", 0.0, False, "")
    point = {it: float(norm[list(it[1])].sum()) for it in items}
    reps = {it: norm_reps[:, list(it[1])].sum(axis=1) for it in items}
    top = max(point, key=point.get)
    if point[top] <= 0 or np.quantile(reps[top], 0.025) <= 0:
        return Dominant("none", 0.0, False, "")
    alike = [it for it in items if it != top and point[it] > 0 and point[it] >= TIE_RATIO * point[top]]
    top_set = [top, *sorted(alike, key=point.get, reverse=True)]
    untold = [it for it in sorted(items, key=point.get, reverse=True) if it not in top_set and point[it] > 0
              and np.quantile(reps[top] - reps[it], 0.025) <= 0]

    def name(selected):
        kinds_set = {it[1] for it in selected if it[0] == "kind"}
        out = _describe_kinds(kinds_set, set(kinds), names, n_object_features) if kinds_set else []
        return out + [names[it[1][0]] for it in selected if it[0] == "feature"]

    labels = name(top_set)
    if top[0] == "feature":  # the top item first
        labels = [names[top[1][0]]] + [x for x in labels if x != names[top[1][0]]]
    every_kind = len(kinds) >= 2 and set(kinds) <= {it[1] for it in top_set if it[0] == "kind"}
    return Dominant("~".join(labels), point[top], every_kind, "~".join(name(untold)) if untold else "")


def _cross_fitted_level_ll(features, demos, w0) -> np.ndarray:
    """``float64[n]``: each level's log-likelihood when held out: fit on even levels, score odd ones, and
    vice versa (a level of a fold with nothing to fit on scores as the uniform policy would)."""
    n = demos.length.shape[0]
    even = (jnp.arange(n) % 2 == 0).astype(jnp.float32)
    lengths = demos.length.astype(jnp.float32)
    out = -LOG4 * np.asarray(demos.length, np.float64)
    for train_mask in (even, 1.0 - even):
        held = np.asarray(train_mask) == 0
        if float(jnp.sum(train_mask * lengths)) == 0 or float(jnp.sum((1.0 - train_mask) * lengths)) == 0:
            continue
        w = _fit_jit(features, demos, train_mask, w0)
        ll = np.asarray(_per_level_ll_jit(w, features, demos), np.float64)
        out[held] = ll[held]
    return out


def candidate_features(objective, demos: Demonstrations, n_features: int = 1) -> RewardFeatures:
    """The objective's target indicator (urgent, like the environment's decaying reward: its weight is the
    objective's best inverse temperature), then zero maps (padding to the basis size lets one compiled fit
    serve both models; a zero map's weight stays 0)."""
    target = jax.vmap(objective.target_map)(demos.grid).astype(jnp.float32)
    maps = [target] + [jnp.zeros_like(target)] * (n_features - 1)
    urgent = jnp.zeros((n_features,), jnp.float32).at[0].set(1.0)
    return RewardFeatures(jnp.stack(maps, axis=1), urgent)


def fit_behavioral_objective(task, demos: Demonstrations, ceiling_log_probs: np.ndarray | None = None,
                             n_boot: int = 1000, seed: int = 0) -> BehavioralObjective:
    """Fit the behavioral objective of the agent that produced ``demos`` and score the candidates.

    ``ceiling_log_probs``: the agent's own ``log pi(a_t | s_t)`` for each demonstrated action (``[n, T]``), if
    known (see :func:`policy_log_probs`); it sets the top of the goal-directedness scale (else 0 nats).
    """
    from mesalab.errors import MesalabError

    n = int(demos.length.shape[0])
    n_actions = int(np.sum(np.asarray(demos.length)))
    if n == 0 or n_actions == 0:
        raise MesalabError("no demonstrated actions to fit a behavioral objective; evaluate on at least one level "
                           "with max_steps >= 1")
    names = task.features.names
    fmaps = RewardFeatures(jax.vmap(task.features.maps)(demos.grid), jnp.asarray(task.features.urgent, jnp.float32))
    ones = jnp.ones((n,), jnp.float32)
    zeros = jnp.zeros((len(names),), jnp.float32)
    w_hat = _fit_jit(fmaps, demos, ones, zeros)
    if not bool(jnp.all(jnp.isfinite(w_hat))):
        raise MesalabError("the behavioral-objective fit diverged (non-finite weights); report this as a bug "
                           "with the run folder")
    level_ll = _cross_fitted_level_ll(fmaps, demos, w_hat)
    fitted_ll = float(level_ll.sum() / n_actions)

    grads = np.asarray(_per_level_grads(w_hat, fmaps, demos), np.float64)
    hessians = per_level_hessians(w_hat, fmaps, demos)
    reps = linearised_bootstrap(w_hat, grads, hessians, np.asarray(demos.length, np.float64), n_boot, seed)

    def normalise(w):
        return w / np.maximum(np.sum(np.abs(w), axis=-1, keepdims=True), 1e-12)

    w_np = np.asarray(w_hat, np.float64)
    norm = normalise(w_np)
    norm_reps = normalise(reps)
    lo, hi = np.quantile(norm_reps, [0.025, 0.975], axis=0)

    uniform_ll = -LOG4
    if ceiling_log_probs is not None:
        mask = np.arange(np.asarray(demos.actions).shape[1])[None] < np.asarray(demos.length)[:, None]
        ceiling = float(np.sum(np.where(mask, ceiling_log_probs, 0.0)) / n_actions)
    else:
        ceiling = None
    gd_nats = fitted_ll - uniform_ll
    room = (0.0 if ceiling is None else ceiling) - uniform_ll
    gd = 0.0 if room < MIN_PREDICTABLE_NATS else float(np.clip(gd_nats / room, 0.0, 1.0))
    groups, absent = _feature_identity(np.asarray(fmaps.maps), names)
    n_object_features = len(task.features.object_features)
    kinds = object_kinds(np.asarray(demos.grid), np.asarray(fmaps.maps), n_object_features)
    dom = _dominant(kinds, names, n_object_features, norm, norm_reps, gd)

    candidates = []
    for prefix, objs in (("base", (task.base_objective,)), ("proxy", task.proxies)):
        for obj in objs:
            cmaps = candidate_features(obj, demos, len(names))
            wc = _fit_jit(cmaps, demos, ones, zeros)
            cand_ll = _cross_fitted_level_ll(cmaps, demos, wc)
            candidates.append(CandidateFit(f"{prefix}:{obj.name}", float(wc[0]), float(cand_ll.sum() / n_actions),
                                           cand_ll))

    return BehavioralObjective(
        feature_names=names,
        weights=w_np,
        scale=float(np.sum(np.abs(w_np))),
        normalised=norm,
        ci_low=lo,
        ci_high=hi,
        aliases=tuple(tuple(names[i] for i in g) for g in groups if len(g) > 1),
        absent=tuple(names[i] for i in absent),
        dominant=dom.label,
        dominant_weight=dom.weight,
        fitted_ll=fitted_ll,
        candidates=tuple(candidates),
        uniform_ll=uniform_ll,
        ceiling_ll=ceiling,
        goal_directedness=gd,
        goal_directedness_nats=gd_nats,
        n_levels=n,
        n_actions=n_actions,
        level_ll=level_ll,
        level_lengths=np.asarray(demos.length, np.float64),
        all_objects_alike=dom.all_objects_alike,
        not_told_apart=dom.not_told_apart,
    )


MIN_PREDICTABLE_NATS = 0.05  # an agent predictable by less than this beyond uniform has nothing to explain
TIE_RATIO = 0.8  # an item with at least this share of the top item's reward is rewarded alike
MIN_GOAL_DIRECTEDNESS = 0.1  # below this the fitted reward explains too little to name a dominant feature


def policy_log_probs(task, policy, params, demos: Demonstrations) -> np.ndarray | None:
    """``[n, T]``: the agent's own ``log pi(a_t | s_t)`` for each demonstrated action, or ``None`` when the
    policy does not expose its action probabilities. No predictor of these actions can do better on average:
    it is the top of the goal-directedness scale. A stateful policy is replayed along each demonstration, so
    its probabilities condition on the whole history it saw."""
    if policy.log_probs is None:
        return None

    run = jax.jit(lambda cells, actions: _log_probs_of(task, policy, params, cells, actions))
    return np.asarray(run(demos.cells, demos.actions), np.float64)


def _model_log_probs_impl(model, task, obs_mode: str, greedy: bool, params, cells, actions):
    from mesalab.diagnostics.policies import model_policy

    policy = model_policy(model, obs_mode, greedy)
    return _log_probs_of(task, policy, params, cells, actions)


def _log_probs_of(task, policy, params, cells, actions):
    from mesalab.tasks.grid import EnvState, GridEnv

    from mesalab.diagnostics.policies import as_stateful

    env = GridEnv(task.shape.height, task.shape.width, policy.obs_mode)
    n, horizon = actions.shape
    initial_carry, _, log_probs = as_stateful(policy)

    def episode(level, cells, actions):  # a stateful policy replays the demonstrated history in order
        def at(carry, x):
            t, cell, action = x
            lp, carry = log_probs(env.observe(EnvState(level=level, pos=cell, t=t), params), carry)
            return carry, lp[action]

        _, lps = jax.lax.scan(at, initial_carry(), (jnp.arange(horizon), cells, actions))
        return lps

    return jax.vmap(episode)(jnp.arange(n), cells, actions)


def model_log_probs(task, model, obs_mode: str, greedy: bool, params, demos: Demonstrations) -> np.ndarray:
    """:func:`policy_log_probs` for a trained actor-critic, compiled once for every model of the same shape."""
    return np.asarray(_model_log_probs_jit(model, task, obs_mode, greedy, params, demos.cells, demos.actions),
                      np.float64)


_model_log_probs_jit = eqx.filter_jit(_model_log_probs_impl)  # one wrapper: its compilation cache is shared
