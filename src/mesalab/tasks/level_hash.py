"""Level identity: a hash of a level's static grid and its start cell.

Two pool entries are "the same level" when their one-hot grids (walls, object types, colours) are equal byte
for byte and the agent starts on the same cell; the base-objective target map is a function of the grid, so
it is not hashed. Used to keep a test pool disjoint from its training pool
(:mod:`mesalab.tasks.gym_adapter`) and to count the evaluation levels a trained model had seen in training
(:func:`mesalab.optimizers.ppo.training_levels`).
"""

from __future__ import annotations

import hashlib

import numpy as np

from mesalab.tasks.grid import EnvParams


def level_hash(grid, start) -> str:
    """Hex digest (128-bit BLAKE2b) of one level: ``grid`` ``bool[H, W, C]`` and ``start`` ``(row, col)``."""
    g = np.ascontiguousarray(np.asarray(grid, dtype=np.bool_))
    s = np.asarray(start, dtype=np.int32).reshape(2)
    h = hashlib.blake2b(digest_size=16)
    h.update(np.asarray(g.shape, dtype=np.int32).tobytes())
    h.update(g.tobytes())
    h.update(s.tobytes())
    return h.hexdigest()


def level_hashes(params: EnvParams) -> list[str]:
    """The hash of every entry in use of a pool (entries ``level_offset .. level_offset + n_levels - 1``)."""
    first = int(np.asarray(params.level_offset))
    n = int(np.asarray(params.n_levels))
    return pool_hashes(np.asarray(params.grid)[first:first + n], np.asarray(params.start)[first:first + n])


def pool_hashes(grids, starts) -> list[str]:
    """:func:`level_hash` of every level of a stack (``grids`` ``bool[n, H, W, C]``, ``starts`` ``int[n, 2]``),
    vectorised: the same digests, without a Python-level array conversion per level."""
    g = np.ascontiguousarray(np.asarray(grids, dtype=np.bool_))
    s = np.ascontiguousarray(np.asarray(starts, dtype=np.int32).reshape(-1, 2))
    shape = np.asarray(g.shape[1:], dtype=np.int32).tobytes()
    flat = g.reshape(g.shape[0], -1)
    out = []
    for i in range(flat.shape[0]):
        h = hashlib.blake2b(digest_size=16)
        h.update(shape)
        h.update(flat[i].tobytes())
        h.update(s[i].tobytes())
        out.append(h.hexdigest())
    return out


def overlap_count(eval_params: EnvParams, training: set[str]) -> int:
    """How many levels in use of an evaluation pool equal (by hash) a level of ``training`` (a set of hashes)."""
    return sum(h in training for h in level_hashes(eval_params))
