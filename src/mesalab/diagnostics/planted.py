"""Planted agents whose objective is known by construction: the ground truth for testing diagnostics.

- ``bfs_agent(task, objective)``: walks a shortest path (exact BFS) to the nearest target of ``objective``.
- ``random_agent()``: uniform over actions.
- ``lookup_table_agent(task, seed)``: a fixed table from the agent's cell to an action (no objective).
All act on global observations.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from mesalab.diagnostics.policies import Policy
from mesalab.tasks.grid import AGENT_CHANNEL, N_GRID_CHANNELS
from mesalab.tasks.objectives import Objective
from mesalab.tasks.oracle import bfs_action
from mesalab.tasks.registry import Task


def _split_obs(obs):
    grid = obs[..., :N_GRID_CHANNELS]
    w = obs.shape[1]
    flat = jnp.argmax(obs[..., AGENT_CHANNEL].reshape(-1))
    return grid, jnp.stack([flat // w, flat % w]).astype(jnp.int32)


def bfs_agent(task: Task, objective: Objective) -> Policy:
    def act(obs, key):
        grid, pos = _split_obs(obs)
        base_target = task.base_objective.target_map(grid)
        return bfs_action(grid, pos, base_target, objective.target_map(grid), key)

    return Policy(f"bfs->{objective.name}", act, "global")


def random_agent() -> Policy:
    return Policy("random", lambda obs, key: jax.random.randint(key, (), 0, 4), "global")


def lookup_table_agent(task: Task, seed: int = 0) -> Policy:
    table = jax.random.randint(jax.random.key(seed), (task.shape.height, task.shape.width), 0, 4)

    def act(obs, key):
        _, pos = _split_obs(obs)
        return table[pos[0], pos[1]]

    return Policy(f"lookup-table({seed})", act, "global")


def planted_agents(task: Task) -> dict[str, Policy]:
    """Every planted agent for a task, keyed by name."""
    agents = {p.name: p for p in [bfs_agent(task, o) for o in task.candidate_objectives]}
    agents["random"] = random_agent()
    agents["lookup-table"] = lookup_table_agent(task)
    return agents
