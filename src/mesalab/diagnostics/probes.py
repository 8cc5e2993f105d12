"""Linear probes of recorded activations, with control tasks, a random-initialised baseline and bootstrap CIs.

Probes are closed-form ridge regressions (pure JAX) on standardised activations, fitted on one half of the levels
and scored on the other (held-out) half:

- **global probes** read a whole activation (flattened) and predict, per recorded step, the first action of a
  shortest path toward each candidate target (``bfs_action:c``, 4 classes, ridge on one-hot targets, argmax;
  accuracy), the BFS distance to it (``distance:c``; R^2), or which candidate the episode ends on (``ends_on``;
  accuracy);
- **spatial probes** (Bush et al. 2025 style) are 1x1 probes of a spatial activation ``[h, w, F]``: one weight
  vector ``F`` shared by every cell scores each cell, and the probe is right when its highest-scoring cell holds a
  target of candidate c (``target:c``, top-1 localisation accuracy; chance is about one over the cells in view).

Every probe is repeated on a **control task** (Hewitt & Liang 2019): the same probe on labels shuffled within
level structure (each level's labels come from another level, seen from this level's states), so a probe that
only memorises or learns a prior scores the same on both; **selectivity** = accuracy - control accuracy. A target
at the same cells on every level (a fixed corner) has no control task (its shuffled labels are its labels):
control and selectivity are NaN, and only the random-initialised baseline remains. The
same probe on the activations of a **random-initialised** model of the same architecture, on the same states,
says how much of the decodability the training put there. CIs are percentile bootstraps over held-out levels
(paired: the same resampled levels for accuracy, control and selectivity).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from mesalab.diagnostics.activations import ActivationData, Frame, frame_of
from mesalab.tasks.oracle import UNREACHABLE

RIDGE = 1.0  # ridge penalty on standardised activations
N_BOOT = 1000


class ProbeScore(NamedTuple):
    layer: str
    label: str  # target:c, bfs_action:c, distance:c, ends_on
    kind: str  # "spatial" or "global"
    metric: str  # "accuracy" or "r2"
    value: float
    ci: tuple[float, float]
    control: float
    selectivity: float
    selectivity_ci: tuple[float, float]
    random_init: float  # the same probe on a random-initialised model (nan when not measured)
    random_selectivity: float
    chance: float  # the accuracy of always guessing the held-out majority (global) / one cell in view (spatial)
    n_fit: int  # samples the probe was fitted on
    n_test: int  # held-out samples


class ProbeWeights(NamedTuple):
    """A fitted spatial probe, in the activation's own units: ``score(cell) = a[cell] @ w + b``."""

    layer: str
    label: str
    w: np.ndarray  # float32[F]
    b: float


# -- ridge -----------------------------------------------------------------------------------------------------

def _standardise(x):
    mu, sd = jnp.mean(x, 0), jnp.std(x, 0)
    return mu, jnp.where(sd > 1e-6, sd, 1.0)


@jax.jit
def _masked_ridge(x: jax.Array, y: jax.Array, m: jax.Array, ridges: jax.Array):
    """Closed-form ridge of ``y[N, k]`` on ``x[N, d]`` over the rows where ``m[N]`` (0/1) is set, standardised by
    those rows (intercept unpenalised), for every penalty of ``ridges[R]`` from one eigendecomposition of the
    ``d x d`` Gram matrix: ``(w[R, d, k], b[R, k])`` in the units of ``x``. The shapes do not depend on the mask,
    so every label, control and fold of a layer runs the same compiled program."""
    tot = jnp.maximum(m.sum(), 1.0)
    mu = (m @ x) / tot
    sd = jnp.sqrt((m @ (x - mu[None]) ** 2) / tot)
    sd = jnp.where(sd > 1e-6, sd, 1.0)
    root = jnp.sqrt(m)[:, None]
    z = (x - mu[None]) / sd[None] * root
    ym = (m @ y) / tot
    yc = (y - ym[None]) * root
    s, v = jnp.linalg.eigh(z.T @ z)
    proj = v.T @ (z.T @ yc)
    coef = jax.vmap(lambda lam: v @ (proj / (jnp.maximum(s, 0.0) + lam)[:, None]))(ridges)  # [R, d, k]
    w = coef / sd[None, :, None]
    return w, ym[None] - jnp.einsum("d,rdk->rk", mu, w)


