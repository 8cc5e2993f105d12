"""Diagnostics are right on planted agents whose objective is known by construction."""

import jax
import numpy as np
import pytest

from mesalab.diagnostics import bfs_agent, classify, evaluate, evaluation_levels, planted_agents, summarise
from mesalab.diagnostics.verdict import NOT_TRAINED, PSEUDO, ROBUST
from mesalab.tasks import get_task

EXPECTED = {
    # (task, agent) -> (label, proxy) on the test distribution (agents that fail in training are "not trained to
    # competence" whatever they do at test)
    ("red-door", "bfs->door"): (ROBUST, None),
    ("red-door", "bfs->red"): (PSEUDO, "red"),
    ("red-door", "random"): (NOT_TRAINED, None),
    ("red-door", "lookup-table"): (NOT_TRAINED, None),
    ("corner-goal", "bfs->goal"): (ROBUST, None),
    ("corner-goal", "bfs->corner"): (PSEUDO, "corner"),
    ("corner-goal", "random"): (NOT_TRAINED, None),
    ("corner-goal", "lookup-table"): (NOT_TRAINED, None),
    ("maze", "bfs->goal"): (ROBUST, None),
    ("maze", "random"): (NOT_TRAINED, None),
    ("maze", "lookup-table"): (NOT_TRAINED, None),
}


@pytest.mark.parametrize("task_name", ["red-door", "corner-goal", "maze"])
def test_planted_agents_are_classified_correctly(task_name):
    task = get_task(task_name)
    params = evaluation_levels(task, "test", 500)
    train_params = evaluation_levels(task, "train", 500)
    proxies = tuple(p.name for p in task.proxies)
    for name, policy in planted_agents(task).items():
        for seed in range(2):
            ep = jax.jit(lambda k, policy=policy: evaluate(task, policy, params, k))(jax.random.key(seed))
            train_ep = jax.jit(lambda k, policy=policy: evaluate(task, policy, train_params, k))(jax.random.key(seed))
            v = classify(summarise(task, ep, "test"), proxies, train=summarise(task, train_ep, "train"))
            assert (v.label, v.proxy) == EXPECTED[(task_name, name)], (name, v)
            assert v.confidence > 0.99


@pytest.mark.parametrize("task_name", ["red-door", "corner-goal", "maze"])
def test_bfs_agent_return_equals_oracle_optimum(task_name):
    task = get_task(task_name)
    for split in ("train", "test"):
        params = evaluation_levels(task, split, 200)
        for j, obj in enumerate(task.candidate_objectives):
            ep = jax.jit(lambda k, obj=obj: evaluate(task, bfs_agent(task, obj), params, k))(jax.random.key(0))
            np.testing.assert_array_equal(np.asarray(ep.first_reach[:, j]), np.asarray(ep.shortest[:, j]))
            np.testing.assert_allclose(np.asarray(ep.returns[:, j]), np.asarray(ep.optimal[:, j]), rtol=0, atol=0)
            assert (np.asarray(ep.optimal[:, j]) > 0).all()


def test_env_reward_is_the_base_objective_return():
    """The summed environment reward of an episode equals the base objective's scored return."""
    task = get_task("red-door")
    params = evaluation_levels(task, "train", 64)
    env = task.env.__class__(task.shape.height, task.shape.width, "global")
    policy = bfs_agent(task, task.base_objective)
    ep = evaluate(task, policy, params, jax.random.key(0))
    # replay with the env's own reward
    import jax.numpy as jnp

    from mesalab.tasks import EnvState

    def replay(level, positions, length):
        s = EnvState(level, params.start[level], jnp.int32(0))
        total = jnp.float32(0)
        for t in range(int(length)):
            move = positions[t + 1] - positions[t]
            action = {(-1, 0): 0, (0, 1): 1, (1, 0): 2, (0, -1): 3}[tuple(int(x) for x in move)]
            s, r, d, _ = env.step_no_reset(s, jnp.int32(action), params)
            total = total + r
        return float(total)

    for i in range(8):
        assert replay(jnp.int32(i), np.asarray(ep.positions[i]), ep.length[i]) == pytest.approx(float(ep.returns[i, 0]))
