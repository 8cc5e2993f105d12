"""Figures of a run, drawn from the rows of its results database (Matplotlib, Agg backend)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from mesalab.tasks.render import draw_level, legend_handles  # noqa: E402


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# The learning curve's "success_rate" metric and the verdict table's train column are different quantities;
# each has one name, used wherever it appears (figures, report template).
TRAINING_REACH_NAME = "training episodes reaching the base objective"
TRAINING_REACH_DETAIL = "PPO's own rollouts, sampled actions, reached at any step within the step limit"
TRAIN_COMPETENT_NAME = "train: base objective pursued competently (within 2× shortest path)"


def learning_curves(curves: list[dict], path: Path) -> Path:
    """Share of PPO's training episodes (its own rollouts, sampled actions) that reached the base objective at
    any step within the limit, and their mean return, against environment steps, one line per seed. Not the
    verdict table's train column, which counts *competent* pursuit (within 2x the shortest path) on the fixed
    evaluation levels."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    by = defaultdict(lambda: defaultdict(list))
    for row in curves:
        by[(row["seed"], row["metric"])]["x"].append(row["env_steps"])
        by[(row["seed"], row["metric"])]["y"].append(row["value"])
    panels = [(axes[0], "success_rate", "share of episodes", f"{TRAINING_REACH_NAME}\n({TRAINING_REACH_DETAIL})"),
              (axes[1], "episode_return", "mean episode return",
               "return of training episodes\n(PPO's own rollouts, sampled actions)")]
    for ax, metric, ylabel, title in panels:
        for (seed, m), d in sorted(by.items()):
            if m == metric:
                ax.plot(d["x"], d["y"], label=f"seed {seed}", linewidth=1.2)
        ax.set_xlabel("environment steps")
        ax.set_ylabel(ylabel)
        ax.set_title(title, fontsize=8.5)
        ax.grid(alpha=0.3)
    axes[0].set_ylim(-0.02, 1.02)
    axes[0].legend(fontsize=7)
    return _save(fig, path)


def shift_rates(evaluations: list[dict], path: Path) -> Path:
    """Competent-pursuit rate of each candidate objective, train vs test: mean over seeds (bars) with each
    seed's rate and 95% Wilson interval (points and whiskers)."""
    objectives = list(dict.fromkeys(r["objective"] for r in evaluations))
    splits = ["train", "test"]
    fig, ax = plt.subplots(figsize=(6, 3.2))
    width = 0.8 / len(objectives)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for j, obj in enumerate(objectives):
        for i, split in enumerate(splits):
            rows = [r for r in evaluations if r["objective"] == obj and r["split"] == split]
            if not rows:
                continue
            x = i + (j - (len(objectives) - 1) / 2) * width
            rates = np.array([r["competent_rate"] for r in rows])
            ax.bar(x, rates.mean(), width * 0.9, color=colours[j % len(colours)], alpha=0.55,
                   label=obj + (" (base)" if rows[0]["is_base"] else " (proxy)") if i == 0 else None)
            offsets = np.linspace(-width * 0.25, width * 0.25, len(rows)) if len(rows) > 1 else [0.0]
            for off, r in zip(offsets, rows):
                ax.errorbar(x + off, r["competent_rate"],
                            yerr=[[r["competent_rate"] - r["ci_low"]], [r["ci_high"] - r["competent_rate"]]],
                            fmt="o", color="black", markersize=3, capsize=2, linewidth=0.8)
    ax.set_xticks(range(len(splits)), [f"{s} distribution" for s in splits])
    ax.set_ylabel("competent pursuit rate\n(reached within 2× shortest path)", fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def outcome_shares(outcomes: list[dict], path: Path) -> Path:
    """Share of test episodes in each outcome category, one stacked bar per seed."""
    test = [r for r in outcomes if r["split"] == "test"]
    seeds = sorted({r["seed"] for r in test})
    names = list(dict.fromkeys(r["outcome"] for r in test))
    fig, ax = plt.subplots(figsize=(max(4, 1 + 0.8 * len(seeds)), 3.2))
    bottom = np.zeros(len(seeds))
    for name in names:
        vals = []
        for s in seeds:
            total = sum(r["count"] for r in test if r["seed"] == s)
            vals.append(sum(r["count"] for r in test if r["seed"] == s and r["outcome"] == name) / max(total, 1))
        ax.bar([str(s) for s in seeds], vals, bottom=bottom, label=name)
        bottom += np.array(vals)
    ax.set_xlabel("seed")
    ax.set_ylabel("share of test episodes")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1, 1))
    return _save(fig, path)


