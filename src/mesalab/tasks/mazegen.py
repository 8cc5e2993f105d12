"""Procedural maze generation in pure JAX (jittable, vmappable over keys).

``generate_walls`` builds a perfect maze by randomised depth-first search on the odd cells of an odd-sized
grid (a fixed ``2n - 1`` iterations of a ``fori_loop``), then keeps each interior wall with probability
``wall_density`` (1 = perfect maze, 0 = open room with a border), and finally turns cells that became
unreachable into walls so every free cell is connected.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from mesalab.tasks.oracle import reachable_from


def _dfs_maze(key: jax.Array, height: int, width: int) -> jax.Array:
    ch, cw = (height - 1) // 2, (width - 1) // 2
    n = ch * cw
    walls = jnp.ones((height, width), jnp.bool_)
    moves = jnp.array([[-1, 0], [0, 1], [1, 0], [0, -1]], jnp.int32)
    key, k0 = jax.random.split(key)
    start = jax.random.randint(k0, (), 0, n)
    visited = jnp.zeros((n,), jnp.bool_).at[start].set(True)
    stack = jnp.zeros((n,), jnp.int32).at[0].set(start)
    walls = walls.at[2 * (start // cw) + 1, 2 * (start % cw) + 1].set(False)

    def body(i, carry):
        walls, visited, stack, sp = carry
        top = stack[sp - 1]
        r, c = top // cw, top % cw
        nr, nc = r + moves[:, 0], c + moves[:, 1]
        inside = (nr >= 0) & (nr < ch) & (nc >= 0) & (nc < cw)
        nidx = jnp.clip(nr, 0, ch - 1) * cw + jnp.clip(nc, 0, cw - 1)
        ok = inside & ~visited[nidx]
        any_ok = jnp.any(ok)
        g = jax.random.gumbel(jax.random.fold_in(key, i), (4,))
        choice = jnp.argmax(jnp.where(ok, g, -jnp.inf))
        nxt = nidx[choice]
        # carve the wall between top and nxt and the cell nxt (only when a neighbour exists)
        wr, wc = 2 * r + 1 + moves[choice, 0], 2 * c + 1 + moves[choice, 1]
        cr, cc = 2 * (nxt // cw) + 1, 2 * (nxt % cw) + 1
        walls = walls.at[wr, wc].set(jnp.where(any_ok, False, walls[wr, wc]))
        walls = walls.at[cr, cc].set(jnp.where(any_ok, False, walls[cr, cc]))
        visited = visited.at[nxt].set(visited[nxt] | any_ok)
        stack = stack.at[jnp.where(any_ok, sp, n - 1)].set(jnp.where(any_ok, nxt, stack[n - 1]))
        sp = jnp.where(any_ok, sp + 1, sp - 1)
        return walls, visited, stack, sp

    walls, *_ = jax.lax.fori_loop(0, 2 * n - 1, body, (walls, visited, stack, jnp.int32(1)))
    return walls


def generate_walls(key: jax.Array, height: int, width: int, wall_density: jax.Array) -> jax.Array:
    """Walls ``bool[H, W]`` of a connected random maze; ``height`` and ``width`` must be odd and ≥ 5."""
    if height % 2 == 0 or width % 2 == 0 or height < 5 or width < 5:
        raise ValueError(f"maze sizes must be odd and >= 5, got {height}x{width}")
    k_maze, k_keep = jax.random.split(key)
    maze = _dfs_maze(k_maze, height, width)
    interior = jnp.zeros((height, width), jnp.bool_).at[1:-1, 1:-1].set(True)
    keep = jax.random.uniform(k_keep, (height, width)) < wall_density
    walls = jnp.where(interior, maze & keep, True)
    # a removed pillar can be enclosed by remaining walls: wall off whatever the first cell cannot reach
    free = ~walls
    reach = reachable_from(free, jnp.array([1, 1], jnp.int32))
    return walls | ~reach
