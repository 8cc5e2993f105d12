"""What ``mesalab probe`` found inside an extrapolation sweep's recall networks, read back and summarised across
seeds (:mod:`mesalab.diagnostics.maze_internals` for the measures).

Every figure is a mean over seeds with a 95% percentile bootstrap interval over seeds (one seed: its own bootstrap
interval over mazes). The reading per maze size names the algorithm that the *order of the network's decisions*
supports: dead-end filling (cells ruled out from the tips of dead ends inward) or a wavefront from the ends (cells
near the path decided first), or neither; the probes of the hidden state are reported beside it (does it carry
the distances a wavefront needs, beyond what an untrained network of the same architecture carries?).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mesalab.analysis.internals import Estimate, group_rows, over_seeds
from mesalab.diagnostics.maze_internals import ALGORITHMS, MIN_MAZES, supported_algorithm
from mesalab.results.folder import RunFolder
from mesalab.results.tables import MAZE_PROBE_SCHEMA

GAIN = 0.05  # a probe reads a label beyond the random-initialised network when (trained - random) exceeds this


def maze_probes_folder(path: Path | str) -> RunFolder:
    return RunFolder(path, MAZE_PROBE_SCHEMA, "probes.json", "probes.duckdb", "maze_probe_seeds", "seed")


@dataclass
class TimingRow:
    size: int
    source: str  # "trained" / "random-init"
    algorithm: str
    rho: Estimate
    margin: Estimate  # rho minus the other algorithm's rho
    slope: float
    settled: float
    path_on: float
    solved: float
    n_mazes: int
    ticks: int

    @property
    def ci(self):
        return (self.rho.low, self.rho.high)

    @property
    def margin_ci(self):
        return (self.margin.low, self.margin.high)


@dataclass
class TickProbeRow:
    size: int
    source: str
    label: str
    metric: str
    tick: int
    value: Estimate
    selectivity: Estimate


@dataclass
class MazeInternals:
    seeds: list
    sizes: list
    trained_size: int
    timing: list  # TimingRow
    probes: list  # TickProbeRow
    curves: dict  # (size, algorithm) -> [(predicted, mean decision tick over seeds)]
    readings: dict = field(default_factory=dict)  # size -> the algorithm supported (None: neither)
    sentences: list = field(default_factory=list)

    def timing_of(self, size: int, source: str = "trained") -> list:
        return [t for t in self.timing if t.size == size and t.source == source]

    def best_probe(self, size: int, label: str, source: str = "trained") -> "TickProbeRow | None":
        rows = [p for p in self.probes if p.size == size and p.label == label and p.source == source]
        return max(rows, key=lambda p: p.value.mean if math.isfinite(p.value.mean) else -math.inf, default=None)

    def probe_at(self, size: int, label: str, source: str, tick: int) -> "TickProbeRow | None":
        return next((p for p in self.probes if (p.size, p.label, p.source, p.tick) == (size, label, source, tick)), None)


def read_maze_internals(path: Path | str, trained_size: int) -> MazeInternals | None:
    """The probe results of an extrapolation sweep folder (``None`` when it has not been probed)."""
    folder = maze_probes_folder(path)
    if not folder.has_results() or not folder.has_meta():
        return None
    t = folder.tables("maze_probe_seeds", "maze_probes", "maze_timing", "maze_timing_curve",
                      order={"maze_probes": "size, source, label, tick, seed", "maze_timing": "size, source, algorithm, seed",
                             "maze_timing_curve": "size, algorithm, predicted, seed"})
    if not t["maze_probe_seeds"]:
        return None
    seeds = sorted(r["seed"] for r in t["maze_probe_seeds"])
    timing = []
    for (size, source, algorithm), rows in group_rows(t["maze_timing"], ("size", "source", "algorithm")).items():
        mean = lambda k: float(np.nanmean([r[k] for r in rows]))  # noqa: E731 (a NaN slope of one seed: the others')
        timing.append(TimingRow(size, source, algorithm, over_seeds(rows, "rho", "ci_low", "ci_high"),
                                over_seeds(rows, "margin", "margin_low", "margin_high"), mean("slope"),
                                mean("settled"), mean("path_on"), mean("solved"), int(sum(r["n_mazes"] for r in rows)),
                                int(max(r["ticks"] for r in rows))))
    probes = [TickProbeRow(size, source, label, rows[0]["metric"], tick, over_seeds(rows, "value", "ci_low", "ci_high"),
                           over_seeds(rows, "selectivity", "sel_low", "sel_high"))
              for (size, source, label, tick), rows in group_rows(t["maze_probes"], ("size", "source", "label", "tick")).items()]
    curves = {}
    for (size, algorithm), rows in group_rows(t["maze_timing_curve"], ("size", "algorithm")).items():
        by_k = group_rows(rows, ("predicted",))
        curves[(size, algorithm)] = sorted((k[0], sum(r["mean_tick"] * r["n_cells"] for r in rs) /
                                            max(sum(r["n_cells"] for r in rs), 1)) for k, rs in by_k.items())
    sizes = sorted({r.size for r in timing})
    m = MazeInternals(seeds, sizes, trained_size, timing, probes, curves)
    for size in sizes:
        m.readings[size] = supported_algorithm(m.timing_of(size), m.timing_of(size, "random-init"))
        m.sentences.append(reading_sentence(m, size))
    return m


def _kind(size: int, trained: int) -> str:
    return "the training size" if size == trained else (
        "bigger than any training maze" if size > trained else "smaller than the training mazes")


def reading_sentence(m: MazeInternals, size: int) -> str:
    """What the order of decisions and the probes say about the algorithm on mazes of ``size``."""
    rows = {t.algorithm: t for t in m.timing_of(size)}
    fill, wave = rows.get(ALGORITHMS[0]), rows.get(ALGORITHMS[1])
    head = f"{size}×{size} ({_kind(size, m.trained_size)})"
    if fill is None or wave is None or not math.isfinite(fill.rho.mean):
        return f"{head}: too few off-path cells were ruled out and stayed out to order the network's decisions."
    order = (f"Spearman ρ between the tick at which the network rules an off-path cell out and dead-end filling's "
             f"order {fill.rho.text()}, a wavefront's {wave.rho.text()}")
    facts = (f"{fill.settled:.0%} of off-path cells ruled out by tick {fill.ticks}, {fill.path_on:.0%} of path cells "
             f"on at every tick, {fill.solved:.0%} of mazes solved exactly at the last tick")
    found = m.readings.get(size)
    untrained = {t.algorithm: t.rho.mean for t in m.timing_of(size, "random-init")}
    if untrained:
        order += (f" (an untrained network of the same architecture: {untrained.get(ALGORITHMS[0], math.nan):.2f} and "
                  f"{untrained.get(ALGORITHMS[1], math.nan):.2f})")
    passing = []
    for lab, name in (("dist_start", "distance from the start"), ("dist_goal", "distance from the goal")):
        d, r = m.best_probe(size, lab), m.best_probe(size, lab, "random-init")
        if d is not None and r is not None:
            passing.append((name, d, r, d.value.low - r.value.mean > GAIN))
    dist_text = lambda ps: ", ".join(f"{n} R² {d.value.text()} (untrained network {r.value.mean:.2f})"  # noqa: E731
                                     for n, d, r, _ in ps)
    carried = [p for p in passing if p[3]]
    partial = fill.settled < 0.5 or fill.solved < 0.5
    if found is not None and partial:
        tail = (f"the order of the cells it does rule out follows {found}, but it rules out or solves too few to call "
                "this its solving algorithm")
    elif found == ALGORITHMS[0]:
        tail = (f"the order supports dead-end filling (about {fill.slope:.1f} ticks per cell ruled out along a dead "
                "end, tips first)")
        if carried:
            strong = max(d.value.mean for _, d, _, _ in carried) >= 0.5
            tail += (f"; its hidden state also carries {'' if strong else 'a little of '}"
                     f"{' and '.join(n for n, *_ in carried)} beyond an untrained network ({dist_text(carried)})")
        elif passing:
            tail += ("; its hidden state carries the distances a wavefront needs not clearly better than an untrained "
                     f"network ({dist_text(passing)})")
    elif found == ALGORITHMS[1]:
        tail = (f"the order supports a wavefront from the ends (about {wave.slope:.1f} ticks per step from the ends, "
                "cells next to the path first)")
        if passing:
            tail += "; probes of its hidden state: " + dist_text(passing)
    elif fill.solved < 0.5:
        tail = ("neither algorithm explains the order, and the network solves fewer than half of these mazes, so "
                "there is no solving algorithm to identify at this size")
    elif fill.n_mazes < MIN_MAZES or max(fill.rho.high - fill.rho.low, wave.rho.high - wave.rho.low) > 0.3:
        tail = f"the order cannot tell the two apart here ({fill.n_mazes} mazes with enough cells ruled out)"
    else:
        tail = ("neither algorithm alone explains the order (a mixture, another procedure, or decisions that are not "
                "local in time)")
    return f"{head}: {order}; {facts}: {tail}."