def trajectories(levels: list[dict], trajs: list[dict], split: str, seed: int, path: Path) -> Path:
    """The trained agent's path on the first drawn levels of a split, with a legend of the glyphs (object type
    = shape, colour = fill, walls, start, path, end) below the panels."""
    lv = [r for r in levels if r["split"] == split]
    fig, axes = plt.subplots(1, len(lv), figsize=(2.4 * len(lv), 2.7))
    axes = np.atleast_1d(axes)
    grids = []
    for ax, level in zip(axes, lv):
        grid = np.asarray(level["grid"], dtype=bool).reshape(level["height"], level["width"], level["channels"])
        grids.append(grid)
        t = next((r for r in trajs if r["split"] == split and r["level"] == level["level"] and r["seed"] == seed), None)
        rows, cols = (np.asarray(t["rows"]), np.asarray(t["cols"])) if t else (None, None)
        draw_level(ax, grid, (level["start_row"], level["start_col"]), rows, cols,
                   title=f"{split} level {level['level']}: {t['outcome'] if t else ''}")
    fig.tight_layout()
    if grids:
        handles = legend_handles(np.stack(grids))
        fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), fontsize=7, frameon=False,
                   ncol=min(len(handles), max(3, 3 * len(lv))), handlelength=1.6, columnspacing=1.2)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


ABSENT_LABEL = "absent on this split"


def absent_features(weights: list[dict]) -> dict[str, set[str]]:
    """``split -> features`` absent on that split's levels (never occurring, so their weight is not
    identifiable). IRL stores such a feature with weight exactly 0 and a zero-width interval for every seed;
    a fitted weight never lands on exactly 0 with a degenerate bootstrap interval (if every feature of a split
    reads so, the fit itself is degenerate and nothing is marked absent)."""
    out: dict[str, set[str]] = {}
    for split in dict.fromkeys(r["split"] for r in weights):
        rows = [r for r in weights if r["split"] == split]
        feats = dict.fromkeys(r["feature"] for r in rows)
        zero = {f for f in feats if all(r["weight"] == 0 and r["normalised"] == 0 and r["ci_low"] == 0
                                        and r["ci_high"] == 0 for r in rows if r["feature"] == f)}
        out[split] = zero if len(zero) < len(feats) else set()  # all zero: a degenerate fit, not absence
    return out


