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

from mesalab.report.figures import accuracy_vs_ticks_figure  # noqa: E402
from mesalab.report.html import inline_figures, write_html_atomic  # noqa: E402

READING = ("How to read this. Accuracy that keeps rising with ticks, and mazes solved that are bigger than any "
           "seen in training, are behavioural evidence that the network runs an iterative algorithm rather than a "
           "fixed-depth lookup. They are not by themselves evidence of goal-directed search: networks like this one "
           "are known to learn dead-end filling (repeatedly erasing corridors that end nowhere), a local procedure "
           "with no representation of a goal. Read these curves beside the other optimizer-ness measures of the "
           "profile — the gain from extra compute of recurrent agents in the time-penalty sweep, optimization power "
           "in bits and goal-directedness from the behavioral objective — rather than as a verdict on their own.")


def build_extrapolation_report(out_dir: Path, analysis) -> Path:
    """Render ``report.html`` of an extrapolation sweep from its analysed result
    (:class:`mesalab.analysis.extrapolation.ExtrapolationAnalysis`)."""
    from mesalab.report.sweep import TEMPLATE, _save

    out_dir = Path(out_dir)
    a = analysis
    meta, trained_ticks, trained_size = a.meta, a.trained_ticks, a.trained_size
    seeds, sizes, n_mazes = a.seeds, a.sizes, a.n_mazes
    fig_dir = out_dir / "figures"
    fig_dir.mkdir(exist_ok=True)
    figs, sentences, tables = [], [{"verdict": "finding", "sentence": s} for s in a.sentences], []
    if seeds:
        fig = accuracy_vs_ticks_figure(a.ticks, a.bands, trained_ticks, trained_size, "exact path accuracy")
        how = ("95% bootstrap interval over seeds" if len(seeds) >= 2 else f"95% Wilson interval over {n_mazes} mazes")
        figs.append(("Test-time compute scaling", f"Exact accuracy (the predicted path equals the BFS path on every "
                     f"cell) on unseen mazes after each tick, per maze size; mean over {len(seeds)} seed(s), band: "
                     f"{how}.", _save(fig, fig_dir / "accuracy_vs_ticks.png")))
        fig, ax = plt.subplots(figsize=(6, 3.4))
        for key, label in (("accuracy_at_trained_ticks", f"at the training ticks ({trained_ticks})"),
                           ("accuracy_at_best_ticks", "at each size's best tick count")):
            pts = np.array(a.size_points[key])
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
        rows = a.size_rows
        tables.append({"title": "Accuracy per maze size (mean [95% interval])",
                       "header": ["seeds", f"at {trained_ticks} ticks", "best ticks (per seed)", "at best ticks",
                                  "gain from extra ticks"], "rows": rows})
    from mesalab.report.maze_internals import maze_internals_section

    inside, inside_figs, inside_tables = maze_internals_section(a.internals, fig_dir)
    sentences += inside
    figs += inside_figs
    tables += inside_tables
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
