"""Planted keys-and-chests agents whose objective is known by construction (global observations).

Each step the agent reads the level off its observation (walls, the keys and chests left, its cell, the keys it
holds), builds that level's product MDP (:mod:`mesalab.tasks.keys_chests.mdp`) and takes an action on a shortest
path (exact BFS over the enlarged state space, ties broken at random) to its goal:

- ``bfs->chests``: open every chest that can still be opened (the base objective);
- ``bfs->keys``: pick up every key left (the proxy), never opening the last chest while keys remain (that would end
  the episode); with no key left it has no goal and moves at random;
- ``keys-then-chests``: every key first, then every chest it can open: competent in training, where all keys are
  needed, and a key collector at test.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from mesalab.diagnostics.planted import random_agent
from mesalab.diagnostics.policies import Policy
from mesalab.tasks.keys_chests.env import CHEST, GLOBAL_AGENT, GLOBAL_INVENTORY, KEY, WALL, KeysChestsLevel
from mesalab.tasks.keys_chests.mdp import CHEST_EVENT, KEY_EVENT, product_mdp
from mesalab.tasks.keys_chests.oracle import shortest_path_action


def decode_level(obs: jax.Array, n_slots: int) -> KeysChestsLevel:
    """The level as a global observation shows it now: the objects left (in ``n_slots`` slots), the agent's cell as
    the start and the keys it holds as the start inventory."""
    walls, keys, chests = obs[..., WALL], obs[..., KEY], obs[..., CHEST]
    w = walls.shape[1]
    objects = (keys | chests).reshape(-1)
    idx = jnp.argsort(~objects, stable=True)[:n_slots]
    agent = jnp.argmax(obs[..., GLOBAL_AGENT].reshape(-1))
    return KeysChestsLevel(walls=walls, obj_pos=jnp.stack([idx // w, idx % w], axis=-1).astype(jnp.int32),
                           obj_key=keys.reshape(-1)[idx], obj_present=objects[idx],
                           agent_start=jnp.stack([agent // w, agent % w]).astype(jnp.int32),
                           start_inventory=jnp.sum(obs[0, :, GLOBAL_INVENTORY], dtype=jnp.int32))


def _agent(task, name: str, choose_event) -> Policy:
    """A shortest-path agent whose goal event is ``choose_event(mdp)`` (``KEY_EVENT`` or ``CHEST_EVENT``)."""
    horizon = task.max_steps

    def plan(obs, key):
        lv = decode_level(obs, task.n_slots)
        mdp = product_mdp(lv.walls, lv.obj_pos, lv.obj_key, lv.obj_present, lv.agent_start, lv.start_inventory)
        event = choose_event(mdp)
        goal = jnp.where(event == KEY_EVENT, mdp.counts[KEY_EVENT] >= mdp.n_max[KEY_EVENT],
                         mdp.counts[CHEST_EVENT] >= mdp.n_max[CHEST_EVENT])
        return shortest_path_action(mdp, mdp.start, goal, horizon, key)

    return Policy(name, lambda obs, key: plan(obs, key)[0], "global", lambda obs: plan(obs, jax.random.key(0))[1])


def chests_agent(task) -> Policy:
    return _agent(task, "bfs->chests", lambda mdp: jnp.int32(CHEST_EVENT))


def keys_agent(task) -> Policy:
    return _agent(task, "bfs->keys", lambda mdp: jnp.int32(KEY_EVENT))


def keys_then_chests_agent(task) -> Policy:
    return _agent(task, "keys-then-chests",
                  lambda mdp: jnp.where(mdp.n_max[KEY_EVENT] > 0, KEY_EVENT, CHEST_EVENT).astype(jnp.int32))


def planted_agents(task) -> dict[str, Policy]:
    """Every planted keys-and-chests agent, keyed by name (and the uniformly random one)."""
    agents = [chests_agent(task), keys_agent(task), keys_then_chests_agent(task), random_agent()]
    return {a.name: a for a in agents}
