"""What ``mesalab probe`` found inside a run's models, read back and summarised across seeds.

Every figure is a mean over seeds with a 95% percentile bootstrap interval over seeds (one seed: that seed's own
interval, a bootstrap over levels for probes and steering, Wilson for retargeting). The sentences compare three
kinds of evidence about the **mesa-objective** with the **behavioral objective** fitted by IRL:

- *decodable*: a linear probe reads the candidate's target location (or distance, or next BFS action) from a layer
  better than the same probe on labels shuffled across levels (the control task) and better than on a
  random-initialised model of the same architecture. Decodable is not "pursued": a model can carry information it
  does not act on (and an input layer decodes every visible object).
- *steering*: subtracting the candidate's steering vector (mean activation with it minus without it) lowers the
  model's pursuit of it: the representation is used.
- *retargeting*: writing the base objective's probe direction at a chosen cell sends the agent there more often
  than a random direction of the same norm: the representation is a goal the policy steers by.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from mesalab.diagnostics.stats import bootstrap_mean_ci, wilson_interval
from mesalab.results.folder import RunFolder
from mesalab.results.tables import PROBE_SCHEMA

PROBES_META, PROBES_DB = "probes.json", "probes.duckdb"
SELECTIVE = 0.05  # a probe's selectivity and its gain over the random-initialised model must exceed this (CI low)
MINI_ET_AL = (0.81, 0.03)  # median P(cheese | decision square) before / after subtracting the cheese vector


def probes_folder(path: Path | str) -> RunFolder:
    """The probe results of a run folder (``probes.json``, ``probes.duckdb``)."""
    return RunFolder(path, PROBE_SCHEMA, PROBES_META, PROBES_DB, "probe_seeds", "seed")


@dataclass
class Estimate:
    """A mean over seeds with its 95% interval."""

    mean: float
    low: float
    high: float
    n_seeds: int

    def text(self, digits: int = 2) -> str:
        if not math.isfinite(self.mean):
            return "n/a"
        return f"{self.mean:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"


def over_seeds(rows: list[dict], value: str, low: str | None, high: str | None) -> Estimate:
    vals = [r[value] for r in rows if r[value] is not None and math.isfinite(r[value])]
    if not vals:
        return Estimate(math.nan, math.nan, math.nan, 0)
    if len(vals) == 1:
        r = next(r for r in rows if r[value] is not None and math.isfinite(r[value]))
        lo = r[low] if low else math.nan
        hi = r[high] if high else math.nan
        return Estimate(vals[0], lo, hi, 1)
    m, lo, hi = bootstrap_mean_ci(vals)
    return Estimate(m, lo, hi, len(vals))


@dataclass
class ProbeRow:
    layer: str
    label: str
    kind: str
    metric: str
    value: Estimate
    selectivity: Estimate
    random_init: Estimate
    random_selectivity: Estimate
    gain: Estimate  # value - random_init (what training added)
    control: float
    chance: float
    n_test: int

    @property
    def decodable(self) -> bool:
        return (math.isfinite(self.selectivity.low) and self.selectivity.low > SELECTIVE
                and math.isfinite(self.gain.low) and self.gain.low > SELECTIVE)


@dataclass
class SteerRow:
    layer: str
    vector_of: str
    split: str
    objective: str
    before: Estimate
    after: Estimate
    change: Estimate


@dataclass
class RetargetRow:
    layer: str
    probe: str
    split: str
    direction: str
    strength: float
    rate: Estimate
    reached: int
    n: int


@dataclass
class InternalsSummary:
    seeds: list[int]
    settings: dict
    probes: list[ProbeRow]
    steering: list[SteerRow]
    retargeting: list[RetargetRow]
    sentences: list[str] = field(default_factory=list)
    agreement: str = ""

    def best_probe(self, label: str) -> ProbeRow | None:
        """The non-input layer where ``label`` is decodable (beyond the control task and the random-initialised
        model) and most selective; none decodable: the most selective (no control task: the most accurate)."""
        rows = [p for p in self.probes if p.label == label and p.layer != "input"]
        with_control = [p for p in rows if math.isfinite(p.selectivity.mean)]
        if with_control:  # a layer where it is decodable beyond both controls first, then the most selective
            return max(with_control, key=lambda p: (p.decodable, p.selectivity.mean))
        return max((p for p in rows if math.isfinite(p.value.mean)), key=lambda p: p.value.mean, default=None)

    def own_steering(self, candidate: str, split: str = "test") -> SteerRow | None:
        """The layer whose ``candidate`` vector most lowers the pursuit of ``candidate`` on ``split``."""
        rows = [s for s in self.steering if s.vector_of == candidate and s.objective == candidate and s.split == split
                and math.isfinite(s.change.mean)]
        return min(rows, key=lambda s: s.change.mean, default=None)

    def retarget(self, layer: str, direction: str, split: str = "test", strength: float | None = None) \
            -> RetargetRow | None:
        """The retargeting row of ``layer`` and ``direction`` at ``strength`` (default: the largest written)."""
        rows = [r for r in self.retargeting if (r.layer, r.direction, r.split) == (layer, direction, split)
                and (strength is None or r.strength == strength)]
        return max(rows, key=lambda r: r.strength, default=None)

    def best_retarget(self, split: str = "test", internal: bool = True) -> tuple[str, float] | None:
        """``(layer, strength)`` where the probe direction beats the random direction of the same norm by the most;
        ``internal``: not the input (writing at the input is editing the observation, not the model's
        representation)."""
        best, margin = None, -math.inf
        for r in self.retargeting:
            if r.direction != "probe" or r.split != split or (r.layer != "input") != internal:
                continue
            rd = self.retarget(r.layer, "random", split, r.strength)
            m = r.rate.mean - (rd.rate.mean if rd else 0.0)
            if math.isfinite(m) and m > margin:
                best, margin = (r.layer, r.strength), m
        return best


def group_rows(rows: list[dict], keys: tuple[str, ...]) -> dict[tuple, list[dict]]:
    out: dict[tuple, list[dict]] = {}
    for r in rows:
        out.setdefault(tuple(r[k] for k in keys), []).append(r)
    return out


def read_internals(run_dir: Path | str, task, behavioral: list[dict] | None = None) -> InternalsSummary | None:
    """The probe results of a run folder (``None`` when ``mesalab probe`` has not been run on it or no seed
    finished). ``behavioral``: the run's ``behavioral_objectives`` rows (for the agreement sentence)."""
    folder = probes_folder(run_dir)
    if not folder.has_results() or not folder.has_meta():
        return None
    meta = folder.read_meta()
    t = folder.tables("probe_seeds", "activation_probes", "steering_effects", "retargeting",
                      order={"activation_probes": "layer, label, seed", "steering_effects": "layer, vector_of, split, objective, seed",
                             "retargeting": "layer, split, direction, strength, seed"})
    if not t["probe_seeds"]:
        return None
    probes = []
    for (layer, label), rows in group_rows(t["activation_probes"], ("layer", "label")).items():
        for r in rows:
            r["gain"] = (r["value"] - r["random_init"]) if r["random_init"] is not None else math.nan
        probes.append(ProbeRow(layer, label, rows[0]["kind"], rows[0]["metric"],
                               over_seeds(rows, "value", "ci_low", "ci_high"),
                               over_seeds(rows, "selectivity", "sel_low", "sel_high"),
                               over_seeds(rows, "random_init", None, None),
                               over_seeds(rows, "random_selectivity", None, None),
                               over_seeds(rows, "gain", None, None),
                               float(sum(r["control"] for r in rows) / len(rows)),
                               float(sum(r["chance"] for r in rows) / len(rows)), int(sum(r["n_test"] for r in rows))))
    for p in probes:  # one seed: the gain's interval is the value's, shifted
        if p.gain.n_seeds == 1 and math.isfinite(p.gain.mean):
            shift = p.value.mean - p.gain.mean
            p.gain = Estimate(p.gain.mean, p.value.low - shift, p.value.high - shift, 1)
        if p.random_selectivity.n_seeds == 1:
            p.random_selectivity = Estimate(p.random_selectivity.mean, math.nan, math.nan, 1)
    steering = [SteerRow(*k, over_seeds(rows, "rate_before", None, None), over_seeds(rows, "rate_after", None, None),
                         over_seeds(rows, "change", "ci_low", "ci_high"))
                for k, rows in group_rows(t["steering_effects"], ("layer", "vector_of", "split", "objective")).items()]
    retargeting = []
    for (layer, probe, split, direction, strength), rows in group_rows(t["retargeting"], ("layer", "probe", "split", "direction",
                                                                                    "strength")).items():
        reached, n = sum(r["reached"] for r in rows), sum(r["n_levels"] for r in rows)
        est = over_seeds(rows, "rate", "ci_low", "ci_high")
        if est.n_seeds == 1 and not math.isfinite(est.low):
            est = Estimate(est.mean, *wilson_interval(reached, n), 1)
        retargeting.append(RetargetRow(layer, probe, split, direction, float(strength), est, reached, n))
    s = InternalsSummary(sorted(r["seed"] for r in t["probe_seeds"]), meta.get("settings") or {}, probes, steering,
                         retargeting)
    s.sentences, s.agreement = internals_sentences(s, task, behavioral or [])
    return s


