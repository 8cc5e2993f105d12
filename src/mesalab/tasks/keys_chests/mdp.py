"""A keys-and-chests level as an explicit deterministic MDP over the enlarged state space (pure JAX, vmappable).

A state is ``(taken, cell)``: the bitmask of taken slots (bit ``i``: slot ``i``'s key picked up or chest opened)
and the agent's cell, one of the ``(H-2) x (W-2)`` cells inside the border (levels are walled all round), flattened
to ``s = (taken * (H-2) + row - 1) * (W-2) + col - 1``, so ``S = 2^M (H-2)(W-2)`` states (the inventory is a
function of ``taken``). Masks that set bits of empty slots, and interior walls, are never reached from the start.
The rules are exactly :meth:`~mesalab.tasks.keys_chests.env.KeysChestsEnv.step_no_reset`'s:

- ``succ[a, s]``: the state action ``a`` leads to (a wall: the same cell; the object entered is taken when it is
  a key, or a closed chest while a key is held);
- ``events[e, a, s]``: the transition picks up a key (``e = KEY_EVENT``) or opens a chest (``CHEST_EVENT``);
- ``terminal[s]``: the episode is over in ``s`` (the chests opened reached ``min(keys, chests)``): entering such
  a state ends the episode, like entering an object cell of the static tasks;
- ``counts[e, s]``: keys picked up / chests opened so far; ``n_max[e]``: all keys / every openable chest.
The time limit is not in the MDP: algorithms over it take the horizon (``max_steps``).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from mesalab.tasks.grid import DIRECTIONS, WALL_CHANNEL
from mesalab.tasks.keys_chests.env import KeysChestsParams, openable_chests

KEY_EVENT, CHEST_EVENT = 0, 1
EVENTS: tuple[str, ...] = ("key", "chest")


class ProductMDP(NamedTuple):
    succ: jax.Array  # int32[4, S]
    events: jax.Array  # bool[2, 4, S] (key picked up, chest opened) on each transition
    terminal: jax.Array  # bool[S]
    counts: jax.Array  # int32[2, S] keys picked up, chests opened
    n_max: jax.Array  # int32[2] keys on the level, chests it can open
    start: jax.Array  # int32[] the start state (nothing taken)


def n_states(height: int, width: int, n_slots: int) -> int:
    """``S`` of a level of ``height x width`` (border included) with ``n_slots`` slots."""
    return (2 ** n_slots) * (height - 2) * (width - 2)


def encode(pos: jax.Array, mask: jax.Array, height: int, width: int) -> jax.Array:
    """Flat state index of cell ``pos`` (row, col of the ``height x width`` grid) with taken-bitmask ``mask``."""
    return (mask * (height - 2) + pos[..., 0] - 1) * (width - 2) + pos[..., 1] - 1


def taken_mask(taken: jax.Array) -> jax.Array:
    """``bool[..., M]`` -> the int32 bitmask (bit ``i`` = slot ``i``)."""
    m = taken.shape[-1]
    return jnp.sum(jnp.where(taken, 2 ** jnp.arange(m, dtype=jnp.int32), 0), axis=-1, dtype=jnp.int32)


def product_mdp(walls: jax.Array, obj_pos: jax.Array, obj_key: jax.Array, obj_present: jax.Array,
                start: jax.Array, start_inventory: jax.Array) -> ProductMDP:
    """The product MDP of one level (see the module docstring)."""
    h, w = walls.shape[0] - 2, walls.shape[1] - 2  # the interior
    m = obj_key.shape[-1]
    hw = h * w
    cells = jnp.arange(hw, dtype=jnp.int32)
    rows, cols = cells // w, cells % w
    # interior cell each action leads to (a wall or the border: stay)
    moved = []
    for a in range(4):
        r, c = rows + DIRECTIONS[a, 0], cols + DIRECTIONS[a, 1]
        inside = (r >= 0) & (r < h) & (c >= 0) & (c < w)
        blocked = ~inside | walls[jnp.clip(r, 0, h - 1) + 1, jnp.clip(c, 0, w - 1) + 1]
        moved.append(jnp.where(blocked, cells, r * w + c))
    moved = jnp.stack(moved)  # [4, HW]
    slot_index = jnp.where(obj_present, (obj_pos[:, 0] - 1) * w + obj_pos[:, 1] - 1, hw)  # empty: out of range
    slot_at = jnp.full((hw,), -1, jnp.int32).at[slot_index].set(jnp.arange(m, dtype=jnp.int32), mode="drop")

    masks = jnp.arange(2 ** m, dtype=jnp.int32)
    bits = (jnp.right_shift(masks[:, None], jnp.arange(m, dtype=jnp.int32)[None]) & 1) == 1  # [2^M, M]
    keys_taken = jnp.sum(bits & obj_key[None], axis=1, dtype=jnp.int32)
    chests_taken = jnp.sum(bits & ~obj_key[None], axis=1, dtype=jnp.int32)
    held = start_inventory + keys_taken - chests_taken  # [2^M]

    slot2 = slot_at[moved]  # [4, HW] slot of the cell entered (-1: none)
    has = slot2 >= 0
    slot2c = jnp.maximum(slot2, 0)
    key2 = obj_key[slot2c] & has  # [4, HW]
    already = (jnp.right_shift(masks[None, :, None], slot2c[:, None, :]) & 1) == 1  # [4, 2^M, HW]
    takeable = has[:, None] & ~already & (key2[:, None] | (held[None, :, None] >= 1))
    new_mask = masks[None, :, None] | jnp.where(takeable, jnp.left_shift(1, slot2c)[:, None, :], 0)
    succ = new_mask * hw + moved[:, None, :]  # [4, 2^M, HW]
    key_event = takeable & key2[:, None]
    chest_event = takeable & ~key2[:, None]

    openable = openable_chests(obj_key, obj_present, start_inventory)
    n_keys = jnp.sum(obj_present & obj_key, dtype=jnp.int32)
    terminal = jnp.broadcast_to((chests_taken >= openable)[:, None], (2 ** m, hw))
    counts = jnp.stack([jnp.broadcast_to(keys_taken[:, None], (2 ** m, hw)),
                        jnp.broadcast_to(chests_taken[:, None], (2 ** m, hw))])
    s = 2 ** m * hw
    return ProductMDP(
        succ=succ.reshape(4, s).astype(jnp.int32),
        events=jnp.stack([key_event, chest_event]).reshape(2, 4, s),
        terminal=terminal.reshape(s),
        counts=counts.reshape(2, s),
        n_max=jnp.stack([n_keys, openable]).astype(jnp.int32),
        start=((start[0] - 1) * w + start[1] - 1).astype(jnp.int32),
    )


def pool_mdp(params: KeysChestsParams, level) -> ProductMDP:
    """The product MDP of pool entry ``level``."""
    return product_mdp(params.grid[level, :, :, WALL_CHANNEL], params.obj_pos[level], params.obj_key[level],
                       params.obj_present[level], params.start[level], params.start_inventory[level])
