"""Exact oracles by breadth-first search: distances, optimal returns and the BFS policy's action.

Rules mirrored from the environment: walls cannot be entered; entering a *terminal* cell (any object, or a
target of the base objective) ends the episode, so no path continues out of one. All functions are pure
JAX and vmappable over levels; BFS is a fixed-point iteration of a 4-neighbour stencil.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from mesalab.tasks.grid import WALL_CHANNEL, neighbours, object_cells

UNREACHABLE = jnp.iinfo(jnp.int32).max // 2


def _fixed_point(step, d0: jax.Array) -> jax.Array:
    """Apply ``step`` until the distance map stops changing (at most H*W sweeps on a grid)."""

    def cond(carry):
        d, prev = carry
        return jnp.any(d != prev)

    def body(carry):
        d, _ = carry
        return step(d), d

    d, _ = jax.lax.while_loop(cond, body, (step(d0), d0))
    return d


def _relax(dist: jax.Array, can_enter: jax.Array, can_leave: jax.Array) -> jax.Array:
    """Iterate ``d[c] = min(d[c], 1 + min_{n -> c} d[n])`` to a fixed point (forward distances)."""

    def step(d):
        src = jnp.where(can_leave, d, UNREACHABLE)
        # a cell c is entered from neighbour n; n's displacement to c is the opposite action
        best = jnp.min(neighbours(src, UNREACHABLE), axis=0) + 1
        return jnp.where(can_enter, jnp.minimum(d, best), d)

    return _fixed_point(step, dist)


def distances_from(free: jax.Array, terminal: jax.Array, start: jax.Array) -> jax.Array:
    """Shortest number of steps from ``start`` to every cell (``UNREACHABLE`` if none).

    ``free``: enterable cells; ``terminal``: cells that end the episode when entered.
    """
    h, w = free.shape
    d0 = jnp.full((h, w), UNREACHABLE, jnp.int32).at[start[0], start[1]].set(0)
    can_leave = free & ~terminal
    can_leave = can_leave.at[start[0], start[1]].set(True)
    return _relax(d0, free, can_leave)


def reachable_from(free: jax.Array, start: jax.Array) -> jax.Array:
    """Cells reachable from ``start`` through ``free`` cells (no terminal cells)."""
    d = distances_from(free, jnp.zeros_like(free), start)
    return d < UNREACHABLE


def distances_to(free: jax.Array, terminal: jax.Array, targets: jax.Array) -> jax.Array:
    """Shortest number of steps from every cell to the nearest ``targets`` cell (backward BFS).

    A non-target terminal cell has distance ``UNREACHABLE`` (the episode would end there).
    """
    d0 = jnp.where(targets & free, 0, UNREACHABLE).astype(jnp.int32)

    def step(d):
        best = jnp.min(neighbours(d, UNREACHABLE), axis=0) + 1
        can_continue = free & ~terminal & ~targets
        return jnp.where(can_continue, jnp.minimum(d, best), d)

    return _fixed_point(step, d0)


def terminal_cells(grid: jax.Array, base_target: jax.Array) -> jax.Array:
    return object_cells(grid) | base_target


def shortest_path_length(
    grid: jax.Array, start: jax.Array, base_target: jax.Array, targets: jax.Array
) -> jax.Array:
    """Fewest steps from ``start`` to any cell of ``targets`` under the environment's rules."""
    free = ~grid[..., WALL_CHANNEL]
    d = distances_from(free, terminal_cells(grid, base_target), start)
    return jnp.min(jnp.where(targets, d, UNREACHABLE))


def return_for_length(length: jax.Array, max_steps: jax.Array) -> jax.Array:
    """The environment's return for first reaching a target after ``length`` steps (0 if never)."""
    length = jnp.asarray(length, jnp.int32)
    max_steps = jnp.asarray(max_steps, jnp.int32)
    frac = length.astype(jnp.float32) / max_steps.astype(jnp.float32)
    return jnp.where(length <= max_steps, 1.0 - 0.9 * frac, 0.0).astype(jnp.float32)


def optimal_return(
    grid: jax.Array, start: jax.Array, base_target: jax.Array, targets: jax.Array, max_steps: jax.Array
) -> jax.Array:
    """Exact optimal return of the reward "reach ``targets``" on one level."""
    return return_for_length(shortest_path_length(grid, start, base_target, targets), max_steps)


def bfs_action(
    grid: jax.Array, pos: jax.Array, base_target: jax.Array, targets: jax.Array, key: jax.Array
) -> jax.Array:
    """An action on a shortest path from ``pos`` to ``targets`` (ties broken at random);
    uniform random if no target is reachable."""
    free = ~grid[..., WALL_CHANNEL]
    d = distances_to(free, terminal_cells(grid, base_target), targets)
    nb = neighbours(d, UNREACHABLE)[:, pos[0], pos[1]]
    best = jnp.min(nb)
    g = jax.random.gumbel(key, (4,))
    scores = jnp.where(nb == best, g, -jnp.inf)
    return jnp.argmax(scores).astype(jnp.int32)
