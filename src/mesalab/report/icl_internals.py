"""The "Inside the transformer" section of an icl-gd report: what each layer writes into the query and the context
tokens, probed for the predictions of the reference learning algorithms (:mod:`mesalab.analysis.icl_internals`)."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from mesalab.analysis.icl_internals import layer_number  # noqa: E402
from mesalab.analysis.internals import Estimate  # noqa: E402
from mesalab.report.sweep import _save  # noqa: E402


def probe_figure(m, path: Path) -> Path:
    """Gain in R² over the input alone of every label against the layer, one panel per token kind: trained solid
    (band: 95% interval), random-initialised dashed; the input itself is 0."""
    fig, axes = plt.subplots(1, 2, figsize=(9.4, 3.5), sharey=True)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, tokens in zip(axes, ("query", "context")):
        for c, label in zip(colors * 3, m.labels()):
            for source, ls in (("trained", "-"), ("random-init", "--")):
                pts = [(0, Estimate(0.0, 0.0, 0.0, 1))]
                pts += [(layer_number(layer), r.gain) for layer in m.layers
                        if (r := m.row(layer, source, tokens, label)) is not None]
                x = [p[0] for p in pts]
                v = np.array([[e.mean, e.low, e.high] for _, e in pts], dtype=float)
                ax.plot(x, v[:, 0], ls=ls, marker="o" if source == "trained" else None, ms=3, color=c,
                        label=label if source == "trained" else None)
                if source == "trained" and np.isfinite(v[:, 1:]).all():
                    ax.fill_between(x, v[:, 1], v[:, 2], color=c, alpha=0.2, linewidth=0)
        ax.set_xticks([0] + [layer_number(x) for x in m.layers])
        ax.set_xticklabels(["input"] + [str(layer_number(x)) for x in m.layers])
        ax.set_xlabel("after layer")
        ax.set_ylim(-0.1, 1.05)
        ax.set_title(f"{tokens} token{'s' if tokens == 'context' else ''}", fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("held-out R² gained over the input alone")
    axes[0].legend(fontsize=7)
    return _save(fig, path)


def icl_internals_section(m, fig_dir: Path) -> tuple[list, list, list]:
    """``(sentences, figures, tables)`` of the section (empty when the run has not been probed)."""
    if m is None:
        return [], [], []
    n = len(m.seeds)
    figs = [("Inside the transformer: what each layer writes into its tokens",
             "What a linear (ridge) probe reading one token's residual stream beside its input gains in held-out R² "
             "over the same probe on the input alone, for the prediction of each reference algorithm at that token's "
             "x (query: the algorithm's prediction; context tokens: its in-context fit at x_i) and the true function "
             "(target; least squares equals it when N >= d without noise). Solid: the trained transformer "
             f"(band: 95% interval over {n} seed(s), over sequences for one seed); dashed: a random-initialised "
             "transformer of the same architecture. The R² themselves are in the table below.",
             probe_figure(m, fig_dir / "icl_probes.png"))]
    rows = []
    for layer in m.layers:
        for tokens in ("query", "context"):
            for label in m.labels():
                p = m.row(layer, "trained", tokens, label)
                if p is None:
                    continue
                u, i = m.row(layer, "random-init", tokens, label), m.row("input", "input", tokens, label)
                rows.append([str(layer_number(layer)), tokens, label, p.r2.text(), p.gain.text(),
                             p.margin.text() if math.isfinite(p.margin.mean) else "—", f"{p.control:.2f}",
                             "n/a" if u is None else f"{u.r2.mean:.2f}", "n/a" if i is None else f"{i.r2.mean:.2f}"])
    tables = [{"title": "Inside the transformer: token probes (R², mean [95% interval])",
               "header": ["tokens", "label", "trained R²", "gain over the input", "margin over the next algorithm (relative gain)",
                          "control task", "untrained R²", "input alone R²"], "rows": rows}]
    return list(m.sentences), figs, tables
