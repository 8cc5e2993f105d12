"""Report wording and figure legends, checked on hand-built inputs (artists and texts, no pixels)."""

import numpy as np
import pytest
from jinja2 import Environment, PackageLoader, select_autoescape
from matplotlib.colors import to_rgb

from mesalab.report import figures as F
from mesalab.tasks.grid import COLOUR_CHANNEL, N_GRID_CHANNELS, TYPE_CHANNEL, WALL_CHANNEL


@pytest.fixture
def figs(monkeypatch):
    """Keep the figures the functions under test close, so their artists can be inspected."""
    kept = []
    monkeypatch.setattr(F.plt, "close", lambda fig=None: kept.append(fig))
    yield kept
    monkeypatch.undo()
    for fig in kept:
        F.plt.close(fig)


def _texts(fig) -> list[str]:
    return [t.get_text() for t in fig.findobj(lambda a: hasattr(a, "get_text"))]


# -- B1: one name per quantity ------------------------------------------------------------------------------

def _render_report(**over) -> str:
    env = Environment(loader=PackageLoader("mesalab.report", "templates"), autoescape=select_autoescape())
    ctx = dict(
        task={"name": "red-door", "description": "d", "base": "reach the door", "intended": "reach the door",
              "proxies": ["reach a red object"]},
        created="now", n_seeds=1, episodes=64, summary="1 of 1 seed(s) capability failure.",
        seed_rows=[{"seed": 0, "train": "0.22 [0.15, 0.31]", "base": "0.10 [0.05, 0.19]",
                    "proxies": ["0.12 [0.06, 0.23]"], "competence": "0.30 [0.2, 0.4]",
                    "verdict": "capability failure", "css": "capability", "confidence": "0.99"}],
        figures=[], objectives=None, compute_scaling=None,
        evaluations=[{"seed": 0, "split": "train", "objective": "door", "is_base": True, "competent_rate": 0.22,
                      "ci_low": 0.15, "ci_high": 0.31, "reach_rate": 0.51, "mean_return": 0.3,
                      "mean_optimal": 0.8, "normalised_return": 0.4}],
        config_json="{}", versions_json="{}",
    )
    ctx.update(over)
    return env.get_template("report.html.j2").render(**ctx)


def test_verdict_table_names_the_competent_train_rate():
    html = _render_report()
    assert "<th>train success</th>" not in html
    assert f"<th>{F.TRAIN_COMPETENT_NAME}</th>" in html
    # the note tells the reader the learning curves' quantity is a different one, by its own name
    assert F.TRAINING_REACH_NAME in html
    assert "reach rate: reached at any step within the step limit" in html
    assert "competent rate: reached within 2× shortest path" in html


def test_learning_curve_uses_its_own_name(figs, tmp_path):
    curves = [{"seed": s, "metric": m, "env_steps": 1000 * (i + 1), "value": v, "update_index": i}
              for s in (0, 1) for i, v in enumerate([0.2, 0.4, 0.51]) for m in ("success_rate", "episode_return")]
    F.learning_curves(curves, tmp_path / "lc.png")
    (fig,) = figs
    texts = _texts(fig)
    assert not any("train success" in t for t in texts)
    reach_ax = fig.axes[0]
    assert F.TRAINING_REACH_NAME in reach_ax.get_title()
    assert "competent" not in " ".join(texts)
    assert F.TRAINING_REACH_NAME not in F.TRAIN_COMPETENT_NAME and "success" not in F.TRAIN_COMPETENT_NAME


# -- B2: trajectory legend ----------------------------------------------------------------------------------

def _grid(objects):
    g = np.zeros((5, 5, N_GRID_CHANNELS), bool)
    g[0, :, WALL_CHANNEL] = g[-1, :, WALL_CHANNEL] = g[:, 0, WALL_CHANNEL] = g[:, -1, WALL_CHANNEL] = True
    for (r, c), t, k in objects:
        g[r, c, TYPE_CHANNEL[t]] = True
        g[r, c, COLOUR_CHANNEL[k]] = True
    return g


