"""The analysed result of an extrapolation sweep (a recall network on maze-path): accuracy per (size, tick)
with 95% intervals over seeds (bootstrap) or, for one seed, over mazes (Wilson), per-size rows and findings."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mesalab.analysis.maze_internals import MazeInternals, read_maze_internals
from mesalab.diagnostics.stats import bootstrap_mean_ci, wilson_interval


@dataclass
class ExtrapolationAnalysis:
    path: Path
    meta: dict
    trained_ticks: int
    trained_size: int
    seeds: list
    sizes: list
    n_mazes: int
    ticks: np.ndarray
    bands: dict  # size -> [(mean, lo, hi) per tick]
    size_points: dict  # "accuracy_at_trained_ticks" / "accuracy_at_best_ticks" -> [(mean, lo, hi) per size]
    size_rows: list  # report table rows, one per size
    sentences: list = field(default_factory=list)  # one finding per size
    internals: "MazeInternals | None" = None  # `mesalab probe SWEEP_DIR`: which algorithm the networks run


def band(values: np.ndarray, n_mazes: int) -> tuple[float, float, float]:
    """Mean over seeds with a 95% interval: bootstrap over seeds when there are several, else Wilson over mazes."""
    if len(values) >= 2:
        return bootstrap_mean_ci(values)
    lo, hi = wilson_interval(int(round(values[0] * n_mazes)), n_mazes)
    return float(values[0]), lo, hi


def analyse_extrapolation(folder) -> ExtrapolationAnalysis:
    meta = folder.read_meta()
    acc = folder.sql("SELECT cell_id, size, ticks, accuracy, n_mazes FROM thinking_accuracy ORDER BY cell_id, size, ticks")
    summary = folder.tables("thinking_summary", order={"thinking_summary": "size, cell_id"})["thinking_summary"]
    config = meta["config"]
    trained_ticks, trained_size = int(config["ticks"]), int(config["size"])
    seeds = sorted({r[0] for r in acc})
    sizes = sorted({r[1] for r in acc})
    a = ExtrapolationAnalysis(folder.path, meta, trained_ticks, trained_size, seeds, sizes, 0, np.array([]), {}, {}, [],
                              internals=read_maze_internals(folder.path, trained_size))
    if not seeds:
        return a
    a.ticks = np.array(sorted({r[2] for r in acc}))
    table = {(r[0], r[1], r[2]): r[3] for r in acc}
    a.n_mazes = n_mazes = int(acc[0][4])
    for size in sizes:
        rows = np.array([[table[(c, size, int(t))] for t in a.ticks] for c in seeds])  # [seeds, T]
        a.bands[size] = [band(rows[:, j], n_mazes) for j in range(len(a.ticks))]
    for key in ("accuracy_at_trained_ticks", "accuracy_at_best_ticks"):
        a.size_points[key] = [band(np.array([s[key] for s in summary if s["size"] == size]), n_mazes) for size in sizes]
    for size in sizes:
        ss = [s for s in summary if s["size"] == size]
        at_t = band(np.array([s["accuracy_at_trained_ticks"] for s in ss]), n_mazes)
        at_b = band(np.array([s["accuracy_at_best_ticks"] for s in ss]), n_mazes)
        gain = (np.mean([s["gain"] for s in ss]),
                (ss[0]["gain_ci_low"], ss[0]["gain_ci_high"]) if len(ss) == 1 else
                bootstrap_mean_ci([s["gain"] for s in ss])[1:])
        best = "/".join(str(s["best_ticks"]) for s in ss)
        a.size_rows.append([f"{size}×{size}", len(ss), f"{at_t[0]:.3f} [{at_t[1]:.3f}, {at_t[2]:.3f}]", best,
                            f"{at_b[0]:.3f} [{at_b[1]:.3f}, {at_b[2]:.3f}]",
                            f"{gain[0]:+.3f} [{gain[1][0]:+.3f}, {gain[1][1]:+.3f}]"])
        kind = "training size" if size == trained_size else (
            "bigger than any training maze" if size > trained_size else "smaller than the training mazes")
        a.sentences.append(f"{size}×{size} ({kind}): exact accuracy {at_t[0]:.3f} [{at_t[1]:.3f}, {at_t[2]:.3f}] at the "
                           f"training {trained_ticks} ticks and {at_b[0]:.3f} [{at_b[1]:.3f}, {at_b[2]:.3f}] at {best} "
                           f"ticks: a gain of {gain[0]:+.3f} [{gain[1][0]:+.3f}, {gain[1][1]:+.3f}] from extra "
                           "test-time compute.")
    return a
