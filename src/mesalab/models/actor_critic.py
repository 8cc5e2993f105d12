"""Actor-critic policies for the gridworlds: an MLP and a CNN whose 3x3 convolutions are patch extraction
plus one matrix multiply (several times faster than ``lax.conv`` on CPU, see design.md).

Calling convention: ``model(obs) -> ((logits, value), activations)`` for one observation; vmap for batches.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp

from mesalab.models.common import Intervention, conv3x3, orthogonal_linear, tap


class MLPActorCritic(eqx.Module):
    """Flattened one-hot observation -> tanh hidden layers (shared) -> policy logits and value."""

    hidden: tuple[eqx.nn.Linear, ...]
    actor: eqx.nn.Linear
    critic: eqx.nn.Linear

    def __init__(self, obs_shape: Sequence[int], n_actions: int, widths: Sequence[int] = (128, 128), *, key):
        d = 1
        for s in obs_shape:
            d *= s
        keys = jax.random.split(key, len(widths) + 2)
        layers = []
        for i, wdt in enumerate(widths):
            layers.append(orthogonal_linear(keys[i], d, wdt, 2**0.5))
            d = wdt
        self.hidden = tuple(layers)
        self.actor = orthogonal_linear(keys[-2], d, n_actions, 0.01)
        self.critic = orthogonal_linear(keys[-1], d, 1, 1.0)

    def __call__(self, obs: jax.Array, interventions: Mapping[str, Intervention] | None = None):
        acts: dict = {}
        h = tap("input", obs.reshape(-1).astype(jnp.float32), acts, interventions)
        for i, layer in enumerate(self.hidden):
            h = tap(f"hidden_{i}", jnp.tanh(layer(h)), acts, interventions)
        logits = tap("logits", self.actor(h), acts, interventions)
        value = tap("value", self.critic(h)[0], acts, interventions)
        return (logits, value), acts


class CNNActorCritic(eqx.Module):
    """3x3 conv layers (ReLU) -> flatten -> dense (tanh) -> policy logits and value."""

    conv_w: tuple[jax.Array, ...]
    conv_b: tuple[jax.Array, ...]
    dense: eqx.nn.Linear
    actor: eqx.nn.Linear
    critic: eqx.nn.Linear

    def __init__(self, obs_shape: Sequence[int], n_actions: int, channels: Sequence[int] = (16, 16),
                 width: int = 128, *, key):
        h, w, c = obs_shape
        keys = jax.random.split(key, len(channels) + 3)
        ws, bs = [], []
        for i, f in enumerate(channels):
            ws.append(jax.nn.initializers.he_normal()(keys[i], (9 * c, f), jnp.float32))
            bs.append(jnp.zeros((f,), jnp.float32))
            c = f
        self.conv_w, self.conv_b = tuple(ws), tuple(bs)
        self.dense = orthogonal_linear(keys[-3], h * w * c, width, 2**0.5)
        self.actor = orthogonal_linear(keys[-2], width, n_actions, 0.01)
        self.critic = orthogonal_linear(keys[-1], width, 1, 1.0)

    def __call__(self, obs: jax.Array, interventions: Mapping[str, Intervention] | None = None):
        acts: dict = {}
        x = tap("input", obs.astype(jnp.float32), acts, interventions)
        for i, (w, b) in enumerate(zip(self.conv_w, self.conv_b)):
            x = tap(f"conv_{i}", jax.nn.relu(conv3x3(x, w, b)), acts, interventions)
        h = tap("hidden_0", jnp.tanh(self.dense(x.reshape(-1))), acts, interventions)
        logits = tap("logits", self.actor(h), acts, interventions)
        value = tap("value", self.critic(h)[0], acts, interventions)
        return (logits, value), acts

