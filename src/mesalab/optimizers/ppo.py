"""Proximal policy optimisation (PureJaxRL style): the whole training run is one jitted ``lax.scan``.

Contract: ``make_train(config) -> train(key) -> (model, metrics)``. ``train`` is pure, so seeds are a
``vmap`` axis: ``jax.vmap(make_train(cfg))(jax.random.split(key, n_seeds))``.

The same run in stages (:func:`make_train_stages`: ``init``, ``run`` a chunk of updates, ``finish``) lets a driver
report progress between jitted chunks (:func:`train_in_chunks`). No host callback sits in the compiled program, so
JAX's persistent compilation cache can keep it across processes (:mod:`mesalab.compile_cache`), and the chunks
give the same numbers as the one-program ``train``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from mesalab.data_dials import PPO_DATA_DIALS
from mesalab.errors import ConfigError, TrainingDivergedError
from mesalab.models import MODELS, make_model
from mesalab.optimizers.config import DictConfig, Range
from mesalab.tasks import get_task
from mesalab.tasks.grid import POOL_SCALARS, EnvParams


@dataclass(frozen=True)
class PPOConfig(DictConfig, settings_name="PPO"):
    """Everything that defines a PPO run (with the seed, it determines the numbers exactly).

    Attributes:
        task: registered task name (``mesalab tasks``).
        total_steps: environment steps of training, summed over parallel environments.
        num_envs: parallel environments.
        rollout_len: steps per environment between updates.
        update_epochs, num_minibatches: passes and minibatches per update.
        lr: Adam learning rate (linearly annealed to 0 when ``anneal_lr``).
        gamma, gae_lambda: discount and GAE parameter.
        clip_eps: PPO ratio clip. ent_coef, vf_coef: entropy bonus and value-loss weights.
        max_grad_norm: global gradient-norm clip.
        weight_decay: decoupled L2 weight decay (a description-length / simplicity dial).
        model: ``mlp``, ``cnn``, recurrent ``gru`` / ``convgru``, ``transformer`` (cells as tokens; width is its
            model width, depth its blocks), ``tabular`` (a hashed table, one entry per
            observation) or ``vin`` (a value iteration network); width, depth: its capacity dials.
        ticks: internal iterations per environment step of a recurrent model, or a VIN's Bellman backups (the
            compute dial);
            channels: its ConvGRU channels. A recurrent model is trained with backpropagation through each
            rollout (hidden state carried across steps, reset at episode start; minibatches are sets of envs).
        n_levels: number of distinct training levels N; 0 means unlimited (a fresh pool every update).
        pool_size: levels generated per update when ``n_levels == 0``.
        level_seed: seed of the fixed training levels when ``n_levels > 0`` (shared by all training seeds).
        train_alpha: fraction α of disambiguating levels (proxy and base objective disagree) in the training
            distribution; -1 keeps the task's own training distribution (α = 0 for the registered tasks).
        train_corner_k: side k of the corner region that holds the goal in the training distribution (tasks with a
            ``corner_k`` dial); -1 keeps the task's own (corner-goal 3, corner-goal-13 1).
        obs_mode: what the policy observes: ``""`` the task's own (egocentric), ``"egocentric"``, ``"global"`` or
            ``"lean"`` (the egocentric view less its always-wall rings and never-set channels: lossless and a
            smaller first layer; :class:`mesalab.tasks.grid.GridEnv`). Evaluation and diagnostics observe the same way.
    """

    task: str = "red-door"
    total_steps: int = 1_000_000
    num_envs: int = 64
    rollout_len: int = 64
    update_epochs: int = 4
    num_minibatches: int = 4
    lr: float = 1e-3
    anneal_lr: bool = True
    gamma: float = 0.97
    gae_lambda: float = 0.95
    clip_eps: float = 0.2
    ent_coef: float = 0.01
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    weight_decay: float = 0.0
    model: str = "mlp"
    width: int = 128
    depth: int = 2
    n_levels: int = 0
    pool_size: int = 512
    level_seed: int = 0
    train_alpha: float = -1.0
    train_corner_k: int = -1
    ticks: int = 1
    channels: int = 8
    obs_mode: str = ""

    @property
    def steps_per_update(self) -> int:
        return self.num_envs * self.rollout_len

    @property
    def num_updates(self) -> int:
        return self.total_steps // self.steps_per_update

    # Allowed values of every numeric setting (checked by ``check_fields``: type, finite, range). The upper ends
    # keep a run within memory and time: at most 1e9 environment steps, and one update's rollout buffer
    # (num_envs * rollout_len <= MAX_STEPS_PER_UPDATE steps of observations).
    RANGES = {
        "total_steps": Range(1, 1_000_000_000),
        "num_envs": Range(1, 16_384),
        "rollout_len": Range(1, 4096),
        "update_epochs": Range(1, 100),
        "num_minibatches": Range(1, 4096),
        "lr": Range(0.0, 1.0, lo_open=True, hi_open=True),
        "gamma": Range(0.0, 1.0, lo_open=True),
        "gae_lambda": Range(0.0, 1.0, lo_open=True),
        "clip_eps": Range(0.0, 1.0, lo_open=True),
        "ent_coef": Range(0.0, 100.0),
        "vf_coef": Range(0.0, 100.0),
        "max_grad_norm": Range(0.0, 1e6),
        "weight_decay": Range(0.0, 100.0),
        "width": Range(1, 4096),
        "depth": Range(1, 64),
        "n_levels": Range(0, 100_000),
        "pool_size": Range(1, 65_536),
        "level_seed": Range(0, 2**31 - 1),
        "train_alpha": Range(0.0, 1.0, also=(-1.0,)),
        "train_corner_k": Range(1, 64, also=(-1,)),
        "ticks": Range(1, 256),
        "channels": Range(1, 1024),
    }
    MAX_STEPS_PER_UPDATE = 2**19

    def validate(self) -> "PPOConfig":
        self.check_fields()
        task = get_task(self.task)
        if self.obs_mode and self.obs_mode not in task.obs_modes:
            raise ConfigError(f"obs_mode {self.obs_mode!r} is not offered by task {self.task!r}; use one of: "
                              f"{', '.join(task.obs_modes)} (or \"\" for the task's own)")
        if self.train_corner_k != -1:
            if "corner_k" not in task.dials:
                raise ConfigError(f"train_corner_k is a setting of corner tasks; task {self.task!r} has no corner region")
            side = min(task.shape.height, task.shape.width) - 2
            if self.train_corner_k > side:
                raise ConfigError(f"train_corner_k={self.train_corner_k} exceeds the {side} interior cells of task "
                                  f"{self.task!r}; pass 1..{side}")
        if self.steps_per_update > self.MAX_STEPS_PER_UPDATE:
            raise ConfigError(f"num_envs*rollout_len={self.steps_per_update} exceeds {self.MAX_STEPS_PER_UPDATE} steps "
                              f"per update (memory); lower num_envs or rollout_len")
        if self.total_steps < self.steps_per_update:
            raise ConfigError(
                f"total_steps={self.total_steps} is less than one update "
                f"(num_envs*rollout_len={self.steps_per_update}); raise total_steps"
            )
        if (self.num_envs * self.rollout_len) % self.num_minibatches:
            raise ConfigError("num_envs*rollout_len must be divisible by num_minibatches; change num_minibatches")
        if self.model not in MODELS:
            raise ConfigError(f"unknown model {self.model!r}; choose one of: {', '.join(MODELS)}")
        if self.recurrent and self.num_envs % self.num_minibatches:
            raise ConfigError(f"a recurrent model's minibatches are sets of envs: num_envs={self.num_envs} must be "
                              f"divisible by num_minibatches={self.num_minibatches}")
        return self

    @property
    def recurrent(self) -> bool:
        return self.model in ("gru", "convgru")


class Transition(NamedTuple):
    obs: jax.Array
    action: jax.Array
    log_prob: jax.Array
    value: jax.Array
    reward: jax.Array
    done: jax.Array
    success: jax.Array
    start: jax.Array  # the hidden state was reset before this step (episode start); used by recurrent models


def task_for(config: PPOConfig):
    """The task of ``config`` as its agents observe it (:meth:`mesalab.tasks.registry.Task.with_obs_mode`)."""
    return get_task(config.task).with_obs_mode(config.obs_mode)


def init_model(config: PPOConfig, key: jax.Array):
    env = task_for(config).env
    return make_model(config.model, key=key, obs_shape=env.obs_shape, n_actions=env.n_actions, width=config.width,
                      depth=config.depth, ticks=config.ticks, channels=config.channels)


def training_distribution(task, config: PPOConfig, dials: dict | None = None):
    """The training level distribution of ``config`` at the data dials ``dials`` (``train_alpha``, ``train_corner_k``;
    negative: the task's own)."""
    dials = dials or {}
    alpha = jnp.asarray(dials.get("train_alpha", config.train_alpha), jnp.float32)
    corner_k = jnp.round(jnp.asarray(dials.get("train_corner_k", config.train_corner_k))).astype(jnp.int32)
    return task.train._replace(alpha=jnp.where(alpha < 0, task.train.alpha, alpha),
                               corner_k=jnp.where(corner_k < 0, task.train.corner_k, corner_k))


def training_levels(config: PPOConfig, key: jax.Array, dials: dict | None = None) -> tuple[jax.Array, jax.Array]:
    """``(grids, starts)`` of every level the trainer of ``config`` drew from ``key``: the N fixed levels, or (N
    unlimited) the first pool and every update's fresh pool, by the trainer's own key schedule (jittable; a test
    checks it against the pools the trainer used)."""
    task = get_task(config.task)
    dist = training_distribution(task, config, dials)
    if config.n_levels > 0:
        fixed, _ = task.sample_params(jax.random.key(config.level_seed), dist, config.n_levels)
        return fixed.grid, fixed.start
    _, k_levels, _, k_loop = jax.random.split(key, 4)

    def next_key(k, _):
        k, k_pool, _, _ = jax.random.split(k, 4)
        return k, k_pool

    _, pool_keys = jax.lax.scan(next_key, k_loop, None, length=config.num_updates)
    keys = jnp.concatenate([k_levels[None], pool_keys])
    pools = jax.lax.map(lambda k: task.sample_params(k, dist, config.pool_size)[0], keys)
    grids, starts = pools.grid, pools.start
    return grids.reshape((-1,) + grids.shape[2:]), starts.reshape(-1, 2)


def _carry_over(params: EnvParams, fresh: EnvParams, level_idx: jax.Array) -> tuple[EnvParams, jax.Array]:
    """A new pool = the levels the envs are in the middle of, followed by fresh levels; resets draw only
    from the fresh part (``level_offset``), so no episode changes level mid-way. Any pool type works (its
    per-level fields are concatenated: ``EnvParams``, ``KeysChestsParams``)."""
    n = level_idx.shape[0]
    per_level = {f: jnp.concatenate([getattr(params, f)[level_idx], getattr(fresh, f)])
                 for f in params._fields if f not in POOL_SCALARS}
    pool = params._replace(**per_level, n_levels=fresh.n_levels, max_steps=fresh.max_steps, level_offset=jnp.int32(n))
    return pool, jnp.arange(n, dtype=jnp.int32)


def reset_where(start: jax.Array, hidden: jax.Array) -> jax.Array:
    """The hidden states ``[B, ...]`` with rows where ``start`` is true set to the initial carry (zeros)."""
    return jnp.where(start.reshape((-1,) + (1,) * (hidden.ndim - 1)), 0.0, hidden)


def replay_recurrent(model, obs: jax.Array, start: jax.Array, hidden0: jax.Array):
    """``(logits[T, B, A], values[T, B])`` of a recurrent model re-run over stored sequences ``obs[T, B, ...]`` from
    ``hidden0[B, ...]``, its hidden state reset to the initial carry before every step where ``start[T, B]`` is true
    (an episode start). This is the forward pass that recurrent PPO backpropagates through."""

    def f(h, x):
        o, st = x
        ((logits, value), h), _ = jax.vmap(model.step)(o, reset_where(st, h))
        return h, (logits, value)

    _, (logits, values) = jax.lax.scan(f, hidden0, (obs, start))
    return logits, values


class TrainStages(NamedTuple):
    """One PPO run in stages: ``init(key, dials) -> carry``; ``run(carry, dials, first, n) -> (carry, metrics)``
    performs updates ``first .. first + n - 1`` (``n`` static; ``metrics`` one entry per update);
    ``finish(carry) -> model``. ``dials`` is a dict of data-dial arrays (possibly empty), as for ``train``."""

    init: Callable
    run: Callable
    finish: Callable
    num_updates: int


def make_train_stages(config: PPOConfig) -> TrainStages:
    """The stages of :func:`make_train`'s ``train`` (see :class:`TrainStages`); running ``init``, then ``run`` over
    consecutive chunks covering every update, then ``finish`` is ``train``."""
    config.validate()
    task = task_for(config)
    env = task.env
    n_env, n_steps = config.num_envs, config.rollout_len
    n_updates = config.num_updates
    batch = n_env * n_steps
    mb_size = batch // config.num_minibatches
    unlimited = config.n_levels == 0

    def lr_schedule(count):
        done = (count // (config.num_minibatches * config.update_epochs)).astype(jnp.float32)
        frac = 1.0 - done / jnp.float32(n_updates)
        return config.lr * frac if config.anneal_lr else config.lr

    def make_optimizer(weight_decay):
        return optax.chain(
            optax.clip_by_global_norm(config.max_grad_norm),
            optax.adamw(lr_schedule, eps=1e-5, weight_decay=weight_decay),
        )

    recurrent = config.recurrent

    def policy_apply(params, static, obs, hidden):
        """Batched policy: ``(logits, value, next hidden)``; ``hidden`` is a placeholder for feed-forward models."""
        model = eqx.combine(params, static)
        if recurrent:
            ((logits, value), hidden), _ = jax.vmap(model.step)(obs, hidden)
            return logits, value, hidden
        (logits, value), _ = jax.vmap(model)(obs)
        return logits, value, hidden

    def initial_hidden(model, n):
        if not recurrent:
            return jnp.zeros((n, 1), jnp.float32)
        return jnp.zeros((n, *model.initial_carry().shape), jnp.float32)

    def replay(params, static, traj, hidden0):
        return replay_recurrent(eqx.combine(params, static), traj.obs, traj.start, hidden0)

    # the model's non-array part (its structure and settings), the same for every key
    _, static = eqx.partition(jax.eval_shape(lambda: init_model(config, jax.random.key(0))),
                              lambda x: isinstance(x, jax.ShapeDtypeStruct))

    def check_dials(dials):
        dials = dict(dials or {})
        unknown = sorted(set(dials) - set(PPO_DATA_DIALS))
        if unknown:
            raise ConfigError(f"{unknown} are not data dials of PPO; data dials: {', '.join(PPO_DATA_DIALS)}")
        return dials

    def optimizer_for(dials):
        return make_optimizer(jnp.asarray(dials.get("weight_decay", config.weight_decay), jnp.float32))

    def init(key: jax.Array, dials: dict | None = None):
        dials = check_dials(dials)
        dist = training_distribution(task, config, dials)
        optimizer = optimizer_for(dials)
        k_model, k_levels, k_env, k_loop = jax.random.split(key, 4)
        model = init_model(config, k_model)
        params, _ = eqx.partition(model, eqx.is_array)
        with jax.numpy_dtype_promotion("standard"):
            opt_state = optimizer.init(params)
        if unlimited:
            fresh, _ = task.sample_params(k_levels, dist, config.pool_size)
            # same layout as every later pool: n_env carried-over slots, then the fresh levels
            env_params, _ = _carry_over(fresh, fresh, jnp.zeros((n_env,), jnp.int32))
        else:
            env_params, _ = task.sample_params(jax.random.key(config.level_seed), dist, config.n_levels)
        obs, state = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(k_env, n_env), env_params)
        ep_return = jnp.zeros((n_env,), jnp.float32)
        hidden = initial_hidden(model, n_env)
        starts = jnp.ones((n_env,), jnp.bool_)
        return (params, opt_state, env_params, state, obs, ep_return, hidden, starts, k_loop)

    def run(carry, dials: dict | None, first, n: int):
        dials = check_dials(dials)
        dist = training_distribution(task, config, dials)
        optimizer = optimizer_for(dials)

        def update(carry, upd_idx):
            params, opt_state, env_params, state, obs, ep_return, hidden, starts, key = carry
            key, k_pool, k_roll, k_perm = jax.random.split(key, 4)
            if unlimited:
                fresh, _ = task.sample_params(k_pool, dist, config.pool_size)
                env_params, new_idx = _carry_over(env_params, fresh, state.level)
                state = state._replace(level=new_idx)

            hidden0 = hidden

            def env_step(c, k):
                state, obs, ep_return, hidden, start = c
                k_act, k_step = jax.random.split(k)
                logits, value, hidden_next = policy_apply(params, static, obs, hidden)
                action = jax.random.categorical(k_act, logits)
                log_prob = jax.nn.log_softmax(logits)[jnp.arange(n_env), action]
                obs2, state2, reward, done, info = jax.vmap(env.step, in_axes=(0, 0, 0, None))(
                    jax.random.split(k_step, n_env), state, action, env_params
                )
                ep_ret = ep_return + reward
                tr = Transition(obs, action, log_prob, value, reward, done, info["success"], start)
                hidden_next = reset_where(done, hidden_next)
                return (state2, obs2, jnp.where(done, 0.0, ep_ret), hidden_next, done), (tr, ep_ret, state.t + 1)

            (state, obs, ep_return, hidden, starts), (traj, ep_rets, ep_lens) = jax.lax.scan(
                env_step, (state, obs, ep_return, hidden, starts), jax.random.split(k_roll, n_steps)
            )
            _, last_value, _ = policy_apply(params, static, obs, hidden)

            def gae_step(c, tr):
                gae, next_value = c
                not_done = 1.0 - tr.done.astype(jnp.float32)
                delta = tr.reward + config.gamma * next_value * not_done - tr.value
                gae = delta + config.gamma * config.gae_lambda * not_done * gae
                return (gae, tr.value), gae

            _, adv = jax.lax.scan(gae_step, (jnp.zeros_like(last_value), last_value), traj, reverse=True)
            targets = adv + traj.value

            def loss_fn(p, tr, adv, tgt, hidden0=None):
                if recurrent:  # tr: [T, envs]; replay the rollout, then score every step like a flat batch
                    logits, value = replay(p, static, tr, hidden0)
                    flatten = lambda x: x.reshape((-1,) + x.shape[2:])  # noqa: E731
                    logits, value = flatten(logits), flatten(value)
                    tr, adv, tgt = jax.tree_util.tree_map(flatten, (tr, adv, tgt))
                else:
                    logits, value, _ = policy_apply(p, static, tr.obs, None)
                logp_all = jax.nn.log_softmax(logits)
                logp = jnp.take_along_axis(logp_all, tr.action[:, None], axis=1)[:, 0]
                ratio = jnp.exp(logp - tr.log_prob)
                a = (adv - adv.mean()) / (adv.std() + 1e-8)
                pg = -jnp.minimum(ratio * a, jnp.clip(ratio, 1 - config.clip_eps, 1 + config.clip_eps) * a).mean()
                v_clip = tr.value + jnp.clip(value - tr.value, -config.clip_eps, config.clip_eps)
                vf = 0.5 * jnp.maximum((value - tgt) ** 2, (v_clip - tgt) ** 2).mean()
                ent = -(jnp.exp(logp_all) * logp_all).sum(-1).mean()
                kl = ((ratio - 1) - (logp - tr.log_prob)).mean()
                return pg + config.vf_coef * vf - config.ent_coef * ent, (pg, vf, ent, kl)

            flat = jax.tree_util.tree_map(lambda x: x.reshape((batch,) + x.shape[2:]), (traj, adv, targets))

            def epoch(c, k):
                params, opt_state = c
                if recurrent:  # minibatches are sets of whole env sequences
                    perm = jax.random.permutation(k, n_env).reshape(config.num_minibatches, -1)
                    mbs = (jax.tree_util.tree_map(lambda x: jnp.moveaxis(x[:, perm], 1, 0), (traj, adv, targets))
                           + (hidden0[perm],))
                else:
                    perm = jax.random.permutation(k, batch)
                    mbs = jax.tree_util.tree_map(
                        lambda x: x[perm].reshape((config.num_minibatches, mb_size) + x.shape[1:]), flat
                    )

                def minibatch(c, mb):
                    params, opt_state = c
                    (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, *mb)
                    with jax.numpy_dtype_promotion("standard"):  # optax mixes python floats and int32 counts
                        updates, opt_state = optimizer.update(grads, opt_state, params)
                    return (optax.apply_updates(params, updates), opt_state), (loss, *aux)

                return jax.lax.scan(minibatch, (params, opt_state), mbs)

            (params, opt_state), losses = jax.lax.scan(
                epoch, (params, opt_state), jax.random.split(k_perm, config.update_epochs)
            )
            done = traj.done.astype(jnp.float32)
            n_done = done.sum()
            safe = jnp.maximum(n_done, 1.0)
            nan = jnp.float32(jnp.nan)
            metrics = {
                "env_steps": (upd_idx + 1) * batch,
                "episodes": n_done,
                "episode_return": jnp.where(n_done > 0, (ep_rets * done).sum() / safe, nan),
                "success_rate": jnp.where(n_done > 0, (traj.success.astype(jnp.float32) * done).sum() / safe, nan),
                "episode_length": jnp.where(n_done > 0, (ep_lens.astype(jnp.float32) * done).sum() / safe, nan),
                "loss": losses[0].mean(),
                "policy_loss": losses[1].mean(),
                "value_loss": losses[2].mean(),
                "entropy": losses[3].mean(),
                "approx_kl": losses[4].mean(),
            }
            return (params, opt_state, env_params, state, obs, ep_return, hidden, starts, key), metrics

        return jax.lax.scan(update, carry, jnp.asarray(first, jnp.int32) + jnp.arange(n, dtype=jnp.int32))

    def finish(carry):
        return eqx.combine(carry[0], static)

    return TrainStages(init, run, finish, n_updates)


def make_train(config: PPOConfig):
    """Return ``train(key, dials=None) -> (model, metrics)``; ``metrics`` holds one entry per update.

    ``dials`` optionally overrides the data dials (:data:`mesalab.data_dials.PPO_DATA_DIALS`) with (traceable)
    arrays, so ``jax.vmap(train)(keys, {"train_alpha": alphas})`` trains one model per (key, α) in one program; without
    it the values of ``config`` are used. For progress reports while it trains, see :func:`train_in_chunks`.
    """
    config.validate()
    stages = make_train_stages(config)

    def train(key: jax.Array, dials: dict | None = None):
        carry = stages.init(key, dials)
        carry, metrics = stages.run(carry, dials, 0, stages.num_updates)
        return stages.finish(carry), metrics

    return train


def chunk_sizes(n_updates: int, chunks: int = 10) -> list[int]:
    """Sizes of the consecutive chunks a run of ``n_updates`` is split into for progress reports: equal chunks of
    ``ceil(n / chunks)`` and one shorter remainder, so at most two chunk programs are compiled."""
    size = max(1, -(-n_updates // max(1, chunks)))
    full, rest = divmod(n_updates, size)
    return [size] * full + ([rest] if rest else [])


def train_in_chunks(stages: TrainStages, keys: jax.Array, dials: dict, progress: Callable[[int], None] | None = None,
                    chunks: int = 10, compiled: tuple | None = None):
    """``(models, metrics)`` of ``jax.vmap(train)(keys, dials)``, computed as jitted chunks of updates with
    ``progress(updates done)`` called after each; the numbers are ``train``'s. ``compiled``: the stages'
    :func:`jitted_stages` (pass the same ones every time to compile once per shape in a long-lived process)."""
    init, run, finish = compiled or jitted_stages(stages)
    carry = init(keys, dials)
    done, parts = 0, []
    for n in chunk_sizes(stages.num_updates, chunks):
        carry, m = run(carry, dials, done, n)
        done += n
        if progress is not None:
            jax.block_until_ready(m)
            progress(done)
        parts.append(m)
    metrics = jax.tree_util.tree_map(lambda *xs: jnp.concatenate(xs, axis=1), *parts)
    return finish(carry), metrics


def jitted_stages(stages: TrainStages):
    """The stages vmapped over a leading model axis and compiled: ``init(keys, dials)``,
    ``run(carry, dials, first, n)`` (``n`` static; ``first`` traced, so every chunk of a size shares a program;
    the carry is donated) and ``finish(carry)``."""
    init = jax.jit(jax.vmap(stages.init))
    run = jax.jit(jax.vmap(stages.run, in_axes=(0, 0, None, None)), static_argnums=3, donate_argnums=0)
    finish = jax.jit(jax.vmap(stages.finish))
    return init, run, finish


def check_finite(metrics: dict, lr: float) -> None:
    """Raise :class:`TrainingDivergedError` if any loss became non-finite (names the first bad update)."""
    loss = np.asarray(metrics["loss"])
    bad = ~np.isfinite(loss)
    if bad.any():
        idx = np.argwhere(bad)[0]
        raise TrainingDivergedError(
            f"training diverged: non-finite loss at update {int(idx[-1])} (seed index {tuple(int(i) for i in idx[:-1])}); "
            f"lower the learning rate (lr={lr}) or max_grad_norm"
        )