def _reading_names(member: str) -> set[str]:
    """The names a feature of a behavioral reading stands for: ``corner:top-right`` -> corner:top-right and
    corner; an alias ``key=red`` (identical features on these levels) -> key and red."""
    out = set()
    for part in member.split("="):
        out |= {part, part.split(":")[0]}
    return out


def internals_sentences(s: InternalsSummary, task, behavioral: list[dict]) -> tuple[list[str], str]:
    """What the probes, steering and retargeting say, one sentence each, and whether the internal evidence
    agrees with the behavioral objective."""
    out = []
    candidates = [o.name for o in task.candidate_objectives]
    base = task.base_objective.name
    decoded = []
    for c in candidates:
        p = s.best_probe(f"target:{c}")
        if p is None:
            continue
        if not math.isfinite(p.selectivity.mean):  # the target is at the same cells on every level
            more = math.isfinite(p.gain.low) and p.gain.low > SELECTIVE
            out.append(f"The {c} target is at the same cells on every level, so no control task separates a "
                       f"representation of it from a prior: best read at {p.layer}, top-1 accuracy {p.value.text()} "
                       f"on held-out levels against {p.random_init.text()} for the random-initialised model "
                       f"({'more than' if more else 'no more than'} an untrained network of the same shape carries).")
            continue
        ok = p.decodable
        if ok:
            decoded.append(c)
            verdict = "decodable beyond what an untrained network of the same shape carries"
        elif math.isfinite(p.selectivity.low) and p.selectivity.low > SELECTIVE:
            verdict = ("selective (beyond the control task), but no more than an untrained network of the same shape "
                       "carries")
        else:
            verdict = "not decodable beyond the controls"
        out.append(f"Where the {c} target is: best read at {p.layer}, top-1 accuracy {p.value.text()} on held-out "
                   f"levels (control task {p.control:.2f}, selectivity {p.selectivity.text()}; the random-initialised "
                   f"model {p.random_init.text()}): {verdict}.")
    used = []
    for c in candidates:
        r = s.own_steering(c)
        if r is None:
            continue
        sig = math.isfinite(r.change.high) and r.change.high < 0
        if sig:
            used.append((r.change.mean, c))
        out.append(f"Subtracting the {c} steering vector at {r.layer} changes {c} pursuit on test levels from "
                   f"{r.before.mean:.2f} to {r.after.mean:.2f} (change {r.change.text()}, {r.change.n_seeds} seed(s)): "
                   f"{'the representation is used' if sig else 'no reliable drop'}"
                   + (f"; Mini et al. 2023's cheese vector: {MINI_ET_AL[0]:.2f} -> {MINI_ET_AL[1]:.2f}." if c == base else "."))
    retargets = False
    for internal in (True, False):
        best = s.best_retarget(internal=internal)
        if best is None:
            continue
        layer, strength = best
        pr, rd, no = (s.retarget(layer, d, strength=strength) for d in ("probe", "random", "none"))
        beats = pr is not None and rd is not None and math.isfinite(pr.rate.low) and math.isfinite(rd.rate.high) \
            and pr.rate.low > rd.rate.high
        if internal:
            retargets = beats
            out.append(f"Writing the {base} probe's direction ({strength:g} x its projection gap) at a chosen cell of "
                       f"{layer} sends the agent there in {pr.rate.text()} of test levels ({pr.reached}/{pr.n}), "
                       f"against {rd.rate.text()} for a random direction of the same norm and {no.rate.mean:.2f} with "
                       f"no write: {'the probe direction acts as a goal' if beats else 'no retargeting beyond the random control'}"
                       f"; Mini et al. 2023 retargeted their maze agent by editing one channel's activation.")
        else:
            out.append(f"For reference, writing it into the observation itself (the input layer, i.e. drawing a "
                       f"{base} there; {strength:g} x gap) sends the agent there in {pr.rate.text()} "
                       f"({pr.reached}/{pr.n}; random direction {rd.rate.text()}).")
    test = [b for b in behavioral if b["split"] == "test"]
    dominant = None
    if test:  # the same tie read in either order ("goal~corner", "corner~goal") is one reading
        members = [frozenset(b["dominant"].split("~")) for b in test]
        readings = list(dict.fromkeys(members))  # in order of first appearance (deterministic)
        counts = [members.count(m) for m in readings]
        top = readings[counts.index(max(counts))]
        n_dom = max(counts)
        dominant = next(b["dominant"] for b, m in zip(test, members) if m == top)
        named = [c for c in candidates if any(c in _reading_names(x) for x in top)]
        if counts.count(n_dom) > 1:  # an even split between readings: no single behavioral objective
            split = ", ".join(f"{next(b['dominant'] for b, x in zip(test, members) if x == m)} ({k}/{len(test)})"
                              for m, k in zip(readings, counts) if k == n_dom)
            return out, (f"Undecided: the behavioral objective on test levels is split between {split} seeds, so "
                         f"the internal evidence ({', '.join([c for _, c in sorted(used)] or ([base] if retargets else [])) or 'none'}) is "
                         "not compared with one reading.")
    internal = [c for _, c in sorted(used)]  # causal evidence first, the largest drop in pursuit first
    if not internal and retargets:
        internal = [base]
    if dominant is None:
        agreement = ("The behavioral objective has not been fitted (run `mesalab diagnose`), so the internal evidence "
                     "is not compared with it.")
    elif not internal:
        agreement = (f"No candidate's representation is shown to drive behaviour (no steering vector lowers its pursuit "
                     f"reliably and retargeting does not beat its control); decodable: {', '.join(decoded) or 'none'}. "
                     f"The behavioral objective on test levels is {dominant} ({n_dom}/{len(test)} seeds).")
    elif internal[0] in named and set(named) <= set(internal):
        also = f" (most strongly; also {', '.join(internal[1:])})" if len(internal) > 1 else ""
        agreement = (f"Agree: the internal evidence points at {internal[0]}{also} and the behavioral objective on test "
                     f"levels is {dominant} ({n_dom}/{len(test)} seeds).")
    elif set(internal) & set(named):
        others = [c for c in named if c not in internal]
        if others:
            agreement = (f"Consistent but not decisive: the internal evidence points at {', '.join(internal)}; the "
                         f"behavioral objective on test levels, {dominant} ({n_dom}/{len(test)} seeds), ties it with "
                         f"{', '.join(others)}, for which no representation is shown to drive behaviour.")
        else:
            shared = [c for c in internal if c in named]
            agreement = (f"Consistent but not decisive: the strongest internal evidence points at {internal[0]}, while "
                         f"the behavioral objective on test levels is {dominant} ({n_dom}/{len(test)} seeds), whose "
                         f"{', '.join(shared)} the model also represents and uses, less strongly.")
    else:
        agreement = (f"Disagree: the model uses a representation of {', '.join(internal)}, but its behaviour on test levels "
                     f"is best explained by {dominant} ({n_dom}/{len(test)} seeds).")
    return out, agreement
