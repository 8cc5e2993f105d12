"""MCTS over the true simulator (Gumbel MuZero through mctx) against exact answers: with the exact value at its
leaves, one simulation per action walks BFS-shortest paths; with a uniform prior and no value, enough simulations
to cover the goal's depth reach the oracle's success and path lengths; bits from search are 0 at budget 0 by
construction; diagnostics of observations refuse a planner; AlphaZero-style training improves the prior."""

from __future__ import annotations

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_hard_coded_search import planted_vin

from mesalab.diagnostics.evaluation import evaluate
from mesalab.diagnostics.policies import as_stateful, model_policy
from mesalab.errors import ConfigError, MesalabError
from mesalab.models.mcts import MCTSAgent
from mesalab.tasks import get_task
from mesalab.tasks.grid import take_levels


class UniformNet(eqx.Module):
    """A uniform prior and a value of 0 everywhere: the search knows nothing but the simulator."""

    def __call__(self, obs, interventions=None):
        return (jnp.zeros(4, jnp.float32), jnp.zeros((), jnp.float32)), {}


def episodes_of(task, agent, params, key, greedy=False):
    return jax.jit(lambda p, k: evaluate(task, model_policy(agent, task.env.obs_mode, greedy=greedy), p, k))(params, key)


def reached(ep) -> np.ndarray:
    return np.asarray(ep.first_reach)[:, 0] <= np.asarray(ep.length)


def exact_value_net(task):
    """The VIN with the base objective as its reward (tests/test_hard_coded_search.py) as a prior/value net: a
    uniform prior (logit scale 0) and a value that falls strictly with the BFS distance to the goal, scaled below
    any true reward (so entering the goal always beats a value)."""
    vin = planted_vin(task, iterations=task.shape.height * task.shape.width // 2)
    return eqx.tree_at(lambda m: (m.beta, m.value_a), vin, (jnp.asarray(0.0), jnp.asarray(0.01)))


def test_with_the_exact_value_one_simulation_per_action_walks_shortest_paths():
    task = get_task("maze")
    params, _ = task.sample_params(jax.random.key(4), task.test, 40)
    agent = MCTSAgent(exact_value_net(task), simulations=4)
    ep = episodes_of(task, agent, params, jax.random.key(0), greedy=True)
    assert reached(ep).all()
    np.testing.assert_array_equal(np.asarray(ep.length), np.asarray(ep.shortest)[:, 0])  # the oracle's path lengths
    # without search the same net is the uniform policy: far from the oracle
    prior = episodes_of(task, agent.with_iterations(0), params, jax.random.key(0))
    assert reached(prior).mean() < 0.5


def test_a_uniform_search_with_enough_simulations_reaches_the_oracles_success():
    """No prior, no value: the tree must find the goal by expanding the simulator. With 256 simulations every root
    action's subtree is expanded at least two levels deep (sequential halving gives each of the 4 actions >= 32),
    so a goal within 3 steps is always found and walked to by a shortest path, as the oracle does; 4 simulations
    see one step ahead only."""
    task = dataclasses.replace(get_task("maze"), max_steps=6)
    params, _ = task.sample_params(jax.random.key(7), task.test, 300)
    probe = episodes_of(task, MCTSAgent(UniformNet(), 0), params, jax.random.key(0))
    near = np.nonzero(np.asarray(probe.shortest)[:, 0] <= 3)[0][:30]
    assert len(near) == 30
    params = take_levels(params, jnp.asarray(near, jnp.int32))
    ep = episodes_of(task, MCTSAgent(UniformNet(), 256), params, jax.random.key(1))
    assert reached(ep).all()  # the oracle's success (every level solvable within 6 steps)
    np.testing.assert_array_equal(np.asarray(ep.length), np.asarray(ep.shortest)[:, 0])
    shallow = episodes_of(task, MCTSAgent(UniformNet(), 4), params, jax.random.key(1))
    assert reached(shallow).mean() < 0.9


def test_bits_from_search_are_zero_at_budget_zero_and_rise_with_the_budget():
    from mesalab.diagnostics.search_bits import search_bits

    task = get_task("maze")
    params, _ = task.sample_params(jax.random.key(5), task.test, 40)
    agent = MCTSAgent(exact_value_net(task), simulations=0)
    rows = {r.budget: r for r in search_bits(task, agent, (0, 1, 4), params, jax.random.key(6), "egocentric",
                                             greedy=True)}
    assert rows[4].gain_ci[0] > 0 and rows[4].success == 1.0
    assert rows[4].bits == pytest.approx(rows[4].ceiling, rel=1e-6)
    # one simulation considers one action, the Gumbel-max draw from the prior with the root noise that budget 0
    # draws too: the same episodes, sampled or greedy, so the search adds exactly nothing there
    assert rows[1].gain == 0.0 and rows[1].gain_ci == (0.0, 0.0)
    sampled = {r.budget: r for r in search_bits(task, agent, (1, 4), params, jax.random.key(6), "egocentric")}
    assert sampled[1].gain == 0.0 and sampled[4].gain_ci[0] > 0
    assert rows[0].bits < 0.5 * rows[4].bits  # and budget 0 is the (uniform) prior, far below the search


def test_diagnostics_of_observations_refuse_a_planner():
    task = get_task("maze")
    policy = model_policy(MCTSAgent(UniformNet(), 8), "egocentric")
    assert policy.plan is not None
    with pytest.raises(ConfigError, match="with_iterations\\(0\\)"):
        as_stateful(policy)
    # at budget 0 the agent is its prior, a policy of observations like any actor-critic
    assert model_policy(MCTSAgent(UniformNet(), 0), "egocentric").plan is None
    with pytest.raises(ValueError, match="feed-forward"):
        from mesalab.models import make_model

        MCTSAgent(make_model("gru", key=jax.random.key(0), obs_shape=task.env.obs_shape, n_actions=4), 4)


def test_alphazero_configs_are_checked():
    from mesalab.optimizers.alphazero import AlphaZeroConfig

    for bad, match in [({"model": "gru"}, "feed-forward"), ({"simulations": 0}, "simulations"),
                       ({"total_steps": 10}, "less than one update"), ({"lr": float("nan")}, "finite"),
                       ({"task": "nope"}, "unknown task"), ({"task": "keys-chests"}, "cannot simulate")]:
        with pytest.raises(MesalabError, match=match):  # one-line errors (an unknown task is its own kind)
            AlphaZeroConfig.from_dict(bad)


def test_alphazero_training_moves_the_prior_toward_the_search():
    """A short AlphaZero-style run: the cross-entropy between the prior and the search's improved policy falls, and
    the trained agent is reproducible from its seed."""
    from mesalab.optimizers.alphazero import AlphaZeroConfig, make_train

    config = AlphaZeroConfig(task="maze", total_steps=2048, num_envs=8, rollout_len=32, simulations=4, width=32)
    train = jax.jit(make_train(config))
    agent, metrics = train(jax.random.key(0))
    loss = np.asarray(metrics["policy_loss"])
    assert loss.shape == (config.num_updates,) and np.isfinite(loss).all()
    assert loss[-1] < loss[0]
    again, _ = train(jax.random.key(0))
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree_util.tree_leaves(eqx.filter(agent, eqx.is_array)),
                                                    jax.tree_util.tree_leaves(eqx.filter(again, eqx.is_array))))
    assert isinstance(agent, MCTSAgent) and agent.simulations == 4


