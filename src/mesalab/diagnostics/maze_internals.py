"""What a maze-path recall network computes, tick by tick: linear probes of its per-cell hidden state, and the
order in which it rules cells out, set against two local algorithms that both solve a perfect maze.

- **Dead-end filling**: rule out, all at once, every free cell other than start and goal that has at most one
  neighbour not yet ruled out, and repeat. A perfect maze is a tree, so what remains is exactly the path. A cell is
  ruled out at iteration ``fill_depth(c)`` = 1 + the longest chain of cells beyond it in its dead-end branch: the
  tips first, the cell where the branch joins the path last.
- **A wavefront from the ends**: breadth-first waves spread one cell per tick from the start and from the goal. Once
  both have reached a cell, it is on the path iff its step back toward the start and its step back toward the goal
  go to different neighbours (off the path both lead to where its branch joins the path), so a local rule can
  decide it at ``wave_tick(c) = max(d_start(c), d_goal(c))``: cells next to the path first, the tips last.

Along every dead-end branch the two predict opposite orders, which is what :func:`decision_timing` measures: the
network's **decision tick** of an off-path cell is the first tick from which its own readout says "off" through
the last tick, and the evidence for an algorithm is the rank correlation (Spearman, within each maze, averaged over
mazes; paired bootstrap over mazes) between decision ticks and that algorithm's predicted ticks. The fraction of
path cells read as "on" at every tick is reported beside it (filling never turns a path cell off; a wavefront
would have to turn them on).

:func:`probe_ticks` fits 1x1 ridge probes (one weight vector shared by every cell, Bush et al. 2025 style) of
the hidden state at chosen ticks for ``on_path`` (balanced accuracy over free cells), ``fill_depth`` (R^2 over
off-path cells: dead-end filling's clock), ``dist_start`` and ``dist_goal`` (R^2 over free cells: what a wavefront
must carry), on half the mazes, scored on the other half, each with a control task (the same probe on labels of
another maze at the same cells, Hewitt & Liang 2019) and compared with the same probe on a random-initialised
network and on the input image.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from scipy.stats import rankdata

from mesalab.diagnostics.probes import RIDGE, _boot_weights, _ci, _masked_ridge, control_permutation, split_levels
from mesalab.tasks.maze_path import shortest_path_mask
from mesalab.tasks.oracle import UNREACHABLE, distances_from

LABELS = ("on_path", "fill_depth", "dist_start", "dist_goal")
ALGORITHMS = ("dead-end filling", "wavefront from the ends")
N_BOOT = 1000


# -- exact per-cell labels ---------------------------------------------------------------------------------------

class MazeLabels(NamedTuple):
    free: np.ndarray  # bool[N, S, S]
    path: np.ndarray  # bool[N, S, S]: the shortest start-goal path (start and goal included)
    dist_start: np.ndarray  # int32[N, S, S]: BFS steps from the start (UNREACHABLE on walls)
    dist_goal: np.ndarray  # int32[N, S, S]
    fill_depth: np.ndarray  # int32[N, S, S]: dead-end filling's iteration that rules the cell out (0: path, walls)

    @property
    def dead_end(self) -> np.ndarray:
        return self.free & ~self.path

    @property
    def wave_tick(self) -> np.ndarray:
        """int32[N, S, S]: the tick at which waves from both ends have reached the cell."""
        return np.maximum(self.dist_start, self.dist_goal)


def _open_neighbours(alive: jax.Array) -> jax.Array:
    p = jnp.pad(alive.astype(jnp.int32), 1)
    return p[:-2, 1:-1] + p[2:, 1:-1] + p[1:-1, :-2] + p[1:-1, 2:]


def fill_depths(free: jax.Array, ends: jax.Array) -> jax.Array:
    """``int32[S, S]``: the iteration of dead-end filling at which each free cell is ruled out (0 if never: the
    cells left, and walls). ``ends`` (start and goal) are never ruled out."""

    def cond(c):
        return c[2]

    def body(c):
        alive, depth, _, k = c
        leaf = alive & ~ends & (_open_neighbours(alive) <= 1)
        return alive & ~leaf, jnp.where(leaf, k, depth), jnp.any(leaf), k + 1

    init = (free, jnp.zeros(free.shape, jnp.int32), jnp.array(True), jnp.int32(1))
    return jax.lax.while_loop(cond, body, init)[1]


@jax.jit
def _labels(image: jax.Array):
    free, start_map, goal_map = image[..., 0] > 0.5, image[..., 1] > 0.5, image[..., 2] > 0.5

    def one(free, s_map, g_map):
        w = free.shape[1]
        s = jnp.argmax(s_map.reshape(-1))
        g = jnp.argmax(g_map.reshape(-1))
        start, goal = jnp.stack([s // w, s % w]), jnp.stack([g // w, g % w])
        none = jnp.zeros_like(free)
        return (shortest_path_mask(free, start, goal), distances_from(free, none, start),
                distances_from(free, none, goal), fill_depths(free, s_map | g_map))

    return (free, *jax.vmap(one)(free, start_map, goal_map))


def maze_labels(images) -> MazeLabels:
    """The exact labels of a batch of maze-path images ``float32[N, S, S, 3]``."""
    return MazeLabels(*(np.asarray(a) for a in _labels(jnp.asarray(images, jnp.float32))))


def default_ticks(labels: MazeLabels, trained_ticks: int) -> int:
    """Ticks to run: one and a half times the most either algorithm needs at one cell per tick on these mazes (at
    least the training ticks), so a network somewhat slower than one cell per tick still finishes (cells it has
    not ruled out by then are counted as not settled). Running the network is the cost of a probe: linear in
    mazes x cells x ticks."""
    need = max(int(labels.fill_depth.max()), int(np.where(labels.free, labels.wave_tick, 0).max()))
    return max(int(trained_ticks), -(-3 * need // 2))


def record_ticks(ticks: int, trained_ticks: int, n: int = 7) -> list[int]:
    """The ticks whose hidden state is probed: ``n`` roughly geometric ticks from 1 to ``ticks``, and the training
    ticks."""
    t = set(np.unique(np.round(np.geomspace(1, ticks, n)).astype(int)).tolist())
    if trained_ticks <= ticks:
        t.add(int(trained_ticks))
    return sorted(int(x) for x in t)


# -- running the network -----------------------------------------------------------------------------------------

class Thought(NamedTuple):
    """A network's ``ticks`` ticks on a batch of mazes."""

    hidden: dict  # tick -> float32[N, S, S, W] at the recorded ticks
    last_on: np.ndarray  # int32[N, S, S]: last tick the readout said "on" (0: never)
    last_off: np.ndarray  # int32[N, S, S]: last tick the readout said "off" (0: never)
    final: np.ndarray  # bool[N, S, S]: the readout at the last tick
    ticks: int


