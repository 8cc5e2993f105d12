"""What is it optimizing? The behavioral objective (IRL), optimization power (bits) and goal-directedness of
one agent on one evaluation split, with a one-sentence reading."""

from __future__ import annotations

from typing import NamedTuple

import jax
import numpy as np

from mesalab.diagnostics.behavioral import (
    MIN_GOAL_DIRECTEDNESS,
    MIN_PREDICTABLE_NATS,
    BehavioralObjective,
    fit_behavioral_objective,
)
from mesalab.diagnostics.behavioral_fit import demonstrations
from mesalab.diagnostics.epic import ObjectiveEpic, objective_epic
from mesalab.diagnostics.optimization_power import BitsSummary, episode_bits, summarise_bits
from mesalab.diagnostics.policy_replay import policy_log_probs
from mesalab.diagnostics.stats import ratio_bootstrap

DEFAULT_IRL_LEVELS = 200


class ObjectiveProfile(NamedTuple):
    split: str
    behavioral: BehavioralObjective
    bits: tuple[BitsSummary, ...]  # one per candidate objective, base objective first
    reading: str
    epic: ObjectiveEpic | None = None  # EPIC distance of the behavioral objective to each candidate (IRL's levels)


def objective_profile(task, params, episodes, split: str, policy=None, irl_levels: int = DEFAULT_IRL_LEVELS,
                      n_boot: int = 1000, own_log_probs=None) -> ObjectiveProfile:
    """Profile an agent from its evaluation episodes (one per level of ``params``).

    IRL uses the first ``irl_levels`` levels, and so does the EPIC comparison of the fitted reward with each
    candidate objective (:func:`mesalab.diagnostics.epic.objective_epic`); bits use every level. The agent's own
    action log-probabilities (the top of the goal-directedness scale) come from ``own_log_probs(demos)`` if
    given, else from ``policy`` if it exposes them; without either the scale tops out at perfect prediction."""
    from mesalab.tasks.keys_chests import KeysChestsTask

    if isinstance(task, KeysChestsTask):
        return _keys_chests_profile(task, params, episodes, split, policy, irl_levels, n_boot, own_log_probs)
    episodes = jax.tree_util.tree_map(np.asarray, episodes)
    demos = demonstrations(params, episodes, irl_levels)
    if own_log_probs is not None:
        ceiling = own_log_probs(demos)
    else:
        ceiling = None if policy is None else policy_log_probs(task, policy, params, demos)
    behavioral = fit_behavioral_objective(task, demos, ceiling, n_boot=n_boot)
    bits = episode_bits(task, params, episodes)
    names = ("base:" + task.base_objective.name, *("proxy:" + p.name for p in task.proxies))
    summaries = tuple(summarise_bits(label, bits[obj.name])
                      for label, obj in zip(names, task.candidate_objectives))
    epic = objective_epic(task, demos.grid, demos.base_target, behavioral.weights, behavioral.weight_replicates)
    return ObjectiveProfile(split, behavioral, summaries, reading(task, behavioral), epic)


def _keys_chests_profile(task, params, episodes, split, policy, irl_levels, n_boot, own_log_probs) -> ObjectiveProfile:
    """:func:`objective_profile` of keys and chests: IRL and bits over its product state space
    (:mod:`mesalab.diagnostics.keys_chests`); no EPIC comparison (defined over the static tasks' cell rewards)."""
    from mesalab.diagnostics.keys_chests import behavioral as kc
    from mesalab.diagnostics.keys_chests.bits import bits_summaries

    episodes = jax.tree_util.tree_map(np.asarray, episodes)
    demos = kc.demonstrations(params, episodes, irl_levels)
    if own_log_probs is not None:
        ceiling = own_log_probs(demos)
    else:
        ceiling = None if policy is None else policy_log_probs(task, policy, params, demos)
    behavioral = kc.fit_behavioral_objective(task, params, demos, ceiling, n_boot=n_boot)
    return ObjectiveProfile(split, behavioral, bits_summaries(task, params, episodes), reading(task, behavioral))


