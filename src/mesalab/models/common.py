"""Shared pieces of the model contract.

Every model is an Equinox module called as ``model(obs, interventions=None) -> (outputs, activations)``:
``activations`` is a dict of named intermediate arrays; ``interventions`` maps some of those names to
replacement arrays (or to functions of the original activation), so an intervention is a pure function
call rather than a hook.
"""

from __future__ import annotations

from typing import Callable, Mapping, Union

import equinox as eqx
import jax
import jax.numpy as jnp

Intervention = Union[jax.Array, Callable[[jax.Array], jax.Array]]


def tap(name: str, value: jax.Array, acts: dict, interventions: Mapping[str, Intervention] | None) -> jax.Array:
    """Record ``value`` under ``name`` (after applying an intervention on that name, if any)."""
    if interventions is not None and name in interventions:
        repl = interventions[name]
        value = repl(value) if callable(repl) else jax.numpy.broadcast_to(repl, value.shape).astype(value.dtype)
    acts[name] = value
    return value


def conv3x3(x: jax.Array, weight: jax.Array, bias: jax.Array) -> jax.Array:
    """'SAME' 3x3 convolution of ``x[H, W, C]`` with ``weight[9C, F]`` as patch extraction + one matmul."""
    h, w, _ = x.shape
    p = jnp.pad(x, ((1, 1), (1, 1), (0, 0)))
    patches = jnp.concatenate([p[i : i + h, j : j + w] for i in range(3) for j in range(3)], axis=-1)
    return patches @ weight + bias[None, None, :]


def orthogonal_linear(key, d_in, d_out, scale):
    """An ``eqx.nn.Linear`` with orthogonal weights of gain ``scale`` and zero bias (the actor-critics' layers)."""
    lin = eqx.nn.Linear(d_in, d_out, key=key)
    w = jax.nn.initializers.orthogonal(scale)(key, (d_out, d_in), jnp.float32)
    lin = eqx.tree_at(lambda m: m.weight, lin, w)
    return eqx.tree_at(lambda m: m.bias, lin, jnp.zeros((d_out,), jnp.float32))
