"""The analysed result of a gridworld run folder: its config, task and every results table it holds."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

ORDER = {"training_curves": "seed, update_index", "evaluations": "seed, split DESC, is_base DESC, objective",
         "outcomes": "seed", "verdicts": "seed", "levels": "split, level",
         "behavioral_objectives": "split DESC, seed", "irl_weights": "seed, split, position",
         "candidate_likelihoods": "split DESC, seed, candidate", "optimization_power": "split DESC, seed, objective",
         "compute_scaling": "seed, ticks"}


@dataclass
class RunAnalysis:
    path: Path
    meta: dict
    task: object  # mesalab.tasks.Task
    curves: list[dict]
    evaluations: list[dict]
    outcomes: list[dict]
    competence: list[dict]
    verdicts: list[dict]
    levels: list[dict]
    trajectories: list[dict]
    objectives: dict | None  # summary, weights, candidates, bits, level_bits (None: not profiled)
    scaling: list[dict]

    @property
    def n_seeds(self) -> int:
        return len(self.verdicts)

    @property
    def n_expected(self) -> int:
        return len(self.meta["seeds"])

    def evaluation(self, seed: int, split: str, objective: str) -> dict:
        return next(r for r in self.evaluations if (r["seed"], r["split"], r["objective"]) == (seed, split, objective))


def analyse_run(folder) -> RunAnalysis:
    """Every table of a run folder (a :class:`~mesalab.results.folder.RunFolder`), read once."""
    from mesalab.errors import CorruptRunError
    from mesalab.tasks import get_task

    meta = folder.read_meta()
    try:
        task = get_task(meta["task"])
        meta["seeds"], meta["ppo"], meta["eval"]
    except (KeyError, TypeError) as e:
        raise CorruptRunError(f"{folder.meta_path} is malformed ({type(e).__name__}: {e}); rerun `mesalab run`") from None
    t = folder.tables("training_curves", "evaluations", "outcomes", "competence", "verdicts", "levels", "trajectories",
                      "behavioral_objectives", "irl_weights", "candidate_likelihoods", "optimization_power",
                      "level_bits", "compute_scaling", order=ORDER)
    objectives = None
    if t["behavioral_objectives"]:
        objectives = {"summary": t["behavioral_objectives"], "weights": t["irl_weights"],
                      "candidates": t["candidate_likelihoods"], "bits": t["optimization_power"],
                      "level_bits": t["level_bits"]}
    if not t["verdicts"]:
        raise CorruptRunError(f"{folder.path} holds no finished seed yet; run `mesalab run` with the same options to "
                              "resume it")
    return RunAnalysis(folder.path, meta, task, t["training_curves"], t["evaluations"], t["outcomes"], t["competence"],
                       t["verdicts"], t["levels"], t["trajectories"], objectives, t["compute_scaling"])
