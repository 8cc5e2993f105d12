"""The policy interface that evaluation accepts, and adapters for trained models.

A policy is ``act(obs, key) -> action`` (jittable, one observation) together with the observation mode it
expects (``"egocentric"`` or ``"global"``); evaluation builds the environment in that mode. A policy may also
expose ``log_probs(obs) -> float32[4]``, its exact action log-probabilities (used as the ceiling of
goal-directedness).

A *stateful* policy (a recurrent model) also sets ``initial_carry() -> carry``; its ``act`` is then
``act(obs, key, carry) -> (action, carry)`` and its ``log_probs`` is ``log_probs(obs, carry) -> (log_probs, carry)``.
:func:`as_stateful` gives every policy that form, so rollouts thread a carry whatever the policy.

A *planner* (a model that searches the true simulator: :class:`mesalab.models.mcts.MCTSAgent`) sets
``plan(env, state, params, key) -> action`` instead: it decides from the environment state, not the observation,
so only the evaluator's rollout (:func:`mesalab.diagnostics.evaluation.rollout`) can run it; every diagnostic that
needs ``act(obs)`` or ``log_probs(obs)`` refuses it with a one-line error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import jax
import jax.numpy as jnp


@dataclass(frozen=True)
class Policy:
    name: str
    act: Callable[[jax.Array, jax.Array], jax.Array]
    obs_mode: str = "egocentric"
    log_probs: Callable | None = None
    initial_carry: Callable[[], jax.Array] | None = None
    plan: Callable | None = None  # a planner's plan(env, state, params, key) -> action (module docstring)

    @property
    def stateful(self) -> bool:
        return self.initial_carry is not None


def as_stateful(policy: Policy):
    """``(initial_carry, act(obs, key, carry), log_probs(obs, carry) or None)`` for any policy (a memoryless one
    carries a dummy). A planner has no such form (:class:`ConfigError`)."""
    if policy.plan is not None:
        from mesalab.errors import ConfigError

        raise ConfigError(f"policy {policy.name!r} searches the environment's simulator (it needs the state, not the "
                          f"observation); this diagnostic only runs policies of observations: use its prior, "
                          f"model.with_iterations(0)")
    if policy.stateful:
        return policy.initial_carry, policy.act, policy.log_probs
    lp = None if policy.log_probs is None else (lambda obs, c: (policy.log_probs(obs), c))
    return (lambda: jnp.zeros((), jnp.int32)), (lambda obs, key, c: (policy.act(obs, key), c)), lp


def model_policy(model, obs_mode: str = "egocentric", greedy: bool = False, name: str = "model",
                 ticks: int | None = None) -> Policy:
    """Wrap an actor-critic model: sample from its logits (or take the argmax when ``greedy``). A recurrent model
    gives a stateful policy (hidden state carried across steps from ``initial_carry``) run with ``ticks``
    internal iterations per step (its training ticks when ``None``)."""
    from mesalab.models.mcts import is_planner
    from mesalab.models.recurrent import is_recurrent

    if is_planner(model):
        from mesalab.models.mcts import prior_choice

        if model.simulations == 0:  # no search: the prior, a policy of observations like any actor-critic
            prior = model_policy(model.net, obs_mode, greedy, name, ticks)

            def act_prior(obs, key):  # the same draw as one simulation of Gumbel MuZero on this key
                (logits, _), _ = model.net(obs)
                return prior_choice(logits, key, greedy)

            return Policy(name, act_prior, obs_mode, prior.log_probs)

        def plan(env, state, params, key):
            return model.search(env, params, state, key, greedy=greedy).action

        def refuse(*_):
            from mesalab.errors import ConfigError

            raise ConfigError(f"policy {name!r} searches the environment's simulator; it acts only in the evaluator's "
                              f"rollout (Policy.plan): use its prior, model.with_iterations(0)")

        return Policy(name, refuse, obs_mode, plan=plan)

    def choose(logits, key):
        if greedy:
            return jnp.argmax(logits).astype(jnp.int32)
        return jax.random.categorical(key, logits).astype(jnp.int32)

    def normalise(logits):
        if greedy:
            return jnp.where(jnp.arange(logits.shape[-1]) == jnp.argmax(logits), 0.0, -jnp.inf)
        return jax.nn.log_softmax(logits)

    if is_recurrent(model):
        def step(obs, carry):
            ((logits, _), carry), _ = model.step(obs, carry, ticks=ticks)
            return logits, carry

        def act_r(obs, key, carry):
            logits, carry = step(obs, carry)
            return choose(logits, key), carry

        def log_probs_r(obs, carry):
            logits, carry = step(obs, carry)
            return normalise(logits), carry

        return Policy(name, act_r, obs_mode, log_probs_r, model.initial_carry)

    def act(obs, key):
        (logits, _), _ = model(obs)
        return choose(logits, key)

    def log_probs(obs):
        (logits, _), _ = model(obs)
        return normalise(logits)

    return Policy(name, act, obs_mode, log_probs)
