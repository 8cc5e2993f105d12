"""The "Inside the network" section of an extrapolation report: which maze algorithm the recall networks' decisions
support, and what their hidden state encodes over ticks (:mod:`mesalab.analysis.maze_internals`)."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from mesalab.diagnostics.maze_internals import ALGORITHMS, LABELS  # noqa: E402
from mesalab.report.sweep import _save  # noqa: E402

LABEL_TEXT = {"on_path": "on the path (balanced accuracy)", "fill_depth": "dead-end depth (R²)",
              "dist_start": "distance from start (R²)", "dist_goal": "distance from goal (R²)"}


def timing_figure(m, path: Path) -> Path:
    """Mean decision tick against each algorithm's predicted tick, one panel per algorithm, one line per size."""
    fig, axes = plt.subplots(1, 2, figsize=(8.6, 3.4))
    for ax, algorithm in zip(axes, ALGORITHMS):
        for size in m.sizes:
            pts = np.array(m.curves.get((size, algorithm), []), dtype=float)
            if len(pts):
                ax.plot(pts[:, 0], pts[:, 1], marker=".", label=f"{size}×{size}")
        ax.set_xlabel("dead-end depth (filling's tick)" if algorithm == ALGORITHMS[0]
                      else "max distance from the ends (wavefront's tick)")
        ax.set_ylabel("mean tick the network rules the cell out")
        ax.set_title(algorithm, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _save(fig, path)


def probe_figure(m, path: Path) -> Path:
    """Probe score against tick for every label; trained network solid, random-initialised dashed, input dotted."""
    fig, axes = plt.subplots(1, len(LABELS), figsize=(3.2 * len(LABELS), 3.2), sharey=True)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, label in zip(axes, LABELS):
        for c, size in zip(colors, m.sizes):
            for source, ls in (("trained", "-"), ("random-init", "--")):
                rows = sorted((p for p in m.probes if (p.size, p.label, p.source) == (size, label, source)),
                              key=lambda p: p.tick)
                if not rows:
                    continue
                t = [p.tick for p in rows]
                v = np.array([[p.value.mean, p.value.low, p.value.high] for p in rows])
                ax.plot(t, v[:, 0], ls=ls, color=c, label=f"{size}×{size} {source}")
                if source == "trained" and np.isfinite(v[:, 1:]).all():
                    ax.fill_between(t, v[:, 1], v[:, 2], color=c, alpha=0.2, linewidth=0)
            inp = m.probe_at(size, label, "input", 0)
            if inp is not None and math.isfinite(inp.value.mean):
                ax.axhline(inp.value.mean, color=c, ls=":", lw=1)
        ax.set_xscale("log")
        ax.set_ylim(-0.1, 1.05)  # R^2 below 0 (worse than the mean) is drawn at the floor
        ax.set_xlabel("tick")
        ax.set_title(LABEL_TEXT[label], fontsize=9)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("held-out probe score")
    axes[0].legend(fontsize=7)
    return _save(fig, path)


def maze_internals_section(m, fig_dir: Path) -> tuple[list, list, list]:
    """``(sentences, figures, tables)`` of the section (empty when the sweep has not been probed)."""
    if m is None:
        return [], [], []
    sentences = [{"verdict": "inside the network", "sentence": s} for s in m.sentences]
    n = len(m.seeds)
    figs = [("Inside the network: the order of decisions",
             "For every off-path cell of unseen mazes, the tick from which the network's readout says 'off' through "
             "the last tick, averaged per predicted tick of each algorithm. Dead-end filling predicts a rising line "
             "against dead-end depth (tips of dead ends first); a wavefront from the ends predicts a rising line "
             f"against distance from the ends. Mean over {n} seed(s) and the same mazes.",
             timing_figure(m, fig_dir / "maze_timing.png")),
            ("Inside the network: probes of the hidden state",
             "1x1 ridge probes of the per-cell hidden state at each recorded tick, fitted on half the mazes and scored "
             "on the other half (band: 95% interval over seeds, or over mazes for one seed); dashed: the same probe on "
             "a random-initialised network of the same architecture; dotted: on the input image.",
             probe_figure(m, fig_dir / "maze_probes.png"))]
    rows = []
    for t in m.timing:
        rows.append([f"{t.size}×{t.size}", t.source, t.algorithm, t.rho.text(), t.margin.text(), f"{t.slope:.2f}",
                     f"{t.settled:.2f}", f"{t.path_on:.2f}", f"{t.solved:.2f}", str(t.ticks)])
    tables = [{"title": "Inside the network: decision order against each algorithm (Spearman ρ within mazes, mean "
                        "[95% interval])",
               "header": ["source", "algorithm", "ρ", "ρ minus the other's", "ticks per predicted tick",
                          "off-path cells ruled out", "path cells always on", "solved", "ticks run"],
               "rows": rows}]
    probe_rows = []
    for size in m.sizes:
        for label in LABELS:
            best = m.best_probe(size, label)
            rand = m.best_probe(size, label, "random-init")
            inp = m.probe_at(size, label, "input", 0)
            if best is None:
                continue
            probe_rows.append([f"{size}×{size}", LABEL_TEXT[label], str(best.tick), best.value.text(),
                               best.selectivity.text(), "n/a" if rand is None else rand.value.text(),
                               "n/a" if inp is None else f"{inp.value.mean:.2f}"])
    tables.append({"title": "Inside the network: best tick of each probe (mean [95% interval])",
                   "header": ["label", "best tick", "trained", "selectivity (minus control task)",
                              "random-init (its best tick)", "input image"], "rows": probe_rows})
    return sentences, figs, tables
