"""Figures of a run, drawn from the rows of its results database (Matplotlib, Agg backend)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from mesalab.tasks.render import draw_level  # noqa: E402


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def learning_curves(curves: list[dict], path: Path) -> Path:
    """Training success rate and episode return against environment steps, one line per seed."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    by = defaultdict(lambda: defaultdict(list))
    for row in curves:
        by[(row["seed"], row["metric"])]["x"].append(row["env_steps"])
        by[(row["seed"], row["metric"])]["y"].append(row["value"])
    for ax, metric, label in [(axes[0], "success_rate", "train success rate"), (axes[1], "episode_return", "episode return")]:
        for (seed, m), d in sorted(by.items()):
            if m == metric:
                ax.plot(d["x"], d["y"], label=f"seed {seed}", linewidth=1.2)
        ax.set_xlabel("environment steps")
        ax.set_ylabel(label)
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
    ax.set_ylabel("competent pursuit rate")
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
    """The trained agent's path on the first drawn levels of a split."""
    lv = [r for r in levels if r["split"] == split]
    fig, axes = plt.subplots(1, len(lv), figsize=(2.4 * len(lv), 2.7))
    axes = np.atleast_1d(axes)
    for ax, level in zip(axes, lv):
        grid = np.asarray(level["grid"], dtype=bool).reshape(level["height"], level["width"], level["channels"])
        t = next((r for r in trajs if r["split"] == split and r["level"] == level["level"] and r["seed"] == seed), None)
        rows, cols = (np.asarray(t["rows"]), np.asarray(t["cols"])) if t else (None, None)
        draw_level(ax, grid, (level["start_row"], level["start_col"]), rows, cols,
                   title=f"{split} level {level['level']}: {t['outcome'] if t else ''}")
    return _save(fig, path)


def irl_weights(weights: list[dict], path: Path) -> Path:
    """Normalised IRL reward weights per feature, one panel per split: bars are the mean over seeds, points
    each seed's weight with its 95% bootstrap interval."""
    splits = [s for s in ("train", "test") if any(r["split"] == s for r in weights)]
    fig, axes = plt.subplots(1, len(splits), figsize=(5.2 * len(splits), 3.4), squeeze=False, sharey=True)
    for ax, split in zip(axes[0], splits):
        rows = [r for r in weights if r["split"] == split]
        feats = [f for _, f in sorted({(r["position"], r["feature"]) for r in rows})]
        seeds = sorted({r["seed"] for r in rows})
        x = np.arange(len(feats))
        means = [np.mean([r["normalised"] for r in rows if r["feature"] == f]) for f in feats]
        ax.bar(x, means, 0.7, color=["#1a7f37" if m > 0 else "#b00020" for m in means], alpha=0.35)
        for k, seed in enumerate(seeds):
            off = (k - (len(seeds) - 1) / 2) * (0.5 / max(len(seeds), 1))
            pts = {r["feature"]: r for r in rows if r["seed"] == seed}
            y = np.array([pts[f]["normalised"] for f in feats])
            lo = np.array([pts[f]["ci_low"] for f in feats])
            hi = np.array([pts[f]["ci_high"] for f in feats])
            ax.errorbar(x + off, y, yerr=[np.maximum(y - lo, 0), np.maximum(hi - y, 0)], fmt="o", ms=3,
                        color="black", elinewidth=0.8, capsize=1.5, label="seed (95% CI)" if k == 0 else None)
        ax.axhline(0, color="#888", linewidth=0.8)
        ax.set_xticks(x, feats, rotation=40, ha="right", fontsize=8)
        ax.set_title(f"{split} levels")
        ax.grid(alpha=0.3, axis="y")
    axes[0][0].set_ylabel("normalised weight  w / sum|w|")
    axes[0][0].legend(fontsize=7)
    return _save(fig, path)


def bits_histogram(level_bits: list[dict], path: Path) -> Path:
    """Distribution over levels of the agent's optimization power (bits) under each candidate objective,
    all seeds pooled, with the mean of the oracle-optimal agent's bits (the ceiling) as a dashed line."""
    splits = [s for s in ("train", "test") if any(r["split"] == s for r in level_bits)]
    fig, axes = plt.subplots(1, len(splits), figsize=(5.2 * len(splits), 3.2), squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, split in zip(axes[0], splits):
        rows = [r for r in level_bits if r["split"] == split]
        objectives = list(dict.fromkeys(r["objective"] for r in rows))
        top = max([r["optimal_bits"] for r in rows] + [r["bits"] for r in rows] + [1.0])
        bins = np.linspace(0, top * 1.02, 26)
        for j, obj in enumerate(objectives):
            vals = np.array([r["bits"] for r in rows if r["objective"] == obj])
            ceiling = np.mean([r["optimal_bits"] for r in rows if r["objective"] == obj])
            c = colours[j % len(colours)]
            ax.hist(vals, bins=bins, alpha=0.45, color=c, label=f"{obj} (mean {vals.mean():.1f})")
            ax.axvline(ceiling, color=c, linestyle="--", linewidth=1.2)
        ax.set_xlabel("bits = -log2 P(random policy does at least as well)")
        ax.set_ylabel("levels")
        ax.set_title(f"{split} levels (dashed: optimal agent's mean)")
        ax.legend(fontsize=7)
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
