"""Supervised SGD of a recurrent "thinking" network on ``maze-path`` (Bansal et al. 2022 style), under the
``make_train(config) -> train(key) -> (model, metrics)`` contract.

Every step draws a fresh batch of ``size``×``size`` mazes (unlimited data) and minimises the per-cell binary
cross-entropy of the path mask read out after ``ticks`` ticks (plus the anytime path loss below). *Progressive
training* (the incremental-progress loss of Bansal et al., in a single-chain form): with probability
``progressive`` a step first runs a random number n ∈ [1, ticks] of ticks without gradient and then trains the
next ``ticks`` ticks from that detached state, so the network must make progress from any of its own intermediate
states rather than memorise a fixed-length schedule. This is what lets it keep improving when given more ticks than it was trained with.

*The anytime path loss* (on by default, ``anytime_path_weight=1``) is what makes the network extrapolate to big
mazes. Every ``anytime_every`` trained ticks the head is read out and the cells of the path are scored as "on"
(cross-entropy over path cells only); the full mask is scored at the last tick as before. An elimination procedure
(dead-end filling) never turns a path cell off, so "the path is on" is a correct target at every tick, while when
an off-path cell turns off depends on how far the fill has come, so those cells are left unscored until the end.
Why it is needed: a network trained on the last tick alone learns dead-end filling that is exact on 9×9, but on
33×33 some corridor cell in the middle of the path turns off early (typically ticks 13-30, far from the ends);
its neighbours then look like a dead-end tip, the fill rule erases the path in both directions at one cell per tick,
and finally the isolated start and goal cells turn off too. On 9×9 such a lapse is never penalised as long as the
last tick is right; the anytime loss penalises it at every readout. Measured (``benchmarks/results/
maze-path-variants.json``, 100 unseen 33×33 mazes, best tick): 96%, 71% and 100% with seeds 0, 1, 2, against 32%
for the last-tick loss alone (seventeen earlier runs over widths, gating and perturbations: 0-52%). The readouts
cost about 30% more time per step (3000 steps: 25-30 minutes on one core with the other core busy).

``worst_cell_weight`` adds each maze's largest per-cell cross-entropy at the last tick (off by default): 68% and 37%
on 33×33 with seeds 0 and 1, so it does not make extrapolation reliable by itself.

*Training-time perturbations* (both off by default; test time is always synchronous and noiseless).
``state_noise`` adds Gaussian noise to the hidden state after every training tick, so a cell must actively restore
its state each tick; ``update_prob`` < 1 updates a random subset of cells each tick, so the procedure cannot rely on
exact timing. Without the anytime loss neither made 33×33 extrapolation reliable: noise 0.2 gave 52%, 13% and 6%
with seeds 0, 1 and 2, noise 0.1 36%, noise 0.3 7%, asynchronous updates (0.75) 2%.

Speed on CPU: design.md measured the gradient of ``lax.conv`` inside ``lax.scan`` about 9x slower than unrolled on
XLA:CPU. This network's 3x3 convolutions are patch extraction plus one matmul, and their gradient in a scan is as
fast as unrolled (0.29 s against 0.35 s per step, width 48, one core), while unrolling a *gated* state made XLA
recompute the fused elementwise chain across ticks (about 10x slower). So the trained ticks run in a scan, and the
steps run in a Python loop over one jitted step function. ``train`` accepts one key or a stack of keys (seeds are
a ``vmap`` axis inside the step).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from mesalab.diagnostics.compute_scaling import solved_per_tick
from mesalab.errors import ConfigError, TrainingDivergedError
from mesalab.models import make_model
from mesalab.models.thinking import RecallThinker
from mesalab.optimizers.config import DictConfig, Range
from mesalab.tasks import maze_path


@dataclass(frozen=True)
class ThinkingConfig(DictConfig, settings_name="maze-path"):
    """Everything that defines a maze-path training run (with the seed, it determines the numbers).

    Attributes:
        size: side of the training mazes (odd, walls included: 9 means 4×4 rooms).
        width, blocks, pointwise, head_width: the network's channels, residual 3x3 blocks and residual 1x1
            layers per tick, and head channels (``blocks=0``: one 3x3 convolution per tick, cellular-automaton-like).
        gated: a GRU-style update gate per cell and channel (the tick may keep part of the old state).
        ticks: iterations of thought per training example (the compute dial at training time).
        update_prob: training only: each tick, each cell takes its new state with this probability and keeps its
            old one otherwise (asynchronous updates, as in neural cellular automata). Below 1 the learned procedure
            cannot depend on exact timing, which favours rules that settle to a fixed point.
        state_noise: training only: standard deviation of Gaussian noise added to the hidden state after every
            tick, so a signal carried over many cells must be actively restored rather than slowly decay.
        anytime_path_weight: weight of the *anytime path loss*: every ``anytime_every`` trained ticks (not only the
            last), the cells of the shortest path must already read as on. An elimination procedure never turns a
            path cell off, so this is a valid per-tick target; cells off the path are only scored at the last tick
            (when they turn off depends on how far the fill has come). Default 1; 0 turns it off (the loss of
            runs stored before it existed).
        anytime_every: ticks between the anytime path loss's readouts.
        worst_cell_weight: weight of the per-maze worst cell's cross-entropy at the last tick, added to the mean over
            cells: exact accuracy is decided by the worst cell, and the mean lets a few marginal cells hide.
        progressive: probability that a step trains from a detached intermediate state (0 = plain recall).
        near_fraction: fraction of training mazes whose start is a room adjacent to the goal's, so that most of
            the maze is dead ends to rule out (evaluation mazes always have uniform ends).
        steps, batch: SGD steps and mazes per step. lr: peak Adam learning rate (warm-up, then cosine decay).
        warmup: linear warm-up steps. max_grad_norm: global gradient-norm clip. weight_decay: AdamW decay.
        eval_every: steps between the training-curve evaluations (exact accuracy on fresh training-size mazes).
    """

    size: int = 9
    width: int = 48
    blocks: int = 0
    pointwise: int = 2
    head_width: int = 16
    gated: bool = False
    ticks: int = 30
    update_prob: float = 1.0
    state_noise: float = 0.0
    anytime_path_weight: float = 1.0
    anytime_every: int = 3
    worst_cell_weight: float = 0.0
    progressive: float = 0.5
    near_fraction: float = 0.0
    steps: int = 3000
    batch: int = 32
    lr: float = 2e-3
    warmup: int = 100
    max_grad_norm: float = 1.0
    weight_decay: float = 0.0
    eval_every: int = 100

    # Allowed values of every numeric setting (checked by ``check_fields``: type, finite, range). Training
    # backpropagates through every tick, so the activations of one step (batch * size^2 * width * ticks numbers)
    # are also bounded (MAX_ACTIVATIONS).
    RANGES = {
        "size": Range(5, 201),
        "width": Range(1, 1024),
        "blocks": Range(0, 64),
        "pointwise": Range(0, 64),
        "head_width": Range(1, 1024),
        "ticks": Range(1, 1000),
        "update_prob": Range(0.0, 1.0, lo_open=True),
        "state_noise": Range(0.0, 10.0),
        "anytime_path_weight": Range(0.0, 1000.0),
        "anytime_every": Range(1, 1000),
        "worst_cell_weight": Range(0.0, 1000.0),
        "progressive": Range(0.0, 1.0),
        "near_fraction": Range(0.0, 1.0),
        "steps": Range(1, 10_000_000),
        "batch": Range(1, 4096),
        "lr": Range(0.0, 1.0, lo_open=True, hi_open=True),
        "warmup": Range(0, 10_000_000),
        "max_grad_norm": Range(0.0, 1e6),
        "weight_decay": Range(0.0, 100.0),
        "eval_every": Range(1, 10_000_000),
    }
    MAX_ACTIVATIONS = 2**31

    def validate(self) -> "ThinkingConfig":
        self.check_fields()
        maze_path.check_size(self.size)
        activations = self.batch * self.size ** 2 * self.width * self.ticks
        if activations > self.MAX_ACTIVATIONS:
            raise ConfigError(f"batch*size^2*width*ticks = {activations} exceeds {self.MAX_ACTIVATIONS} (memory of "
                              f"backpropagation through the ticks); lower batch, size, width or ticks")
        return self


# Keys added after maze-path runs were first stored, with the value that reproduces how a run stored without them was
# trained. A stored config resolves to what that run did, not to today's default for the key.
ADDED_KEYS_AS_BEFORE = {"update_prob": 1.0, "state_noise": 0.0, "anytime_path_weight": 0.0, "anytime_every": 3,
                        "worst_cell_weight": 0.0}


def stored_config(d: dict) -> ThinkingConfig:
    """The config of a stored run (a model's ``.json`` or a sweep folder's ``sweep.json``), older records included."""
    return ThinkingConfig.from_dict({**ADDED_KEYS_AS_BEFORE, **d})


def init_model(config: ThinkingConfig, key: jax.Array) -> RecallThinker:
    return make_model("recall-thinker", key=key, in_channels=maze_path.N_CHANNELS, width=config.width,
                      blocks=config.blocks, head_width=config.head_width, ticks=config.ticks,
                      pointwise=config.pointwise, gated=config.gated)


def path_loss(logits: jax.Array, path: jax.Array, worst_cell_weight: float = 0.0) -> jax.Array:
    """Mean per-cell binary cross-entropy of path logits ``[B, S, S]`` against the mask, plus (when
    ``worst_cell_weight`` > 0) that weight times the mean over mazes of each maze's largest per-cell cross-entropy."""
    bce = optax.sigmoid_binary_cross_entropy(logits, path.astype(jnp.float32))
    loss = jnp.mean(bce)
    if worst_cell_weight > 0.0:
        loss = loss + worst_cell_weight * jnp.mean(jnp.max(bce, axis=(-2, -1)))
    return loss


