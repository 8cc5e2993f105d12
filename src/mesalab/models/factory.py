"""One constructor for every model class: ``make_model(kind, key=..., **shape)`` builds a model by name with
fresh weights drawn from ``key`` (the same key gives the same weights).

Kinds and their ``shape`` settings (defaults in brackets):

- ``mlp``, ``cnn``, ``gru``, ``convgru`` (actor-critics for a gridworld, :data:`MODELS`): ``obs_shape``,
  ``n_actions``, ``width`` [128], ``depth`` [2], ``ticks`` [1], ``channels`` [8]. ``mlp``: ``depth`` tanh layers
  of ``width``; ``cnn``: ``depth`` 3x3 conv layers of 16 channels, then a dense layer of ``width``; a recurrent
  policy's core is iterated ``ticks`` times per step: ``gru`` (a dense GRU of ``width``) or ``convgru``
  (ConvGRU/DRC-style: ``depth`` layers of ``channels`` channels, then a dense layer of ``width``). Settings a kind
  does not use are ignored, so one PPO config builds any of them.
- ``transformer`` (PPO's too): every cell a token, ``depth`` softmax-attention blocks of ``width`` (4 heads; attention
  over all H*W cells costs about ``H*W*width`` per token: use a small width such as 32), read from a summary token.
- ``tabular``, ``vin`` (the two ends of the algorithmic range, also PPO's): ``tabular`` is one logit vector and
  value per distinct observation in a hashed table of 2^20 slots (no setting); ``vin`` a value iteration network
  whose reward head has ``channels`` channels and whose hard-coded search runs ``ticks`` Bellman backups per
  step (its compute dial, like a recurrent model's ticks).
- ``icl-transformer`` (in-context regression): ``dim``, ``layers`` [1], ``heads`` [1], ``softmax`` [False],
  ``mlp`` [False], ``layernorm`` [False], ``init_scale`` [0.02].
- ``recall-thinker`` (maze-path recall network): ``in_channels``, ``width`` [32], ``blocks`` [2],
  ``head_width`` [16], ``ticks`` [20], ``pointwise`` [0], ``gated`` [False].
"""

from __future__ import annotations

from mesalab.errors import ConfigError
from mesalab.models.actor_critic import CNNActorCritic, MLPActorCritic
from mesalab.models.grid_transformer import GridTransformerActorCritic
from mesalab.models.recurrent import ConvGRUActorCritic, GRUActorCritic
from mesalab.models.tabular import TabularActorCritic
from mesalab.models.thinking import RecallThinker
from mesalab.models.transformer import ICLTransformer
from mesalab.models.vin import ValueIterationNetwork

MODELS = ("mlp", "cnn", "gru", "convgru", "transformer", "tabular", "vin")  # the actor-critics (what PPO's ``model`` setting names)
KINDS = (*MODELS, "icl-transformer", "recall-thinker")


def _actor_critic(kind: str, *, key, obs_shape, n_actions: int, width: int = 128, depth: int = 2, ticks: int = 1,
                  channels: int = 8):
    if kind == "mlp":
        return MLPActorCritic(obs_shape, n_actions, (width,) * depth, key=key)
    if kind == "cnn":
        return CNNActorCritic(obs_shape, n_actions, (16,) * depth, width, key=key)
    if kind == "gru":
        return GRUActorCritic(obs_shape, n_actions, width, ticks, key=key)
    if kind == "tabular":
        return TabularActorCritic(obs_shape, n_actions, key=key)
    if kind == "transformer":
        return GridTransformerActorCritic(obs_shape, n_actions, width, depth, key=key)
    if kind == "vin":
        return ValueIterationNetwork(obs_shape, n_actions, channels, ticks, key=key)
    return ConvGRUActorCritic(obs_shape, n_actions, channels, depth, width, ticks, key=key)


def _icl_transformer(*, key, dim: int, layers: int = 1, heads: int = 1, softmax: bool = False, mlp: bool = False,
                     layernorm: bool = False, init_scale: float = 0.02) -> ICLTransformer:
    return ICLTransformer(dim, layers, heads, softmax, mlp, layernorm, key, init_scale)


def _recall_thinker(*, key, in_channels: int, width: int = 32, blocks: int = 2, head_width: int = 16,
                    ticks: int = 20, pointwise: int = 0, gated: bool = False) -> RecallThinker:
    return RecallThinker(in_channels, width, blocks, head_width, ticks, pointwise, gated, key=key)


def make_model(kind: str, *, key, **shape):
    """A fresh model of kind ``kind`` (one of :data:`KINDS`) with weights drawn from ``key``; ``shape``: its
    sizes (see the module docstring)."""
    if kind in MODELS:
        return _actor_critic(kind, key=key, **shape)
    if kind == "icl-transformer":
        return _icl_transformer(key=key, **shape)
    if kind == "recall-thinker":
        return _recall_thinker(key=key, **shape)
    raise ConfigError(f"unknown model {kind!r}; choose one of: {', '.join(KINDS)}")