def ridge_path(x: jax.Array, y: jax.Array, ridges=(RIDGE,)):
    """Closed-form ridge of ``y[n, k]`` on standardised ``x[n, d]`` (intercept unpenalised) for every penalty of
    ``ridges`` from one eigendecomposition: a list of ``(w[d, k], b[k])`` in the units of ``x``."""
    x = jnp.asarray(x, jnp.float32)
    w, b = _masked_ridge(x, jnp.asarray(y, jnp.float32), jnp.ones(x.shape[0], jnp.float32),
                         jnp.asarray(ridges, jnp.float32))
    w, b = np.asarray(w), np.asarray(b)
    return [(w[i], b[i]) for i in range(len(ridges))]


def ridge_fit(x: jax.Array, y: jax.Array, ridge: float = RIDGE):
    """:func:`ridge_path` at one penalty: ``(w[d, k], b[k])``."""
    return ridge_path(x, y, (ridge,))[0]


PCA_DIM = 256  # a global probe reads at most this many principal components of its layer (fit levels' states)


def principal_components(x: np.ndarray, fit_rows: np.ndarray, dim: int = PCA_DIM) -> np.ndarray:
    """``x[..., d]`` projected on the top ``dim`` principal components of its standardised ``fit_rows`` samples
    (unchanged when ``d <= dim``)."""
    d = x.shape[-1]
    if d <= dim:
        return x
    xf = jnp.asarray(x.reshape(-1, d)[fit_rows], jnp.float32)
    mu, sd = _standardise(xf)
    z = (xf - mu[None]) / sd[None]
    if z.shape[0] >= d:
        _, v = jnp.linalg.eigh(z.T @ z)
        basis = v[:, ::-1][:, :dim]
    else:
        s, u = jnp.linalg.eigh(z @ z.T)
        s, u = s[::-1][:dim], u[:, ::-1][:, :dim]
        basis = (z.T @ u) / jnp.sqrt(jnp.maximum(s, 1e-12))[None, :]
    out = ((jnp.asarray(x.reshape(-1, d), jnp.float32) - mu[None]) / sd[None]) @ basis
    return np.asarray(out).reshape(*x.shape[:-1], -1)


RIDGES = (1e-1, 1.0, 10.0, 1e2, 1e3, 1e4)  # the penalties a global probe chooses among (two-fold CV over levels)


def ridge_cv(x: np.ndarray, y: np.ndarray, m: np.ndarray, groups: np.ndarray, ridges=RIDGES):
    """Ridge over the rows where ``m`` is set, with the penalty chosen by two-fold cross-validation over ``groups``
    (levels: even and odd level ids, so a fold never shares a level with the other), scored by held-fold squared
    error, and refitted on all those rows: ``(w, b, ridge)``."""
    w, b, i = _ridge_cv(jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32), jnp.asarray(m, jnp.float32),
                        jnp.asarray(groups % 2 == 0), jnp.asarray(ridges, jnp.float32))
    return np.asarray(w), np.asarray(b), ridges[int(i)]


@jax.jit
def _ridge_cv(x, y, m, even, ridges):
    err = jnp.zeros(ridges.shape[0], jnp.float32)
    for fold in (even, ~even):
        fit, held = m * fold.astype(m.dtype), m * (~fold).astype(m.dtype)
        w, b = _masked_ridge(x, y, fit, ridges)
        e = jnp.einsum("n,rnk->r", held, (jnp.einsum("nd,rdk->rnk", x, w) + b[:, None] - y[None]) ** 2)
        usable = (fit.sum() >= 2) & (held.sum() >= 1)
        err = err + jnp.where(usable, e, 0.0)
    best = jnp.argmin(err)
    w, b = _masked_ridge(x, y, m, ridges)
    return w[best], b[best], best


