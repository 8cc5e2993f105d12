"""The behavioral objective of an agent: the reward that best explains its actions (exact MCE-IRL over the task's
feature basis), what that reward ranks highest, and how well it and each candidate objective predict behaviour.

The fit itself is :func:`mesalab.diagnostics.behavioral_fit.fit_weights` (soft value iteration in
:mod:`mesalab.diagnostics.soft_value_iteration`). Candidate objectives (base objective, proxies) are scored the
same way with the one-feature reward ``beta * [reach its target]``: the objective at its best inverse temperature
``beta``. The uniform policy scores ``-log 4`` nats per action; the agent's own log-probabilities
(:mod:`mesalab.diagnostics.policy_replay`), when known, are the top of the goal-directedness scale. The reading
(:func:`_dominant`) ranks the kinds of object on the levels and the non-object features.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from mesalab.diagnostics.behavioral_fit import (Demonstrations, RewardFeatures, candidate_features,
                                                cross_fitted_level_ll, fit_weights_jit, linearised_bootstrap,
                                                per_level_grads, per_level_hessians)
from mesalab.diagnostics.soft_value_iteration import LOG4

MIN_PREDICTABLE_NATS = 0.05  # an agent predictable by less than this beyond uniform has nothing to explain
TIE_RATIO = 0.8  # an item with at least this share of the top item's reward is rewarded alike
MIN_GOAL_DIRECTEDNESS = 0.1  # below this the fitted reward explains too little to name a dominant feature


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
    weight_replicates: np.ndarray | None = None  # float64[n_boot, F]: bootstrap replicates of ``weights`` (levels
    #                resampled; behavioral_fit.linearised_bootstrap), behind ci_low/ci_high; None if not kept


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



def check_demonstrations(lengths) -> tuple[int, int]:
    """``(levels, actions)`` of a demonstration set; a one-line error when there is nothing to fit."""
    from mesalab.errors import MesalabError

    n, n_actions = int(np.shape(lengths)[0]), int(np.sum(np.asarray(lengths)))
    if n == 0 or n_actions == 0:
        raise MesalabError("no demonstrated actions to fit a behavioral objective; evaluate on at least one level "
                           "with max_steps >= 1")
    return n, n_actions


def check_fitted(w_hat) -> None:
    """A one-line error when the reward fit diverged."""
    from mesalab.errors import MesalabError

    if not bool(jnp.all(jnp.isfinite(w_hat))):
        raise MesalabError("the behavioral-objective fit diverged (non-finite weights); report this as a bug "
                           "with the run folder")


class FitEngine(NamedTuple):
    """An IRL engine's pure functions over ``(reward tables, demonstrations)``: the static grid's
    (:mod:`mesalab.diagnostics.behavioral_fit`) or keys-and-chests' product MDP
    (:mod:`mesalab.diagnostics.keys_chests.behavioral`)."""

    fit: Callable  # (tables, demos, level weights, initial w) -> fitted w
    level_ll: Callable  # (tables, demos, w) -> cross-fitted log-likelihood per level
    grads: Callable  # (w, tables, demos) -> per-level gradients
    hessians: Callable  # (w, tables, demos) -> per-level Hessians


def fit_and_assemble(task, engine: FitEngine, tables, demos, candidate_tables, dominant, identity_tables,
                     ceiling_log_probs=None, n_boot: int = 1000, seed: int = 0) -> BehavioralObjective:
    """Fit the behavioral objective with ``engine`` and build its :class:`BehavioralObjective`: the one path of
    every engine's IRL (fit, cross-fitted likelihoods, bootstrap, goal-directedness, aliases, candidates).

    ``tables``: the reward features of the demonstrated levels; ``candidate_tables(objective)``: a candidate's
    one-feature reward in the same form; ``dominant(norm, norm_reps, gd)``: the reading's top item
    (:func:`_dominant`); ``identity_tables``: the features' values (leading level axis, then the feature axis) that
    aliases and absences are read from."""
    names = task.features.names
    n, n_actions = check_demonstrations(demos.length)
    ones = jnp.ones((n,), jnp.float32)
    zeros = jnp.zeros((len(names),), jnp.float32)
    w_hat = engine.fit(tables, demos, ones, zeros)
    check_fitted(w_hat)
    level_ll = engine.level_ll(tables, demos, w_hat)
    grads = np.asarray(engine.grads(w_hat, tables, demos), np.float64)
    hessians = engine.hessians(w_hat, tables, demos)
    lengths = demos.length
    fitted_ll = float(np.sum(level_ll) / n_actions)
    reps = linearised_bootstrap(w_hat, grads, hessians, np.asarray(lengths, np.float64), n_boot, seed)

    def normalise(w):
        return w / np.maximum(np.sum(np.abs(w), axis=-1, keepdims=True), 1e-12)

    w_np = np.asarray(w_hat, np.float64)
    norm, norm_reps = normalise(w_np), normalise(reps)
    lo, hi = np.quantile(norm_reps, [0.025, 0.975], axis=0)
    uniform_ll = -LOG4
    ceiling = None
    if ceiling_log_probs is not None:
        mask = np.arange(np.asarray(demos.actions).shape[1])[None] < np.asarray(lengths)[:, None]
        ceiling = float(np.sum(np.where(mask, ceiling_log_probs, 0.0)) / n_actions)
    gd_nats = fitted_ll - uniform_ll
    room = (0.0 if ceiling is None else ceiling) - uniform_ll
    gd = 0.0 if room < MIN_PREDICTABLE_NATS else float(np.clip(gd_nats / room, 0.0, 1.0))
    groups, absent = _feature_identity(np.asarray(identity_tables), names)
    dom = dominant(norm, norm_reps, gd)

    candidates = []
    for prefix, objs in (("base", (task.base_objective,)), ("proxy", task.proxies)):
        for obj in objs:
            ctables = candidate_tables(obj)
            wc = engine.fit(ctables, demos, ones, zeros)
            cand_ll = engine.level_ll(ctables, demos, wc)
            candidates.append(CandidateFit(f"{prefix}:{obj.name}", float(wc[0]), float(np.sum(cand_ll) / n_actions),
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
        level_lengths=np.asarray(lengths, np.float64),
        all_objects_alike=dom.all_objects_alike,
        not_told_apart=dom.not_told_apart,
        weight_replicates=reps,
    )


STATIC_GRID = FitEngine(fit_weights_jit, cross_fitted_level_ll, per_level_grads, per_level_hessians)


def fit_behavioral_objective(task, demos: Demonstrations, ceiling_log_probs: np.ndarray | None = None,
                             n_boot: int = 1000, seed: int = 0) -> BehavioralObjective:
    """Fit the behavioral objective of the agent that produced ``demos`` and score the candidates.

    ``ceiling_log_probs``: the agent's own ``log pi(a_t | s_t)`` for each demonstrated action (``[n, T]``), if
    known (see :func:`mesalab.diagnostics.policy_replay.policy_log_probs`); it sets the top of the goal-directedness scale (else 0 nats).
    """
    check_demonstrations(demos.length)
    names = task.features.names
    fmaps = RewardFeatures(jax.vmap(task.features.maps)(demos.grid), jnp.asarray(task.features.urgent, jnp.float32))
    n_object_features = len(task.features.object_features)
    kinds = object_kinds(np.asarray(demos.grid), np.asarray(fmaps.maps), n_object_features)

    def dominant(norm, norm_reps, gd):
        return _dominant(kinds, names, n_object_features, norm, norm_reps, gd)

    return fit_and_assemble(task, STATIC_GRID, fmaps, demos, lambda obj: candidate_features(obj, demos, len(names)),
                            dominant, fmaps.maps, ceiling_log_probs, n_boot, seed)
