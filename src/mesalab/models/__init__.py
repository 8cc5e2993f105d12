"""Models (learned algorithms): Equinox modules returning outputs plus named intermediate activations."""

from mesalab.models.actor_critic import CNNActorCritic, MLPActorCritic, conv3x3, make_model

__all__ = ["CNNActorCritic", "MLPActorCritic", "conv3x3", "make_model"]