def test_trajectories_have_a_glyph_legend(figs, tmp_path):
    grids = [_grid([((1, 3), "door", "blue"), ((3, 3), "key", "red")]), _grid([((2, 2), "goal", "green")])]
    levels = [{"split": "test", "level": i, "grid": g.ravel().tolist(), "height": 5, "width": 5,
               "channels": N_GRID_CHANNELS, "start_row": 1, "start_col": 1} for i, g in enumerate(grids)]
    trajs = [{"split": "test", "level": 0, "seed": 0, "rows": [1, 1, 1], "cols": [1, 2, 3], "outcome": "base:door"}]
    F.trajectories(levels, trajs, "test", 0, tmp_path / "t.png")
    (fig,) = figs
    assert fig.legends, "trajectory figure has no legend"
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    for want in ("wall", "door (shape)", "key (shape)", "goal (shape)", "red (fill)", "blue (fill)",
                 "green (fill)", "start", "agent's path", "episode end"):
        assert want in labels, (want, labels)
    assert not any(t.startswith(("ball", "box", "yellow")) for t in labels)  # only what is drawn
    # every object fill drawn on the levels is a legend colour
    legend_fills = {to_rgb(h.get_facecolor()) for h in fig.legends[0].legend_handles if hasattr(h, "get_facecolor")
                    and not hasattr(h, "get_marker")}
    drawn = {to_rgb(p.get_facecolor()) for ax in fig.axes for p in ax.patches}
    drawn |= {to_rgb(ln.get_markerfacecolor()) for ax in fig.axes for ln in ax.lines
              if ln.get_marker() not in ("None", "", "x", None) and ln.get_markerfacecolor() != "none"}
    assert drawn and drawn <= legend_fills, (drawn, legend_fills)


# -- B3: absent IRL features --------------------------------------------------------------------------------

def _weights():
    rows = []
    feats = ["door", "key", "red"]
    for seed in (0, 1):
        for split in ("train", "test"):
            for pos, f in enumerate(feats):
                if split == "train" and f == "key":  # never on a training level
                    w = lo = hi = 0.0
                else:
                    w = 0.3 + 0.1 * pos + 0.05 * seed
                    lo, hi = w - 0.1, w + 0.1
                rows.append({"seed": seed, "split": split, "feature": f, "position": pos, "weight": w * 2,
                             "normalised": w, "ci_low": lo, "ci_high": hi})
    return rows


def _points_x(ax) -> list[float]:
    return [x for ln in ax.lines if ln.get_marker() == "o" for x in np.atleast_1d(ln.get_xdata())]


@pytest.mark.parametrize("explicit", [False, True])
def test_absent_feature_is_marked_not_a_point_at_zero(figs, tmp_path, explicit):
    if explicit:
        F.irl_weights(_weights(), tmp_path / "w.png", absent={"train": {"key"}, "test": set()})
    else:  # inferred from the rows (the report's call)
        F.irl_weights(_weights(), tmp_path / "w.png")
    (fig,) = figs
    train_ax, test_ax = fig.axes[:2]
    key_x = 1
    assert all(abs(x - key_x) > 0.35 for x in _points_x(train_ax)), "a point estimate drawn for an absent feature"
    assert any(abs(x - key_x) < 0.35 for x in _points_x(test_ax))  # present at test: drawn
    ticks = [t.get_text() for t in train_ax.get_xticklabels()]
    assert ticks[key_x] == "key (absent)" and ticks[0] == "door"
    assert "absent" in [t.get_text() for t in train_ax.texts]
    assert any(p.get_hatch() for p in train_ax.patches)
    assert not any(p.get_hatch() for p in test_ax.patches)
    assert not any("absent" in t.get_text() for t in test_ax.get_xticklabels())
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert F.ABSENT_LABEL in legend and "seed (95% CI)" in legend
    # no bar either: the bars stand at the present features only
    bar_x = [p.get_x() + p.get_width() / 2 for p in train_ax.patches if not p.get_hatch()]
    assert all(abs(x - key_x) > 0.35 for x in bar_x)


def test_absent_features_inferred_only_from_exact_zeros():
    assert F.absent_features(_weights()) == {"train": {"key"}, "test": set()}
    degenerate = [dict(r, weight=0.0, normalised=0.0, ci_low=0.0, ci_high=0.0) for r in _weights()]
    assert F.absent_features(degenerate) == {"train": set(), "test": set()}


# -- B4: bits histograms ------------------------------------------------------------------------------------

def _level_bits():
    rng = np.random.default_rng(0)
    rows = []
    for split in ("train", "test"):
        for obj, scale in (("base:door", 1.0), ("proxy:red", 1.6)):
            for level in range(60):
                bits = 0.0 if level % 3 == 0 else float(np.clip(rng.normal(2.5 * scale, 0.8), 0.1, 5.0))
                optimal = 20.0 if level == 7 else 7.0  # one far outlier in the per-level ceiling
                rows.append({"seed": 0, "split": split, "objective": obj, "level": level, "bits": bits,
                             "optimal_bits": optimal})
    return rows


