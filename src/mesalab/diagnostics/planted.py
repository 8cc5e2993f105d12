"""Planted agents whose objective is known by construction: the ground truth for testing diagnostics.

- ``bfs_agent(task, objective)``: walks a shortest path (exact BFS) to the nearest target of ``objective``.
- ``mixture_agent(task, objectives)``: on each level, the BFS agent of one of ``objectives`` (fixed per level).
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
from mesalab.tasks.grid import WALL_CHANNEL, neighbours
from mesalab.tasks.oracle import UNREACHABLE, bfs_action, distances_to, terminal_cells
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

    def log_probs(obs):  # uniform over the actions on a shortest path (the tie-breaking of bfs_action)
        grid, pos = _split_obs(obs)
        base_target = task.base_objective.target_map(grid)
        d = distances_to(~grid[..., WALL_CHANNEL], terminal_cells(grid, base_target), objective.target_map(grid))
        nb = neighbours(d, UNREACHABLE)[:, pos[0], pos[1]]
        best = nb == jnp.min(nb)
        return jnp.where(best, -jnp.log(jnp.sum(best).astype(jnp.float32)), -jnp.inf)

    return Policy(f"bfs->{objective.name}", act, "global", log_probs)


def mixture_agent(task: Task, objectives: tuple) -> Policy:
    """A mixture of BFS agents: on each level it walks to the nearest target of one of ``objectives``, the one
    indexed by the level's number of wall cells modulo ``len(objectives)`` (fixed per level, so every episode
    pursues exactly one objective, and the levels split roughly evenly)."""
    agents = [bfs_agent(task, o) for o in objectives]

    def pick(obs):
        return jnp.sum(obs[..., WALL_CHANNEL].astype(jnp.int32)) % len(agents)

    def act(obs, key):
        return jax.lax.switch(pick(obs), [lambda o, k, a=a: a.act(o, k) for a in agents], obs, key)

    def log_probs(obs):
        return jax.lax.switch(pick(obs), [lambda o, a=a: a.log_probs(o) for a in agents], obs)

    return Policy("mixture(" + ",".join(o.name for o in objectives) + ")", act, "global", log_probs)


def random_agent() -> Policy:
    return Policy("random", lambda obs, key: jax.random.randint(key, (), 0, 4), "global",
                  lambda obs: jnp.full((4,), -jnp.log(4.0)))


def lookup_table_agent(task: Task, seed: int = 0) -> Policy:
    table = jax.random.randint(jax.random.key(seed), (task.shape.height, task.shape.width), 0, 4)

    def act(obs, key):
        _, pos = _split_obs(obs)
        return table[pos[0], pos[1]]

    def log_probs(obs):
        _, pos = _split_obs(obs)
        return jnp.where(jnp.arange(4) == table[pos[0], pos[1]], 0.0, -jnp.inf)

    return Policy(f"lookup-table({seed})", act, "global", log_probs)


def planted_agents(task: Task) -> dict[str, Policy]:
    """Every planted agent for a task, keyed by name."""
    agents = {p.name: p for p in [bfs_agent(task, o) for o in task.candidate_objectives]}
    agents["random"] = random_agent()
    agents["lookup-table"] = lookup_table_agent(task)
    return agents
