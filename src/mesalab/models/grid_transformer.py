"""A transformer policy over grid cells: every cell of the observation is a token (its channels, linearly
embedded, plus a learned embedding of its position), ``depth`` pre-LayerNorm blocks of softmax self-attention
and an MLP, then the policy and value read from a learned summary token that attends with the cells. It completes
the algorithmic range MLP / CNN / GRU / transformer: every cell can look at every other cell in one layer.

Calling convention (the actor-critics'): ``model(obs) -> ((logits, value), activations)``; named activations
``input``, ``tokens`` (the embedded cells, ``[H*W, width]``), ``layer_l/residual`` (the summary token and the cells
after block l, ``[1 + H*W, width]``), ``layer_l/attention`` (the summary token's attention weights over the cells
in block l, averaged over heads, ``[H*W]``; the rest of its weight is on itself), ``summary``, ``logits``, ``value``.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp

from mesalab.models.common import Intervention, orthogonal_linear, tap


class Block(eqx.Module):
    norm1: eqx.nn.LayerNorm
    wqkv: jax.Array  # [width, 3 * width]
    wo: jax.Array  # [width, width]
    norm2: eqx.nn.LayerNorm
    mlp1: eqx.nn.Linear
    mlp2: eqx.nn.Linear
    heads: int = eqx.field(static=True)

    def __init__(self, width: int, heads: int, key):
        k1, k2, k3, k4 = jax.random.split(key, 4)
        self.norm1, self.norm2 = eqx.nn.LayerNorm(width), eqx.nn.LayerNorm(width)
        self.wqkv = jax.nn.initializers.lecun_normal()(k1, (width, 3 * width), jnp.float32)
        self.wo = 0.1 * jax.nn.initializers.lecun_normal()(k2, (width, width), jnp.float32)
        self.mlp1 = orthogonal_linear(k3, width, 2 * width, 2**0.5)
        self.mlp2 = orthogonal_linear(k4, 2 * width, width, 0.1)
        self.heads = heads

    def __call__(self, e: jax.Array) -> tuple[jax.Array, jax.Array]:
        t, d = e.shape
        h = jax.vmap(self.norm1)(e)
        q, k, v = jnp.split(h @ self.wqkv, 3, axis=-1)
        split = lambda x: x.reshape(t, self.heads, d // self.heads).transpose(1, 0, 2)  # noqa: E731
        q, k, v = split(q), split(k), split(v)
        attn = jax.nn.softmax(jnp.einsum("hte,hse->hts", q, k) / jnp.sqrt(jnp.float32(d // self.heads)), -1)
        out = jnp.einsum("hts,hse->the", attn, v).reshape(t, d)
        e = e + out @ self.wo
        e = e + jax.vmap(lambda x: self.mlp2(jax.nn.gelu(self.mlp1(x))))(jax.vmap(self.norm2)(e))
        return e, attn.mean(0)[0, 1:]  # the summary token's attention over the cells


class GridTransformerActorCritic(eqx.Module):
    """Cells as tokens -> transformer blocks -> summary token -> policy logits and value (module docstring)."""

    embed: eqx.nn.Linear
    position: jax.Array  # [H*W, width]
    summary: jax.Array  # [width]
    blocks: tuple[Block, ...]
    norm: eqx.nn.LayerNorm
    actor: eqx.nn.Linear
    critic: eqx.nn.Linear

    def __init__(self, obs_shape: Sequence[int], n_actions: int, width: int = 32, depth: int = 2, heads: int = 4,
                 *, key):
        h, w, c = obs_shape
        if width % heads:
            raise ValueError(f"width {width} must be divisible by the {heads} heads")
        keys = jax.random.split(key, depth + 5)
        self.embed = orthogonal_linear(keys[0], c, width, 1.0)
        self.position = 0.1 * jax.random.normal(keys[1], (h * w, width), jnp.float32)
        self.summary = 0.1 * jax.random.normal(keys[2], (width,), jnp.float32)
        self.blocks = tuple(Block(width, heads, keys[5 + i]) for i in range(depth))
        self.norm = eqx.nn.LayerNorm(width)
        self.actor = orthogonal_linear(keys[3], width, n_actions, 0.01)
        self.critic = orthogonal_linear(keys[4], width, 1, 1.0)

    def __call__(self, obs: jax.Array, interventions: Mapping[str, Intervention] | None = None):
        acts: dict = {}
        x = tap("input", obs.astype(jnp.float32), acts, interventions)
        cells = x.reshape(-1, x.shape[-1])
        tokens = tap("tokens", jax.vmap(self.embed)(cells) + self.position, acts, interventions)
        e = jnp.concatenate([self.summary[None], tokens], axis=0)
        for i, block in enumerate(self.blocks):
            e, attn = block(e)
            e = tap(f"layer_{i}/residual", e, acts, interventions)
            tap(f"layer_{i}/attention", attn, acts, interventions)
        s = tap("summary", self.norm(e[0]), acts, interventions)
        logits = tap("logits", self.actor(s), acts, interventions)
        value = tap("value", self.critic(s)[0], acts, interventions)
        return (logits, value), acts
