"""Models (learned algorithms): Equinox modules returning outputs plus named intermediate activations."""

from mesalab.models.actor_critic import MODELS, CNNActorCritic, MLPActorCritic, make_model
from mesalab.models.common import conv3x3
from mesalab.models.recurrent import ConvGRUActorCritic, GRUActorCritic, is_recurrent
from mesalab.models.thinking import RecallThinker

__all__ = ["MODELS", "CNNActorCritic", "ConvGRUActorCritic", "GRUActorCritic", "MLPActorCritic", "RecallThinker", "conv3x3",
           "is_recurrent", "make_model"]
