"""Monte Carlo tree search over the true environment simulator with a learned prior and value (Gumbel MuZero,
Danihelka et al. 2022, through `mctx`): the "Thinking Fast and Slow" / AlphaZero set-up, where search is hard-coded
and only its heuristics are learned.

An :class:`MCTSAgent` holds a feed-forward actor-critic ``net`` (any of PPO's feed-forward models: ``mlp``,
``cnn``, ``transformer``, ``tabular``) whose logits are the search's **prior** and whose value is its **leaf
value**, and a search budget ``simulations`` (a dial at training and at test time: :meth:`with_iterations`). At
every step it expands ``simulations`` nodes of a tree whose edges are the environment's own transitions
(``GridEnv.step_no_reset``: the true simulator, true rewards, an edge into a terminal state has discount 0), and
acts by Gumbel MuZero's root selection (sequential halving over Gumbel-perturbed prior logits and completed Q
values). With ``simulations = 0`` it acts from the prior alone: sampled from ``softmax(logits)``, or its argmax
when greedy (:func:`prior_choice`); with one simulation Gumbel MuZero's action is the same draw from the prior (the
Gumbel-max trick with the same noise), so bits from search are exactly 0 at budgets 0 and 1.

Calling convention: ``agent(obs) -> ((logits, value), activations)`` is the *prior* (the net's own named
activations: what the agent does without search); :meth:`search` is the searching policy, which needs the
environment state and its parameters, so evaluation runs it through ``Policy.plan``
(:func:`mesalab.diagnostics.policies.model_policy`).
"""

from __future__ import annotations

import copy
from typing import Mapping, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp

from mesalab.models.common import Intervention

GAMMA = 0.97  # PPO's default discount
MAX_CONSIDERED = 4  # every action is considered at the root (the gridworlds have 4)


class SearchResult(NamedTuple):
    action: jax.Array  # int32[]
    weights: jax.Array  # float32[A]: the improved policy (Gumbel MuZero's target for the prior)
    value: jax.Array  # float32[]: the root's searched value (the net's value when ``simulations = 0``)


class MCTSAgent(eqx.Module):
    """A learned prior and value, searched ``simulations`` steps in the true simulator (module docstring)."""

    net: eqx.Module
    simulations: int = eqx.field(static=True)
    gamma: float = eqx.field(static=True)

    def __init__(self, net: eqx.Module, simulations: int, gamma: float = GAMMA):
        from mesalab.models.recurrent import is_recurrent

        if is_recurrent(net):
            raise ValueError("MCTS needs a feed-forward prior/value net (the tree carries no hidden state)")
        if simulations < 0:
            raise ValueError(f"simulations must be >= 0, got {simulations}")
        self.net = net
        self.simulations = int(simulations)
        self.gamma = float(gamma)

    def with_iterations(self, simulations: int) -> "MCTSAgent":
        """The same prior and value searching ``simulations`` nodes per step (the test-time dial)."""
        if simulations < 0:
            raise ValueError(f"simulations must be >= 0, got {simulations}")
        new = copy.copy(self)
        object.__setattr__(new, "simulations", int(simulations))
        return new

    def __call__(self, obs: jax.Array, interventions: Mapping[str, Intervention] | None = None):
        """The prior: the net's ``((logits, value), activations)``."""
        return self.net(obs, interventions)

    def search(self, env, params, state, key: jax.Array, greedy: bool = False) -> SearchResult:
        """One step's decision from environment state ``state`` (one level of ``params``, observed as ``env``
        observes): the search's action, its improved policy and root value. ``greedy`` turns off the Gumbel noise
        (a deterministic choice; the prior's argmax at budget 0)."""
        import mctx

        (logits, value), _ = self.net(env.observe(state, params))
        if self.simulations == 0:
            return SearchResult(prior_choice(logits, key, greedy), jax.nn.softmax(logits), value)

        def recurrent_fn(_, rng, action, embedding):
            nxt, reward, done, _ = jax.vmap(lambda s, a: env.step_no_reset(s, a, params))(embedding, action)
            (child_logits, child_value), _ = jax.vmap(self.net)(jax.vmap(lambda s: env.observe(s, params))(nxt))
            discount = jnp.where(done, 0.0, self.gamma).astype(jnp.float32)
            return mctx.RecurrentFnOutput(reward=reward, discount=discount, prior_logits=child_logits,
                                          value=jnp.where(done, 0.0, child_value)), nxt

        root = mctx.RootFnOutput(prior_logits=logits[None], value=value[None],
                                 embedding=jax.tree_util.tree_map(lambda x: x[None], state))
        with jax.numpy_dtype_promotion("standard"):  # mctx mixes int32 visit counts with float32 values
            out = mctx.gumbel_muzero_policy(None, key, root, recurrent_fn, num_simulations=self.simulations,
                                            max_num_considered_actions=MAX_CONSIDERED,
                                            gumbel_scale=0.0 if greedy else 1.0)
        return SearchResult(out.action[0].astype(jnp.int32), out.action_weights[0],
                            out.search_tree.node_values[0, mctx.Tree.ROOT_INDEX])


def prior_choice(logits: jax.Array, key: jax.Array, greedy: bool = False) -> jax.Array:
    """The action at budget 0: a draw from ``softmax(logits)`` by the Gumbel-max trick with exactly the root noise
    Gumbel MuZero draws from the same key (``split(key)[1]``, shape ``[1, A]``), or the argmax when greedy. At one
    simulation Gumbel MuZero considers one action, the argmax of that noise plus the logits, so budgets 0 and 1
    take the same action on the same key: bits from search are 0 there, sampled or greedy."""
    if greedy:
        return jnp.argmax(logits).astype(jnp.int32)
    _, gumbel_key = jax.random.split(key)
    noise = jax.random.gumbel(gumbel_key, (1, logits.shape[-1]), logits.dtype)[0]
    return jnp.argmax(logits + noise).astype(jnp.int32)


def is_planner(model) -> bool:
    """Whether ``model`` decides by searching the environment (needs the state, not just the observation)."""
    return isinstance(model, MCTSAgent)
