"""Report of an ``icl-gd`` run: training curves, algorithm-match tables, out-of-distribution curves."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from jinja2 import Environment, select_autoescape  # noqa: E402

from mesalab.report.icl_internals import icl_internals_section  # noqa: E402
from mesalab.report.html import FIGURES_LOADED_SCRIPT, STYLE, inline_figures, write_html_atomic  # noqa: E402

TEMPLATE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>mesalab run: icl-gd</title>
""" + STYLE + """</head><body>
<h1>icl-gd: a transformer trained on in-context linear regression</h1>
<p class="note">d = {{ c.dim }}, {{ c.n_context }} context points, noise {{ c.noise_std }}; {{ c.layers }} layer(s),
{{ 'softmax' if c.softmax else 'linear' }} attention, {{ c.heads }} head(s){{ ', MLPs' if c.mlp else '' }}{{ ', LayerNorm' if c.layernorm else '' }};
{{ c.steps }} Adam steps of batch {{ c.batch }}. Seeds: {{ seeds }}.</p>
<h2>Which algorithm does it implement?</h2>
<ul>{% for s in sentences %}<li>{{ s }}</li>{% endfor %}</ul>
<table><tr><th>seed</th><th>read out after layer</th><th>reference</th><th>reference loss</th><th>model loss</th><th>prediction MSE</th><th>sensitivity cosine</th></tr>
{% for m in matches %}<tr><td>{{ m.seed }}</td><td>{{ m.layer }}</td><td>{{ m.reference }}</td><td>{{ "%.4f"|format(m.reference_loss) }}</td>
<td>{{ "%.4f"|format(m.model_loss) }}</td><td>{{ "%.5f"|format(m.prediction_mse) }}</td><td>{{ "%.4f"|format(m.sensitivity_cosine) }}</td></tr>{% endfor %}</table>
<p class="note">Losses are 0.5 x mean squared query error on 10,000 held-out sequences. The sensitivity cosine compares
d y_hat / d x_q of the model with that of the reference (for a linear reference, its weight vector), averaged over
sequences. GD references start from w = 0 with the learning rate tuned on other held-out sequences.</p>
{% for f in figures %}<figure><img src="data:image/png;base64,{{ f.data }}" alt="{{ f.title }}"><figcaption><b>{{ f.title }}.</b> {{ f.caption }}</figcaption></figure>{% endfor %}
<h2>Inside the transformer</h2>
{% if inside_sentences %}<ul>{% for s in inside_sentences %}<li>{{ s }}</li>{% endfor %}</ul>
{% for f in inside_figures %}<figure><img src="data:image/png;base64,{{ f.data }}" alt="{{ f.title }}"><figcaption><b>{{ f.title }}.</b> {{ f.caption }}</figcaption></figure>{% endfor %}
{% for t in inside_tables %}<h3>{{ t.title }}</h3><table><tr><th>after layer</th>{% for h in t.header %}<th>{{ h }}</th>{% endfor %}</tr>
{% for r in t.rows %}<tr>{% for v in r %}<td>{{ v }}</td>{% endfor %}</tr>{% endfor %}</table>{% endfor %}
<p class="note">A probe is fitted on half of the probe sequences and scored on the other half. Within a seed, the gain
over the input and the margin over the next algorithm (in relative gain: the gain over what the input left unexplained)
are paired bootstrap differences over the held-out sequences; with several seeds each figure is the mean over seeds
and its interval a bootstrap over the seeds' values. The control task fits the same probe to labels shuffled across
sequences (the floor, about 0). Decodable is not the same as used: a layer can carry a quantity its read-out
ignores.</p>
{% else %}<p class="note">Not probed yet: <code>mesalab probe {{ run_dir }}</code> probes every layer's token stream for
the predictions of gradient descent and least squares (well under a minute on a default run).</p>{% endif %}
<h2>Configuration</h2><pre>{{ config_json }}</pre>
""" + FIGURES_LOADED_SCRIPT + """
</body></html>"""


def build_icl_report(run_dir: Path, analysis) -> Path:
    """Render ``report.html`` of an icl-gd run from its analysed result (:class:`mesalab.analysis.icl.ICLAnalysis`)."""
    run_dir = Path(run_dir)
    a = analysis
    meta, curves, matches, ood = a.meta, a.curves, a.matches, a.ood
    c = meta["icl"]
    fig_dir = run_dir / "figures"
    fig_dir.mkdir(exist_ok=True)
    figs = []
    fig, ax = plt.subplots(figsize=(6, 3))
    for seed in sorted({r["seed"] for r in curves}):
        rows = [r for r in curves if r["seed"] == seed]
        ax.plot([r["step"] for r in rows], [r["loss"] for r in rows], label=f"seed {seed}", linewidth=1)
    ax.set_yscale("log"), ax.set_xlabel("training step"), ax.set_ylabel("training loss"), ax.legend(fontsize=7)
    fig.tight_layout(), fig.savefig(fig_dir / "icl_training.png", dpi=110), plt.close(fig)
    figs.append(("Training loss", "Query loss per Adam step (fresh sequences every step).", fig_dir / "icl_training.png"))
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    for ax, shift in zip(axes, ("x_scale", "w_scale")):
        rows = [r for r in ood if r["shift"] == shift]
        seeds = sorted({r["seed"] for r in rows})
        for key, style in (("model", "o-"), ("gd_one_step", "s--"), ("least_squares", "^:")):
            for s in seeds:
                pts = [r for r in rows if r["seed"] == s]
                ax.plot([r["scale"] for r in pts], [max(r[key], 1e-6) for r in pts], style, ms=3,
                        label=key.replace("_", " ") if s == seeds[0] else None)
        ax.set_yscale("log"), ax.set_xlabel(f"{shift} (x training value)"), ax.set_ylabel("query loss")
        ax.legend(fontsize=7)
    fig.tight_layout(), fig.savefig(fig_dir / "icl_ood.png", dpi=110), plt.close(fig)
    figs.append(("Out of distribution", "Query loss when the scale of the inputs or of the task weights moves away "
                 "from training: the model against tuned one-step GD and least squares.", fig_dir / "icl_ood.png"))
    sentences = a.sentences
    inside_sentences, inside_figs, inside_tables = icl_internals_section(getattr(a, "internals", None), fig_dir)
    env = Environment(autoescape=select_autoescape(default=True))
    html = env.from_string(TEMPLATE).render(
        c=c, seeds=meta["seeds"], sentences=sentences, matches=matches,
        figures=inline_figures(figs), inside_sentences=inside_sentences, inside_figures=inline_figures(inside_figs),
        inside_tables=inside_tables, run_dir=str(run_dir),
        config_json=json.dumps(meta, indent=2))
    return write_html_atomic(run_dir / "report.html", html)
