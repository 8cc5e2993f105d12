"""Report of a sweep folder: verdicts, dial plots with bootstrap CI bands and per-seed points, learning
curves per dial value, and trajectory drawings of representative agents; also the toy-model report."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from jinja2 import Environment, select_autoescape  # noqa: E402

from mesalab.report.html import FIGURES_LOADED_SCRIPT, STYLE, inline_figures, write_html_atomic  # noqa: E402
from mesalab.tasks.render import draw_level, legend_handles  # noqa: E402

TEMPLATE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>mesalab sweep: {{ name }}</title>
""" + STYLE + """</head><body>
<h1>Sweep: {{ name }}</h1>
<p>{{ description }}</p>
<p class="note"><b>Hypothesis tested.</b> {{ condition }}</p>
{% if partial %}<p class="contradicted"><b>Partial sweep:</b> {{ n_cells }} of {{ n_expected }} cells have finished;
re-run the same <code>mesalab sweep</code> command to train the rest (finished cells are kept).</p>{% endif %}
<h2>{{ findings_title|default("Verdicts") }}</h2>
<ul>{% for v in verdicts %}<li class="{{ v.verdict }}">{{ v.sentence }}</li>{% endfor %}</ul>
{% if n_perm %}<p class="note">A verdict is <i>supported</i> when the Spearman rank correlation of the metric with the dial (over
every finished run, seeds as replicates) has the hypothesised sign with a two-sided permutation p-value below
{{ level }} ({{ n_perm }} permutations), <i>contradicted</i> when it is significant the other way, and
<i>inconclusive</i> otherwise. Intervals are 95% percentile-bootstrap intervals of the mean over seeds.</p>{% endif %}
{{ extra|safe }}
{% for f in figures %}<figure><img src="data:image/png;base64,{{ f.data }}" alt="{{ f.title }}"><figcaption><b>{{ f.title }}.</b> {{ f.caption }}</figcaption></figure>{% endfor %}
<h2>Numbers</h2>
{% for t in tables %}<h3>{{ t.title }}</h3><table><tr><th>{{ dial_label }}</th>{% for h in t.header %}<th>{{ h }}</th>{% endfor %}</tr>
{% for r in t.rows %}<tr>{% for c in r %}<td>{{ c }}</td>{% endfor %}</tr>{% endfor %}</table>{% endfor %}
<h2>Configuration</h2><pre>{{ config_json }}</pre>
""" + FIGURES_LOADED_SCRIPT + """
</body></html>"""


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def dial_plot(analysis, path: Path) -> Path:
    """One panel per (panel, metric): mean over seeds with its bootstrap CI band and each seed's value."""
    series = analysis.series
    dial = analysis.preset.dial
    cols = min(3, len(series))
    rows = int(np.ceil(len(series) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    rng = np.random.default_rng(0)
    for ax, s in zip(axes.ravel(), series):
        x = np.array([dial.values.index(p.value) for p in s.points], dtype=float)
        mean = np.array([p.mean for p in s.points])
        lo = np.array([p.ci_low for p in s.points])
        hi = np.array([p.ci_high for p in s.points])
        ax.fill_between(x, lo, hi, color="#1f77b4", alpha=0.2, linewidth=0, label="95% CI")
        ax.plot(x, mean, "o-", color="#1f77b4", label="mean")
        for xi, p in zip(x, s.points):
            ax.scatter(xi + rng.uniform(-0.12, 0.12, len(p.per_seed)), p.per_seed, s=10, color="black", alpha=0.5,
                       zorder=3, label="seed" if xi == x[0] else None)
        ax.set_xticks(range(len(dial.values)), [dial.display(v) for v in dial.values])
        ax.set_xlabel(dial.label, fontsize=8)
        ax.set_title((s.panel + ": " if s.panel != "all" else "") + s.label, fontsize=8)
        ax.grid(alpha=0.3)
        shown = np.concatenate([mean, lo, hi, *[np.asarray(p.per_seed, float) for p in s.points]])
        shown = shown[np.isfinite(shown)]
        if s.metric.split("/")[-1] not in ("bits", "bits_ceiling") and shown.size and shown.min() >= -0.03 \
                and shown.max() <= 1.03:  # a rate or a cosine: on the full [0, 1] scale; anything else autoscaled
            ax.set_ylim(-0.03, 1.03)
    for ax in axes.ravel()[len(series):]:
        ax.axis("off")
    axes.ravel()[0].legend(fontsize=7)
    return _save(fig, path)


def compute_scaling_by_dial(analysis, scaling: list[tuple], path: Path) -> Path:
    """Test success against test-time ticks, one line per dial value (mean and bootstrap CI over seeds)."""
    from mesalab.diagnostics.stats import bootstrap_mean_ci

    dial = analysis.preset.dial
    cell_value = {r[0]: r[2] for r in analysis.cells}
    cell_ticks = {r[0]: json.loads(r[4]).get("ticks") for r in analysis.cells}
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    cmap = plt.get_cmap("viridis")
    for i, v in enumerate(dial.values):
        by_ticks = defaultdict(list)
        for cid, k, y in scaling:
            if cell_value.get(cid) == dial.stored(v):
                by_ticks[k].append(y)
        if not by_ticks:
            continue
        ks = sorted(by_ticks)
        band = np.array([bootstrap_mean_ci(by_ticks[k]) for k in ks])
        colour = cmap(i / max(1, len(dial.values) - 1))
        ax.plot(ks, band[:, 0], "-", color=colour, label=f"{dial.name} = {dial.display(v)}")
        ax.fill_between(ks, band[:, 1], band[:, 2], color=colour, alpha=0.15, linewidth=0)
        trained = {cell_ticks[cid] for cid, _, _ in scaling if cell_value.get(cid) == dial.stored(v)}
        for t in trained:
            if t in by_ticks:
                ax.plot([t], [np.mean(by_ticks[t])], "o", color=colour, markersize=7)
    ax.set_xscale("log", base=2)
    ticks = sorted({k for _, k, _ in scaling})
    ax.set_xticks(ticks, [str(k) for k in ticks])
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("ticks per step at test time")
    ax.set_ylabel("success on unseen test levels")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, path)


def learning_curves_by_dial(curves: list[tuple], dial, path: Path) -> Path:
    """Training success against environment steps, mean over seeds, one line per dial value (per panel)."""
    panels = sorted({c[0] for c in curves})
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.2), squeeze=False)
    cmap = plt.get_cmap("viridis")
    for ax, panel in zip(axes[0], panels):
        for i, v in enumerate(dial.values):
            pts = defaultdict(list)
            for p, value, steps, success in curves:
                if p == panel and value == dial.stored(v) and np.isfinite(success):
                    pts[steps].append(success)
            if pts:
                xs = sorted(pts)
                ax.plot(xs, [np.mean(pts[x]) for x in xs], color=cmap(i / max(1, len(dial.values) - 1)),
                        label=dial.display(v), linewidth=1.2)
        ax.set_xlabel("environment steps")
        ax.set_ylabel("training success rate")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        ax.set_title(panel if panel != "all" else "", fontsize=8)
        ax.legend(fontsize=6, title=dial.name, title_fontsize=6)
    return _save(fig, path)


