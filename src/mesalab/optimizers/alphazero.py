"""AlphaZero-style training of an MCTS agent's prior and value (expert iteration: "Thinking Fast and Slow", Anthony
et al. 2017): the searching agent (:class:`mesalab.models.mcts.MCTSAgent`) acts in the environment; its prior is
trained toward the search's improved policy (Gumbel MuZero's action weights) and its value toward the discounted
return, bootstrapped with the search's root value at the end of each rollout.

Contract: ``make_train(config) -> train(key) -> (agent, metrics)``; ``train`` is pure, so seeds are a ``vmap``
axis. ``metrics`` has one entry per update (``success_rate``, ``episode_return``, ``episode_length`` over the
episodes that ended in it, ``policy_loss`` (cross-entropy to the search's policy), ``value_loss``, ``loss``).
The training levels are PPO's: N fixed levels, or (N = 0) a fresh pool every update with the levels the envs are
in the middle of carried over.
"""

from __future__ import annotations

from dataclasses import dataclass

import equinox as eqx
import jax
import jax.numpy as jnp
import optax

from mesalab.errors import ConfigError
from mesalab.models import make_model
from mesalab.models.mcts import MCTSAgent
from mesalab.optimizers.config import DictConfig, Range
from mesalab.tasks import get_task

FEED_FORWARD = ("mlp", "cnn", "transformer", "tabular")  # prior/value nets the tree can search with


@dataclass(frozen=True)
class AlphaZeroConfig(DictConfig, settings_name="AlphaZero"):
    """Everything that defines an AlphaZero-style run (with the seed, it determines the numbers exactly).

    Attributes:
        task: registered gridworld task. total_steps: environment steps of training (summed over envs).
        num_envs, rollout_len: parallel environments and steps per environment between updates.
        simulations: search budget per step while training (the hard-coded-search dial).
        update_epochs, num_minibatches: passes and minibatches per update. lr: Adam learning rate.
        gamma: discount of the search and of the value targets. vf_coef: value-loss weight.
        max_grad_norm: global gradient-norm clip.
        model, width, depth: the prior/value net (a feed-forward PPO model).
        n_levels, pool_size, level_seed, obs_mode: as PPO's (``PPOConfig``).
    """

    task: str = "maze"
    total_steps: int = 65_536
    num_envs: int = 32
    rollout_len: int = 32
    simulations: int = 16
    update_epochs: int = 4
    num_minibatches: int = 4
    lr: float = 1e-3
    gamma: float = 0.97
    vf_coef: float = 1.0
    max_grad_norm: float = 0.5
    model: str = "mlp"
    width: int = 128
    depth: int = 2
    n_levels: int = 0
    pool_size: int = 512
    level_seed: int = 0
    obs_mode: str = ""

    RANGES = {
        "total_steps": Range(1, 1_000_000_000),
        "num_envs": Range(1, 4096),
        "rollout_len": Range(1, 4096),
        "simulations": Range(1, 4096),
        "update_epochs": Range(1, 100),
        "num_minibatches": Range(1, 4096),
        "lr": Range(0.0, 1.0, lo_open=True, hi_open=True),
        "gamma": Range(0.0, 1.0, lo_open=True),
        "vf_coef": Range(0.0, 100.0),
        "max_grad_norm": Range(0.0, 1e6),
        "width": Range(1, 4096),
        "depth": Range(1, 64),
        "n_levels": Range(0, 100_000),
        "pool_size": Range(1, 65_536),
        "level_seed": Range(0, 2**31 - 1),
    }

    @property
    def steps_per_update(self) -> int:
        return self.num_envs * self.rollout_len

    @property
    def num_updates(self) -> int:
        return self.total_steps // self.steps_per_update

    def validate(self) -> "AlphaZeroConfig":
        self.check_fields()
        task = get_task(self.task)
        if self.obs_mode and self.obs_mode not in task.obs_modes:
            raise ConfigError(f"obs_mode {self.obs_mode!r} is not offered by task {self.task!r}; use one of: "
                              f"{', '.join(task.obs_modes)} (or \"\" for the task's own)")
        from mesalab.tasks.keys_chests import KeysChestsTask

        if isinstance(task, KeysChestsTask):
            raise ConfigError(f"task {self.task!r} has its own environment (keys and chests), which the MCTS agent "
                              f"cannot simulate yet; use a gridworld task such as maze or red-door")
        if self.model not in FEED_FORWARD:
            raise ConfigError(f"the search's prior/value net must be feed-forward: model must be one of "
                              f"{', '.join(FEED_FORWARD)}, got {self.model!r}")
        if self.total_steps < self.steps_per_update:
            raise ConfigError(f"total_steps={self.total_steps} is less than one update "
                              f"(num_envs*rollout_len={self.steps_per_update}); raise total_steps")
        if self.steps_per_update % self.num_minibatches:
            raise ConfigError("num_envs*rollout_len must be divisible by num_minibatches; change num_minibatches")
        return self


def discounted_returns(reward: jax.Array, done: jax.Array, last_value: jax.Array, gamma: float) -> jax.Array:
    """``G[T, B]``: ``G_t = r_t + gamma (1 - done_t) G_{t+1}`` from the end of a rollout ``reward, done [T, B]``,
    with ``G_T = last_value [B]`` (the search's root value where the rollout stops mid-episode); an episode's end
    cuts the sum, so no return crosses into the next episode after an auto-reset."""

    def step(g, x):
        r, d = x
        g = r + gamma * (1.0 - d.astype(jnp.float32)) * g
        return g, g

    _, out = jax.lax.scan(step, last_value, (reward, done), reverse=True)
    return out


