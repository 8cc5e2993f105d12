"""A recurrent convolutional "thinking" network with recall (Bansal et al. 2022, "End-to-end algorithm synthesis
with recurrent networks"), for image-to-mask tasks such as ``maze-path``.

One *tick* (iteration) maps the hidden state ``h[S, S, width]`` and the input image (re-injected every tick: the
*recall*) to a new hidden state: a 3x3 convolution of ``concat(h, image)`` followed by ``pointwise`` residual
1x1 layers (a per-cell MLP) and ``blocks`` residual blocks of two 3x3 convolutions. With ``blocks=0`` a tick
sees only the 3x3 neighbourhood, like a cellular automaton: information moves one cell per tick, which favours
local algorithms (dead-end filling, wavefronts) that do not depend on the maze's size. A small convolutional head reads a per-cell logit from any tick's state. All
weights are shared across ticks and every layer is a 3x3 convolution, so the same network runs on any image
size for any number of ticks: more ticks is more internal compute (the test-time compute dial).

The pieces (``initial_state``, ``tick``, ``readout``) are public so trainers can unroll ticks as they need;
``__call__`` runs ``ticks`` ticks and returns the per-tick logits with named per-tick intermediates.
"""

from __future__ import annotations

from typing import Mapping

import equinox as eqx
import jax
import jax.numpy as jnp

from mesalab.models.common import Intervention, conv3x3, tap


def _conv_params(key, c_in: int, c_out: int):
    w = jax.nn.initializers.he_normal()(key, (9 * c_in, c_out), jnp.float32)
    return w, jnp.zeros((c_out,), jnp.float32)


class RecallThinker(eqx.Module):
    """Recall network: ``project -> ticks x [conv(h ++ image) -> residual blocks] -> head``."""

    project: tuple[jax.Array, jax.Array]
    recall: tuple[jax.Array, jax.Array]
    pointwise: tuple[tuple[jax.Array, jax.Array], ...]
    blocks: tuple[tuple[jax.Array, jax.Array, jax.Array, jax.Array], ...]
    head: tuple[tuple[jax.Array, jax.Array], ...]
    gate: tuple[jax.Array, jax.Array] | None
    ticks: int = eqx.field(static=True)

    def __init__(self, in_channels: int, width: int = 32, blocks: int = 2, head_width: int = 16,
                 ticks: int = 20, pointwise: int = 0, gated: bool = False, *, key):
        keys = iter(jax.random.split(key, 5 + 2 * blocks + pointwise))
        self.project = _conv_params(next(keys), in_channels, width)
        self.recall = _conv_params(next(keys), width + in_channels, width)
        he = jax.nn.initializers.he_normal()
        self.pointwise = tuple((he(next(keys), (width, width), jnp.float32) * 0.5, jnp.zeros((width,), jnp.float32))
                               for _ in range(pointwise))
        res = []
        for _ in range(blocks):
            w1, b1 = _conv_params(next(keys), width, width)
            w2, b2 = _conv_params(next(keys), width, width)
            res.append((w1, b1, w2 * 0.5, b2))
        self.blocks = tuple(res)
        self.head = (_conv_params(next(keys), width, head_width), _conv_params(next(keys), head_width, 1))
        k_gate = next(keys)
        # Update gate z = sigmoid([h, candidate] @ W + b), biased towards keeping the old state (b = -1).
        self.gate = ((jax.nn.initializers.glorot_normal()(k_gate, (2 * width, width), jnp.float32),
                      jnp.full((width,), -1.0, jnp.float32)) if gated else None)
        self.ticks = int(ticks)

    def initial_state(self, image: jax.Array) -> jax.Array:
        return jax.nn.relu(conv3x3(image, *self.project))

    def tick(self, h: jax.Array, image: jax.Array) -> jax.Array:
        """One iteration of thought: the new hidden state from the old one and the (recalled) input.

        Gated networks keep a per-cell, per-channel fraction ``1 - z`` of the old state (a GRU-style update
        gate), so a cell can hold a decision for as many ticks as it likes.
        """
        old = h
        h = jax.nn.relu(conv3x3(jnp.concatenate([h, image], axis=-1), *self.recall))
        for w, b in self.pointwise:
            h = jax.nn.relu(h + h @ w + b[None, None, :])
        for w1, b1, w2, b2 in self.blocks:
            h = jax.nn.relu(h + conv3x3(jax.nn.relu(conv3x3(h, w1, b1)), w2, b2))
        if self.gate is not None:
            width = h.shape[-1]
            z = jax.nn.sigmoid(old @ self.gate[0][:width] + h @ self.gate[0][width:] + self.gate[1][None, None, :])
            h = old + z * (h - old)
        return h

    def readout(self, h: jax.Array) -> jax.Array:
        """Per-cell logit ``[S, S]`` that the cell is on the path."""
        (w1, b1), (w2, b2) = self.head
        return conv3x3(jax.nn.relu(conv3x3(h, w1, b1)), w2, b2)[..., 0]

    def __call__(self, image: jax.Array, ticks: int | None = None,
                 interventions: Mapping[str, Intervention] | None = None):
        """``(logits[T, S, S], activations)`` for one image. Activations ``hidden`` ``[T, S, S, width]`` and
        ``logits`` ``[T, S, S]`` hold every tick; an intervention on ``hidden`` or ``logits`` is applied at every
        tick, inside the loop, so it changes all later ticks.
        """
        ticks = self.ticks if ticks is None else int(ticks)
        acts: dict = {}
        x = tap("input", image.astype(jnp.float32), acts, interventions)

        def body(h, _):
            per_tick: dict = {}
            h = tap("hidden", self.tick(h, x), per_tick, interventions)
            return h, (h, tap("logits", self.readout(h), per_tick, interventions))

        _, (acts["hidden"], acts["logits"]) = jax.lax.scan(body, self.initial_state(x), None, length=ticks)
        return acts["logits"], acts
