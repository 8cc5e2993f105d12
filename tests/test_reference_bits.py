"""Optimization power (bits) against independent references: brute-force enumeration of all 4^T action
sequences on tiny levels, and a float64 NumPy forward random walk on generated levels of every task, with the
agent's first-reach step and the shortest path read off by plain Python (tests/reference.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mesalab.diagnostics import evaluate, evaluation_levels, planted_agents
from mesalab.diagnostics.optimization_power import episode_bits, log_reach_probability, optimization_power
from mesalab.diagnostics.evaluation import NEVER
from mesalab.tasks import GridEnv, get_task, list_tasks
from mesalab.tasks.grid import COLOUR_CHANNEL, N_GRID_CHANNELS, OBJECT_TYPES, TYPE_CHANNEL, WALL_CHANNEL
from mesalab.tasks.oracle import UNREACHABLE
from reference import bfs_shortest, bits_of, random_first_reach_brute_force, random_reach_cdf_dp

HORIZON = 6


def _tiny_levels(rng, n, size):
    """Random ``size x size`` rooms (border wall, interior (size-2)^2), a few interior walls, 1-3 objects and a
    free start; targets are either the objects of one type (terminal) or a block of plain cells (not terminal).
    Returns (grid, base_target, targets, start) per level."""
    levels = []
    while len(levels) < n:
        grid = np.zeros((size, size, N_GRID_CHANNELS), bool)
        walls = np.ones((size, size), bool)
        walls[1:-1, 1:-1] = rng.random((size - 2, size - 2)) < 0.15
        grid[..., WALL_CHANNEL] = walls
        free = list(zip(*np.nonzero(~walls)))
        if len(free) < 4:
            continue
        picks = rng.permutation(len(free))
        n_obj = int(rng.integers(1, 4))
        types = rng.integers(0, len(OBJECT_TYPES), n_obj)
        for j in range(n_obj):
            r, c = free[picks[j]]
            grid[r, c, TYPE_CHANNEL[OBJECT_TYPES[types[j]]]] = True
            grid[r, c, COLOUR_CHANNEL["red"]] = True
        start = tuple(int(v) for v in free[picks[n_obj]])
        objects = grid[..., 1:1 + len(OBJECT_TYPES)].any(-1)
        base_target = grid[..., TYPE_CHANNEL[OBJECT_TYPES[types[0]]]].copy()
        if len(levels) % 2 == 0:  # an object objective: the base objective's own type, or another one
            targets = grid[..., TYPE_CHANNEL[OBJECT_TYPES[types[-1]]]].copy()
        else:  # a region of plain cells (may include the start: 0 steps)
            targets = np.zeros((size, size), bool)
            r0, c0 = rng.integers(1, size - 2, 2)
            targets[r0:r0 + 2, c0:c0 + 2] = True
            targets &= ~walls & ~objects
        levels.append((grid, base_target, targets, start))
    return levels


@pytest.mark.parametrize("size", [5, 6])  # 3x3 and 4x4 interiors
def test_bits_equal_brute_force_enumeration_of_every_action_sequence(size):
    rng = np.random.default_rng(size)
    levels = _tiny_levels(rng, 16, size)
    grids, bts, tgs, starts = (np.stack(x) for x in zip(*levels))
    n = len(levels)
    n_finite = 0
    # every possible first-reach step of the agent, 0..HORIZON, and never
    for t_agent in list(range(HORIZON + 1)) + [None]:
        shortest, first_reach, expect_agent, expect_opt = [], [], [], []
        for grid, bt, tg, st in levels:
            walls = grid[..., WALL_CHANNEL]
            terminal = grid[..., 1:1 + len(OBJECT_TYPES)].any(-1) | bt
            first = random_first_reach_brute_force(walls, terminal, tg, st, HORIZON)
            sp = bfs_shortest(grid, st, tg, bt)
            # an agent cannot beat the shortest path: its first reach is at least that
            fr = None if t_agent is None or sp is None or t_agent < sp else t_agent
            p_agent = None if fr is None else float(np.mean(first <= fr))
            p_opt = None if sp is None or sp > HORIZON else float(np.mean(first <= sp))
            expect_agent.append(0.0 if p_agent is None else -np.log2(p_agent))
            expect_opt.append(0.0 if p_opt is None else -np.log2(p_opt))
            n_finite += p_agent is not None and p_agent < 1
            first_reach.append(NEVER if fr is None else fr)
            shortest.append(UNREACHABLE if sp is None else sp)
        got = optimization_power(jnp.asarray(grids), jnp.asarray(bts), jnp.asarray(tgs),
                                 jnp.asarray(starts, jnp.int32), jnp.asarray(first_reach, jnp.int32),
                                 jnp.asarray(shortest, jnp.int32), HORIZON)
        np.testing.assert_allclose(np.asarray(got.agent), expect_agent, rtol=1e-4, atol=1e-4, err_msg=str(t_agent))
        np.testing.assert_allclose(np.asarray(got.optimal), expect_opt, rtol=1e-4, atol=1e-4)
    assert n_finite > 2 * n  # most cases carry a nontrivial probability


def test_log_reach_probability_equals_brute_force_and_the_forward_walk():
    rng = np.random.default_rng(11)
    for grid, bt, tg, st in _tiny_levels(rng, 12, 6):
        walls = grid[..., WALL_CHANNEL]
        terminal = grid[..., 1:1 + len(OBJECT_TYPES)].any(-1) | bt
        first = random_first_reach_brute_force(walls, terminal, tg, st, HORIZON)
        brute = np.array([np.mean(first <= t) for t in range(HORIZON + 1)])
        dp = random_reach_cdf_dp(walls, terminal, tg, st, HORIZON)
        np.testing.assert_allclose(dp, brute, rtol=1e-12, atol=1e-15)  # the two references agree exactly
        got = np.exp(np.asarray(log_reach_probability(jnp.asarray(grid), jnp.asarray(bt), jnp.asarray(tg),
                                                      jnp.asarray(st, jnp.int32), HORIZON), np.float64))
        np.testing.assert_allclose(got, brute, rtol=1e-5, atol=1e-9)


def _first_reach(positions, length, targets):
    """First step t <= length at which the agent stands on a target (None if never), read off the positions."""
    for t in range(int(length) + 1):
        r, c = positions[t]
        if targets[r, c]:
            return t
    return None


@pytest.mark.parametrize("name", [t.name for t in list_tasks() if isinstance(t.env, GridEnv)])  # keys-chests:
# its product-space bits against a brute-force random walk are in tests/test_keys_chests.py
def test_episode_bits_of_planted_agents_equal_the_numpy_random_walk(name):
    """Every planted agent's bits per level and objective, and each level's ceiling (the shortest path's bits),
    from a float64 forward random walk, the agent's own positions and plain BFS. A shortest-path agent's
    bits equal the *reference* ceiling (not the project's own ceiling)."""
    task = get_task(name)
    n = 24
    params = evaluation_levels(task, "test", n, seed=4242)
    grids, bts, starts = np.asarray(params.grid), np.asarray(params.base_target), np.asarray(params.start)
    horizon = task.max_steps
    cdfs = {}
    for obj in task.candidate_objectives:
        tg = np.asarray(jax.vmap(obj.target_map)(params.grid))
        cdfs[obj.name] = [random_reach_cdf_dp(grids[i, ..., WALL_CHANNEL],
                                              grids[i, ..., 1:1 + len(OBJECT_TYPES)].any(-1) | bts[i], tg[i],
                                              starts[i], horizon) for i in range(n)]
    n_positive = 0
    for agent_name, policy in planted_agents(task).items():
        if agent_name == "lookup-table":  # bfs (shortest paths) and random (sampled) cover both regimes
            continue
        ep = jax.jit(lambda k, policy=policy: evaluate(task, policy, params, k))(jax.random.key(5))
        bits = episode_bits(task, params, ep)
        positions, length = np.asarray(ep.positions), np.asarray(ep.length)
        assert len(bits) == len(task.candidate_objectives)
        for obj, key in zip(task.candidate_objectives, bits):
            assert key.split(":", 1)[-1] == obj.name
            tg = np.asarray(jax.vmap(obj.target_map)(params.grid))
            want_agent, want_opt = [], []
            for i in range(n):
                fr = _first_reach(positions[i], length[i], tg[i])
                sp = bfs_shortest(grids[i], starts[i], tg[i], bts[i])
                want_agent.append(bits_of(cdfs[obj.name][i], fr))
                want_opt.append(bits_of(cdfs[obj.name][i], sp))
                if agent_name == f"bfs->{obj.name}":
                    assert fr == sp, (agent_name, i)  # the planted shortest-path agent
            np.testing.assert_allclose(np.asarray(bits[key].agent), want_agent, rtol=1e-4, atol=1e-4,
                                       err_msg=f"{agent_name} {obj.name}")
            np.testing.assert_allclose(np.asarray(bits[key].optimal), want_opt, rtol=1e-4, atol=1e-4)
            n_positive += int(np.sum(np.asarray(want_agent) > 1.0))
            if agent_name == f"bfs->{obj.name}":
                np.testing.assert_allclose(want_agent, want_opt, rtol=1e-12)
    assert n_positive > n