def test_an_alphazero_sweep_cell_measures_the_search_and_the_prior_on_the_same_levels():
    """One cell of the hard-coded-search preset (tiny budget): its metrics with search, of the prior alone, and the
    search's gain and share are consistent with evaluating the checkpointed agent by hand."""
    import dataclasses as dc

    from mesalab.experiments import plan as P
    from mesalab.experiments.presets import configured_preset
    from mesalab.studies import ppo_batch as B
    from mesalab.studies.sweep import _rebuild, measure_alphazero_batch

    preset = configured_preset("hard-coded-search", {"total_steps": 1024, "width": 16}, {"episodes": 20})
    preset = dc.replace(preset, panels=({"task": "maze"},), dial=dc.replace(preset.dial, values=(2,)))
    (batch,) = P.batches(preset, [3])
    (result,) = measure_alphazero_batch(batch, preset.eval)
    m = result.metrics
    for split in ("train", "test"):
        assert m[f"{split}/search_bits"] == pytest.approx(m[f"{split}/bits"] - m[f"{split}/prior/bits"])
        assert 0.0 <= m[f"{split}/prior/success"] <= 1.0 and f"{split}/goal_directedness" not in m
    agent = _rebuild("alphazero", batch.cells[0].config, result.model_leaves)
    assert isinstance(agent, MCTSAgent) and agent.simulations == 2
    task = get_task("maze")
    pools = B.evaluation_pools(task, preset.eval)
    keys = jax.vmap(jax.random.key)(jnp.asarray([3], jnp.uint32))
    prior = B.split_seed(B.evaluate_models(task, jax.tree_util.tree_map(lambda x: x[None], agent.with_iterations(0)),
                                           keys, pools, preset.eval.greedy), 0)
    assert reached(prior["test"]).mean() == pytest.approx(m["test/prior/success"])
    searched = B.split_seed(B.evaluate_models(task, jax.tree_util.tree_map(lambda x: x[None], agent), keys, pools,
                                              preset.eval.greedy), 0)
    assert reached(searched["test"]).mean() == pytest.approx(m["test/success"])  # the checkpoint searches as trained


def test_value_targets_are_discounted_returns_cut_at_episode_ends():
    from mesalab.optimizers.alphazero import discounted_returns

    reward = jnp.asarray([[0.0], [1.0], [0.0], [0.0]], jnp.float32)  # an episode ends at step 1 with reward 1
    done = jnp.asarray([[False], [True], [False], [False]])
    g = np.asarray(discounted_returns(reward, done, jnp.asarray([2.0], jnp.float32), 0.5))[:, 0]
    # steps 0-1: 0.5 * 1, 1 (the bootstrap never crosses the end); steps 2-3: the next episode, bootstrapped 0.5^2 * 2
    np.testing.assert_allclose(g, [0.5, 1.0, 0.5, 1.0], rtol=1e-6)
