"""What is it optimizing? The behavioral objective (IRL), optimization power (bits) and goal-directedness of
one agent on one evaluation split, with a one-sentence reading."""

from __future__ import annotations

from typing import NamedTuple

import jax
import numpy as np

from mesalab.diagnostics.behavioral import (
    BehavioralObjective,
    demonstrations,
    fit_behavioral_objective,
    policy_log_probs,
)
from mesalab.diagnostics.optimization_power import BitsSummary, episode_bits, summarise_bits

DEFAULT_IRL_LEVELS = 200


class ObjectiveProfile(NamedTuple):
    split: str
    behavioral: BehavioralObjective
    bits: tuple[BitsSummary, ...]  # one per candidate objective, base objective first
    reading: str


def objective_profile(task, params, episodes, split: str, policy=None, irl_levels: int = DEFAULT_IRL_LEVELS,
                      n_boot: int = 1000, own_log_probs=None) -> ObjectiveProfile:
    """Profile an agent from its evaluation episodes (one per level of ``params``).

    IRL uses the first ``irl_levels`` levels; bits use every level. The agent's own action log-probabilities
    (the top of the goal-directedness scale) come from ``own_log_probs(demos)`` if given, else from
    ``policy`` if it exposes them; without either the scale tops out at perfect prediction."""
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
    return ObjectiveProfile(split, behavioral, summaries, reading(task, behavioral))


def describe_feature(task, name: str) -> str:
    """``"reaching red objects"``; an alias group ``"key=red"`` reads as both, marked inseparable; tied
    groups ``"door~blue"`` read as alternatives the levels do not tell apart."""
    desc = task.features.descriptions

    def group(g):
        parts = g.split("=")
        text = " = ".join(desc.get(p, p) for p in parts)
        return text + (" (identical on these levels)" if len(parts) > 1 else "")

    tied = name.split("~")
    if len(tied) == 1:
        return group(name)
    return " or ".join(group(g) for g in tied) + " (not told apart by these levels)"


def reading(task, b: BehavioralObjective) -> str:
    """One sentence: what best explains the behaviour, and how the base objective compares."""
    by_name = {c.name: c for c in b.candidates}
    base = by_name["base:" + task.base_objective.name]
    proxies = [c for c in b.candidates if c.name.startswith("proxy:")]
    best_proxy = max(proxies, key=lambda c: c.held_out_ll) if proxies else None
    gd = f"goal-directedness {b.goal_directedness:.2f}"
    if b.dominant == "none":
        from mesalab.diagnostics.behavioral import MIN_GOAL_DIRECTEDNESS

        if b.goal_directedness < MIN_GOAL_DIRECTEDNESS:
            return (f"Behaviour is not explained by any rewarded feature better than chance ({gd}; fitted reward "
                    f"{b.fitted_ll:.3f} vs uniform {b.uniform_ll:.3f} nats/action).")
        return (f"Behaviour is partly explained by the fitted reward ({gd}), but no feature's reward is reliably "
                f"positive (every bootstrap interval reaches 0).")
    head = f"Behaviour is best explained by {describe_feature(task, b.dominant)} (w={b.dominant_weight:.2f}, {gd})"
    if best_proxy is not None and best_proxy.held_out_ll > base.held_out_ll:
        delta = best_proxy.held_out_ll - base.held_out_ll
        return (f"{head}, not by the base objective '{task.base_objective.name}' (Δ log-lik = {delta:+.3f} "
                f"nats/action in favour of proxy '{best_proxy.name.split(':', 1)[1]}').")
    if best_proxy is not None:
        delta = base.held_out_ll - best_proxy.held_out_ll
        return (f"{head}, consistent with the base objective '{task.base_objective.name}' (Δ log-lik = "
                f"{delta:+.3f} nats/action over proxy '{best_proxy.name.split(':', 1)[1]}').")
    return (f"{head}; the base objective '{task.base_objective.name}' explains it at {base.held_out_ll:.3f} "
            f"nats/action (uniform {b.uniform_ll:.3f}).")
