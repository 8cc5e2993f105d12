"""A minimal PureJaxRL-style PPO: the peer that mesalab's PPO is timed against (``benchmarks/run.py``).

One file, no framework: the policy is a dict of arrays (flattened observation -> tanh layers -> logits and value,
orthogonal initialisation like ``mesalab.models.MLPActorCritic``), the whole run is one jitted ``lax.scan`` over
updates, each update a ``lax.scan`` rollout of a vmapped environment, GAE, then epochs of shuffled minibatches
with a clipped-ratio loss and Adam (optax). It steps the *same* environment as mesalab (a task's functional
``env`` on a fixed pool of levels) with the same hyper-parameters, so the steps/s ratio of the two measures the
overhead of mesalab's trainer, not a difference in the work.

    from benchmarks.peer_ppo import make_peer_train
    train = jax.jit(make_peer_train("red-door", total_steps=262_144, n_levels=512))
    params, metrics = train(jax.random.key(0))
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def init_params(key, d_in: int, widths: tuple[int, ...], n_actions: int) -> dict:
    """Orthogonal weights (gain sqrt 2 for hidden layers, 0.01 for the logits, 1 for the value), zero biases."""
    keys = jax.random.split(key, len(widths) + 2)
    params, d = {}, d_in
    for i, w in enumerate(widths):
        params[f"w{i}"] = jax.nn.initializers.orthogonal(2**0.5)(keys[i], (d, w), jnp.float32)
        params[f"b{i}"] = jnp.zeros((w,), jnp.float32)
        d = w
    params["wa"] = jax.nn.initializers.orthogonal(0.01)(keys[-2], (d, n_actions), jnp.float32)
    params["ba"] = jnp.zeros((n_actions,), jnp.float32)
    params["wv"] = jax.nn.initializers.orthogonal(1.0)(keys[-1], (d, 1), jnp.float32)
    params["bv"] = jnp.zeros((1,), jnp.float32)
    return params


def forward(params: dict, obs: jax.Array, depth: int):
    """``(logits[B, A], value[B])`` of a batch of observations."""
    h = obs.reshape(obs.shape[0], -1).astype(jnp.float32)
    for i in range(depth):
        h = jnp.tanh(h @ params[f"w{i}"] + params[f"b{i}"])
    return h @ params["wa"] + params["ba"], (h @ params["wv"] + params["bv"])[:, 0]


def make_peer_train(task_name: str = "red-door", total_steps: int = 262_144, n_levels: int = 512,
                    num_envs: int = 64, rollout_len: int = 64, update_epochs: int = 4, num_minibatches: int = 4,
                    lr: float = 1e-3, gamma: float = 0.97, gae_lambda: float = 0.95, clip_eps: float = 0.2,
                    ent_coef: float = 0.01, vf_coef: float = 0.5, max_grad_norm: float = 0.5,
                    width: int = 128, depth: int = 2, level_seed: int = 0):
    """``train(key) -> (params, metrics)`` (metrics: per update, mean episode return and success rate)."""
    from mesalab.tasks import get_task

    task = get_task(task_name)
    env = task.env
    n_updates = total_steps // (num_envs * rollout_len)
    batch = num_envs * rollout_len
    mb = batch // num_minibatches
    schedule = optax.linear_schedule(lr, 0.0, n_updates * update_epochs * num_minibatches)
    tx = optax.chain(optax.clip_by_global_norm(max_grad_norm), optax.adam(schedule, eps=1e-5))

    pool = task.sample_params_checked(jax.random.key(level_seed), "train", n_levels)  # fixed levels, drawn once

    def train(key):
        k_init, k_env, k_loop = jax.random.split(key, 3)
        obs, state = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(k_env, num_envs), pool)
        d_in = 1
        for s in obs.shape[1:]:
            d_in *= s
        params = init_params(k_init, d_in, (width,) * depth, env.n_actions)
        opt = tx.init(params)

        def update(carry, _):
            params, opt, state, obs, ep_ret, key = carry
            key, k_roll, k_perm = jax.random.split(key, 3)

            def step(c, k):
                state, obs, ep_ret = c
                k_a, k_s = jax.random.split(k)
                logits, value = forward(params, obs, depth)
                action = jax.random.categorical(k_a, logits)
                logp = jnp.take_along_axis(jax.nn.log_softmax(logits), action[:, None], 1)[:, 0]
                obs2, state2, reward, done, info = jax.vmap(env.step, in_axes=(0, 0, 0, None))(
                    jax.random.split(k_s, num_envs), state, action, pool)
                ret = ep_ret + reward
                out = (obs, action, logp, value, reward, done, info["success"], ret)
                return (state2, obs2, jnp.where(done, 0.0, ret)), out

            (state, obs, ep_ret), traj = jax.lax.scan(step, (state, obs, ep_ret), jax.random.split(k_roll, rollout_len))
            t_obs, t_act, t_logp, t_val, t_rew, t_done, t_succ, t_ret = traj
            _, last_val = forward(params, obs, depth)

            def gae(c, x):
                adv, next_v = c
                r, v, d = x
                nd = 1.0 - d.astype(jnp.float32)
                delta = r + gamma * next_v * nd - v
                adv = delta + gamma * gae_lambda * nd * adv
                return (adv, v), adv

            _, adv = jax.lax.scan(gae, (jnp.zeros_like(last_val), last_val), (t_rew, t_val, t_done), reverse=True)
            tgt = adv + t_val
            flat = jax.tree_util.tree_map(lambda x: x.reshape((batch,) + x.shape[2:]),
                                          (t_obs, t_act, t_logp, t_val, adv, tgt))

            def loss(p, o, a, lp_old, v_old, adv, tgt):
                logits, v = forward(p, o, depth)
                logp_all = jax.nn.log_softmax(logits)
                logp = jnp.take_along_axis(logp_all, a[:, None], 1)[:, 0]
                ratio = jnp.exp(logp - lp_old)
                adv = (adv - adv.mean()) / (adv.std() + 1e-8)
                pg = -jnp.minimum(ratio * adv, jnp.clip(ratio, 1 - clip_eps, 1 + clip_eps) * adv).mean()
                v_clip = v_old + jnp.clip(v - v_old, -clip_eps, clip_eps)
                vf = 0.5 * jnp.maximum((v - tgt) ** 2, (v_clip - tgt) ** 2).mean()
                ent = -(jnp.exp(logp_all) * logp_all).sum(-1).mean()
                return pg + vf_coef * vf - ent_coef * ent

            def epoch(c, k):
                perm = jax.random.permutation(k, batch)
                mbs = jax.tree_util.tree_map(lambda x: x[perm].reshape((num_minibatches, mb) + x.shape[1:]), flat)

                def minibatch(c, m):
                    params, opt = c
                    grads = jax.grad(loss)(params, *m)
                    updates, opt = tx.update(grads, opt, params)
                    return (optax.apply_updates(params, updates), opt), None

                return jax.lax.scan(minibatch, c, mbs)[0], None

            (params, opt), _ = jax.lax.scan(epoch, (params, opt), jax.random.split(k_perm, update_epochs))
            done = t_done.astype(jnp.float32)
            n = jnp.maximum(done.sum(), 1.0)
            metrics = {"episode_return": (t_ret * done).sum() / n,
                       "success_rate": (t_succ.astype(jnp.float32) * done).sum() / n}
            return (params, opt, state, obs, ep_ret, key), metrics

        carry = (params, opt, state, obs, jnp.zeros((num_envs,), jnp.float32), k_loop)
        (params, *_), metrics = jax.lax.scan(update, carry, None, length=n_updates)
        return params, metrics

    return train
