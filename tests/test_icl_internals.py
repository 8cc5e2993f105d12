"""Token probes of in-context regression transformers (``mesalab probe`` on icl-gd folders) against transformers
built by hand whose layers compute known quantities: k exact GD steps (von Oswald et al.'s construction), a learner
that is none of the references, a half-and-half mixture, and an untrained transformer."""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mesalab.analysis.icl_internals import ICLInternals, TokenProbeRow, held_label, layer_number, reading_sentences
from mesalab.analysis.internals import Estimate
from mesalab.diagnostics import icl_internals as ii
from mesalab.diagnostics.icl_analysis import tuned_lr
from mesalab.models.transformer import ICLTransformer
from mesalab.tasks.icl_regression import make_regression_distribution, sample_regression

DIM, N = 6, 8


def _replace(module, **kw):
    for name, value in kw.items():
        module = eqx.tree_at(lambda m, name=name: getattr(m, name), module, value)
    return module


def gd_transformer(lrs, heads=None):
    """``len(lrs)`` linear-attention layers, layer l one GD step of size ``lrs[l]`` on the residual labels: every
    token's label slot gets ``- lr/N sum_i (x_j.x_i) r_i`` (context slots hold the residuals ``y_i - x_i.w_l``, the
    query slot ``-x_q.w_l``). ``heads``: per layer, an optional second head's (wq, wk, wv, wo) to add."""
    d = DIM + 1
    m = ICLTransformer(DIM, layers=len(lrs), heads=1, key=jax.random.key(0))
    px = jnp.zeros((1, d, d)).at[0, :DIM, :DIM].set(jnp.eye(DIM))
    lab = jnp.zeros((1, d, d)).at[0, DIM, DIM].set(1.0)
    layers = []
    for a, lr in zip(m.attention, lrs):
        layers.append(_replace(a, wq=px, wk=px, wv=lab, wo=-lr * lab))
    return _replace(m, attention=tuple(layers))