# -- bootstrap over levels --------------------------------------------------------------------------------------

def _boot_weights(n_levels: int, n_boot: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.multinomial(n_levels, np.full(n_levels, 1.0 / n_levels), size=n_boot).astype(np.float64)


def _ci(samples: np.ndarray) -> tuple[float, float]:
    s = samples[np.isfinite(samples)]
    if s.size == 0:
        return (float("nan"), float("nan"))
    return (float(np.percentile(s, 2.5)), float(np.percentile(s, 97.5)))


class _Held(NamedTuple):
    """Per held-out level sums: numerator and denominator of the metric (accuracy: correct / samples; r2:
    squared error / squared deviation)."""

    num: np.ndarray
    den: np.ndarray
    metric: str

    def value(self, weights=None) -> np.ndarray | float:
        if weights is None:
            num, den = self.num.sum(), self.den.sum()
        else:
            num, den = weights @ self.num, weights @ self.den
        with np.errstate(invalid="ignore", divide="ignore"):
            return num / den if self.metric == "accuracy" else 1.0 - num / den


# -- the samples of one label ------------------------------------------------------------------------------------

def split_levels(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Fit and held-out level indices (half each, fixed by ``seed``)."""
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[: n // 2]), np.sort(perm[n // 2:])


def control_permutation(levels: np.ndarray, seed: int) -> np.ndarray:
    """A derangement-ish shuffle of ``levels`` (each level's labels come from another level of the same half)."""
    rng = np.random.default_rng(seed)
    if len(levels) < 2:
        return levels.copy()
    shift = rng.integers(1, len(levels))
    order = rng.permutation(len(levels))
    out = levels.copy()
    out[order] = levels[np.roll(order, shift)]
    return out


def global_labels(data: ActivationData, label: str, source: np.ndarray) -> tuple[np.ndarray, np.ndarray, str, int]:
    """Labels ``y[n, S]`` for the steps of ``source[i]``'s level placed on level i, a validity mask, the metric
    and the number of classes (0 for regression)."""
    name, _, cand = label.partition(":")
    c = data.candidates.index(cand) if cand else None
    alive = data.alive[source]
    if name == "bfs_action":
        y = data.bfs_action[source, :, c]
        return y, alive & (y >= 0), "accuracy", 4
    if name == "distance":
        y = data.distance[source, :, c]
        return y.astype(np.float32), alive & (y < UNREACHABLE), "r2", 0
    if name == "ends_on":
        y = np.broadcast_to(data.ends_on[source][:, None], alive.shape)
        return y, alive, "accuracy", len(data.candidates) + 1
    raise ValueError(f"unknown global label {label!r}")


def global_labels_names(candidates) -> list[str]:
    return ([f"bfs_action:{c}" for c in candidates] + [f"distance:{c}" for c in candidates] + ["ends_on"])


def _fit_score_global(x: np.ndarray, y: np.ndarray, ok: np.ndarray, metric: str, k: int,
                      fit: np.ndarray, test: np.ndarray, ridge: float) -> tuple[_Held, int, int, float]:
    """Fit on the ``fit`` levels' valid samples and score on the ``test`` levels' (per-level sums)."""
    n, s = ok.shape
    flat = x.reshape(n, s, -1)
    on_fit = np.zeros(n, bool)
    on_fit[fit] = True
    rows = (ok & on_fit[:, None]).reshape(-1)
    n_fit = int(rows.sum())
    if n_fit < 2:
        return _Held(np.zeros(len(test)), np.zeros(len(test)), metric), n_fit, 0, float("nan")
    safe = np.where(ok, y, 0)
    if k:
        targets = np.eye(k, dtype=np.float32)[safe.reshape(-1).astype(np.int64)]
    else:
        targets = safe.reshape(-1, 1).astype(np.float32)
    groups = np.broadcast_to(np.arange(n)[:, None], (n, s)).reshape(-1)
    w, b, _ = ridge_cv(flat.reshape(n * s, -1), targets, rows.astype(np.float32), groups)
    pred = flat[test] @ w + b  # [t, S, k]
    yt, okt = y[test], ok[test]
    if k:
        correct = (np.argmax(pred, -1) == yt) & okt
        num, den = correct.sum(1).astype(np.float64), okt.sum(1).astype(np.float64)
        counts = np.bincount(yt[okt].astype(np.int64), minlength=k)
        chance = float(counts.max() / max(counts.sum(), 1))
    else:
        mean = float(yt[okt].mean()) if okt.any() else 0.0
        num = (((pred[..., 0] - yt) ** 2) * okt).sum(1).astype(np.float64)
        den = (((yt - mean) ** 2) * okt).sum(1).astype(np.float64)
        chance = 0.0
    return _Held(num, den, metric), n_fit, int(okt.sum()), chance


def spatial_label_maps(data: ActivationData, c: int, source: np.ndarray, frame: Frame) -> np.ndarray:
    """``bool[n, S, h, w]``: candidate ``c``'s targets of level ``source[i]`` seen from level i's recorded states."""
    maps = jnp.asarray(data.target[source, c])
    pos = jnp.asarray(data.pos)
    f = jax.vmap(jax.vmap(lambda m, p: frame_of(frame, m, p), in_axes=(None, 0)))
    return np.asarray(f(maps, pos))


def _fit_score_spatial(x: np.ndarray, maps: np.ndarray, alive: np.ndarray, fit: np.ndarray, test: np.ndarray,
                       ridge: float):
    """A shared 1x1 probe: fit on every cell of the fit levels' states that have a target in view, score top-1
    localisation on the held-out levels' states that have one."""
    n, s, h, w, f = x.shape
    ok = alive & maps.reshape(n, s, -1).any(-1)
    on_fit = np.zeros(n, bool)
    on_fit[fit] = True
    states = ok & on_fit[:, None]
    if states.sum() * h * w < 2:
        return _Held(np.zeros(len(test)), np.zeros(len(test)), "accuracy"), None, 0, 0, float("nan")
    cells = np.broadcast_to(states[:, :, None, None], (n, s, h, w)).reshape(-1).astype(np.float32)
    wv, b = _masked_ridge(jnp.asarray(x.reshape(-1, f), jnp.float32), jnp.asarray(maps.reshape(-1, 1), jnp.float32),
                          jnp.asarray(cells), jnp.asarray([ridge], jnp.float32))
    wv, b = np.asarray(wv[0, :, 0]), float(b[0, 0])
    score = x[test] @ wv + b  # [t, S, h, w]
    top = np.argmax(score.reshape(len(test), s, -1), -1)
    hit = np.take_along_axis(maps[test].reshape(len(test), s, -1), top[..., None], -1)[..., 0]
    okt = ok[test]
    num, den = (hit & okt).sum(1).astype(np.float64), okt.sum(1).astype(np.float64)
    in_view = maps[test].reshape(len(test), s, -1).sum(-1)
    chance = float((in_view[okt] / (h * w)).mean()) if okt.any() else float("nan")
    return _Held(num, den, "accuracy"), (wv, b), int(states.sum()), int(okt.sum()), chance


# -- probing a dataset ---------------------------------------------------------------------------------------------

def probe_layer(data: ActivationData, acts: np.ndarray, layer: str, frame: Frame | None = None,
                random_acts: np.ndarray | None = None, labels: list[str] | None = None, seed: int = 0,
                ridge: float = RIDGE, n_boot: int = N_BOOT) -> tuple[list[ProbeScore], list[ProbeWeights]]:
    """Every probe of one layer: spatial target-location probes when the layer is spatial (``frame`` given), global
    probes of every label otherwise or in addition (``labels``: a subset). ``random_acts``: the same layer of a
    random-initialised model on the same states."""
    n = data.alive.shape[0]
    # the input of a random-initialised model is the input: its probes are the trained model's (not refitted)
    same = random_acts is not None and (random_acts is acts or (random_acts.shape == acts.shape
                                                                and np.array_equal(random_acts, acts)))
    fit, test = split_levels(n, seed)
    source = np.arange(n)
    control_src = source.copy()
    control_src[fit] = control_permutation(fit, seed + 1)
    control_src[test] = control_permutation(test, seed + 2)
    boots = _boot_weights(len(test), n_boot, seed + 3)
    scores, weights = [], []

    def record(label, kind, main, control, rand, rand_control, n_fit, n_test, chance):
        sel = main.value(boots) - control.value(boots)
        r_val = r_sel = float("nan")
        if rand is not None:
            r_val, r_sel = float(rand.value()), float(rand.value() - rand_control.value())
        scores.append(ProbeScore(layer, label, kind, main.metric, float(main.value()), _ci(main.value(boots)),
                                 float(control.value()), float(main.value() - control.value()), _ci(sel), r_val, r_sel,
                                 chance, n_fit, n_test))

    spatial = frame is not None and acts.ndim == 5
    if spatial:
        for c, cand in enumerate(data.candidates):
            label = f"target:{cand}"
            if labels is not None and label not in labels:
                continue
            maps = spatial_label_maps(data, c, source, frame)
            if not maps.any():
                continue
            cmaps = spatial_label_maps(data, c, control_src, frame)
            main, wb, n_fit, n_test, chance = _fit_score_spatial(acts, maps, data.alive, fit, test, ridge)
            fixed = np.array_equal(cmaps, maps)  # the target is at the same cells on every level: no control task
            if fixed:
                nan = np.full_like(main.num, np.nan)
                control = _Held(nan, nan, main.metric)
            else:
                control = _fit_score_spatial(acts, cmaps, data.alive, fit, test, ridge)[0]
            rand = rand_c = None
            if same:
                rand, rand_c = main, control
            elif random_acts is not None:
                rand = _fit_score_spatial(random_acts, maps, data.alive, fit, test, ridge)[0]
                rand_c = control if fixed else _fit_score_spatial(random_acts, cmaps, data.alive, fit, test, ridge)[0]
            record(label, "spatial", main, control, rand, rand_c, n_fit, n_test, chance)
            if wb is not None:
                weights.append(ProbeWeights(layer, label, wb[0].astype(np.float32), wb[1]))
    todo = [lb for lb in global_labels_names(data.candidates) if labels is None or lb in labels]
    fit_rows = np.zeros(data.alive.shape, bool)
    fit_rows[fit] = data.alive[fit]
    if todo:
        acts = principal_components(acts.reshape(n, acts.shape[1], -1), fit_rows.reshape(-1))
        if random_acts is not None and not same:
            random_acts = principal_components(random_acts.reshape(n, random_acts.shape[1], -1), fit_rows.reshape(-1))
    for label in todo:
        y, ok, metric, k = global_labels(data, label, source)
        yc, okc, _, _ = global_labels(data, label, control_src)
        okc = okc & data.alive
        if not ok[fit].any() or not ok[test].any():
            continue
        main, n_fit, n_test, chance = _fit_score_global(acts, y, ok, metric, k, fit, test, ridge)
        control = _fit_score_global(acts, yc, okc, metric, k, fit, test, ridge)[0]
        rand = rand_c = None
        if same:
            rand, rand_c = main, control
        elif random_acts is not None:
            rand = _fit_score_global(random_acts, y, ok, metric, k, fit, test, ridge)[0]
            rand_c = _fit_score_global(random_acts, yc, okc, metric, k, fit, test, ridge)[0]
        record(label, "global", main, control, rand, rand_c, n_fit, n_test, chance)
    return scores, weights