def init_agent(config: AlphaZeroConfig, key: jax.Array) -> MCTSAgent:
    env = get_task(config.task).with_obs_mode(config.obs_mode).env
    net = make_model(config.model, key=key, obs_shape=env.obs_shape, n_actions=env.n_actions, width=config.width,
                     depth=config.depth)
    return MCTSAgent(net, config.simulations, config.gamma)


def make_train(config: AlphaZeroConfig):
    """Return ``train(key) -> (agent, metrics)`` (module docstring)."""
    from mesalab.optimizers.ppo import _carry_over

    config.validate()
    task = get_task(config.task).with_obs_mode(config.obs_mode)
    env = task.env
    n_env, n_steps, batch = config.num_envs, config.rollout_len, config.steps_per_update
    mb_size = batch // config.num_minibatches
    unlimited = config.n_levels == 0
    optimizer = optax.chain(optax.clip_by_global_norm(config.max_grad_norm), optax.adam(config.lr, eps=1e-5))
    _, static = eqx.partition(jax.eval_shape(lambda: init_agent(config, jax.random.key(0))),
                              lambda x: isinstance(x, jax.ShapeDtypeStruct))

    def loss_fn(p, obs, weights, target):
        net = eqx.combine(p, static).net
        (logits, value), _ = jax.vmap(net)(obs)
        policy_loss = -(weights * jax.nn.log_softmax(logits)).sum(-1).mean()
        value_loss = 0.5 * ((value - target) ** 2).mean()
        return policy_loss + config.vf_coef * value_loss, (policy_loss, value_loss)

    def train(key: jax.Array):
        k_model, k_levels, k_env, k_loop = jax.random.split(key, 4)
        agent = init_agent(config, k_model)
        params, _ = eqx.partition(agent, eqx.is_array)
        with jax.numpy_dtype_promotion("standard"):
            opt_state = optimizer.init(params)
        if unlimited:
            fresh, _ = task.sample_params(k_levels, task.train, config.pool_size)
            env_params, _ = _carry_over(fresh, fresh, jnp.zeros((n_env,), jnp.int32))
        else:
            env_params, _ = task.sample_params(jax.random.key(config.level_seed), task.train, config.n_levels)
        _, state = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(k_env, n_env), env_params)

        def update(carry, upd_idx):
            params, opt_state, env_params, state, ep_return, key = carry
            key, k_pool, k_roll, k_perm = jax.random.split(key, 4)
            if unlimited:
                fresh, _ = task.sample_params(k_pool, task.train, config.pool_size)
                env_params, new_idx = _carry_over(env_params, fresh, state.level)
                state = state._replace(level=new_idx)
            agent = eqx.combine(params, static)

            def search(states, k):
                return jax.vmap(lambda s, kk: agent.search(env, env_params, s, kk))(states, jax.random.split(k, n_env))

            def env_step(c, k):
                state, ep_return = c
                k_search, k_step = jax.random.split(k)
                res = search(state, k_search)
                obs = jax.vmap(lambda s: env.observe(s, env_params))(state)
                _, nxt, reward, done, info = jax.vmap(env.step, in_axes=(0, 0, 0, None))(
                    jax.random.split(k_step, n_env), state, res.action, env_params)
                ep_ret = ep_return + reward
                out = (obs, res.weights, reward, done, info["success"], ep_ret, state.t + 1)
                return (nxt, jnp.where(done, 0.0, ep_ret)), out

            (state, ep_return), (obs, weights, reward, done, success, ep_rets, ep_lens) = jax.lax.scan(
                env_step, (state, ep_return), jax.random.split(k_roll, n_steps))
            last = search(state, jax.random.fold_in(k_roll, 1)).value

            target = discounted_returns(reward, done, last, config.gamma)
            flat = jax.tree_util.tree_map(lambda x: x.reshape((batch,) + x.shape[2:]), (obs, weights, target))

            def epoch(c, k):
                perm = jax.random.permutation(k, batch)
                mbs = jax.tree_util.tree_map(
                    lambda x: x[perm].reshape((config.num_minibatches, mb_size) + x.shape[1:]), flat)

                def minibatch(c, mb):
                    params, opt_state = c
                    (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, *mb)
                    with jax.numpy_dtype_promotion("standard"):
                        updates, opt_state = optimizer.update(grads, opt_state, params)
                    return (optax.apply_updates(params, updates), opt_state), (loss, *aux)

                return jax.lax.scan(minibatch, c, mbs)

            (params, opt_state), losses = jax.lax.scan(epoch, (params, opt_state),
                                                       jax.random.split(k_perm, config.update_epochs))
            d = done.astype(jnp.float32)
            n_done = d.sum()
            safe = jnp.maximum(n_done, 1.0)
            nan = jnp.float32(jnp.nan)
            metrics = {
                "env_steps": (upd_idx + 1) * batch,
                "episodes": n_done,
                "episode_return": jnp.where(n_done > 0, (ep_rets * d).sum() / safe, nan),
                "success_rate": jnp.where(n_done > 0, (success.astype(jnp.float32) * d).sum() / safe, nan),
                "episode_length": jnp.where(n_done > 0, (ep_lens.astype(jnp.float32) * d).sum() / safe, nan),
                "loss": losses[0].mean(), "policy_loss": losses[1].mean(), "value_loss": losses[2].mean(),
            }
            return (params, opt_state, env_params, state, ep_return, key), metrics

        carry = (params, opt_state, env_params, state, jnp.zeros((n_env,), jnp.float32), k_loop)
        carry, metrics = jax.lax.scan(update, carry, jnp.arange(config.num_updates, dtype=jnp.int32))
        return eqx.combine(carry[0], static), metrics

    return train
