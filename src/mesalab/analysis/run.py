"""The analysed result of a gridworld run folder: its config, task and every results table it holds."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from typing import TYPE_CHECKING

from mesalab.analysis.events import EventSummary, event_summary

if TYPE_CHECKING:
    from mesalab.analysis.internals import InternalsSummary

ORDER = {"training_curves": "seed, update_index", "evaluations": "seed, split DESC, is_base DESC, objective",
         "outcomes": "seed", "verdicts": "seed", "levels": "split, level",
         "behavioral_objectives": "split DESC, seed", "irl_weights": "seed, split, position",
         "candidate_likelihoods": "split DESC, seed, candidate", "optimization_power": "split DESC, seed, objective",
         "epic_distances": "seed, split, candidate",
         "compute_scaling": "seed, ticks", "probe_pursuit": "seed, split, feature_set", "probe_readings": "seed",
         "probe_verdicts": "seed, split", "split_overlaps": "seed, split"}


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
    probes: "ProbeSummary | None" = None  # what the seeds pursue on every split (None: the task has no probes)
    overlaps: list[dict] | None = None  # per seed and split: evaluation levels equal to a training level
    events: "EventSummary | None" = None  # keys-chests: event rates per split across seeds (None: no events)
    internals: "InternalsSummary | None" = None  # `mesalab probe`: what the models represent (None: not probed)

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
        meta["seeds"], meta["eval"], meta["agent" if meta.get("kind") == "agent" else "ppo"]
    except (KeyError, TypeError) as e:
        raise CorruptRunError(f"{folder.meta_path} is malformed ({type(e).__name__}: {e}); rerun `mesalab run`") from None
    t = folder.tables("training_curves", "evaluations", "outcomes", "competence", "verdicts", "levels", "trajectories",
                      "behavioral_objectives", "irl_weights", "candidate_likelihoods", "optimization_power",
                      "level_bits", "epic_distances", "compute_scaling", "probe_pursuit", "probe_readings", "probe_verdicts",
                      "split_overlaps", "event_rates", order=ORDER)
    objectives = None
    if t["behavioral_objectives"]:
        objectives = {"summary": t["behavioral_objectives"], "weights": t["irl_weights"],
                      "candidates": t["candidate_likelihoods"], "bits": t["optimization_power"],
                      "level_bits": t["level_bits"], "epic": t["epic_distances"]}
    if not t["verdicts"]:
        raise CorruptRunError(f"{folder.path} holds no finished seed yet; run `mesalab run` with the same options to "
                              "resume it")
    probes = None
    if t["probe_readings"]:
        probes = probe_summary(task, t["probe_pursuit"], t["probe_readings"], t["probe_verdicts"])
    from mesalab.analysis.internals import read_internals

    internals = read_internals(folder.path, task, t["behavioral_objectives"])
    return RunAnalysis(folder.path, meta, task, t["training_curves"], t["evaluations"], t["outcomes"], t["competence"],
                       t["verdicts"], t["levels"], t["trajectories"], objectives, t["compute_scaling"], probes,
                       t["split_overlaps"], event_summary(t["event_rates"]), internals)


@dataclass
class ProbeCell:
    """One feature set on one split, over the seeds that the split tests it on."""

    split: str
    label: str
    mean: float  # mean over seeds of the pursuit rate (nan: not tested on this split)
    ci_low: float  # 95% percentile bootstrap over seeds; one seed: its Wilson interval
    ci_high: float
    n_seeds: int
    n_levels: int  # levels (summed over seeds) where a target of the set is achievable


@dataclass
class ProbeSummary:
    splits: list[str]
    rows: list[tuple[str, str]]  # (feature-set label, how it reads): the task's hypotheses, then the readings' sets
    cells: dict  # (label, split) -> ProbeCell
    readings: list[dict]  # per seed: feature_set, size, text
    verdicts: list[dict]  # per seed and probe split
    modal: str  # the feature set most seeds' readings name
    n_modal: int
    headline: str  # one sentence across seeds, with CIs over seeds


def probe_summary(task, pursuit: list[dict], readings: list[dict], verdicts: list[dict]) -> ProbeSummary:
    """The probe table across seeds and its one-sentence reading (see :mod:`mesalab.diagnostics.probe_pursuit`)."""
    from collections import Counter

    from mesalab.diagnostics.probe_pursuit import MIN_LEVELS, hypothesis_names, set_label
    from mesalab.diagnostics.stats import bootstrap_mean_ci, wilson_interval

    stored = set(r["split"] for r in pursuit)
    splits = [s for s in task.splits if s in stored] + sorted(stored - set(task.splits))
    names = hypothesis_names(task)
    rows: list[tuple[str, str]] = []
    for h in task.hypotheses:
        label = set_label(task, h)
        if label is not None and label not in [r[0] for r in rows]:
            rows.append((label, h.name))
    counts = Counter(r["feature_set"] for r in readings)
    for label, _ in counts.most_common():
        if label not in [r[0] for r in rows] and label != "nothing":
            rows.append((label, names.get(label, " or ".join(label.split("|")))))
    by = {}
    for r in pursuit:
        by.setdefault((r["feature_set"], r["split"]), []).append(r)
    cells = {}
    for label, _ in rows:
        for split in splits:
            tested = [r for r in by.get((label, split), []) if r["n_present"] >= MIN_LEVELS]
            if not tested:
                cells[(label, split)] = ProbeCell(split, label, float("nan"), float("nan"), float("nan"), 0, 0)
                continue
            rates = [r["rate"] for r in tested]
            if len(tested) == 1:
                lo, hi = wilson_interval(tested[0]["n_pursued"], tested[0]["n_present"])
                mean = rates[0]
            else:
                mean, lo, hi = bootstrap_mean_ci(rates)
            cells[(label, split)] = ProbeCell(split, label, float(mean), float(lo), float(hi), len(tested),
                                              int(sum(r["n_present"] for r in tested)))
    kinds = Counter((r["feature_set"], bool(r.get("competent", True))) for r in readings)
    (modal, competent), n_modal = kinds.most_common(1)[0]
    headline = _probe_headline(task, splits, rows, cells, modal, competent, n_modal, len(readings))
    return ProbeSummary(splits, rows, cells, readings, verdicts, modal, n_modal, headline)


def _probe_headline(task, splits, rows, cells, modal, competent, n_modal, n_seeds) -> str:
    """"What the probes show": the feature set the seeds pursue and, on each probe split, how often each account
    (the task's hypotheses and that set) is pursued, mean over seeds with its 95% CI."""
    import math

    words = dict(rows)
    one = n_modal == 1
    verb = "pursues" if one else "pursue"
    if modal == "nothing":
        what = f"{verb} no feature set of up to two features consistently across the splits"
    elif modal == "any object":
        what = f"{verb} any object, no particular feature"
    elif competent:
        what = f"{verb} {words.get(modal, modal)}"
    else:
        what = (f"{'goes' if one else 'go'} only for {words.get(modal, modal)} (ends on nothing else) but "
                f"{'does' if one else 'do'} not pursue it competently on every split")
    count = ("the seed" if n_seeds == 1 else f"all {n_seeds} seeds" if n_modal == n_seeds
             else f"{n_modal} of {n_seeds} seeds")
    parts = []
    for split in splits:
        if split in ("train", "test"):
            continue
        items = []
        for label, name in rows:
            c = cells[(label, split)]
            if not math.isnan(c.mean):
                items.append(f"{name} {c.mean:.2f} [{c.ci_low:.2f}, {c.ci_high:.2f}]")
        if items:
            parts.append(f"on {split}: " + ", ".join(items))
    evidence = ("; pursuit rates (mean over seeds, 95% CI) " + "; ".join(parts)) if parts else ""
    return f"{count[0].upper()}{count[1:]} {what}{evidence}."