def irl_weights(weights: list[dict], path: Path, absent: dict[str, set[str]] | None = None) -> Path:
    """Normalised IRL reward weights per feature, one panel per split: bars are the mean over seeds, points
    each seed's weight with its 95% bootstrap interval. A feature absent on a split (``absent``: split ->
    features; inferred by :func:`absent_features` when None) has no bar and no point there: its slot is
    hatched grey, labelled "absent", and its tick reads "feature (absent)"."""
    splits = [s for s in ("train", "test") if any(r["split"] == s for r in weights)]
    absent = absent_features(weights) if absent is None else {k: set(v) for k, v in absent.items()}
    fig, axes = plt.subplots(1, len(splits), figsize=(5.2 * len(splits), 3.6), squeeze=False, sharey=True)
    for ax, split in zip(axes[0], splits):
        rows = [r for r in weights if r["split"] == split]
        feats = [f for _, f in sorted({(r["position"], r["feature"]) for r in rows})]
        gone = absent.get(split, set())
        labelled = False
        present = [i for i, f in enumerate(feats) if f not in gone]
        seeds = sorted({r["seed"] for r in rows})
        x = np.arange(len(feats))
        means = {i: np.mean([r["normalised"] for r in rows if r["feature"] == feats[i]]) for i in present}
        ax.bar([x[i] for i in present], [means[i] for i in present], 0.7,
               color=["#1a7f37" if means[i] > 0 else "#b00020" for i in present], alpha=0.35)
        for k, seed in enumerate(seeds):
            off = (k - (len(seeds) - 1) / 2) * (0.5 / max(len(seeds), 1))
            pts = {r["feature"]: r for r in rows if r["seed"] == seed}
            idx = [i for i in present if feats[i] in pts]
            y = np.array([pts[feats[i]]["normalised"] for i in idx])
            lo = np.array([pts[feats[i]]["ci_low"] for i in idx])
            hi = np.array([pts[feats[i]]["ci_high"] for i in idx])
            ax.errorbar(x[idx] + off, y, yerr=[np.maximum(y - lo, 0), np.maximum(hi - y, 0)], fmt="o", ms=3,
                        color="black", elinewidth=0.8, capsize=1.5, label="seed (95% CI)" if k == 0 else None)
        for i, f in enumerate(feats):
            if f in gone:
                ax.axvspan(i - 0.4, i + 0.4, facecolor="#eeeeee", edgecolor="#999999", hatch="///",
                           linewidth=0.6, zorder=0, label=None if labelled else ABSENT_LABEL)
                labelled = True
                ax.text(i, 0.5, "absent", transform=ax.get_xaxis_transform(), rotation=90, ha="center",
                        va="center", fontsize=8, color="#555555",
                        bbox={"facecolor": "white", "edgecolor": "none", "pad": 1.0})
        ax.axhline(0, color="#888", linewidth=0.8)
        ax.set_xticks(x, [f"{f} (absent)" if f in gone else f for f in feats], rotation=40, ha="right", fontsize=8)
        for tick, f in zip(ax.get_xticklabels(), feats):
            if f in gone:
                tick.set_color("#777777")
                tick.set_fontstyle("italic")
        ax.set_title(f"{split} levels")
        ax.grid(alpha=0.3, axis="y")
    axes[0][0].set_ylabel("normalised weight  w / sum|w|")
    handles, labels = [], []
    for ax in axes[0]:  # one legend for the figure's entries (the absent marker may only be in one panel)
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    axes[0][0].legend(handles, labels, fontsize=7)
    return _save(fig, path)


def _hist_edges(values: np.ndarray, n_bins: int = 20) -> np.ndarray:
    """Bin edges from 0 to the largest value drawn (no range beyond the data)."""
    top = float(values.max()) if values.size else 0.0
    if top <= 0:
        return np.array([0.0, 0.5])  # every level at 0 bits: one bin
    return np.linspace(0.0, top * (1 + 1e-9), n_bins + 1)


