"""How trained models are evaluated: one settings object for runs and sweeps alike. (A top-level module with no
imports: worker processes import it before they pin themselves to a core, so it must not start JAX.)

``LEVEL_SEED`` seeds the evaluation level pools, shared by every seed and cell of every study (so comparisons
across seeds and along a dial are paired on the same levels).
"""

from __future__ import annotations

from dataclasses import dataclass

LEVEL_SEED = 12345
ICL_EVAL_SEED = 12345  # held-out in-context regression sequences of the ICL algorithm match (tuning: it, test: it + 1)


@dataclass(frozen=True)
class EvalPlan:
    episodes: int = 1000  # evaluation episodes per split and model, one per level
    level_seed: int = LEVEL_SEED  # seed of the evaluation level pools
    greedy: bool = False  # evaluate the argmax action instead of sampling from the policy
    irl_levels: int = 200  # levels (episodes) used to fit the behavioral objective; 0 skips it
    bootstrap: int = 1000  # bootstrap replicates of the IRL weights
    drawn_levels: int = 4  # trajectories stored per split and model (for the report)
    test_ticks: tuple[int, ...] = ()  # recurrent models: also tested at these ticks per step (compute scaling)
    probes: bool = True  # also evaluate (and profile) on the task's probe splits (``Task.probes``)
    internal_probes: int = 0  # sweeps: test levels on which each cell's model is probed for its targets (0: off)
