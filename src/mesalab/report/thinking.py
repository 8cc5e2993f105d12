"""Report of an ``extrapolation`` sweep (a recall network on ``maze-path``): exact accuracy versus ticks for every
maze size, accuracy versus size, the test-time compute gain, and how to read them beside the other
optimizer-ness measures."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from jinja2 import Environment, select_autoescape  # noqa: E402

from mesalab.diagnostics.stats import bootstrap_mean_ci, wilson_interval  # noqa: E402
from mesalab.report.figures import accuracy_vs_ticks_figure  # noqa: E402
from mesalab.report.html import inline_figures, write_html_atomic  # noqa: E402

READING = ("How to read this. Accuracy that keeps rising with ticks, and mazes solved that are bigger than any "
           "seen in training, are behavioural evidence that the network runs an iterative algorithm rather than a "
           "fixed-depth lookup. They are not by themselves evidence of goal-directed search: networks like this one "
           "are known to learn dead-end filling (repeatedly erasing corridors that end nowhere), a local procedure "
           "with no representation of a goal. Read these curves beside the other optimizer-ness measures of the "
           "profile — the gain from extra compute of recurrent agents in the time-penalty sweep, optimization power "
           "in bits and goal-directedness from the behavioral objective — rather than as a verdict on their own.")


def _read(out_dir: Path):
    from mesalab.experiments.store import open_sweep

    con = open_sweep(out_dir, read_only=True)
    try:
        acc = con.execute("SELECT cell_id, size, ticks, accuracy, n_mazes FROM thinking_accuracy "
                          "ORDER BY cell_id, size, ticks").fetchall()
        summary = con.execute("SELECT * FROM thinking_summary ORDER BY size, cell_id").fetchall()
        cols = [d[0] for d in con.description]
    finally:
        con.close()
    return acc, [dict(zip(cols, r)) for r in summary]


def _band(values: np.ndarray, n_mazes: int) -> tuple[float, float, float]:
    """Mean over seeds with a 95% interval: bootstrap over seeds when there are several, else Wilson over mazes."""
    if len(values) >= 2:
        return bootstrap_mean_ci(values)
    lo, hi = wilson_interval(int(round(values[0] * n_mazes)), n_mazes)
    return float(values[0]), lo, hi


def build_extrapolation_report(out_dir: Path) -> Path:
    from mesalab.experiments.sweep import load_sweep_config
    from mesalab.report.sweep import TEMPLATE, _save

    out_dir = Path(out_dir)
    meta = load_sweep_config(out_dir)
    acc, summary = _read(out_dir)
    config = meta["config"]
    trained_ticks, trained_size = int(config["ticks"]), int(config["size"])
    seeds = sorted({r[0] for r in acc})
    sizes = sorted({r[1] for r in acc})
    fig_dir = out_dir / "figures"
    fig_dir.mkdir(exist_ok=True)
    figs, sentences, tables = [], [], []
    if seeds:
        ticks = np.array(sorted({r[2] for r in acc}))
        table = {(r[0], r[1], r[2]): r[3] for r in acc}
        n_mazes = int(acc[0][4])
        bands = {}
        for size in sizes:
            rows = np.array([[table[(c, size, int(t))] for t in ticks] for c in seeds])  # [seeds, T]
            bands[size] = [_band(rows[:, j], n_mazes) for j in range(len(ticks))]
        fig = accuracy_vs_ticks_figure(ticks, bands, trained_ticks, trained_size, "exact path accuracy")
        how = ("95% bootstrap interval over seeds" if len(seeds) >= 2 else f"95% Wilson interval over {n_mazes} mazes")
        figs.append(("Test-time compute scaling", f"Exact accuracy (the predicted path equals the BFS path on every "
                     f"cell) on unseen mazes after each tick, per maze size; mean over {len(seeds)} seed(s), band: "
                     f"{how}.", _save(fig, fig_dir / "accuracy_vs_ticks.png")))
        fig, ax = plt.subplots(figsize=(6, 3.4))
        for key, label in (("accuracy_at_trained_ticks", f"at the training ticks ({trained_ticks})"),
                           ("accuracy_at_best_ticks", "at each size's best tick count")):
            pts = [_band(np.array([s[key] for s in summary if s["size"] == size]), n_mazes) for size in sizes]
            pts = np.array(pts)
            ax.errorbar(sizes, pts[:, 0], yerr=[pts[:, 0] - pts[:, 1], pts[:, 2] - pts[:, 0]], marker="o",
                        capsize=3, label=label)
        ax.axvline(trained_size, color="grey", ls="--", lw=1, label=f"training size ({trained_size})")
        ax.set_xlabel("maze size (side, walls included)")
        ax.set_ylabel("exact path accuracy")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        figs.append(("Size extrapolation", "Accuracy against maze size at the training ticks and at the best tick "
                     "count per size (chosen on the same mazes, so slightly optimistic).",
                     _save(fig, fig_dir / "accuracy_vs_size.png")))
        rows = []
        for size in sizes:
            ss = [s for s in summary if s["size"] == size]
            at_t = _band(np.array([s["accuracy_at_trained_ticks"] for s in ss]), n_mazes)
            at_b = _band(np.array([s["accuracy_at_best_ticks"] for s in ss]), n_mazes)
            gain = (np.mean([s["gain"] for s in ss]),
                    (ss[0]["gain_ci_low"], ss[0]["gain_ci_high"]) if len(ss) == 1 else
                    bootstrap_mean_ci([s["gain"] for s in ss])[1:])
            best = "/".join(str(s["best_ticks"]) for s in ss)
            rows.append([f"{size}×{size}", len(ss), f"{at_t[0]:.3f} [{at_t[1]:.3f}, {at_t[2]:.3f}]", best,
                         f"{at_b[0]:.3f} [{at_b[1]:.3f}, {at_b[2]:.3f}]",
                         f"{gain[0]:+.3f} [{gain[1][0]:+.3f}, {gain[1][1]:+.3f}]"])
            kind = "training size" if size == trained_size else (
                "bigger than any training maze" if size > trained_size else "smaller than the training mazes")
            sentences.append({"verdict": "finding",
                              "sentence": f"{size}×{size} ({kind}): exact accuracy {at_t[0]:.3f} [{at_t[1]:.3f}, "
                                          f"{at_t[2]:.3f}] at the training {trained_ticks} ticks and {at_b[0]:.3f} "
                                          f"[{at_b[1]:.3f}, {at_b[2]:.3f}] at {best} ticks: a gain of {gain[0]:+.3f} "
                                          f"[{gain[1][0]:+.3f}, {gain[1][1]:+.3f}] from extra test-time compute."})
        tables.append({"title": "Accuracy per maze size (mean [95% interval])",
                       "header": ["seeds", f"at {trained_ticks} ticks", "best ticks (per seed)", "at best ticks",
                                  "gain from extra ticks"], "rows": rows})
    env = Environment(autoescape=select_autoescape(default=True))
    extra = f"<p class=\"note\"><b>{env.from_string('{{ s }}').render(s=READING)}</b></p>"
    expected = len(meta.get("seeds", []))
    html = env.from_string(TEMPLATE).render(
        name="extrapolation", description=f"A recall network trained on {trained_size}×{trained_size} maze-path "
        f"mazes with {trained_ticks} ticks, tested on unseen mazes of sizes {', '.join(map(str, meta['sizes']))} "
        f"after every tick up to {meta['max_ticks']} ({meta['mazes']} mazes per size).",
        condition="Learned search generalises: a network that has learned an algorithm (rather than a fixed-depth "
                  "mapping) solves bigger instances than it was trained on when it may iterate longer "
                  "(Schwarzschild et al. 2021, Bansal et al. 2022).",
        partial=len(seeds) < expected, n_cells=len(seeds), n_expected=expected, verdicts=sentences, level=0.05,
        n_perm=0, findings_title="Findings", extra=extra, figures=inline_figures(figs), tables=tables, dial_label="size",
        config_json=json.dumps(meta, indent=2))
    return write_html_atomic(out_dir / "report.html", html)
