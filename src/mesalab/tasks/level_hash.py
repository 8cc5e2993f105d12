"""Level identity: a hash of a level's static grid and its start cell.

Two pool entries are "the same level" when their one-hot grids (walls, object types, colours) are equal byte
for byte and the agent starts on the same cell; the base-objective target map is a function of the grid, so
it is not hashed. Used to keep a test pool disjoint from its training pool
(:mod:`mesalab.tasks.gym_adapter`).
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
    grids, starts = np.asarray(params.grid, dtype=np.bool_), np.asarray(params.start)
    first = int(np.asarray(params.level_offset))
    n = int(np.asarray(params.n_levels))
    return [level_hash(grids[i], starts[i]) for i in range(first, first + n)]