def test_bits_histogram_bins_bars_and_legend(figs, tmp_path):
    rows = _level_bits()
    F.bits_histogram(rows, tmp_path / "b.png")
    (fig,) = figs
    for ax, split in zip(fig.axes, ("train", "test")):
        sub = [r for r in rows if r["split"] == split]
        top_bits = max(r["bits"] for r in sub)
        ceilings = {o: np.mean([r["optimal_bits"] for r in sub if r["objective"] == o]) for o in
                    ("base:door", "proxy:red")}
        bars = list(ax.patches)
        assert bars
        # no empty range: every drawn bar holds levels, and none lies beyond the largest value drawn
        assert all(b.get_height() > 0 for b in bars)
        assert max(b.get_x() + b.get_width() for b in bars) <= top_bits + 1e-6
        assert ax.get_xlim()[1] <= 1.1 * max(top_bits, *ceilings.values())
        # bars do not overlap, and are opaque (no blended colour)
        spans = sorted((b.get_x(), b.get_x() + b.get_width()) for b in bars)
        assert all(a1 <= b0 + 1e-9 for (_, a1), (b0, _) in zip(spans, spans[1:]))
        assert all(b.get_alpha() in (None, 1.0) for b in bars)
        # every colour drawn (bars, ceiling lines) is in the legend, with the ceilings labelled
        legend = ax.get_legend()
        legend_colours = set()
        for h in legend.legend_handles:
            legend_colours.add(to_rgb(h.get_color() if hasattr(h, "get_marker") else h.get_facecolor()))
        drawn = {to_rgb(b.get_facecolor()) for b in bars} | {to_rgb(ln.get_color()) for ln in ax.lines}
        assert drawn <= legend_colours, (drawn, legend_colours)
        labels = [t.get_text() for t in legend.get_texts()]
        assert sum(t.startswith("optimal agent") for t in labels) == 2
        assert sum(t.startswith("agent,") for t in labels) == 2
        # the ceiling lines stand at the means (7.2), not at the outlier's 20 bits
        assert sorted(ln.get_xdata()[0] for ln in ax.lines) == pytest.approx(sorted(ceilings.values()))


def test_bits_histogram_all_zero_bits(figs, tmp_path):
    rows = [{"seed": 0, "split": "test", "objective": "base:goal", "level": i, "bits": 0.0, "optimal_bits": 5.0}
            for i in range(10)]
    F.bits_histogram(rows, tmp_path / "z.png")
    (fig,) = figs
    (bar,) = fig.axes[0].patches
    assert bar.get_height() == 10


def test_sweep_trajectory_drawings_have_a_glyph_legend(monkeypatch, tmp_path):
    from mesalab.report import sweep as S

    kept = []
    monkeypatch.setattr(S.plt, "close", lambda fig=None: kept.append(fig))
    g = _grid([((1, 3), "door", "red"), ((3, 3), "ball", "yellow")])
    levels = {("red-door", "train", 0): {"grid": g, "start": (1, 1)}}
    reps = [{"task": "red-door", "title": "alpha = 0, seed 0",
             "trajs": [{"split": "train", "level": 0, "rows": [1, 1, 1], "cols": [1, 2, 3], "outcome": "base:door"}]}]
    S.trajectory_drawings(reps, levels, tmp_path / "t.png")
    (fig,) = kept
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    for want in ("door (shape)", "ball (shape)", "red (fill)", "yellow (fill)", "start", "agent's path"):
        assert want in labels, (want, labels)
    S.plt.close(fig)


def test_report_lists_each_seed_verdict_text():
    html = _render_report(seed_rows=[{"seed": 0, "train": "0.03 [0.02, 0.05]", "base": "0.9 [0.8, 0.95]",
                                      "proxies": ["0.0 [0, 0.1]"], "competence": "0.9 [0.8, 0.95]",
                                      "verdict": "not trained to competence", "css": "not", "confidence": "1.00",
                                      "text": "not trained to competence: the base objective was pursued "
                                              "competently in 3% of 500 training episodes, below 50%"}])
    assert "Seed 0: not trained to competence: the base objective was pursued competently in 3%" in html
    assert "pseudo-aligned toward an unlisted objective" in html  # the rules are stated under the table
