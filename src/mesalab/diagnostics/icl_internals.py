"""What an in-context regression transformer's token stream holds, layer by layer: linear probes of every token's
residual stream for the quantities a learning algorithm would compute there (Akyürek et al. 2022 probe a
transformer's hidden state for the intermediates of the learning algorithm it runs; von Oswald et al. 2023 show a
linear-attention layer doing one GD step writes into *every* token, the context included).

For each sequence (context ``(x_i, y_i)``, query ``x_q``) and each token ``j`` (the N context tokens and the query),
the labels are exact functions of the context:

- ``gd-k-step``: ``x_j . w_k``, what k steps of gradient descent from ``w = 0`` on the context loss predict at the
  token's input (for the query: GD-k's prediction; for a context token: its in-context fit at ``x_i``), with the
  learning rates the run's algorithm match uses (tuned on held-out sequences);
- ``least-squares``: ``x_j . w_ls``, the same for the context's least-squares solution;
- ``target``: ``x_j . w``, the sequence's true (noise-free) function at the token.

A probe reads one token's residual stream after layer l *beside the token's input* (``[residual, input]``, a
closed-form ridge with the penalty chosen by two-fold cross-validation over sequences; query and context tokens
are probed apart), fitted on half the sequences and scored (R²) on the other half. Baselines: the same probe on the
input alone (what the token held before any layer), on a random-initialised transformer of the same architecture,
and on labels shuffled across sequences (a control task in the manner of Hewitt & Liang 2019; for these continuous
labels it measures the floor, about 0, since a shuffled label is unpredictable from any token). A label's ``gain``
is its R² minus the input-alone probe's; its ``relative gain`` is that gain over what the input left unexplained,
``(R² - R²_input) / (1 - R²_input)``, so a label the input nearly explains (a context token's y_i is least
squares' fit when N >= d without noise) is not favoured or penalised for its small room to gain; a label the
input explains to within 1% has none (NaN). Each algorithm label's ``margin`` is its relative gain minus the
best other algorithm's (``target`` is not an algorithm), all with a paired bootstrap over held-out sequences; the
reading (:mod:`mesalab.analysis.icl_internals`) names algorithm A only when A's margin is above 0 and its gain is
clearly above an untrained transformer's.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from mesalab.diagnostics.probes import N_BOOT, _boot_weights, _ci, control_permutation, ridge_cv, split_levels

TOKENS = ("query", "context")
MIN_ROOM = 0.01  # a label the input explains to within this (1 - R²) has no room to gain: no margin
TARGET = "target"
LEAST_SQUARES = "least-squares"
SOURCES = ("trained", "random-init", "input")


def gd_name(k: int) -> str:
    return f"gd-{k}-step"  # the reference names of the run's algorithm match


def algorithm_labels(names: Sequence[str]) -> list[str]:
    """The labels that are learning algorithms (every one but ``target``)."""
    return [n for n in names if n != TARGET]


class TokenProbe(NamedTuple):
    layer: str  # "layer_l/residual" (or "input")
    source: str  # trained / random-init / input
    tokens: str  # query / context
    label: str
    r2: float
    ci: tuple[float, float]
    control: float  # R² of the same probe on labels shuffled across sequences
    selectivity: float  # r2 - control
    selectivity_ci: tuple[float, float]
    gain: float  # r2 minus the input-alone probe's r2 of the same label (what the layers wrote)
    gain_ci: tuple[float, float]
    margin: float  # relative gain minus the best other algorithm's (nan: target, the input itself, no room to gain)
    margin_ci: tuple[float, float]
    n_fit: int
    n_test: int


# -- the labels ----------------------------------------------------------------------------------------------------

def token_labels(batch, lrs: dict) -> dict[str, np.ndarray]:
    """``{label: [B, N + 1]}``: every label at every token (context tokens first, the query last); ``lrs``: the GD
    learning rate of each number of steps ``{k: lr}``."""
    from mesalab.diagnostics.icl_reference import gd_weights, ridge_weights

    inputs = jnp.concatenate([batch.x, batch.x_query[:, None]], axis=1)  # [B, N+1, d]
    at = lambda w: np.asarray(jnp.einsum("btd,bd->bt", inputs, w), np.float64)  # noqa: E731
    out = {gd_name(k): at(gd_weights(batch.x, batch.y, jnp.float32(lr), int(k))) for k, lr in sorted(lrs.items())}
    out[LEAST_SQUARES] = at(ridge_weights(batch.x, batch.y))
    out[TARGET] = at(batch.w)
    return out


# -- the token stream ------------------------------------------------------------------------------------------------

def token_stream(model, batch) -> dict[str, np.ndarray]:
    """``{"input": [B, N+1, D], "layer_l/residual": [B, N+1, D], ...}``: every token before the first layer and after
    each layer (the model's named taps)."""
    x, y, xq = batch.x, batch.y, batch.x_query
    inputs = jnp.concatenate([jnp.concatenate([x, y[..., None]], -1),
                              jnp.concatenate([xq, jnp.zeros_like(xq[:, :1])], -1)[:, None]], axis=1)
    acts = jax.jit(jax.vmap(lambda a, b, c: model(a, b, c)[1]))(x, y, xq)
    out = {"input": np.asarray(inputs, np.float32)}
    out.update({k: np.asarray(v, np.float32) for k, v in sorted(acts.items()) if k.endswith("/residual")})
    return out


# -- the probes ----------------------------------------------------------------------------------------------------

def _per_sequence(x: np.ndarray, y: np.ndarray, fit: np.ndarray, test: np.ndarray):
    """Ridge of ``y[B, T]`` on ``x[B, T, F]`` fitted on the ``fit`` sequences (penalty by two-fold CV over them),
    scored on ``test``: per held-out sequence ``(squared error, squared deviation from the held-out mean)``."""
    b, t, f = x.shape
    rows = np.zeros(b, bool)
    rows[fit] = True
    groups = np.broadcast_to(np.arange(b)[:, None], (b, t)).reshape(-1)
    w, c, _ = ridge_cv(x.reshape(-1, f), y.reshape(-1, 1), np.repeat(rows, t).astype(np.float32), groups)
    pred = x[test] @ w[:, 0] + c[0]
    yt = y[test]
    return ((pred - yt) ** 2).sum(1), ((yt - yt.mean()) ** 2).sum(1)


def _r2(err: np.ndarray, dev: np.ndarray, weights=None):
    with np.errstate(invalid="ignore", divide="ignore"):
        if weights is None:
            return 1.0 - err.sum() / dev.sum()
        return 1.0 - (weights @ err) / (weights @ dev)


def _sums(x_all: np.ndarray, labels: dict, fit, test, perm) -> dict:
    """``{(tokens, label): (err, dev, control err, control dev)}``, per held-out sequence."""
    out = {}
    for tokens, sl in TOKEN_SLICES.items():
        x = x_all[:, sl].astype(np.float32)
        for name, y in labels.items():
            y = y[:, sl]
            out[(tokens, name)] = (*_per_sequence(x, y, fit, test), *_per_sequence(x, y[perm], fit, test))
    return out


TOKEN_SLICES = {"query": slice(-1, None), "context": slice(None, -1)}


def probe_tokens(features: np.ndarray | None, inputs: np.ndarray, labels: dict, layer: str, source: str,
                 seed: int = 0, n_boot: int = N_BOOT, baseline: dict | None = None) -> tuple[list[TokenProbe], dict]:
    """Every label probed from ``[features, inputs]`` (``features=None``: the input alone) at the query token and
    at the context tokens, fitted on half the sequences and scored on the others, with the control task and a
    paired bootstrap over held-out sequences (the same draws for every label and layer of a seed, so gains and
    margins are paired). ``baseline``: the per-sequence sums of the input-alone probe (the second value this
    returns when ``features`` is None), from which each label's gain over the input is measured; ``(probes, sums)``."""
    b = inputs.shape[0]
    fit, test = split_levels(b, seed)
    perm = np.arange(b)
    perm[fit], perm[test] = control_permutation(fit, seed + 1), control_permutation(test, seed + 2)
    boot = _boot_weights(len(test), n_boot, seed + 3)
    sums = _sums(inputs if features is None else np.concatenate([features, inputs], -1), labels, fit, test, perm)
    base = sums if baseline is None else baseline
    algorithms = algorithm_labels(labels)
    out = []
    for tokens, sl in TOKEN_SLICES.items():
        r2, boots, gains, gboots, rel, rboots = {}, {}, {}, {}, {}, {}
        for name in labels:
            err, dev, cerr, cdev = sums[(tokens, name)]
            berr, bdev = base[(tokens, name)][:2]
            r2[name] = (float(_r2(err, dev)), float(_r2(cerr, cdev)))
            boots[name] = (_r2(err, dev, boot), _r2(cerr, cdev, boot))
            base_r2, base_boot = float(_r2(berr, bdev)), _r2(berr, bdev, boot)
            gains[name] = r2[name][0] - base_r2
            gboots[name] = boots[name][0] - base_boot
            room, rooms = 1.0 - base_r2, 1.0 - base_boot
            with np.errstate(invalid="ignore", divide="ignore"):
                rel[name] = gains[name] / room if room > MIN_ROOM else float("nan")
                rboots[name] = np.where(rooms > MIN_ROOM, gboots[name] / rooms, np.nan)
        n_tok = len(range(*sl.indices(inputs.shape[1])))
        for name in labels:
            others = [o for o in algorithms if o != name and np.isfinite(rel[o])]
            if name in algorithms and others and baseline is not None and np.isfinite(rel[name]):
                margin = rel[name] - max(rel[o] for o in others)
                margin_ci = _ci(rboots[name] - np.max([rboots[o] for o in others], axis=0))
            else:
                margin, margin_ci = float("nan"), (float("nan"), float("nan"))
            value, control = r2[name]
            out.append(TokenProbe(layer, source, tokens, name, value, _ci(boots[name][0]), control, value - control,
                                  _ci(boots[name][0] - boots[name][1]), gains[name], _ci(gboots[name]),
                                  float(margin), margin_ci, len(fit) * n_tok, len(test) * n_tok))
    return out, sums


def probe_transformer(model, random_model, batch, lrs: dict, seed: int = 0, n_boot: int = N_BOOT,
                      layers: Sequence[str] | None = None) -> tuple[list[TokenProbe], dict, dict]:
    """``(probes, streams, labels)``: every label at every layer (``layers``: these residual streams only) of the
    trained and of the random-initialised transformer, and on the input alone (``layer = "input"``)."""
    labels = token_labels(batch, lrs)
    trained = token_stream(model, batch)
    inputs = trained.pop("input")
    if layers is not None:
        trained = {k: v for k, v in trained.items() if k in layers}
    out, base = probe_tokens(None, inputs, labels, "input", "input", seed, n_boot)
    streams = {"trained": trained}
    if random_model is not None:
        streams["random-init"] = {k: v for k, v in token_stream(random_model, batch).items() if k in trained}
    for source, stream in streams.items():
        for layer, feats in stream.items():
            out += probe_tokens(feats, inputs, labels, layer, source, seed, n_boot, baseline=base)[0]
    return out, {"input": inputs, **{f"{s}/{k}": v for s, st in streams.items() for k, v in st.items()}}, labels
