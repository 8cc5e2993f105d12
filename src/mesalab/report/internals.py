"""The run report's section "Inside the model: mesa-objective vs behavioral objective" (``mesalab probe``):
probe heatmaps, steering and retargeting bar charts with their intervals, and the sentences of
:mod:`mesalab.analysis.internals`."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from mesalab.report.figures import _save, plt


def _err(est) -> tuple[float, float]:
    if not (math.isfinite(est.low) and math.isfinite(est.high)):
        return 0.0, 0.0
    return max(est.mean - est.low, 0.0), max(est.high - est.mean, 0.0)


def probe_heatmap(summary, path: Path) -> Path:
    """Held-out score of every probe (layer x label) of the trained model, beside the same probe on the
    random-initialised model; top-1 accuracy for target locations, accuracy for actions and episode ends, R² for
    distances."""
    layers = list(dict.fromkeys(p.layer for p in summary.probes))
    labels = list(dict.fromkeys(p.label for p in summary.probes))
    by = {(p.layer, p.label): p for p in summary.probes}
    grids = [np.full((len(layers), len(labels)), np.nan) for _ in range(2)]
    for i, layer in enumerate(layers):
        for j, label in enumerate(labels):
            p = by.get((layer, label))
            if p is not None:
                grids[0][i, j], grids[1][i, j] = p.value.mean, p.random_init.mean
    fig, axes = plt.subplots(1, 2, figsize=(min(3 + 1.1 * len(labels), 15), 1.6 + 0.45 * len(layers)), squeeze=False)
    for ax, grid, title in zip(axes[0], grids, ("trained model", "random-initialised model (same shape)")):
        im = ax.imshow(grid, vmin=0, vmax=1, cmap="viridis", aspect="auto")
        for i in range(len(layers)):
            for j in range(len(labels)):
                if np.isfinite(grid[i, j]):
                    ax.text(j, i, f"{grid[i, j]:.2f}", ha="center", va="center", fontsize=6.5,
                            color="white" if grid[i, j] < 0.6 else "black")
        ax.set_xticks(range(len(labels)), labels, rotation=40, ha="right", fontsize=7)
        ax.set_yticks(range(len(layers)), layers, fontsize=7)
        ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8, label="held-out accuracy / R²")
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def steering_bars(summary, objectives: list[str], path: Path) -> Path:
    """Change in the pursuit rate of each candidate when one candidate's steering vector is subtracted at the
    layer where it lowers its own pursuit most, on every split; mean over seeds with its 95% interval."""
    vectors = [c for c in objectives if summary.own_steering(c) is not None]
    splits = list(dict.fromkeys(s.split for s in summary.steering))
    fig, axes = plt.subplots(1, max(len(vectors), 1), figsize=(1 + (1.2 + 0.6 * len(splits)) * max(len(vectors), 1), 3.2),
                             squeeze=False)
    width = 0.8 / max(len(objectives), 1)
    for ax, v in zip(axes[0], vectors):
        layer = summary.own_steering(v).layer
        for k, o in enumerate(objectives):
            rows = {s.split: s for s in summary.steering if (s.layer, s.vector_of, s.objective) == (layer, v, o)}
            xs = [i + (k - (len(objectives) - 1) / 2) * width for i in range(len(splits))]
            means = [rows[sp].change.mean if sp in rows else np.nan for sp in splits]
            errs = np.array([_err(rows[sp].change) if sp in rows else (0, 0) for sp in splits]).T
            ax.bar(xs, means, width, yerr=errs, capsize=2, label=f"pursuit of {o}")
        ax.axhline(0, color="black", linewidth=0.7)
        ax.set_xticks(range(len(splits)), splits, rotation=30, ha="right", fontsize=7)
        ax.set_ylabel("change in pursuit rate")
        ax.set_title(f"minus the {v} vector at {layer}", fontsize=8.5)
        ax.set_ylim(-1.05, 1.05)
        ax.legend(fontsize=6.5)
    return _save(fig, path)


def retargeting_bars(summary, path: Path) -> Path:
    """Share of test levels where the agent reaches the chosen cell with the base objective's probe direction
    written there, a random direction of the same norm, and no write, per spatial layer and strength."""
    groups = list(dict.fromkeys((r.layer, r.strength) for r in summary.retargeting if r.split == "test"))
    dirs = ("probe", "random", "none")
    fig, ax = plt.subplots(figsize=(2 + 0.9 * len(groups), 3.2))
    width = 0.26
    for k, d in enumerate(dirs):
        rows = [summary.retarget(layer, d, strength=st) for layer, st in groups]
        xs = [i + (k - 1) * width for i in range(len(groups))]
        ax.bar(xs, [r.rate.mean if r else np.nan for r in rows], width,
               yerr=np.array([_err(r.rate) if r else (0, 0) for r in rows]).T, capsize=2,
               label={"probe": "probe direction", "random": "random direction, same norm", "none": "no write"}[d])
    ax.set_xticks(range(len(groups)), [f"{layer}\nx{st:g}" for layer, st in groups], fontsize=7)
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("reached the chosen cell")
    ax.legend(fontsize=6.5)
    return _save(fig, path)


def internals_section(task, summary, fig_dir: Path) -> tuple[dict | None, list]:
    """``(section, figures)`` for the report (``(None, [])`` when the run has not been probed)."""
    if summary is None:
        return None, []
    objectives = [o.name for o in task.candidate_objectives]
    st = summary.settings
    figs = [("Probes: what each layer encodes", "Held-out score of each linear probe (rows: layers; columns: labels). "
             "target:c = top-1 localisation of candidate c's target cell by a 1x1 probe shared over cells; "
             "bfs_action:c = the first action of a shortest path to c; distance:c = BFS distance (R²); ends_on = "
             "which candidate the episode ends on. Right: the same probe on a random-initialised model of the same "
             "architecture on the same states. Mean over seeds.",
             probe_heatmap(summary, fig_dir / "internals_probes.png"))]
    if summary.steering:
        figs.append(("Steering vectors", "Change in each candidate's pursuit rate (reaching it within twice the "
                     "shortest path) when a candidate's steering vector (mean activation at the start state with "
                     "the candidate present minus with it removed, per level) is subtracted at every step; bars are "
                     "means over seeds with 95% intervals.", steering_bars(summary, objectives,
                                                                             fig_dir / "internals_steering.png")))
    if summary.retargeting:
        figs.append(("Retargeting", f"A cell the agent's own episode never visits is chosen per level; the base "
                     f"objective's spatial probe direction, scaled to "
                     f"{', '.join(f'{x:g}' for x in st.get('strengths', [2.0]))} x the probe's "
                     "target-vs-elsewhere projection gap (x labels), is added at that cell of the layer at every step. Bars: "
                     "share of test levels where the agent then steps on the chosen cell; 95% intervals.",
                     retargeting_bars(summary, fig_dir / "internals_retargeting.png")))
    rows = [{"layer": p.layer, "label": p.label, "metric": p.metric, "value": p.value.text(), "control": f"{p.control:.2f}",
             "selectivity": p.selectivity.text(), "random": p.random_init.text(), "gain": p.gain.text(),
             "decodable": "yes" if p.decodable else "no"}
            for p in summary.probes if p.label.startswith("target:")]
    section = {"sentences": summary.sentences, "agreement": summary.agreement, "rows": rows,
               "n_seeds": len(summary.seeds), "levels": st.get("levels"), "steps": st.get("steps"),
               "layers": ", ".join(st.get("layers", []))}
    return section, figs