def anytime_path_loss(logits: jax.Array, path: jax.Array) -> jax.Array:
    """Cross-entropy of "on" over the path's cells only, averaged over readouts ``logits[K, B, S, S]`` and path
    cells: the path must read as on at every scored tick, whatever the fill has reached."""
    on = path.astype(jnp.float32)[None]
    bce = optax.sigmoid_binary_cross_entropy(logits, jnp.ones_like(logits))
    return jnp.sum(bce * on) / (logits.shape[0] * jnp.maximum(jnp.sum(on), 1.0))


def training_tick(model: RecallThinker, h: jax.Array, image: jax.Array, key: jax.Array,
                  update_prob: float = 1.0, state_noise: float = 0.0) -> jax.Array:
    """One tick as trained: ``model.tick`` batched over the leading axis, then (when set) asynchronous cell updates
    (a cell keeps its old state with probability ``1 - update_prob``) and Gaussian state noise. Test time runs the
    plain synchronous, noiseless tick."""
    new = jax.vmap(model.tick)(h, image)
    k_mask, k_noise = jax.random.split(key)
    if update_prob < 1.0:
        keep_old = jax.random.uniform(k_mask, new.shape[:-1] + (1,)) >= update_prob
        new = jnp.where(keep_old, h, new)
    if state_noise > 0.0:
        new = new + state_noise * jax.random.normal(k_noise, new.shape, new.dtype)
    return new


