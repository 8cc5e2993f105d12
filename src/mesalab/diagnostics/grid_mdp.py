"""A gridworld level as a small deterministic MDP, in stencil form (pure JAX, vmappable over levels).

The state is the agent's cell. Action ``a`` moves one cell (``neighbours`` order: up, right, down, left);
moving into a wall or off the grid leaves the agent where it is. Entering a *terminal* cell (any object,
or a base-objective target) ends the episode. Arrays are ``[H, W]`` maps; "successor" maps are ``[4, H, W]``:
for each action, the value at the cell that action leads to.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from mesalab.tasks.grid import WALL_CHANNEL, neighbours
from mesalab.tasks.oracle import terminal_cells


class LevelMDP(NamedTuple):
    blocked: jax.Array  # bool[4, H, W]: action a from this cell hits a wall or the edge (agent stays)
    terminal: jax.Array  # bool[H, W]: entering ends the episode
    free: jax.Array  # bool[H, W]: not a wall
    can_enter: jax.Array  # bool[4, H, W]: the neighbour opposite to action a exists and a moves it here


def shift_from(x: jax.Array, direction: int, fill) -> jax.Array:
    """``[H, W]``: the value of ``x`` at the neighbour in ``direction`` (an action index) of each cell."""
    h, w = x.shape
    p = jnp.pad(x, 1, constant_values=fill)
    dr, dc = ((-1, 0), (0, 1), (1, 0), (0, -1))[direction]
    return p[1 + dr : 1 + dr + h, 1 + dc : 1 + dc + w]


def level_mdp(grid: jax.Array, base_target: jax.Array) -> LevelMDP:
    free = ~grid[..., WALL_CHANNEL]
    blocked = ~neighbours(free, False)
    can_enter = jnp.stack([~shift_from(blocked[a], (a + 2) % 4, True) for a in range(4)])
    return LevelMDP(blocked=blocked, terminal=terminal_cells(grid, base_target), free=free, can_enter=can_enter)


def successor(x: jax.Array, mdp: LevelMDP) -> jax.Array:
    """``[4, H, W]``: ``x`` at the cell each action leads to (the current cell when blocked)."""
    return jnp.where(mdp.blocked, x[None], neighbours(x, jnp.zeros((), x.dtype)))


def arrivals(x: jax.Array, mdp: LevelMDP, empty) -> jax.Array:
    """``[8, H, W]``: for a per-action quantity ``x[a, s]`` (e.g. mass leaving ``s`` by action ``a``), what
    arrives at each cell: for each action, from the neighbour that moves in by it (``empty`` if that move is
    blocked), and from the cell itself when the action is blocked there (the agent stays).
    Reduce over axis 0 with ``sum`` (linear) or ``logsumexp`` (log space)."""
    empty = jnp.asarray(empty, x.dtype)
    moved, stayed = [], []
    for a in range(4):
        # entering s' by action a comes from the neighbour opposite to a's direction
        moved.append(jnp.where(mdp.can_enter[a], shift_from(x[a], (a + 2) % 4, empty), empty))
        stayed.append(jnp.where(mdp.blocked[a], x[a], empty))
    return jnp.stack(moved + stayed)


def predecessor_logsumexp(log_mass: jax.Array, mdp: LevelMDP) -> jax.Array:
    """One step of a uniformly random walk in log space: ``log sum_{s, a: s -a-> s'} mass[s] / 4`` for every
    ``s'``. ``log_mass`` must be ``-inf`` on cells that cannot move (walls, absorbed cells)."""
    per_action = jnp.broadcast_to(log_mass - jnp.log(jnp.asarray(4.0, log_mass.dtype)), (4, *log_mass.shape))
    return jax.nn.logsumexp(arrivals(per_action, mdp, -jnp.inf), axis=0)


def predecessor_sum(x: jax.Array, mdp: LevelMDP) -> jax.Array:
    """``[H, W]``: total of ``x[a, s]`` arriving at each cell (mass moved by a policy, in linear space).

    The same sum as ``jnp.sum(arrivals(x, mdp, 0.0), axis=0)``, written out with one pad because it sits in
    the IRL gradient's inner loop: the generic form made the whole value-and-gradient 30-50% slower here."""
    h, w = x.shape[1:]
    p = jnp.pad(x, ((0, 0), (1, 1), (1, 1)))
    total = jnp.sum(jnp.where(mdp.blocked, x, 0.0), axis=0)
    for a, (dr, dc) in enumerate(((1, 0), (0, -1), (-1, 0), (0, 1))):  # the source lies opposite to action a
        total = total + jnp.where(mdp.can_enter[a], p[a, 1 + dr : 1 + dr + h, 1 + dc : 1 + dc + w], 0.0)
    return total
