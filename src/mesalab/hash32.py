"""32-bit hashing in pure JAX, shared by the vector environment's level draws (``tasks/gym_vector.py``) and the
tabular model's observation slots (``models/tabular.py``)."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def mix32(x: jax.Array) -> jax.Array:
    """MurmurHash3's 32-bit finaliser (``fmix32``) of ``uint32`` values: a bijection that mixes every input bit."""
    x = x ^ (x >> 16)
    x = x * jnp.uint32(0x85EBCA6B)
    x = x ^ (x >> 13)
    x = x * jnp.uint32(0xC2B2AE35)
    return x ^ (x >> 16)
