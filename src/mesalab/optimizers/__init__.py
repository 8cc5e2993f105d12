"""Base optimizers. Each exposes ``make_train(config) -> train(key) -> (model, metrics)``."""

from mesalab.optimizers.ppo import PPOConfig, check_finite, init_model, make_train

__all__ = ["PPOConfig", "check_finite", "init_model", "make_train"]