def trajectory_drawings(reps: list[dict], levels: dict, path: Path) -> Path:
    """Representative agents (the median seed at the lowest and highest dial value) on train and test levels."""
    cols = max(1, max(len(r["trajs"]) for r in reps))
    fig, axes = plt.subplots(len(reps), cols, figsize=(2.4 * cols, 2.9 * len(reps)), squeeze=False)
    grids = []
    for row, rep in zip(axes, reps):
        for ax, t in zip(row, rep["trajs"]):
            lv = levels[(rep["task"], t["split"], t["level"])]
            grids.append(np.asarray(lv["grid"], dtype=bool))
            draw_level(ax, lv["grid"], lv["start"], t["rows"], t["cols"],
                       f"{rep['title']}\n{t['split']} level {t['level']}: {t['outcome']}")
        for ax in row[len(rep["trajs"]):]:
            ax.axis("off")
    fig.tight_layout()
    if grids and len({g.shape for g in grids}) == 1:  # one legend of the glyphs drawn (type = shape, colour = fill)
        handles = legend_handles(np.stack(grids))
        fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), fontsize=7, frameon=False,
                   ncol=min(len(handles), max(3, 3 * cols)), handlelength=1.6, columnspacing=1.2)
    fig.savefig(path, dpi=110, bbox_inches="tight")  # "tight" keeps the legend below the panels
    plt.close(fig)
    return path


