"""Supervised training of an in-context regression transformer under the ``make_train`` contract."""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import optax

from mesalab.errors import ConfigError
from mesalab.models import make_model
from mesalab.models.transformer import ICLTransformer
from mesalab.optimizers.config import DictConfig, Range
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

    # Allowed values of every numeric setting (checked by ``check_fields``: type, finite, range); the attention
    # scores of one step (batch * heads * (n_context+1)^2 numbers per layer) are also bounded (MAX_ATTENTION).
    RANGES = {
        "dim": Range(1, 1024),
        "n_context": Range(1, 4096),
        "noise_std": Range(0.0, 1000.0),
        "x_scale": Range(0.0, 1000.0, lo_open=True),
        "w_scale": Range(0.0, 1000.0, lo_open=True),
        "layers": Range(1, 64),
        "heads": Range(1, 64),
        "steps": Range(1, 10_000_000),
        "batch": Range(1, 65_536),
        "lr": Range(0.0, 1.0, lo_open=True, hi_open=True),
        "init_scale": Range(0.0, 10.0, lo_open=True),
    }
    MAX_ATTENTION = 2**30

    def validate(self) -> "ICLConfig":
        self.check_fields()
        scores = self.batch * self.heads * (self.n_context + 1) * (self.n_context + 1 + self.dim + 1)
        if scores > self.MAX_ATTENTION:
            raise ConfigError(f"batch*heads*(n_context+1)*(n_context+dim+2) = {scores} exceeds {self.MAX_ATTENTION} "
                              f"(memory of one step); lower batch, heads, n_context or dim")
        return self


def init_model(config: ICLConfig, key: jax.Array) -> ICLTransformer:
    return make_model("icl-transformer", key=key, dim=config.dim, layers=config.layers, heads=config.heads,
                      softmax=config.softmax, mlp=config.mlp, layernorm=config.layernorm, init_scale=config.init_scale)


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
