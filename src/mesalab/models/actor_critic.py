"""Actor-critic policies for the gridworlds: an MLP and a CNN whose 3x3 convolutions are patch extraction
plus one matrix multiply (several times faster than ``lax.conv`` on CPU, see design.md).

Calling convention: ``model(obs) -> ((logits, value), activations)`` for one observation; vmap for batches.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp

from mesalab.models.common import Intervention, conv3x3, tap


def _orthogonal_linear(key, d_in, d_out, scale):
    lin = eqx.nn.Linear(d_in, d_out, key=key)
    w = jax.nn.initializers.orthogonal(scale)(key, (d_out, d_in), jnp.float32)
    lin = eqx.tree_at(lambda m: m.weight, lin, w)
    return eqx.tree_at(lambda m: m.bias, lin, jnp.zeros((d_out,), jnp.float32))


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
            layers.append(_orthogonal_linear(keys[i], d, wdt, 2**0.5))
            d = wdt
        self.hidden = tuple(layers)
        self.actor = _orthogonal_linear(keys[-2], d, n_actions, 0.01)
        self.critic = _orthogonal_linear(keys[-1], d, 1, 1.0)

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
        self.dense = _orthogonal_linear(keys[-3], h * w * c, width, 2**0.5)
        self.actor = _orthogonal_linear(keys[-2], width, n_actions, 0.01)
        self.critic = _orthogonal_linear(keys[-1], width, 1, 1.0)

    def __call__(self, obs: jax.Array, interventions: Mapping[str, Intervention] | None = None):
        acts: dict = {}
        x = tap("input", obs.astype(jnp.float32), acts, interventions)
        for i, (w, b) in enumerate(zip(self.conv_w, self.conv_b)):
            x = tap(f"conv_{i}", jax.nn.relu(conv3x3(x, w, b)), acts, interventions)
        h = tap("hidden_0", jnp.tanh(self.dense(x.reshape(-1))), acts, interventions)
        logits = tap("logits", self.actor(h), acts, interventions)
        value = tap("value", self.critic(h)[0], acts, interventions)
        return (logits, value), acts


MODELS = ("mlp", "cnn", "gru", "convgru")


def make_model(kind: str, obs_shape, n_actions: int, *, key, width: int = 128, depth: int = 2, ticks: int = 1,
               channels: int = 8):
    """Build a policy by name: ``mlp`` (``depth`` tanh layers of ``width``), ``cnn``, or a recurrent policy whose
    core is iterated ``ticks`` times per step: ``gru`` (a dense GRU of ``width``) or ``convgru`` (ConvGRU/DRC-style:
    ``depth`` layers of ``channels`` channels, then a dense layer of ``width``)."""
    if kind == "mlp":
        return MLPActorCritic(obs_shape, n_actions, (width,) * depth, key=key)
    if kind == "cnn":
        return CNNActorCritic(obs_shape, n_actions, (16,) * depth, width, key=key)
    if kind == "gru":
        from mesalab.models.recurrent import GRUActorCritic

        return GRUActorCritic(obs_shape, n_actions, width, ticks, key=key)
    if kind == "convgru":
        from mesalab.models.recurrent import ConvGRUActorCritic

        return ConvGRUActorCritic(obs_shape, n_actions, channels, depth, width, ticks, key=key)
    from mesalab.errors import ConfigError

    raise ConfigError(f"unknown model {kind!r}; choose one of: {', '.join(MODELS)}")