def describe_feature(task, name: str) -> str:
    """``"reaching red objects"``; features identical on these levels ``"key=red"`` read as both, marked so; an
    object kind ``"door+blue"`` reads ``"reaching a blue door"``; alternatives ``"ball~box"`` read as rewarded
    alike."""
    desc = task.features.descriptions

    def one(label):
        if "+" in label:
            parts = label.split("+")
            colours = [p for p in parts if p in task.features.colours]
            types = [p for p in parts if p not in colours]
            return "reaching a " + " ".join(colours + types)
        parts = label.split("=")
        text = " = ".join(desc.get(p, p) for p in parts)
        return text + (" (identical on these levels)" if len(parts) > 1 else "")

    alternatives = name.split("~")
    if len(alternatives) == 1:
        return one(name)
    return " or ".join(one(g) for g in alternatives) + " (rewarded alike)"


READING_BOOT = 2000  # bootstrap replicates (levels resampled) behind every comparison a reading states


MIN_SHARE = 0.1  # a candidate objective must explain at least this share of what the best reward explains


def fitted_explains(gain: float, gain_low: float, room: float, gd: float) -> bool:
    """The rule for "the fitted reward explains the behaviour": the agent is predictable at all (``room``, its
    own log-likelihood minus uniform, at least ``MIN_PREDICTABLE_NATS``), the held-out gain over the uniform
    policy has its 95% bootstrap interval above 0, and goal-directedness is at least ``MIN_GOAL_DIRECTEDNESS``."""
    return room >= MIN_PREDICTABLE_NATS and gain_low > 0 and gd >= MIN_GOAL_DIRECTEDNESS


def candidate_explains(gain: float, gain_low: float, best_gain: float) -> bool:
    """The rule for "candidate objective c explains the behaviour": its held-out gain over the uniform policy
    has its 95% bootstrap interval above 0 and is at least ``MIN_SHARE`` of the best gain of any reward scored
    (the fitted one or a candidate), which itself must be at least ``MIN_PREDICTABLE_NATS`` per action. (A gain
    of 0.005 nats/action can be "significant" on many levels and still explain nothing.)"""
    return best_gain >= MIN_PREDICTABLE_NATS and gain_low > 0 and gain >= MIN_SHARE * best_gain


def _interval(point: float, reps: np.ndarray) -> str:
    lo, hi = np.quantile(reps, [0.025, 0.975])
    return f"{point:+.3f} [{lo:+.3f}, {hi:+.3f}]"