def published_comparison_plot(c, dial, path: Path) -> Path:
    """The measured curve beside a published one (a :class:`mesalab.analysis.sweep.PublishedComparison`). Left: each
    as a fraction of its own optimum (measured: mean over seeds with its 95% bootstrap CI band; published: every
    published point, the shared ones marked). Right: each rescaled to its own rise over the shared dial values
    (first = 0, last = 1), against a straight line, with the dial's midpoint marked: the shape alone."""
    curve = c.curve
    x = np.array([dial.order(v) for v in c.shared], float)
    m = np.array(c.measured)
    lo, hi = np.array([ci[0] for ci in c.measured_ci]), np.array([ci[1] for ci in c.measured_ci])
    px = np.array(curve.dial_values, float)
    py = np.array(curve.values) / curve.optimum
    pub = np.array(c.published)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    ax = axes[0]
    ax.fill_between(x, lo, hi, color="#1f77b4", alpha=0.2, linewidth=0)
    ax.plot(x, m, "o-", color="#1f77b4", label="measured (mean, 95% CI over seeds)")
    ax.plot(px, py, "-", color="#d62728", alpha=0.6, label=f"published: {curve.name}")
    ax.plot(x, pub, "s", color="#d62728", markersize=5)
    ax.set_ylim(-0.03, 1.03)
    ax.set_ylabel("return / optimal return", fontsize=8)
    ax.set_title("each in units of its own optimum", fontsize=8)
    ax = axes[1]

    def rescale(y, ref):
        return (y - ref[0]) / (ref[-1] - ref[0]) if ref[-1] != ref[0] else np.full_like(y, np.nan)

    ax.plot([x[0], x[-1]], [0, 1], ":", color="grey", label="straight line")
    ax.fill_between(x, rescale(lo, m), rescale(hi, m), color="#1f77b4", alpha=0.2, linewidth=0)
    ax.plot(x, rescale(m, m), "o-", color="#1f77b4", label=f"measured (midpoint share {c.share:.0%})"
            if np.isfinite(c.share) else "measured (does not rise)")
    ax.plot(x, rescale(pub, pub), "s-", color="#d62728", label=f"published (midpoint share {c.published_share:.0%})")
    ax.axvline(c.midpoint, color="grey", linewidth=0.8, linestyle="--")
    ax.set_ylabel("share of the rise (first to last shared value)", fontsize=8)
    ax.set_title(f"each rescaled to its own rise: Spearman rho = {c.rho:+.2f}" if np.isfinite(c.rho) else
                 "each rescaled to its own rise", fontsize=8)
    for ax in axes:
        ax.set_xticks(x, [dial.display(v) for v in c.shared])
        ax.set_xlabel(dial.label, fontsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return _save(fig, path)


def build_sweep_report(sweep_dir: Path, analysis) -> Path:
    """Render ``report.html`` of a sweep of cells from its analysed result
    (:class:`mesalab.analysis.sweep.SweepAnalysis`)."""
    from mesalab.experiments import stats

    sweep_dir = Path(sweep_dir)
    preset, dial = analysis.preset, analysis.preset.dial
    curves, trajs, level_rows = analysis.curves, analysis.trajectories, analysis.levels
    fig_dir = sweep_dir / "figures"
    fig_dir.mkdir(exist_ok=True)
    figs = []
    if analysis.series:
        figs.append(("Along the dial", f"Each metric against {dial.label}: mean over seeds (line), its 95% bootstrap "
                     "CI (band) and every seed (points).", dial_plot(analysis, fig_dir / "dial.png")))
    c = analysis.comparison
    if c is not None:
        figs.append(("Against the published curve", f"The measured {c.curve.normalised_metric} beside {c.curve.name} "
                     f"({c.curve.quantity}, over its optimum {c.curve.optimum:g}); source: {c.curve.source}. Shapes, "
                     "not absolute values, are comparable (see the sentence above).",
                     published_comparison_plot(c, dial, fig_dir / "published.png")))
    if curves:
        figs.append(("Learning curves", "Training success rate during training (PPO, or AlphaZero-style for MCTS cells), mean over seeds, per dial value.",
                     learning_curves_by_dial(curves, dial, fig_dir / "learning_curves.png")))
    scaling = [(cid, int(m.split("=")[1]), v) for (cid, m), v in analysis.metrics.items()
               if m.startswith("test/success@ticks=")]
    if scaling:
        figs.append(("Test-time compute scaling", "Success on unseen test levels against the recurrent policy's ticks "
                     "per step at test time (the same levels and episode keys at every tick count), one line per "
                     "dial value: mean over seeds with its 95% bootstrap CI; the marker shows each value's own "
                     "training ticks.", compute_scaling_by_dial(analysis, scaling, fig_dir / "compute_scaling.png")))
    reps = _representatives(preset, analysis, trajs)
    if reps:
        levels = {(t, s, lv): {"grid": np.asarray(g, bool).reshape(h, w, ch), "start": (r0, c0)}
                  for t, s, lv, h, w, ch, g, r0, c0 in level_rows}
        figs.append(("Representative agents", "For the lowest and highest dial value, the seed with the median "
                     f"{analysis.verdicts[0].metric if analysis.verdicts else 'metric'}: its episodes on the first "
                     "training-distribution and test levels (circle = start, x = end).",
                     trajectory_drawings(reps, levels, fig_dir / "trajectories.png")))
    tables = []
    for panel in dict.fromkeys(s.panel for s in analysis.series):
        ss = [s for s in analysis.series if s.panel == panel]
        rows = []
        for v in dial.values:
            row = [dial.display(v)]
            for s in ss:
                p = next((p for p in s.points if p.value == v), None)
                row.append("-" if p is None else f"{p.mean:.3f} [{p.ci_low:.3f}, {p.ci_high:.3f}] (n={len(p.per_seed)})")
            rows.append(row)
        tables.append({"title": panel if panel != "all" else preset.name, "header": [s.label for s in ss], "rows": rows})
    tables += list(analysis.extra_tables)
    env = Environment(autoescape=select_autoescape(default=True))
    extra = ("<ul>" + "".join(f"<li>{env.from_string('{{ s }}').render(s=s)}</li>" for s in analysis.sentences)
             + "</ul>") if analysis.sentences else ""
    html = env.from_string(TEMPLATE).render(
        name=preset.name, description=preset.description, condition=preset.condition,
        partial=analysis.n_cells < analysis.n_expected, n_cells=analysis.n_cells, n_expected=analysis.n_expected,
        verdicts=analysis.verdicts, level=stats.LEVEL, n_perm=stats.N_PERMUTATIONS, extra=extra,
        figures=inline_figures(figs), tables=tables, dial_label=dial.label,
        config_json=json.dumps({**analysis.meta, "base": preset.base, "panels": preset.panels,
                                "dial": {"name": dial.name, "values": dial.values}}, indent=2, default=str))
    return write_html_atomic(sweep_dir / "report.html", html)


def _representatives(preset, analysis, trajs) -> list[dict]:
    cell_rows, metrics = analysis.cells, analysis.metrics
    if not analysis.verdicts or not trajs:
        return []
    by_cell = defaultdict(list)
    for cid, split, level, rows, cols, outcome in trajs:
        by_cell[cid].append({"split": split, "level": level, "rows": rows, "cols": cols, "outcome": outcome})
    reps = []
    for panel in preset.panels:
        pname = preset.panel_name(panel)
        metric = next((v.metric for v in analysis.verdicts if v.panel == pname), None)
        present = sorted({r[2] for r in cell_rows if r[1] == pname})
        for value in dict.fromkeys([present[0], present[-1]] if present else []):
            cands = [r for r in cell_rows if r[1] == pname and r[2] == value and (r[0], metric) in metrics]
            if not cands:
                continue
            cands.sort(key=lambda r: metrics[(r[0], metric)])
            cid, _, _, seed, config, _ = cands[len(cands) // 2]
            dial_value = next(v for v in preset.dial.values if preset.dial.stored(v) == value)
            title = f"{pname + ', ' if pname != 'all' else ''}{preset.dial.name}={preset.dial.display(dial_value)}, seed {seed}"
            reps.append({"task": json.loads(config)["task"], "title": title,
                         "trajs": sorted(by_cell[cid], key=lambda t: (t["split"] != "train", t["level"]))})
    return reps


def build_toy_report(out_dir: Path, analysis) -> Path:
    """The toy model's predicted split of optimization power against N, and the measured curve if compared
    (from :class:`mesalab.analysis.toy.ToyAnalysis`)."""
    out_dir = Path(out_dir)
    meta, model, measured = analysis.meta, analysis.model, analysis.measured
    fig_dir = out_dir / "figures"
    fig_dir.mkdir(exist_ok=True)
    finite = [r[1] for r in model if np.isfinite(r[1])]
    inf_x = max(finite) * 4  # where N = ∞ is drawn

    def xpos(n):
        return inf_x if not np.isfinite(n) else n

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    ax = axes[0]
    for curve, style in (("default", "--"), ("fitted", "-")):
        pts = [r for r in model if r[0] == curve]
        if pts:
            ax.plot([xpos(r[1]) for r in pts], [r[5] for r in pts], style, marker=".",
                    label=f"toy model, {curve} (a={pts[0][2]:.3g}, p={pts[0][3]:.2f})")
    if measured:
        x = [xpos(m[0]) for m in measured]
        ax.errorbar(x, [m[1] for m in measured], yerr=[[m[1] - m[2] for m in measured], [m[3] - m[1] for m in measured]],
                    fmt="o", color="black", capsize=3, label="measured: bits on unseen mazes / oracle (diversity sweep)")
    ax.set_xscale("log")
    ax.set_xlabel("N (distinct training instances; rightmost = ∞)")
    ax.set_ylabel("share done by the learned algorithm, x*/O")
    ax.set_ylim(-0.03, 1.05)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax = axes[1]
    pts = [r for r in model if r[0] == ("fitted" if any(r[0] == "fitted" for r in model) else "default")]
    x = [xpos(r[1]) for r in pts]
    ax.stackplot(x, [r[5] for r in pts], [r[6] for r in pts], [min(r[7], 5.0) for r in pts],
                 labels=["learned algorithm (per instance)", "base optimizer, instance by instance",
                         "base optimizer, finding the algorithm (amortised)"], alpha=0.7)
    ax.set_xscale("log")
    ax.set_xlabel("N (rightmost = ∞)")
    ax.set_ylabel("bits per instance / O")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    figs = [("The split of optimization power", "Left: the toy model's optimal share x*/O of each instance's "
             "optimization done by the learned algorithm, against N" + (", with the measured diversity curve "
             "(mean and 95% bootstrap CI over seeds)" if measured else "") + ". Right: where the bits come from, per "
             "instance, in units of O.", _save(fig, fig_dir / "toy_model.png"))]
    sentences, verdicts = analysis.sentences, analysis.verdicts
    env = Environment(autoescape=select_autoescape(default=True))
    extra = "<ul>" + "".join(f"<li>{s}</li>" for s in (env.from_string("{{ s }}").render(s=s) for s in sentences)) + "</ul>"
    html = env.from_string(TEMPLATE).render(
        name="toy-model", description="The analytic model of how optimization power is split between the base "
        "optimizer and the learned algorithm as task diversity N grows.",
        condition="Better generalization through search (Hubinger et al. 2019, 2.1): the base optimizer pays f(x) "
        "once for a learned algorithm doing x bits per instance, and O - x per instance itself; the total "
        "f(x) + N(O - x) is minimised at f'(x*) = N, so x* grows with N.",
        partial=False, n_cells=0, n_expected=0, verdicts=verdicts, level=0.05, n_perm=10_000, extra=extra,
        figures=inline_figures(figs), tables=[], dial_label="N", config_json=json.dumps(meta, indent=2))
    return write_html_atomic(out_dir / "report.html", html)
