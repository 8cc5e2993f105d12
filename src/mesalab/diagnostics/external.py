"""Bring your own agent: a batched host callable as a mesalab :class:`~mesalab.diagnostics.policies.Policy`.

An agent trained outside mesalab (NumPy, PyTorch, any Gymnasium library) is diagnosed through one function,
``probs(obs) -> p``:

- ``obs``: ``uint8[B, *obs_shape]``, a batch of observations exactly as :class:`mesalab.tasks.gym_adapter.MesalabGymEnv`
  returns them for the same task and observation mode (the task's one-hot grid channels,
  :data:`mesalab.tasks.grid.CHANNEL_NAMES`, in an egocentric window or the global view; the observation contract);
- ``p``: ``float[B, 4]``, each row the agent's probabilities of the actions up, right, down, left (non-negative,
  summing to 1; rows are renormalised, and a row that is not a distribution is an error).

:func:`external_policy` wraps it with :func:`jax.pure_callback`, so every diagnostic (evaluation on every split,
the verdict, inverse RL, bits, goal-directedness) runs on it unchanged: evaluation calls ``probs`` once per
environment step for all levels at once (``B`` = the levels, times the seeds when several are evaluated), and
actions are drawn from ``p`` with JAX's own keys, so an external agent whose ``p`` equals an internal agent's
action distribution takes the same actions on the same keys. ``probs`` must be a pure function of its input (a
memoryless agent); JAX may call it more than once per step.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from mesalab.diagnostics.policies import Policy
from mesalab.errors import ConfigError

N_ACTIONS = 4
ROW_TOLERANCE = 1e-3  # |sum(p) - 1| allowed before renormalising


def _host_probs(probs: Callable, obs_shape: tuple[int, ...], name: str):
    def call(obs):
        obs = np.asarray(obs, np.uint8)
        lead = obs.shape[: obs.ndim - len(obs_shape)]
        flat = obs.reshape((-1, *obs_shape))
        p = np.asarray(probs(flat), np.float64)
        if p.shape != (flat.shape[0], N_ACTIONS):
            raise ValueError(f"agent {name!r} returned probabilities of shape {p.shape} for {flat.shape[0]} "
                             f"observations; it must return float[{flat.shape[0]}, {N_ACTIONS}]")
        total = p.sum(axis=1, keepdims=True)
        if not np.all(np.isfinite(p)) or np.any(p < 0) or np.any(np.abs(total - 1.0) > ROW_TOLERANCE):
            raise ValueError(f"agent {name!r} returned rows that are not probability distributions (negative, "
                             "NaN or not summing to 1)")
        return (p / total).astype(np.float32).reshape((*lead, N_ACTIONS))

    return call


def external_policy(probs: Callable[[np.ndarray], np.ndarray], obs_shape: tuple[int, ...],
                    obs_mode: str = "egocentric", name: str = "external") -> Policy:
    """A policy that asks the host callable ``probs`` (see the module docstring) for its action distribution.

    ``obs_shape``: the shape of one observation (``task.env_for(obs_mode).obs_shape``); ``obs_mode``: the
    observation mode the agent was trained on (``"egocentric"``, ``"global"`` or ``"lean"``)."""
    host = _host_probs(probs, tuple(obs_shape), name)

    def distribution(obs):
        shape = jax.ShapeDtypeStruct((N_ACTIONS,), jnp.float32)
        return jax.pure_callback(host, shape, obs.astype(jnp.uint8), vmap_method="expand_dims")

    def log_probs(obs):
        return jnp.log(distribution(obs))  # log 0 = -inf: an action the agent never takes

    def act(obs, key):
        return jax.random.categorical(key, log_probs(obs)).astype(jnp.int32)

    return Policy(name, act, obs_mode, log_probs)


def task_policy(probs: Callable, task, obs_mode: str | None = None, name: str = "external") -> Policy:
    """:func:`external_policy` for ``task`` observed in ``obs_mode`` (the task's own mode when ``None``)."""
    mode = obs_mode or task.obs_mode
    return external_policy(probs, task.env_for(mode).obs_shape, mode, name)


def load_callable(spec: str) -> Callable:
    """The callable named by ``"module:function"`` (``module`` importable, or a ``.py`` file path; ``function`` may be
    dotted, e.g. ``pkg.agents:Agent.probs``). One-line :class:`ConfigError` naming the fix otherwise."""
    from mesalab.plugins import import_module_or_file

    if not isinstance(spec, str) or spec.count(":") != 1 or not all(spec.split(":")):
        raise ConfigError(f"--policy {spec!r} must be MODULE:FUNCTION, e.g. my_agents:probs")
    module_name, attr = spec.split(":")
    module = import_module_or_file(module_name, f"--policy {spec}")
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ConfigError(f"--policy {spec}: {module_name} has no {attr!r}; name a function that maps "
                              "observations uint8[B, ...] to probabilities float[B, 4]")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ConfigError(f"--policy {spec}: {attr!r} is not callable; name a function obs[B, ...] -> float[B, 4]")
    return obj


__all__ = ["external_policy", "load_callable", "task_policy"]