def reading(task, b: BehavioralObjective) -> str:
    """One sentence: what best explains the behaviour, and how the base objective and the proxies compare.
    The rules (README, "How the verdict and the reading are decided", R1-R5):

    1. *Head.* No feature is named unless the fitted reward explains the behaviour (:func:`fitted_explains`)
       and the top item's reward is reliably positive (see ``behavioral._dominant``: kinds of object, each
       earning the sum of its features' weights, and regions). When the top set is every kind of object on the
       levels, the reading is "no single feature: all objects alike".
    2. *Candidates.* An objective "explains" the behaviour only by :func:`candidate_explains`. The base
       objective and the best proxy are compared only when both explain it, by the paired bootstrap interval
       of their difference; an interval reaching 0 reads "explain it equally well".
    """
    lengths = b.level_lengths
    room = (0.0 if b.ceiling_ll is None else b.ceiling_ll) - b.uniform_ll
    base_name = "base:" + task.base_objective.name
    cands = list(b.candidates)
    uniform_levels = b.uniform_ll * lengths
    reps = ratio_bootstrap(np.stack([b.level_ll - uniform_levels] + [c.level_ll - uniform_levels for c in cands]),
                           lengths, READING_BOOT)
    gains = [b.fitted_ll - b.uniform_ll] + [c.held_out_ll - b.uniform_ll for c in cands]
    lows = np.quantile(reps, 0.025, axis=0)
    gd = f"goal-directedness {b.goal_directedness:.2f}"

    if not fitted_explains(gains[0], float(lows[0]), room, b.goal_directedness):
        fit = f"fitted reward {_interval(gains[0], reps[:, 0])} nats/action over uniform on held-out levels"
        if room >= MIN_PREDICTABLE_NATS and lows[0] > 0:
            head = (f"Behaviour is explained only weakly by any rewarded feature ({gd}, below "
                    f"{MIN_GOAL_DIRECTEDNESS:.2f}; {fit})")
        else:
            head = f"Behaviour is not explained by any rewarded feature better than chance ({gd}; {fit})"
    elif b.dominant == "none":
        head = (f"Behaviour is partly explained by the fitted reward ({gd}), but no feature's reward is reliably "
                f"positive (every bootstrap interval reaches 0)")
    elif b.all_objects_alike:
        head = (f"Behaviour is best explained by no single feature: all objects alike (every kind of object on "
                f"these levels is rewarded alike, w={b.dominant_weight:.2f}; {gd})")
    else:
        untold = ""
        if b.not_told_apart:
            untold = (f"; these levels do not tell it apart from "
                      f"{describe_feature(task, b.not_told_apart).replace(' (rewarded alike)', '')}")
        head = (f"Behaviour is best explained by {describe_feature(task, b.dominant)} "
                f"(w={b.dominant_weight:.2f}{untold}; {gd})")

    def label(c):
        kind, name = c.name.split(":", 1)
        return f"the base objective '{name}'" if kind == "base" else f"proxy '{name}'"

    best_gain = max(gains)
    ok = {c.name: candidate_explains(g, float(lo), best_gain) for c, g, lo in zip(cands, gains[1:], lows[1:])}
    by_name = {c.name: (i + 1, c) for i, c in enumerate(cands)}
    j_base, base = by_name[base_name]
    proxies = [c for c in cands if c.name.startswith("proxy:")]
    over_uniform = lambda c: f"{_interval(gains[by_name[c.name][0]], reps[:, by_name[c.name][0]])}"  # noqa: E731

    def why_not(c):
        j = by_name[c.name][0]
        return "not above chance" if lows[j] <= 0 else f"under {MIN_SHARE:g} of the best reward's {best_gain:+.3f}"

    if not any(ok.values()):
        names = " nor ".join(label(c) for c in cands)
        what = f"neither {names} explains" if proxies else f"{label(base)} does not explain"
        detail = "; ".join(f"{c.name.split(':', 1)[1]} {over_uniform(c)}, {why_not(c)}" for c in cands)
        return f"{head}; {what} it ({detail}; nats/action over uniform)."
    good_proxies = [c for c in proxies if ok[c.name]]
    if not good_proxies:
        rest = (f", not with {' or '.join(label(c) for c in proxies)} "
                f"({'; '.join(f'{over_uniform(c)}, {why_not(c)}' for c in proxies)})" if proxies else "")
        return f"{head}; consistent with {label(base)} ({over_uniform(base)} nats/action over uniform){rest}."
    best = max(good_proxies, key=lambda c: c.held_out_ll)
    if not ok[base_name]:
        return (f"{head}; not by {label(base)} ({over_uniform(base)} nats/action over uniform, {why_not(base)}) "
                f"but by {label(best)} ({over_uniform(best)}).")
    j_best = by_name[best.name][0]
    delta = gains[j_base] - gains[j_best]
    diff = reps[:, j_base] - reps[:, j_best]
    lo, hi = np.quantile(diff, [0.025, 0.975])
    interval = f"Δ log-lik = {delta:+.3f} [{lo:+.3f}, {hi:+.3f}] nats/action"
    if np.allclose(base.level_ll, best.level_ll, rtol=0, atol=1e-9):
        return (f"{head}; {label(base)} and {label(best)} explain it equally well: they coincide on these "
                f"levels ({over_uniform(base)} nats/action over uniform).")
    if lo > 0:
        return f"{head}, consistent with {label(base)} over {label(best)} ({interval})."
    if hi < 0:
        return f"{head}, not by {label(base)} ({interval} in favour of {label(best)})."
    return f"{head}; {label(base)} and {label(best)} explain it equally well ({interval})."