@eqx.filter_jit
def _segment(model, carry, image, n: int):
    def body(c, _):
        h, t, last_on, last_off = c
        h = jax.vmap(model.tick)(h, image)
        on = jax.vmap(model.readout)(h) >= 0.0
        t = t + 1
        return (h, t, jnp.where(on, t, last_on), jnp.where(on, last_off, t)), None

    return jax.lax.scan(body, carry, None, length=n)[0]


def think(model, images, ticks: int, record: Sequence[int] = ()) -> Thought:
    """Run ``model`` (anything with ``initial_state``, ``tick`` and ``readout`` per maze, like
    :class:`~mesalab.models.thinking.RecallThinker`) for ``ticks`` ticks on ``images[N, S, S, C]``, keeping the
    hidden state at the ``record`` ticks and, per cell, the last ticks its readout was on and off."""
    x = jnp.asarray(images, jnp.float32)
    h = jax.vmap(model.initial_state)(x)
    zeros = jnp.zeros(x.shape[:3], jnp.int32)
    carry = (h, jnp.int32(0), zeros, zeros)
    hidden, done = {}, 0
    for r in sorted({int(r) for r in record if 1 <= r <= ticks}):
        carry = _segment(model, carry, x, r - done)
        hidden[r], done = np.asarray(carry[0]), r
    if done < ticks:
        carry = _segment(model, carry, x, ticks - done)
    h, _, last_on, last_off = carry
    final = np.asarray(jax.vmap(model.readout)(h) >= 0.0)
    return Thought(hidden, np.asarray(last_on), np.asarray(last_off), final, int(ticks))


# -- the order of decisions ------------------------------------------------------------------------------------------

class Timing(NamedTuple):
    """How well each algorithm's predicted order explains the network's decision ticks."""

    algorithm: str
    rho: float  # mean over mazes of the within-maze Spearman correlation
    ci: tuple[float, float]
    margin: float  # rho minus the other algorithm's rho (paired over mazes)
    margin_ci: tuple[float, float]
    slope: float  # decision ticks per predicted tick (least squares over the settled cells, pooled)
    n_mazes: int  # mazes with a correlation (at least MIN_CELLS settled cells, neither order constant)
    n_cells: int  # settled off-path cells used
    settled: float  # fraction of off-path cells ruled out by the last tick and kept out
    path_on: float  # fraction of path cells on at every tick
    solved: float  # fraction of mazes whose last-tick readout is exactly the path