def _run_ticks(model: RecallThinker, h: jax.Array, image: jax.Array, n: int, key: jax.Array,
               update_prob: float = 1.0, state_noise: float = 0.0, readout_every: int = 0):
    """``n`` training ticks in a ``lax.scan`` (see the module notes on speed), batched over the leading axis.

    Returns ``(h, readouts)``: with ``readout_every`` > 0, ``readouts`` ``[n // k, B, S, S]`` are the logits after
    every ``k``-th tick, ``k = min(readout_every, n)`` (else ``None``)."""
    keys = jax.random.split(key, n)
    if readout_every <= 0:
        def body(h, k):
            return training_tick(model, h, image, k, update_prob, state_noise), None

        h, _ = jax.lax.scan(body, h, keys)
        return h, None
    readout_every = min(readout_every, n)  # fewer ticks than the spacing: read out the last one
    groups = n // readout_every

    def group(h, ks):
        for j in range(readout_every):
            h = training_tick(model, h, image, ks[j], update_prob, state_noise)
        return h, jax.vmap(model.readout)(h)

    h, readouts = jax.lax.scan(group, h, keys[:groups * readout_every].reshape(groups, readout_every, -1))
    for k in keys[groups * readout_every:]:
        h = training_tick(model, h, image, k, update_prob, state_noise)
    return h, readouts


def _optimizer(config: ThinkingConfig):
    schedule = optax.warmup_cosine_decay_schedule(0.0, config.lr, max(config.warmup, 1),
                                                  max(config.steps, config.warmup + 1), config.lr * 0.01)
    return optax.chain(optax.clip_by_global_norm(config.max_grad_norm),
                       optax.adamw(schedule, weight_decay=config.weight_decay))


def make_step(config: ThinkingConfig, static):
    """The jitted SGD step for one seed: ``(params, opt_state, key) -> (params, opt_state, loss)``."""
    opt = _optimizer(config)

    def loss_fn(params, key):
        model = eqx.combine(params, static)
        k_data, k_prog, k_n = jax.random.split(key, 3)
        k_warm, k_ticks = jax.random.fold_in(key, 7), jax.random.fold_in(key, 8)  # only the perturbations use these
        batch = maze_path.sample_batch(k_data, config.batch, config.size, config.near_fraction)
        h0 = jax.vmap(model.initial_state)(batch.image)
        n = jnp.where(jax.random.uniform(k_prog) < config.progressive,
                      jax.random.randint(k_n, (), 1, config.ticks + 1), 0)
        frozen = eqx.combine(jax.lax.stop_gradient(params), static)  # the warm-up ticks carry no gradient
        h = jax.lax.fori_loop(0, n, lambda i, h: training_tick(frozen, h, batch.image, jax.random.fold_in(k_warm, i),
                                                                config.update_prob, config.state_noise),
                              jax.lax.stop_gradient(h0))
        h = jnp.where(n > 0, h, h0)
        every = config.anytime_every if config.anytime_path_weight > 0 else 0
        h, readouts = _run_ticks(model, h, batch.image, config.ticks, k_ticks, config.update_prob, config.state_noise,
                                 every)
        loss = path_loss(jax.vmap(model.readout)(h), batch.path, config.worst_cell_weight)
        if readouts is not None:
            loss = loss + config.anytime_path_weight * anytime_path_loss(readouts, batch.path)
        return loss

    def step(params, opt_state, key):
        loss, grads = jax.value_and_grad(loss_fn)(params, key)
        with jax.numpy_dtype_promotion("standard"):
            updates, opt_state = opt.update(grads, opt_state, params)
            params = optax.apply_updates(params, updates)
        return params, opt_state, loss

    return step, opt


