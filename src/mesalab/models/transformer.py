"""A transformer for in-context regression, with linear or softmax self-attention (von Oswald et al. 2022).

Tokens are ``e_i = [x_i, y_i]`` for the context and ``[x_q, 0]`` for the query; each layer adds
``sum_h W_O^h V^h(E) A^h`` to every token, where the attention ``A^h`` looks at context tokens only (linear:
``(Q e_j).(K e_i) / N``; softmax: the usual normalised weights). The prediction is read from the label slot of
the query token. Named intermediates: ``layer_l/residual`` (the token stream after layer l),
``layer_l/attention`` (what attention added), ``prediction``.
"""

from __future__ import annotations

from typing import Mapping

import equinox as eqx
import jax
import jax.numpy as jnp

from mesalab.models.common import Intervention, tap


class SelfAttention(eqx.Module):
    wq: jax.Array  # [H, D, D]
    wk: jax.Array
    wv: jax.Array
    wo: jax.Array
    softmax: bool = eqx.field(static=True)

    def __init__(self, dim: int, heads: int, softmax: bool, key: jax.Array, init_scale: float):
        kq, kk, kv, ko = jax.random.split(key, 4)
        shape = (heads, dim, dim)
        self.wq = init_scale * jax.random.normal(kq, shape)
        self.wk = init_scale * jax.random.normal(kk, shape)
        self.wv = init_scale * jax.random.normal(kv, shape)
        self.wo = init_scale * jax.random.normal(ko, shape)
        self.softmax = softmax

    def __call__(self, e: jax.Array, n_context: int) -> jax.Array:
        q = jnp.einsum("td,hde->hte", e, self.wq)
        k = jnp.einsum("td,hde->hte", e[:n_context], self.wk)
        v = jnp.einsum("td,hde->hte", e[:n_context], self.wv)
        scores = jnp.einsum("hte,hse->hts", q, k)
        attn = jax.nn.softmax(scores, axis=-1) if self.softmax else scores / n_context
        out = jnp.einsum("hts,hse->hte", attn, v)
        return jnp.einsum("hte,hef->tf", out, self.wo)


class MLP(eqx.Module):
    w1: jax.Array
    w2: jax.Array

    def __init__(self, dim: int, key: jax.Array, init_scale: float):
        k1, k2 = jax.random.split(key)
        self.w1 = init_scale * jax.random.normal(k1, (dim, 4 * dim))
        self.w2 = init_scale * jax.random.normal(k2, (4 * dim, dim))

    def __call__(self, e):
        return jax.nn.gelu(e @ self.w1) @ self.w2


class ICLTransformer(eqx.Module):
    attention: tuple
    mlps: tuple
    norms: tuple
    dim: int = eqx.field(static=True)

    def __init__(self, dim: int, layers: int = 1, heads: int = 1, softmax: bool = False, mlp: bool = False,
                 layernorm: bool = False, key: jax.Array | None = None, init_scale: float = 0.02):
        d = dim + 1
        keys = jax.random.split(key if key is not None else jax.random.key(0), 2 * layers)
        self.attention = tuple(SelfAttention(d, heads, softmax, keys[2 * i], init_scale) for i in range(layers))
        self.mlps = tuple(MLP(d, keys[2 * i + 1], init_scale) for i in range(layers)) if mlp else ()
        self.norms = tuple(eqx.nn.LayerNorm(d) for _ in range(layers)) if layernorm else ()
        self.dim = dim

    def __call__(self, x: jax.Array, y: jax.Array, x_query: jax.Array,
                 interventions: Mapping[str, Intervention] | None = None):
        """One sequence: ``x [N, d]``, ``y [N]``, ``x_query [d]`` -> ``(prediction, activations)``."""
        n = x.shape[0]
        context = jnp.concatenate([x, y[:, None]], axis=1)
        query = jnp.concatenate([x_query, jnp.zeros((1,), x.dtype)])[None]
        e = jnp.concatenate([context, query], axis=0)
        acts: dict = {}
        for i, attn in enumerate(self.attention):
            h = jax.vmap(self.norms[i])(e) if self.norms else e
            delta = tap(f"layer_{i}/attention", attn(h, n), acts, interventions)
            e = e + delta
            if self.mlps:
                e = e + jax.vmap(self.mlps[i])(e)
            e = tap(f"layer_{i}/residual", e, acts, interventions)
        pred = tap("prediction", e[-1, -1], acts, interventions)
        return pred, acts