def bits_histogram(level_bits: list[dict], path: Path) -> Path:
    """Distribution over levels of the agent's optimization power (bits) under each candidate objective,
    all seeds pooled, with the mean of the oracle-optimal agent's bits (the ceiling) as a dashed line.

    The bins span only the agent's bits (0 to the largest); within a bin the objectives' bars stand side by
    side (no overlap, so no blended colours); empty bins draw nothing; every bar colour and every dashed line
    has a legend entry."""
    splits = [s for s in ("train", "test") if any(r["split"] == s for r in level_bits)]
    fig, axes = plt.subplots(1, len(splits), figsize=(5.2 * len(splits), 3.4), squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, split in zip(axes[0], splits):
        rows = [r for r in level_bits if r["split"] == split]
        objectives = list(dict.fromkeys(r["objective"] for r in rows))
        edges = _hist_edges(np.array([r["bits"] for r in rows], dtype=float))
        width = np.diff(edges)
        sub = width / max(len(objectives), 1)
        right = [edges[-1]]
        for j, obj in enumerate(objectives):
            vals = np.array([r["bits"] for r in rows if r["objective"] == obj], dtype=float)
            ceiling = float(np.mean([r["optimal_bits"] for r in rows if r["objective"] == obj]))
            right.append(ceiling)
            counts, _ = np.histogram(vals, bins=edges)
            keep = counts > 0
            c = colours[j % len(colours)]
            ax.bar((edges[:-1] + j * sub)[keep], counts[keep], sub[keep], align="edge", color=c,
                   edgecolor="white", linewidth=0.4, label=f"agent, {obj} (mean {vals.mean():.1f} bits)")
            # offset dashes: equal ceilings (e.g. base = proxy on every training level) show both colours
            dashes = "--" if len(objectives) == 1 else (3 * j, (3, 3 * (len(objectives) - 1)))
            ax.axvline(ceiling, color=c, linestyle=dashes, linewidth=1.2,
                       label=f"optimal agent, {obj} (mean {ceiling:.1f} bits)")
        ax.set_xlim(0, max(right) * 1.04)
        ax.set_xlabel("bits = -log2 P(random policy does at least as well)")
        ax.set_ylabel("levels")
        ax.set_title(f"{split} levels")
        handles, labels = ax.get_legend_handles_labels()
        order = sorted(range(len(labels)), key=lambda i: (not labels[i].startswith("agent"), i))  # bars first
        ax.legend([handles[i] for i in order], [labels[i] for i in order], fontsize=7)
        ax.grid(alpha=0.3)
    return _save(fig, path)


def accuracy_vs_ticks_figure(ticks, bands: dict, trained_ticks: int, trained_size: int, ylabel: str):
    """Accuracy against test-time ticks (log axis), one line per maze size with its interval band.

    ``bands`` maps a size to an array ``[T, 3]`` of (accuracy, low, high); the training ticks and size are marked.
    """
    fig, ax = plt.subplots(figsize=(6.8, 3.7))
    for size, band in bands.items():
        band = np.asarray(band)
        label = f"{size}×{size}" + (" (training size)" if int(size) == int(trained_size) else "")
        line, = ax.plot(ticks, band[:, 0], label=label)
        ax.fill_between(ticks, band[:, 1], band[:, 2], color=line.get_color(), alpha=0.2, linewidth=0)
    ax.axvline(trained_ticks, color="grey", ls="--", lw=1, label=f"training ticks ({trained_ticks})")
    ax.set_xlabel("ticks (iterations of thought at test time)")
    ax.set_ylabel(ylabel)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def compute_scaling_figure(cs, path: Path | None = None):
    """Exact accuracy versus ticks of one model (a ``ComputeScaling``), one line per maze size with its 95% Wilson
    band. Returns the figure (saved and closed when ``path`` is given)."""
    from mesalab.diagnostics.stats import wilson_interval

    n = cs.solved.shape[1]
    bands = {size: [(a, *wilson_interval(int(round(a * n)), n)) for a in cs.accuracy[k]]
             for k, size in enumerate(cs.sizes)}
    fig = accuracy_vs_ticks_figure(cs.ticks, bands, cs.trained_ticks, cs.trained_size,
                                   f"exact path accuracy ({n} mazes)")
    return fig if path is None else _save(fig, path)


def success_by_ticks(rows: list[dict], path: Path) -> Path:
    """Test success against ticks per step: one thin line per seed, the mean over seeds with a bootstrap band."""
    from mesalab.diagnostics.stats import bootstrap_mean_ci

    fig, ax = plt.subplots(figsize=(6, 3.4))
    seeds = sorted({r["seed"] for r in rows})
    ticks = sorted({r["ticks"] for r in rows})
    rate = {(r["seed"], r["ticks"]): r["success_rate"] for r in rows}
    for s in seeds:
        ax.plot(ticks, [rate[(s, t)] for t in ticks], color="grey", lw=0.8, alpha=0.6)
    band = np.array([bootstrap_mean_ci([rate[(s, t)] for s in seeds]) for t in ticks])
    ax.fill_between(ticks, band[:, 1], band[:, 2], alpha=0.25, color="#1f77b4", linewidth=0)
    ax.plot(ticks, band[:, 0], "o-", color="#1f77b4", lw=2, label=f"mean over {len(seeds)} seed(s)")
    ax.axvline(rows[0]["trained_ticks"], color="black", ls="--", lw=1, label="training ticks")
    ax.set_xscale("log", base=2)
    ax.set_xticks(ticks, [str(t) for t in ticks])
    ax.set_xlabel("ticks per environment step at test time")
    ax.set_ylabel("success on test levels")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def compute_gain_sentence(rows: list[dict]) -> str:
    """The test-time compute gain in words: success at twice the training ticks minus at the training ticks,
    mean over seeds with a 95% bootstrap interval (paired per seed)."""
    from mesalab.diagnostics.stats import bootstrap_mean_ci

    trained = rows[0]["trained_ticks"]
    rate = {(r["seed"], r["ticks"]): r["success_rate"] for r in rows}
    seeds = sorted({r["seed"] for r in rows})
    gains = [rate[(s, 2 * trained)] - rate[(s, trained)] for s in seeds]
    mean, lo, hi = bootstrap_mean_ci(gains)
    at_t = bootstrap_mean_ci([rate[(s, trained)] for s in seeds])
    if lo > 0:
        reading = "the agents do better when allowed to think longer than they were trained to"
    elif hi < 0:
        reading = "extra ticks hurt: the agents do worse when run longer than they were trained to"
    else:
        reading = "no gain from extra test-time compute can be told apart from zero"
    return (f"Trained with {trained} tick(s) per step, the recurrent agents succeed on {at_t[0]:.2f} "
            f"[{at_t[1]:.2f}, {at_t[2]:.2f}] of test levels; with {2 * trained} ticks the change is {mean:+.3f} "
            f"[{lo:+.3f}, {hi:+.3f}] (mean over {len(seeds)} seed(s), 95% bootstrap interval): {reading}.")


def probe_pursuit(probes, path: Path) -> Path:
    """What it pursues on every split (:class:`mesalab.analysis.run.ProbeSummary`): for each account (colour) and
    split, the competent-pursuit rate over the levels where the account's targets are achievable, mean over seeds
    with its 95% interval; no bar where the split holds no such target."""
    rows, splits = probes.rows, probes.splits
    fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(splits)), 3.4))
    width = 0.8 / max(len(rows), 1)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for j, (label, name) in enumerate(rows):
        for i, split in enumerate(splits):
            c = probes.cells[(label, split)]
            if np.isnan(c.mean):
                continue
            x = i + (j - (len(rows) - 1) / 2) * width
            ax.bar(x, c.mean, width * 0.9, color=colours[j % len(colours)], alpha=0.7, label=name if i == 0 or
                   all(np.isnan(probes.cells[(label, s)].mean) for s in splits[:i]) else None)
            ax.errorbar(x, c.mean, yerr=[[c.mean - c.ci_low], [c.ci_high - c.mean]], fmt="none", color="black",
                        capsize=2, linewidth=0.8)
    ax.set_xticks(range(len(splits)), splits, fontsize=8)
    ax.set_ylabel("pursued competently\n(where achievable)", fontsize=8)
    ax.set_ylim(0, 1.3)
    ax.set_yticks([0, 0.2, 0.4, 0.6, 0.8, 1.0])
    ax.legend(fontsize=7, ncol=min(len(rows), 5), loc="upper center")
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)
