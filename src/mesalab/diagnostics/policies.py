"""The policy interface that evaluation accepts, and adapters for trained models.

A policy is ``act(obs, key) -> action`` (jittable, one observation) together with the observation mode it
expects (``"egocentric"`` or ``"global"``); evaluation builds the environment in that mode. A policy may also
expose ``log_probs(obs) -> float32[4]``, its exact action log-probabilities (used as the ceiling of
goal-directedness).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import jax
import jax.numpy as jnp


@dataclass(frozen=True)
class Policy:
    name: str
    act: Callable[[jax.Array, jax.Array], jax.Array]
    obs_mode: str = "egocentric"
    log_probs: Callable[[jax.Array], jax.Array] | None = None


def model_policy(model, obs_mode: str = "egocentric", greedy: bool = False, name: str = "model") -> Policy:
    """Wrap an actor-critic model: sample from its logits (or take the argmax when ``greedy``)."""

    def act(obs, key):
        (logits, _), _ = model(obs)
        if greedy:
            return jnp.argmax(logits).astype(jnp.int32)
        return jax.random.categorical(key, logits).astype(jnp.int32)

    def log_probs(obs):
        (logits, _), _ = model(obs)
        if greedy:
            return jnp.where(jnp.arange(logits.shape[-1]) == jnp.argmax(logits), 0.0, -jnp.inf)
        return jax.nn.log_softmax(logits)

    return Policy(name, act, obs_mode, log_probs)
