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


def _near_room(key: jax.Array, room: jax.Array, rooms: int) -> jax.Array:
    """A room drawn uniformly among the (up to 8) rooms adjacent to ``room`` (also diagonally)."""
    offsets = jnp.array([[-1, -1], [-1, 0], [-1, 1], [0, -1], [0, 1], [1, -1], [1, 0], [1, 1]], jnp.int32)
    r, c = room // rooms + offsets[:, 0], room % rooms + offsets[:, 1]
    ok = (r >= 0) & (r < rooms) & (c >= 0) & (c < rooms)
    i = jnp.argmax(jnp.where(ok, jax.random.gumbel(key, (8,)), -jnp.inf))
    return r[i] * rooms + c[i]


def sample_maze_path(key: jax.Array, size: int, near: jax.Array | bool = False) -> tuple[jax.Array, jax.Array]:
    """One maze: ``(image float32[S, S, 3], path bool[S, S])``. With ``near`` the start is a room adjacent to the
    goal's (the path may still wind far), so most of the maze is dead ends that a solver must rule out."""
    k_maze, k_ends, k_near = jax.random.split(key, 3)
    walls = generate_walls(k_maze, size, size, jnp.float32(1.0))
    rooms = (size - 1) // 2
    pick = jax.random.choice(k_ends, rooms * rooms, (2,), replace=False)
    pick = pick.at[0].set(jnp.where(near, _near_room(k_near, pick[1], rooms), pick[0]))
    cells = jnp.stack([2 * (pick // rooms) + 1, 2 * (pick % rooms) + 1], axis=-1).astype(jnp.int32)
    start, goal = cells[0], cells[1]
    free = ~walls
    image = jnp.stack([
        free,
        jnp.zeros_like(free).at[start[0], start[1]].set(True),
        jnp.zeros_like(free).at[goal[0], goal[1]].set(True),
    ], axis=-1).astype(jnp.float32)
    return image, shortest_path_mask(free, start, goal)


def sample_batch(key: jax.Array, batch: int, size: int, near_fraction: float = 0.0) -> MazePathBatch:
    """``batch`` fresh mazes of one size (jittable; ``size`` and ``batch`` are static). Start and goal are uniform
    over rooms, except in a fraction ``near_fraction`` of mazes where the start is adjacent to the goal (a
    training-distribution dial; evaluation always uses uniform ends)."""
    check_size(size)
    k_mazes, k_near = jax.random.split(key)
    near = jax.random.uniform(k_near, (batch,)) < near_fraction
    image, path = jax.vmap(lambda k, n: sample_maze_path(k, size, n))(jax.random.split(k_mazes, batch), near)
    return MazePathBatch(image, path)


def exact_match(pred_path: jax.Array, path: jax.Array) -> jax.Array:
    """``bool[B]``: the predicted mask equals the BFS path on every cell (the only way to count as solved)."""
    return jnp.all(pred_path == path, axis=(-2, -1))
