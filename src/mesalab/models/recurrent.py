"""Recurrent actor-critics with a ``ticks`` dial: a convolutional one (ConvGRU, DRC-style: Guez et al. 2019) and
a dense GRU (fast on CPU; the one the statefulness and time-penalty presets train by default).

Per environment step the observation is encoded by a 3x3 convolution (stride 2 when the observation is large,
e.g. the 17x17 egocentric view), then a stack of ``depth`` ConvGRU layers is iterated ``ticks`` times with the
encoding re-injected every tick (as in DRC), and a dense head reads the policy logits and value from the top
layer. The hidden state is carried across environment steps (the policy is *stateful*) and reset by the trainer
at episode start. ``ticks`` is internal computation per step: a dial at training and, through ``step(...,
ticks=k)``, at test time.

Calling convention: ``model.step(obs, carry, interventions=None, ticks=None) -> ((logits, value), carry),
activations`` for one observation; ``model.initial_carry()`` is the episode-start state ``[depth, h, w, F]``.
``model(obs)`` runs one step from the initial state (so a recurrent model can stand wherever a feed-forward
one is expected, as a memoryless policy). Activations are named per tick (and layer): ``tick_{t}/gru_{d}``.

Speed on this CPU (measured by ``benchmarks/recurrent_ppo.py``): recurrent PPO with the ConvGRU runs at a few
hundred environment steps per second per core (3x3 convolutions on tiny images inside loops), the dense GRU
at thousands; the ConvGRU is the architecture of the DRC papers, the dense GRU the one that fits a laptop sweep.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp

from mesalab.models.common import Intervention, conv3x3, orthogonal_linear, tap

STRIDE_ABOVE = 12  # observations wider than this are encoded with stride 2


class ConvGRUActorCritic(eqx.Module):
    encode_w: jax.Array
    encode_b: jax.Array
    gate_w: tuple[jax.Array, ...]  # per layer: conv of [input, h] -> update and reset gates
    gate_b: tuple[jax.Array, ...]
    cand_w: tuple[jax.Array, ...]  # per layer: conv of [input, reset * h] -> candidate state
    cand_b: tuple[jax.Array, ...]
    dense: eqx.nn.Linear
    actor: eqx.nn.Linear
    critic: eqx.nn.Linear
    ticks: int = eqx.field(static=True)
    stride: int = eqx.field(static=True)
    grid: tuple[int, int] = eqx.field(static=True)
    channels: int = eqx.field(static=True)

    def __init__(self, obs_shape: Sequence[int], n_actions: int, channels: int = 8, depth: int = 1,
                 width: int = 64, ticks: int = 1, *, key):
        h, w, c = obs_shape
        self.stride = 2 if max(h, w) > STRIDE_ABOVE else 1
        self.grid = ((h + self.stride - 1) // self.stride, (w + self.stride - 1) // self.stride)
        self.channels, self.ticks = int(channels), int(ticks)
        keys = jax.random.split(key, 2 * depth + 4)
        he = jax.nn.initializers.he_normal()
        glorot = jax.nn.initializers.glorot_normal()
        f = self.channels
        self.encode_w, self.encode_b = he(keys[0], (9 * c, f), jnp.float32), jnp.zeros((f,), jnp.float32)
        gw, gb, cw, cb = [], [], [], []
        for d in range(depth):
            gw.append(glorot(keys[1 + 2 * d], (9 * 3 * f, 2 * f), jnp.float32))
            gb.append(jnp.zeros((2 * f,), jnp.float32))
            cw.append(glorot(keys[2 + 2 * d], (9 * 3 * f, f), jnp.float32))
            cb.append(jnp.zeros((f,), jnp.float32))
        self.gate_w, self.gate_b, self.cand_w, self.cand_b = tuple(gw), tuple(gb), tuple(cw), tuple(cb)
        self.dense = orthogonal_linear(keys[-3], self.grid[0] * self.grid[1] * f, width, 2**0.5)
        self.actor = orthogonal_linear(keys[-2], width, n_actions, 0.01)
        self.critic = orthogonal_linear(keys[-1], width, 1, 1.0)

    @property
    def depth(self) -> int:
        return len(self.gate_w)

    def initial_carry(self) -> jax.Array:
        return jnp.zeros((self.depth, *self.grid, self.channels), jnp.float32)

    def _encode(self, obs: jax.Array) -> jax.Array:
        x = conv3x3(obs.astype(jnp.float32), self.encode_w, self.encode_b)
        if self.stride > 1:
            x = x[:: self.stride, :: self.stride]
        return jax.nn.relu(x)

    def _gru(self, d: int, below: jax.Array, enc: jax.Array, h: jax.Array) -> jax.Array:
        inp = jnp.concatenate([below, enc, h], axis=-1)
        zr = jax.nn.sigmoid(conv3x3(inp, self.gate_w[d], self.gate_b[d]))
        z, r = zr[..., : self.channels], zr[..., self.channels :]
        cand = jnp.tanh(conv3x3(jnp.concatenate([below, enc, r * h], axis=-1), self.cand_w[d], self.cand_b[d]))
        return (1.0 - z) * h + z * cand

    def step(self, obs: jax.Array, carry: jax.Array, interventions: Mapping[str, Intervention] | None = None,
             ticks: int | None = None):
        """One environment step: ``ticks`` iterations of the GRU stack, then the heads."""
        ticks = self.ticks if ticks is None else int(ticks)
        acts: dict = {}
        enc = tap("encoding", self._encode(tap("input", obs, acts, interventions)), acts, interventions)
        hs = [carry[d] for d in range(self.depth)]
        for t in range(ticks):
            below = hs[-1]  # DRC: the bottom layer also sees the top layer's previous state
            for d in range(self.depth):
                hs[d] = tap(f"tick_{t}/gru_{d}", self._gru(d, below, enc, hs[d]), acts, interventions)
                below = hs[d]
        top = hs[-1]
        hid = tap("hidden_0", jnp.tanh(self.dense(top.reshape(-1))), acts, interventions)
        logits = tap("logits", self.actor(hid), acts, interventions)
        value = tap("value", self.critic(hid)[0], acts, interventions)
        return ((logits, value), jnp.stack(hs)), acts

    def __call__(self, obs: jax.Array, interventions: Mapping[str, Intervention] | None = None):
        (out, _), acts = self.step(obs, self.initial_carry(), interventions)
        return out, acts


class GRUActorCritic(eqx.Module):
    """Flattened observation -> tanh encoding -> a GRU cell iterated ``ticks`` times per step (the encoding is the
    input at every tick) -> policy logits and value. The hidden state ``[width]`` is carried across steps."""

    encode: eqx.nn.Linear
    cell: eqx.nn.GRUCell
    actor: eqx.nn.Linear
    critic: eqx.nn.Linear
    ticks: int = eqx.field(static=True)

    def __init__(self, obs_shape: Sequence[int], n_actions: int, width: int = 128, ticks: int = 1, *, key):
        d = 1
        for s in obs_shape:
            d *= s
        k1, k2, k3, k4 = jax.random.split(key, 4)
        self.encode = orthogonal_linear(k1, d, width, 2**0.5)
        self.cell = eqx.nn.GRUCell(width, width, key=k2)
        self.actor = orthogonal_linear(k3, width, n_actions, 0.01)
        self.critic = orthogonal_linear(k4, width, 1, 1.0)
        self.ticks = int(ticks)

    def initial_carry(self) -> jax.Array:
        return jnp.zeros((self.cell.hidden_size,), jnp.float32)

    def step(self, obs: jax.Array, carry: jax.Array, interventions: Mapping[str, Intervention] | None = None,
             ticks: int | None = None):
        ticks = self.ticks if ticks is None else int(ticks)
        acts: dict = {}
        x = tap("input", obs.reshape(-1).astype(jnp.float32), acts, interventions)
        enc = tap("encoding", jnp.tanh(self.encode(x)), acts, interventions)
        h = carry
        for t in range(ticks):
            h = tap(f"tick_{t}/gru", self.cell(enc, h), acts, interventions)
        logits = tap("logits", self.actor(h), acts, interventions)
        value = tap("value", self.critic(h)[0], acts, interventions)
        return ((logits, value), h), acts

    def __call__(self, obs: jax.Array, interventions: Mapping[str, Intervention] | None = None):
        (out, _), acts = self.step(obs, self.initial_carry(), interventions)
        return out, acts


def is_recurrent(model) -> bool:
    return hasattr(model, "initial_carry")