MIN_CELLS = 5


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = rankdata(a), rankdata(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    den = np.sqrt((ra ** 2).sum() * (rb ** 2).sum())
    return float((ra * rb).sum() / den) if den > 0 else float("nan")


def decision_ticks(thought: Thought) -> np.ndarray:
    """``float[N, S, S]``: the first tick from which the readout is off through the last tick (NaN if it is on at
    the last tick)."""
    return np.where(thought.last_on < thought.ticks, thought.last_on + 1, np.nan).astype(np.float64)


def decision_timing(thought: Thought, labels: MazeLabels, seed: int = 0, n_boot: int = N_BOOT) -> list[Timing]:
    """The evidence for each of :data:`ALGORITHMS` from the order in which ``thought`` rules off-path cells out."""
    tau = decision_ticks(thought)
    off = labels.dead_end
    settled = off & np.isfinite(tau)
    predicted = {"dead-end filling": labels.fill_depth, "wavefront from the ends": labels.wave_tick}
    rhos = {a: np.full(len(tau), np.nan) for a in ALGORITHMS}
    for i in range(len(tau)):
        m = settled[i]
        if m.sum() < MIN_CELLS:
            continue
        for a in ALGORITHMS:
            rhos[a][i] = _spearman(tau[i][m], predicted[a][i][m])
    ok = np.isfinite(rhos[ALGORITHMS[0]]) & np.isfinite(rhos[ALGORITHMS[1]])
    idx = np.flatnonzero(ok)
    used = settled & ok[:, None, None]  # the cells of the mazes with a correlation (the slope's too)
    boot = _boot_weights(len(idx), n_boot, seed) if len(idx) else np.zeros((0, 0))
    path_cells = labels.path.sum()
    common = dict(n_mazes=int(len(idx)), n_cells=int(used.sum()),
                  settled=float(settled.sum() / max(off.sum(), 1)),
                  path_on=float((labels.path & (thought.last_off == 0)).sum() / max(path_cells, 1)),
                  solved=float(np.mean(np.all(thought.final == labels.path, axis=(1, 2)))))
    out = []
    for a, other in (ALGORITHMS, ALGORITHMS[::-1]):
        r, ro = rhos[a][idx], rhos[other][idx]
        if len(idx) == 0:
            out.append(Timing(a, float("nan"), (float("nan"),) * 2, float("nan"), (float("nan"),) * 2, float("nan"),
                              **common))
            continue
        b = boot / len(idx)
        x, y = predicted[a][used].astype(np.float64), tau[used]
        slope = float(np.polyfit(x, y, 1)[0]) if np.ptp(x) > 0 else float("nan")
        out.append(Timing(a, float(r.mean()), _ci(b @ r), float((r - ro).mean()), _ci(b @ (r - ro)), slope, **common))
    return out


def timing_curve(thought: Thought, labels: MazeLabels) -> list[tuple[str, int, float, int]]:
    """``(algorithm, predicted tick, mean decision tick, cells)`` over the settled off-path cells: the picture of
    :func:`decision_timing` (a straight rising line for the algorithm the network runs)."""
    tau = decision_ticks(thought)
    settled = labels.dead_end & np.isfinite(tau)
    out = []
    for a, pred in (("dead-end filling", labels.fill_depth), ("wavefront from the ends", labels.wave_tick)):
        p, t = pred[settled], tau[settled]
        for k in np.unique(p):
            sel = p == k
            out.append((a, int(k), float(t[sel].mean()), int(sel.sum())))
    return out


# -- probes of the hidden state ---------------------------------------------------------------------------------------

class TickProbe(NamedTuple):
    tick: int  # 0 for the input image
    source: str  # "trained", "random-init" or "input"
    label: str  # one of LABELS
    metric: str  # "balanced_accuracy" or "r2"
    value: float
    ci: tuple[float, float]
    control: float  # the same probe on another maze's labels at the same cells
    selectivity: float  # value - control
    selectivity_ci: tuple[float, float]
    chance: float  # 0.5 (balanced accuracy) / 0 (R^2)
    n_fit: int
    n_test: int


def _target(labels: MazeLabels, label: str) -> tuple[np.ndarray, np.ndarray, str]:
    """``(y[N, S, S], mask[N, S, S], metric)``."""
    if label == "on_path":
        return labels.path.astype(np.float32), labels.free, "balanced_accuracy"
    if label == "fill_depth":
        return labels.fill_depth.astype(np.float32), labels.dead_end, "r2"
    if label in ("dist_start", "dist_goal"):
        d = getattr(labels, label)
        return np.where(labels.free, d, 0).astype(np.float32), labels.free & (d < UNREACHABLE), "r2"
    raise ValueError(f"unknown maze-path label {label!r}; choose from {LABELS}")


def _sums(pred, y, m, metric, mean):
    """Per-maze sums for the metric: balanced accuracy ``(tp, pos, tn, neg)``; R^2 ``(sq. error, sq. deviation)``."""
    ax = (1, 2)
    if metric == "balanced_accuracy":
        hit, pos = (pred >= 0.5), y > 0.5
        return np.stack([(hit & pos & m).sum(ax), (pos & m).sum(ax), (~hit & ~pos & m).sum(ax),
                         (~pos & m).sum(ax)], -1).astype(np.float64)
    return np.stack([(((pred - y) ** 2) * m).sum(ax), (((y - mean) ** 2) * m).sum(ax)], -1).astype(np.float64)


def _metric(s, metric):
    """The metric of summed per-maze statistics ``s[..., k]``."""
    with np.errstate(invalid="ignore", divide="ignore"):
        if metric == "balanced_accuracy":
            return 0.5 * (s[..., 0] / s[..., 1] + s[..., 2] / s[..., 3])
        return 1.0 - s[..., 0] / s[..., 1]


def _fit_score(x, y, m, fit, test, metric, ridge):
    n, f = x.shape[0], x.shape[-1]
    on_fit = np.zeros(n, bool)
    on_fit[fit] = True
    rows = (m & on_fit[:, None, None]).reshape(-1).astype(np.float32)
    w, b = _masked_ridge(jnp.asarray(x.reshape(-1, f), jnp.float32), jnp.asarray(y.reshape(-1, 1)),
                         jnp.asarray(rows), jnp.asarray([ridge], jnp.float32))
    pred = x[test] @ np.asarray(w[0, :, 0]) + float(b[0, 0])
    mt = m[test]
    mean = float(y[test][mt].mean()) if mt.any() else 0.0
    return _sums(pred, y[test], mt, metric, mean), int(rows.sum()), int(mt.sum())


def probe_features(x: np.ndarray, labels: MazeLabels, tick: int, source: str, label_names=LABELS, seed: int = 0,
                   ridge: float = RIDGE, n_boot: int = N_BOOT) -> list[TickProbe]:
    """1x1 probes of per-cell features ``x[N, S, S, F]`` for every label: fitted on half the mazes, scored on the
    others, with a control task and a paired bootstrap over held-out mazes."""
    n = x.shape[0]
    fit, test = split_levels(n, seed)
    perm = np.arange(n)
    perm[fit], perm[test] = control_permutation(fit, seed + 1), control_permutation(test, seed + 2)
    boot = _boot_weights(len(test), n_boot, seed + 3)
    out = []
    for label in label_names:
        y, m, metric = _target(labels, label)
        s, n_fit, n_test = _fit_score(x, y, m, fit, test, metric, ridge)
        sc, _, _ = _fit_score(x, y[perm], m & m[perm], fit, test, metric, ridge)
        value, control = float(_metric(s.sum(0), metric)), float(_metric(sc.sum(0), metric))
        bv, bc = _metric(boot @ s, metric), _metric(boot @ sc, metric)
        out.append(TickProbe(tick, source, label, metric, value, _ci(bv), control, value - control, _ci(bv - bc),
                             0.5 if metric == "balanced_accuracy" else 0.0, n_fit, n_test))
    return out


def probe_ticks(thought: Thought, random_thought: Thought | None, images, labels: MazeLabels, seed: int = 0,
                n_boot: int = N_BOOT) -> list[TickProbe]:
    """Every label probed at every recorded tick of the trained network and of the random-initialised one, and
    once on the input image (tick 0)."""
    out = probe_features(np.asarray(images, np.float32), labels, 0, "input", seed=seed, n_boot=n_boot)
    for source, th in (("trained", thought), ("random-init", random_thought)):
        if th is None:
            continue
        for t, h in sorted(th.hidden.items()):
            out += probe_features(h, labels, t, source, seed=seed, n_boot=n_boot)
    return out


# -- the reading --------------------------------------------------------------------------------------------------

SUPPORT = 0.5  # an algorithm is supported when its rho's CI is above this and above the other's (margin CI > 0)
MIN_MAZES = 10  # ... on at least this many mazes with a correlation (one maze has a CI of zero width)
BEYOND_UNTRAINED = 0.1  # ... and its rho's CI is above an untrained network's rho by this much


def supported_algorithm(timings: Sequence, untrained: Sequence = ()) -> str | None:
    """The algorithm the decision order supports, or None. ``timings``: objects with ``algorithm``, ``ci`` (rho's),
    ``margin_ci`` (over the other algorithm) and ``n_mazes``; ``untrained``: the same of a random-initialised
    network of the architecture on the same mazes (when given, the trained rho must beat its rho)."""
    base = {t.algorithm: t.rho if isinstance(t.rho, float) else t.rho.mean for t in untrained}
    for t in timings:
        if not (np.isfinite(t.ci[0]) and t.ci[0] > SUPPORT and t.margin_ci[0] > 0 and t.n_mazes >= MIN_MAZES):
            continue
        b = base.get(t.algorithm, float("nan"))
        if np.isfinite(b) and t.ci[0] <= b + BEYOND_UNTRAINED:
            continue
        return t.algorithm
    return None
