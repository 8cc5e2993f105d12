"""Supervised training of an in-context regression transformer under the ``make_train`` contract."""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import optax

from mesalab.errors import ConfigError
from mesalab.models.transformer import ICLTransformer
from mesalab.optimizers.config import DictConfig
from mesalab.tasks.icl_regression import make_regression_distribution, sample_regression


@dataclass(frozen=True)
class ICLConfig(DictConfig, settings_name="ICLConfig"):
    dim: int = 10
    n_context: int = 10
    noise_std: float = 0.0
    x_scale: float = 1.0
    w_scale: float = 1.0
    layers: int = 1
    heads: int = 1
    softmax: bool = False
    mlp: bool = False
    layernorm: bool = False
    steps: int = 3000
    batch: int = 1024
    lr: float = 3e-3
    init_scale: float = 0.02
    shuffle_targets: bool = False  # control: targets permuted across sequences (nothing to learn in context)

    def validate(self) -> "ICLConfig":
        for f in ("dim", "n_context", "layers", "heads", "steps", "batch"):
            if getattr(self, f) < 1:
                raise ConfigError(f"{f} must be at least 1, got {getattr(self, f)}")
        if self.lr <= 0:
            raise ConfigError(f"lr must be positive, got {self.lr}")
        return self



def init_model(config: ICLConfig, key: jax.Array) -> ICLTransformer:
    return ICLTransformer(config.dim, config.layers, config.heads, config.softmax, config.mlp, config.layernorm,
                          key, config.init_scale)


def batch_predictions(model, x, y, xq):
    return jax.vmap(lambda a, b, c: model(a, b, c)[0])(x, y, xq)


def make_train(config: ICLConfig):
    """``train(key) -> (model, metrics)``: Adam on the query's squared error, fresh sequences every step."""
    import equinox as eqx

    config = config.validate()
    dist = make_regression_distribution(config.x_scale, config.w_scale, config.noise_std)
    opt = optax.adam(config.lr)

    def loss_fn(model, batch):
        pred = batch_predictions(model, batch.x, batch.y, batch.x_query)
        return 0.5 * jnp.mean((pred - batch.y_query) ** 2)

    def train(key):
        k_init, k_data = jax.random.split(key)
        model = init_model(config, k_init)
        params, static = eqx.partition(model, eqx.is_array)
        with jax.numpy_dtype_promotion("standard"):
            state = opt.init(params)

        def step(carry, k):
            params, state = carry
            batch = sample_regression(k, dist, config.batch, config.n_context, config.dim)
            if config.shuffle_targets:
                kp = jax.random.fold_in(k, 1)
                batch = batch._replace(y_query=jax.random.permutation(kp, batch.y_query))
            loss, grads = jax.value_and_grad(lambda p: loss_fn(eqx.combine(p, static), batch))(params)
            with jax.numpy_dtype_promotion("standard"):
                updates, state = opt.update(grads, state, params)
                params = optax.apply_updates(params, updates)
            return (params, state), loss

        (params, _), losses = jax.lax.scan(step, (params, state), jax.random.split(k_data, config.steps))
        return eqx.combine(params, static), {"loss": losses}

    return train
