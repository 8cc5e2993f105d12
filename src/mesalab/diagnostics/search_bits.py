"""Bits contributed by a model's hard-coded search: the optimization power (``optimization_power``: exact bits of
each episode against a uniformly random policy) of the same model run with search budget K, minus run with budget
0, on the same levels with the same keys. The difference is 0 at budget 0 by construction, and is what the search
adds over what the model does without it ("Conditions for Mesa-Optimization" §2.2: optimization moved from the
base optimizer into the architecture). For a value iteration network budget 0 is the uniform policy (its learned
reward map acts only through the search), so there the gain is the bits over a random policy; a model whose
learned parts also act without search (a prior) splits the power between the two.

A model offers a search budget through ``with_iterations(K)`` (the value iteration network's Bellman backups).
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import jax
import numpy as np

from mesalab.diagnostics.stats import bootstrap_mean_ci


class SearchBits(NamedTuple):
    budget: int
    bits: float  # mean bits toward the base objective at this budget
    bits_ci: tuple[float, float]
    gain: float  # mean over levels of bits(budget) - bits(0), paired
    gain_ci: tuple[float, float]
    share: float  # gain / bits: the fraction of the optimization power the search supplies (nan when bits = 0)
    success: float  # fraction of episodes that reached the base objective
    ceiling: float  # mean bits of the shortest path (the most any policy can have)
    n_levels: int


def episode_bits_at(task, model, budget: int, params, key, obs_mode: str, greedy: bool = False
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(bits[n], ceiling[n], success[n])`` toward the base objective of ``model`` searching ``budget`` steps, one
    episode per level of ``params`` (the keys fixed by ``key``)."""
    from mesalab.diagnostics.evaluation import evaluate
    from mesalab.diagnostics.optimization_power import episode_bits
    from mesalab.diagnostics.policies import model_policy

    policy = model_policy(model.with_iterations(int(budget)), obs_mode, greedy=greedy, name=f"search-{budget}")
    episodes = jax.jit(lambda p, k: evaluate(task, policy, p, k))(params, key)
    bits = episode_bits(task, params, episodes)[task.base_objective.name]
    success = np.asarray(episodes.first_reach)[:, 0] <= np.asarray(episodes.length)
    return np.asarray(bits.agent, np.float64), np.asarray(bits.optimal, np.float64), success


def search_bits(task, model, budgets: Sequence[int], params, key, obs_mode: str, greedy: bool = False,
                seed: int = 0) -> list[SearchBits]:
    """Bits of ``model`` at every budget in ``budgets`` and their gain over budget 0, with 95% bootstrap
    intervals over levels (paired: the same levels and keys at every budget)."""
    base, _, _ = episode_bits_at(task, model, 0, params, key, obs_mode, greedy)
    out = []
    for b in budgets:
        bits, ceiling, success = episode_bits_at(task, model, b, params, key, obs_mode, greedy)
        m, lo, hi = bootstrap_mean_ci(bits, seed=seed)
        g, glo, ghi = bootstrap_mean_ci(bits - base, seed=seed)
        out.append(SearchBits(int(b), m, (lo, hi), g, (glo, ghi), g / m if m > 0 else float("nan"),
                              float(success.mean()), float(ceiling.mean()), int(bits.size)))
    return out
