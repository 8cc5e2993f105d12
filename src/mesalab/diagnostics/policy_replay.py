"""Policy replay: an agent's own log-probability of each demonstrated action, replayed along the demonstrations
(a stateful policy conditions on the whole history it saw). It is the top of the goal-directedness scale of
:mod:`mesalab.diagnostics.behavioral`: no predictor of these actions does better on average."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from mesalab.diagnostics.behavioral_fit import Demonstrations


def policy_log_probs(task, policy, params, demos: Demonstrations) -> np.ndarray | None:
    """``[n, T]``: the agent's own ``log pi(a_t | s_t)`` for each demonstrated action, or ``None`` when the
    policy does not expose its action probabilities. No predictor of these actions can do better on average:
    it is the top of the goal-directedness scale. A stateful policy is replayed along each demonstration, so
    its probabilities condition on the whole history it saw."""
    if policy.log_probs is None:
        return None

    run = jax.jit(lambda cells, actions: _log_probs_of(task, policy, params, cells, actions))
    return np.asarray(run(demos.cells, demos.actions), np.float64)


def _model_log_probs_impl(model, task, obs_mode: str, greedy: bool, params, cells, actions):
    from mesalab.diagnostics.policies import model_policy

    policy = model_policy(model, obs_mode, greedy)
    return _log_probs_of(task, policy, params, cells, actions)


def _log_probs_of(task, policy, params, cells, actions):
    from mesalab.tasks.grid import EnvState

    from mesalab.diagnostics.policies import as_stateful
    from mesalab.tasks.keys_chests import KeysChestsTask

    if isinstance(task, KeysChestsTask):  # its demonstrations record (row, col, taken bitmask) per step
        env = task.env_for(policy.obs_mode)
        state_at = lambda level, cell, t: env.state_from_record(params, level, cell, t)  # noqa: E731
    else:
        env = task.env_for(policy.obs_mode)
        state_at = lambda level, cell, t: EnvState(level=level, pos=cell, t=t)  # noqa: E731
    n, horizon = actions.shape
    initial_carry, _, log_probs = as_stateful(policy)

    def episode(level, cells, actions):  # a stateful policy replays the demonstrated history in order
        def at(carry, x):
            t, cell, action = x
            lp, carry = log_probs(env.observe(state_at(level, cell, t), params), carry)
            return carry, lp[action]

        _, lps = jax.lax.scan(at, initial_carry(), (jnp.arange(horizon), cells, actions))
        return lps

    return jax.vmap(episode)(jnp.arange(n), cells, actions)


def model_log_probs(task, model, obs_mode: str, greedy: bool, params, demos: Demonstrations) -> np.ndarray:
    """:func:`policy_log_probs` for a trained actor-critic, compiled once for every model of the same shape."""
    return np.asarray(_model_log_probs_jit(model, task, obs_mode, greedy, params, demos.cells, demos.actions),
                      np.float64)


_model_log_probs_jit = eqx.filter_jit(_model_log_probs_impl)  # one wrapper: its compilation cache is shared
