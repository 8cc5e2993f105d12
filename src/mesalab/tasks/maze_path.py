"""``maze-path`` (supervised): an image of a maze in, the mask of its shortest start-goal path out.

A maze of *size* S is an S×S grid (S odd, walls included, as in the ``maze`` task): a 9×9 maze has 4×4 rooms.
Mazes are perfect (randomised depth-first search, see ``mazegen``), so the path between two cells is unique
and its mask is an exact target. Start and goal are two distinct rooms drawn uniformly. Everything is pure JAX
and vmappable over keys, so a fresh batch of mazes of any size is generated inside the training step, and the
train/test shift (a bigger maze) is just another size.

Image channels: ``0`` free cell, ``1`` start, ``2`` goal (float32 in {0, 1}). Target: ``bool[S, S]``, true on
the cells of the shortest path, start and goal included.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from mesalab.errors import ConfigError
from mesalab.tasks.mazegen import generate_walls
from mesalab.tasks.oracle import UNREACHABLE, distances_from

N_CHANNELS = 3


class MazePathBatch(NamedTuple):
    image: jax.Array  # float32[B, S, S, 3]: free, start, goal
    path: jax.Array  # bool[B, S, S]: the shortest path's cells


def check_size(size: int) -> int:
    if size < 5 or size % 2 == 0:
        raise ConfigError(f"maze-path sizes must be odd and at least 5 (walls included), got {size}; "
                          f"use e.g. 9, 13 or 33")
    return int(size)


def shortest_path_mask(free: jax.Array, start: jax.Array, goal: jax.Array) -> jax.Array:
    """Cells on a shortest start→goal path: ``d(start, c) + d(c, goal) == d(start, goal)``.

    In a perfect maze the path is unique, so this is exactly that path.
    """
    none = jnp.zeros_like(free)
    d_s = distances_from(free, none, start)
    d_g = distances_from(free, none, goal)
    total = d_s[goal[0], goal[1]]
    return free & (d_s < UNREACHABLE) & (d_g < UNREACHABLE) & (d_s + d_g == total)


def sample_maze_path(key: jax.Array, size: int) -> tuple[jax.Array, jax.Array]:
    """One maze: ``(image float32[S, S, 3], path bool[S, S])``."""
    k_maze, k_ends = jax.random.split(key)
    walls = generate_walls(k_maze, size, size, jnp.float32(1.0))
    rooms = (size - 1) // 2
    pick = jax.random.choice(k_ends, rooms * rooms, (2,), replace=False)
    cells = jnp.stack([2 * (pick // rooms) + 1, 2 * (pick % rooms) + 1], axis=-1).astype(jnp.int32)
    start, goal = cells[0], cells[1]
    free = ~walls
    image = jnp.stack([
        free,
        jnp.zeros_like(free).at[start[0], start[1]].set(True),
        jnp.zeros_like(free).at[goal[0], goal[1]].set(True),
    ], axis=-1).astype(jnp.float32)
    return image, shortest_path_mask(free, start, goal)


def sample_batch(key: jax.Array, batch: int, size: int) -> MazePathBatch:
    """``batch`` fresh mazes of one size (jittable; ``size`` and ``batch`` are static)."""
    check_size(size)
    image, path = jax.vmap(lambda k: sample_maze_path(k, size))(jax.random.split(key, batch))
    return MazePathBatch(image, path)


def exact_match(pred_path: jax.Array, path: jax.Array) -> jax.Array:
    """``bool[B]``: the predicted mask equals the BFS path on every cell (the only way to count as solved)."""
    return jnp.all(pred_path == path, axis=(-2, -1))