def make_train(config: ThinkingConfig, progress: Callable[[int, int], None] | None = None):
    """``train(key) -> (model, metrics)``; ``key`` may be a stack of keys ``[n, 2]`` (seeds vmapped in the step).

    ``metrics``: ``loss`` per step, ``eval_step`` and ``train_accuracy`` (exact accuracy at ``ticks`` on 256
    fresh training-size mazes, every ``eval_every`` steps), and ``wall_s``. ``progress(done, total)`` is called
    after each step when given. A non-finite loss raises ``TrainingDivergedError`` with the step.
    """
    config = config.validate()

    def train(key):
        key = jnp.asarray(key)
        many = key.ndim == 2
        keys = key if many else key[None]
        k_init = jax.vmap(lambda k: jax.random.fold_in(k, 0))(keys)
        models = jax.vmap(lambda k: init_model(config, k))(k_init)
        params, static = eqx.partition(models, eqx.is_array)
        step, opt = make_step(config, static)
        with jax.numpy_dtype_promotion("standard"):
            opt_state = jax.vmap(opt.init)(params)
        vstep = jax.jit(jax.vmap(step), donate_argnums=(0, 1))
        eval_key = jax.random.PRNGKey(2**31 - 1)  # fixed probe mazes, same for every seed and step
        probe = maze_path.sample_batch(eval_key, 256, config.size)
        evaluate = jax.jit(jax.vmap(
            lambda p: jnp.mean(solved_per_tick(eqx.combine(p, static), probe, config.ticks)[:, -1].astype(jnp.float32))))
        losses, evals, eval_steps = [], [], []
        t0 = time.perf_counter()
        for i in range(config.steps):
            step_keys = jax.vmap(lambda k: jax.random.fold_in(jax.random.fold_in(k, 1), i))(keys)
            params, opt_state, loss = vstep(params, opt_state, step_keys)
            losses.append(loss)
            if (i + 1) % config.eval_every == 0 or i + 1 == config.steps:
                if not bool(jnp.all(jnp.isfinite(loss))):
                    raise TrainingDivergedError(
                        f"maze-path training diverged (non-finite loss) by step {i + 1}; lower lr (now {config.lr})"
                        f" or max_grad_norm")
                evals.append(evaluate(params))
                eval_steps.append(i + 1)
            if progress is not None:
                progress(i + 1, config.steps)
        metrics = {
            "loss": np.stack([np.asarray(x) for x in losses], axis=-1),
            "eval_step": np.asarray(eval_steps),
            "train_accuracy": np.stack([np.asarray(x) for x in evals], axis=-1),
            "wall_s": time.perf_counter() - t0,
        }
        model = eqx.combine(params, static)
        if not many:
            model = jax.tree_util.tree_map(lambda x: x[0], model)
            metrics = {k: (v[0] if isinstance(v, np.ndarray) and v.ndim and k != "eval_step" else v)
                       for k, v in metrics.items()}
        return model, metrics

    return train


def save_model(path: str, model: RecallThinker, config: ThinkingConfig) -> None:
    """Write the weights atomically (``path``) and the config beside them (``path`` + ``.json``)."""
    from mesalab.results.files import save_leaves_atomic, write_json_atomic

    write_json_atomic(path + ".json", config.to_dict())
    save_leaves_atomic(path, model)


def load_model(path: str, config: ThinkingConfig | None = None) -> RecallThinker:
    """Read a model saved by ``save_model`` (its config from ``path.json`` unless given)."""
    import json

    from mesalab.errors import CorruptRunError

    try:
        if config is None:
            with open(path + ".json") as f:
                config = stored_config(json.load(f))
        return eqx.tree_deserialise_leaves(path, init_model(config, jax.random.PRNGKey(0)))
    except (OSError, ValueError, RuntimeError) as err:
        raise CorruptRunError(f"cannot read maze-path model {path} ({err}); retrain it or pass the right config")
