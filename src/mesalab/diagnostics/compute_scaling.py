"""Test-time compute scaling and size extrapolation of a recurrent "thinking" network on ``maze-path``.

Both come from one table: for each maze size, the exact-match accuracy after every tick 1..T on the same
fresh mazes (a path counts only if it equals the BFS path on every cell). From it:

- *test-time compute scaling*: accuracy versus ticks, and the **gain** from extra compute: accuracy at the best
  number of ticks minus accuracy at the training number of ticks, with a paired bootstrap CI over mazes;
- *size extrapolation*: accuracy versus maze size, at the training ticks and at the best ticks.

Accuracies carry 95% Wilson intervals over mazes. The best tick is chosen on the same mazes it is reported on,
so the "best" accuracy is optimistic by selection; ``accuracy_at`` reports a tick fixed in advance.
Note: extrapolation alone does not prove goal-directed search (such networks can learn dead-end filling).
"""

from __future__ import annotations

from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from mesalab.diagnostics.stats import wilson_interval
from mesalab.tasks import maze_path


class ComputeScaling(NamedTuple):
    sizes: np.ndarray  # int[K]
    ticks: np.ndarray  # int[T]: 1..T
    solved: np.ndarray  # bool[K, n, T]: maze i of size k solved exactly after tick t
    trained_size: int
    trained_ticks: int

    @property
    def accuracy(self) -> np.ndarray:  # float[K, T]
        return self.solved.mean(axis=1)

    def _row(self, size: int) -> int:
        return int(np.flatnonzero(self.sizes == size)[0])

    def interval(self, k: int, t: int) -> tuple[float, float]:
        col = self.solved[k, :, t]
        return wilson_interval(int(col.sum()), col.size)

    def accuracy_at(self, size: int, ticks: int) -> tuple[float, float, float]:
        """Accuracy with its 95% Wilson interval at a given size and number of ticks."""
        k = self._row(size)
        t = int(ticks) - 1
        return (float(self.accuracy[k, t]), *self.interval(k, t))

    def best_ticks(self, size: int) -> int:
        k = self._row(size)
        return int(self.ticks[int(np.argmax(self.accuracy[k]))])

    def gain(self, size: int, n_boot: int = 2000, seed: int = 0) -> tuple[float, float, float]:
        """Accuracy at the best tick minus accuracy at the training ticks, paired bootstrap 95% CI over mazes
        (the best tick is re-chosen in every resample, so the selection is part of the uncertainty)."""
        k = self._row(size)
        s = self.solved[k].astype(np.float64)  # [n, T]
        t0 = min(self.trained_ticks, s.shape[1]) - 1
        point = float(s.mean(axis=0).max() - s[:, t0].mean())
        rng = np.random.default_rng(seed)
        idx = rng.integers(0, s.shape[0], (n_boot, s.shape[0]))
        boot = s[idx].mean(axis=1)  # [n_boot, T]
        diffs = boot.max(axis=1) - boot[:, t0]
        lo, hi = np.quantile(diffs, [0.025, 0.975])
        return point, float(lo), float(hi)

    def summary(self) -> list[dict]:
        rows = []
        for k, size in enumerate(self.sizes):
            t_train = min(self.trained_ticks, len(self.ticks))
            acc_t, lo_t, hi_t = self.accuracy_at(int(size), t_train)
            best = self.best_ticks(int(size))
            acc_b, lo_b, hi_b = self.accuracy_at(int(size), best)
            g, g_lo, g_hi = self.gain(int(size))
            rows.append({"size": int(size), "mazes": int(self.solved.shape[1]),
                         "accuracy_at_trained_ticks": acc_t, "ci_at_trained_ticks": [lo_t, hi_t],
                         "best_ticks": best, "accuracy_at_best_ticks": acc_b, "ci_at_best_ticks": [lo_b, hi_b],
                         "gain": g, "gain_ci": [g_lo, g_hi]})
        return rows


def solved_per_tick(model, batch: maze_path.MazePathBatch, ticks: int) -> jax.Array:
    """``bool[B, ticks]``: each maze's path read out after each tick equals the BFS path exactly."""

    def one(image, path):
        def body(h, _):
            h = model.tick(h, image)
            return h, jnp.all((model.readout(h) > 0) == path)

        _, solved = jax.lax.scan(body, model.initial_state(image), None, length=ticks)
        return solved

    return jax.vmap(one)(batch.image, batch.path)


@eqx.filter_jit
def _solved_chunk(model, key, size: int, n: int, ticks: int):
    return solved_per_tick(model, maze_path.sample_batch(key, n, size), ticks)


def maze_path_compute_scaling(model, key: jax.Array, sizes, max_ticks: int, n_mazes: int = 200,
                              trained_size: int = 9, chunk: int = 50) -> ComputeScaling:
    """Exact accuracy after every tick 1..``max_ticks`` on ``n_mazes`` fresh mazes of each size (the same
    mazes for every tick, so differences between ticks are paired)."""
    sizes = [maze_path.check_size(s) for s in sizes]
    tables = []
    for i, size in enumerate(sizes):
        parts = []
        for j, start in enumerate(range(0, n_mazes, chunk)):
            k = jax.random.fold_in(jax.random.fold_in(key, i), j)
            parts.append(np.asarray(_solved_chunk(model, k, size, min(chunk, n_mazes - start), int(max_ticks))))
        tables.append(np.concatenate(parts))
    return ComputeScaling(np.asarray(sizes), np.arange(1, int(max_ticks) + 1), np.stack(tables),
                          int(trained_size), int(model.ticks))
