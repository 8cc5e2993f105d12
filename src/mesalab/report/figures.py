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
