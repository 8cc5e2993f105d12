"""Models (learned algorithms): Equinox modules returning outputs plus named intermediate activations. Build any of
them by name with :func:`make_model` (``models/factory.py``)."""

from mesalab.models.actor_critic import CNNActorCritic, MLPActorCritic
from mesalab.models.common import conv3x3
from mesalab.models.grid_transformer import GridTransformerActorCritic
from mesalab.models.factory import KINDS, MODELS, make_model
from mesalab.models.recurrent import ConvGRUActorCritic, GRUActorCritic, is_recurrent
from mesalab.models.thinking import RecallThinker
from mesalab.models.tabular import TabularActorCritic
from mesalab.models.transformer import ICLTransformer
from mesalab.models.vin import ValueIterationNetwork

__all__ = ["KINDS", "MODELS", "CNNActorCritic", "ConvGRUActorCritic", "GRUActorCritic", "GridTransformerActorCritic",
           "ICLTransformer",
           "MLPActorCritic", "RecallThinker", "TabularActorCritic", "ValueIterationNetwork", "conv3x3", "is_recurrent",
           "make_model"]
