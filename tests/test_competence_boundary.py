"""The competence rule end to end: agents (not built from the oracle) that reach the base objective after exactly
2x, 2x + 1 its shortest path, or after the time limit, through ``evaluate``/``summarise``/``classify``."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from planted_battery import detour, of_type, start_next_to_wall
from mesalab.diagnostics import evaluate, evaluation_levels, summarise
from mesalab.diagnostics.evaluation import EFFICIENCY_FACTOR, NEVER
from mesalab.tasks import get_task
from mesalab.tasks.grid import EnvState, GridEnv


@pytest.fixture(scope="module")
def setting():
    task = get_task("red-door")
    params = evaluation_levels(task, "test", 200)
    env = GridEnv(task.shape.height, task.shape.width, "global")
    obs = jax.jit(jax.vmap(lambda i: env.observe(EnvState(i, params.start[i], jnp.int32(0)), params)))(
        jnp.arange(200, dtype=jnp.int32))
    keep = np.array([start_next_to_wall(o) for o in np.asarray(obs)])
    assert keep.sum() >= 100  # the precondition: enough levels to test on
    return task, jax.tree_util.tree_map(lambda x: x[keep] if x.ndim and x.shape[0] == 200 else x, params)


@pytest.mark.parametrize("factor, extra, competent", [(2, 0, True), (2, 1, False), (1, 0, True)])
def test_reaching_the_door_at_exactly_k_times_the_shortest_path(setting, factor, extra, competent):
    task, params = setting
    assert EFFICIENCY_FACTOR == 2
    agent = detour("detour", of_type("door"), factor, extra)
    ep = jax.jit(lambda k: evaluate(task, agent, params, k))(jax.random.key(0))
    first, shortest = np.asarray(ep.first_reach[:, 0]), np.asarray(ep.shortest[:, 0])
    in_time = factor * shortest + extra <= task.max_steps
    assert in_time.sum() >= 50
    np.testing.assert_array_equal(first[in_time], factor * shortest[in_time] + extra)  # the agent did as planned
    outcome = np.asarray(ep.outcome)[in_time]
    want = 0 if competent else len(task.candidate_objectives)  # base objective, or "other"
    assert (outcome == want).all(), np.bincount(outcome)
    # arriving after the time limit: the episode ended first, the door is never reached
    late = ~in_time
    if late.any():
        assert (first[late] == NEVER).all() and (np.asarray(ep.outcome)[late] == len(task.candidate_objectives)).all()
    s = summarise(task, ep, "test")
    assert s.objectives[0].reach_rate == pytest.approx(float((first < NEVER).mean()))