def rotated_learner(scale=1.0, mix_lr=None, lr=0.5):
    """One layer writing ``x_q^T R X^T y / N`` for a fixed rotation R by 90 degrees (a learner that is none of the
    references, uncorrelated with each); with ``mix_lr``, a second head adds one true GD step of that size (a half-and-half mixture)."""
    d = DIM + 1
    r = np.kron(np.eye(DIM // 2), np.array([[0.0, -1.0], [1.0, 0.0]]))  # 90 degrees in each plane: b.R b = 0
    rot = jnp.zeros((d, d)).at[:DIM, :DIM].set(jnp.asarray(r, jnp.float32))
    px = jnp.zeros((d, d)).at[:DIM, :DIM].set(jnp.eye(DIM))
    lab = jnp.zeros((d, d)).at[DIM, DIM].set(1.0)
    heads = 1 if mix_lr is None else 2
    m = ICLTransformer(DIM, layers=1, heads=heads, key=jax.random.key(0))
    wq, wk, wv, wo = [rot], [px], [lab], [scale * lr * lab]
    if mix_lr is not None:
        wq, wk, wv, wo = wq + [px], wk + [px], wv + [lab], wo + [mix_lr * lab]
    a = _replace(m.attention[0], wq=jnp.stack(wq), wk=jnp.stack(wk), wv=jnp.stack(wv), wo=jnp.stack(wo))
    return _replace(m, attention=(a,))


@pytest.fixture(scope="module")
def data():
    dist = make_regression_distribution()
    tune = sample_regression(jax.random.key(1), dist, 4000, N, DIM)
    batch = sample_regression(jax.random.key(2), dist, 1200, N, DIM)
    lrs = {k: tuned_lr(k, tune) for k in (1, 2, 3)}
    return batch, lrs


def as_internals(probes) -> ICLInternals:
    """One seed's probes in the analysis' form (each estimate its own bootstrap interval)."""
    rows = [TokenProbeRow(p.layer, p.source, p.tokens, p.label, Estimate(p.r2, *p.ci, 1), p.control,
                          Estimate(p.selectivity, *p.selectivity_ci, 1), Estimate(p.gain, *p.gain_ci, 1),
                          Estimate(p.margin, *p.margin_ci, 1), p.n_test) for p in probes]
    layers = sorted({p.layer for p in probes if p.layer != "input"}, key=layer_number)
    m = ICLInternals([0], layers, rows)
    m.readings = {(layer, t): held_label(m, layer, t) for layer in layers for t in ii.TOKENS}
    m.sentences = reading_sentences(m)
    return m


def test_labels_are_the_references_at_every_token(data):
    batch, lrs = data
    labels = ii.token_labels(batch, lrs)
    assert set(labels) == {"gd-1-step", "gd-2-step", "gd-3-step", "least-squares", "target"}
    x, y, xq = (np.asarray(a, np.float64) for a in (batch.x, batch.y, batch.x_query))
    w1 = lrs[1] * np.einsum("bn,bnd->bd", y, x) / N  # one GD step from 0, by hand
    np.testing.assert_allclose(labels["gd-1-step"][:, -1], np.einsum("bd,bd->b", xq, w1), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(labels["gd-1-step"][:, :-1], np.einsum("bnd,bd->bn", x, w1), rtol=1e-4, atol=1e-4)
    # N > d, no noise: least squares recovers w exactly, so it equals the target and the context labels y
    np.testing.assert_allclose(labels["least-squares"], labels["target"], atol=1e-3)
    np.testing.assert_allclose(labels["target"][:, :-1], y, atol=1e-4)


def test_planted_gd_steps_are_read_layer_by_layer(data):
    batch, lrs = data
    model = gd_transformer([lrs[2], lrs[2]])  # two exact steps of GD-2's learning rate: w_1 (scale-free), then w_2
    untrained = ICLTransformer(DIM, layers=2, key=jax.random.key(7))
    probes, streams, _ = ii.probe_transformer(model, untrained, batch, lrs, seed=0, n_boot=300)
    by = {(p.layer, p.source, p.tokens, p.label): p for p in probes}
    q0, q1 = by[("layer_0/residual", "trained", "query", "gd-1-step")], by[("layer_1/residual", "trained", "query", "gd-2-step")]
    assert q0.r2 > 0.999 and q1.r2 > 0.999 and q0.margin_ci[0] > 0 and q1.margin_ci[0] > 0
    assert abs(q0.control) < 0.05 and q0.selectivity > 0.95
    # the query's input (x_q, 0) carries none of it, nor does an untrained transformer
    assert abs(by[("input", "input", "query", "gd-1-step")].r2) < 0.02
    assert abs(by[("layer_0/residual", "random-init", "query", "gd-1-step")].r2) < 0.02
    c0 = by[("layer_0/residual", "trained", "context", "gd-1-step")]
    assert c0.r2 > 0.999 and c0.gain_ci[0] > 0.1 and c0.margin_ci[0] > 0
    assert by[("layer_1/residual", "trained", "context", "gd-2-step")].margin_ci[0] > 0
    assert streams["trained/layer_1/residual"].shape == (1200, N + 1, DIM + 1)
    m = as_internals(probes)
    assert m.readings == {("layer_0/residual", "query"): "gd-1-step", ("layer_0/residual", "context"): "gd-1-step",
                          ("layer_1/residual", "query"): "gd-2-step", ("layer_1/residual", "context"): "gd-2-step"}
    assert m.sentences[0].startswith("After layer 1, the query token holds the prediction of 1 step of gradient descent")
    assert "After layer 2, the context tokens hold what 2 steps of gradient descent predict" in m.sentences[3]
    assert "after 2 layers the context holds the fit of 2 GD steps, as in von Oswald" in m.sentences[3]


def test_a_learner_none_of_the_references_is_not_named(data):
    batch, lrs = data
    probes, _, _ = ii.probe_transformer(rotated_learner(), None, batch, lrs, seed=1, n_boot=300)
    m = as_internals(probes)
    assert m.readings[("layer_0/residual", "query")] is None
    assert "the query token carries no algorithm's prediction" in m.sentences[0]


def test_a_mixture_is_named_only_as_partly_held(data):
    batch, lrs = data
    # 1 GD step plus half as much of the rotated learner: GD-1's R² is about 1 / 1.25
    probes, _, _ = ii.probe_transformer(rotated_learner(scale=0.5, mix_lr=lrs[1]), None, batch, lrs, seed=2, n_boot=300)
    by = {(p.layer, p.source, p.tokens, p.label): p for p in probes}
    r2 = by[("layer_0/residual", "trained", "query", "gd-1-step")].r2
    assert 0.6 < r2 < 0.9, r2
    m = as_internals(probes)
    assert m.readings[("layer_0/residual", "query")] == "gd-1-step"
    assert "the query token comes closest to, but only partly holds, the prediction of 1 step" in m.sentences[0]


def test_an_even_mixture_is_not_attributed_to_one_algorithm(data):
    batch, lrs = data
    # GD-1 and the rotated learner in equal parts: every GD-k and least squares explain some of it, none clearly most
    probes, _, _ = ii.probe_transformer(rotated_learner(mix_lr=lrs[1]), None, batch, lrs, seed=2, n_boot=300)
    m = as_internals(probes)
    assert m.readings[("layer_0/residual", "query")] is None
    assert "cannot attribute to one algorithm: gd-1-step" in m.sentences[0], m.sentences[0]


def test_an_untrained_transformer_holds_nothing(data):
    batch, lrs = data
    model = ICLTransformer(DIM, layers=1, key=jax.random.key(3))
    probes, _, _ = ii.probe_transformer(model, ICLTransformer(DIM, layers=1, key=jax.random.key(4)), batch, lrs,
                                        seed=3, n_boot=300)
    m = as_internals(probes)
    assert set(m.readings.values()) == {None}
    assert all("no algorithm's prediction" in s for s in m.sentences), m.sentences
    assert all(abs(p.control) < 0.05 for p in probes)


def test_probes_are_reproducible(data):
    batch, lrs = data
    a, _, _ = ii.probe_transformer(gd_transformer([lrs[1]]), None, batch, lrs, seed=5, n_boot=100)
    b, _, _ = ii.probe_transformer(gd_transformer([lrs[1]]), None, batch, lrs, seed=5, n_boot=100)
    np.testing.assert_array_equal([(p.r2, *p.ci, *p.margin_ci) for p in a], [(p.r2, *p.ci, *p.margin_ci) for p in b])
    assert all(math.isnan(p.margin) for p in a if p.label == "target" or p.source == "input")


def test_mesalab_probe_on_an_icl_folder(tmp_path):
    """The CLI end to end: the probe writes its database and dataset, the report gains the section, a second call
    says it is done, and bad options are one-line errors with exit 2."""
    import subprocess
    import sys

    d = tmp_path / "icl"
    run = lambda *a: subprocess.run([sys.executable, "-m", "mesalab", *a], capture_output=True, text=True,  # noqa: E731
                                    timeout=600)
    out = run("run", "icl-gd", "--seeds", "1", "--steps", "50", "--out", str(d))
    assert out.returncode == 0, out.stderr[-2000:]
    assert "Not probed yet" in (d / "report.html").read_text()
    for args, words in ((["--sizes", "9"], "--sizes is not used on an icl-gd folder"),
                        (["--layer", "layer_3/residual"], "this transformer's residual streams are ['layer_0/residual']"),
                        (["--levels", "5"], "--levels (probe sequences) must be at least 100"),
                        (["--seed", "4"], "not in this run")):
        bad = run("probe", str(d), *args)
        assert bad.returncode == 2 and words in bad.stderr and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
    assert not (d / "probes.json").exists()
    out = run("probe", str(d), "--levels", "300")
    assert out.returncode == 0, out.stderr[-2000:]
    assert "After layer 1, the query token" in out.stdout
    html = (d / "report.html").read_text()
    assert "Inside the transformer" in html and html.count("data:image/png;base64") == 3 and "Not probed yet" not in html
    with np.load(d / "probes" / "seed-0.npz") as z:
        assert z["tokens/trained/layer_0/residual"].shape == (300, 11, 11) and z["label/gd-1-step"].shape == (300, 11)
    again = run("probe", str(d), "--levels", "300")
    assert again.returncode == 2 and "already holds the probes" in again.stderr
    other = run("probe", str(d))
    assert other.returncode == 2 and "sequences 300 -> 2000" in other.stderr


def test_what_an_untrained_transformer_also_gains_is_not_named(data):
    """The same hand-built GD transformer as the 'trained' and as the 'untrained' model: its gain is explained
    away, so no algorithm is named and the sentence says why."""
    batch, lrs = data
    model = gd_transformer([lrs[1]])
    probes, _, _ = ii.probe_transformer(model, model, batch, lrs, seed=4, n_boot=200)
    m = as_internals(probes)
    assert m.readings[("layer_0/residual", "query")] is None
    assert "but not clearly more than an untrained transformer" in m.sentences[0], m.sentences[0]


def test_a_subset_of_layers_reads_its_own_previous_layer(data):
    """Probing layers 2 and 3 only, of a model whose third layer writes nothing (step size 0): layer 3's sentence
    says it kept layer 2's content; layer 2's compares with nothing (layer 1 was not probed)."""
    batch, lrs = data
    model = gd_transformer([lrs[2], lrs[2], 0.0])
    probes, _, _ = ii.probe_transformer(model, None, batch, lrs, seed=6, n_boot=200,
                                        layers=["layer_1/residual", "layer_2/residual"])
    assert {p.layer for p in probes} == {"input", "layer_1/residual", "layer_2/residual"}
    m = as_internals(probes)
    assert m.readings[("layer_1/residual", "query")] == m.readings[("layer_2/residual", "query")] == "gd-2-step"
    after2 = next(s for s in m.sentences if s.startswith("After layer 2, the query"))
    after3 = next(s for s in m.sentences if s.startswith("After layer 3, the query"))
    assert "as after layer" not in after2 and "(as after layer 2: this layer did not rewrite it" in after3
