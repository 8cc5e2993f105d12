"""The environment's rules and the exact oracle, checked against plain-Python BFS."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mesalab.tasks import EnvState, get_task, list_tasks
from mesalab.tasks.grid import AGENT_CHANNEL, WALL_CHANNEL, GridEnv, egocentric_view
from mesalab.tasks.oracle import UNREACHABLE, shortest_path_length
from reference import bfs_shortest


@pytest.mark.parametrize("name", ["red-door", "corner-goal", "maze"])
def test_oracle_matches_reference_bfs(name):
    task = get_task(name)
    params = task.sample_params_checked(jax.random.key(11), "test", 60)
    for obj in task.candidate_objectives:
        lengths = jax.vmap(lambda g, s, b: shortest_path_length(g, s, b, obj.target_map(g)))(
            params.grid, params.start, params.base_target
        )
        for i in range(60):
            grid = np.asarray(params.grid[i])
            ref = bfs_shortest(grid, params.start[i], np.asarray(obj.target_map(params.grid[i])),
                               np.asarray(params.base_target[i]))
            assert (int(lengths[i]) if int(lengths[i]) < UNREACHABLE else None) == ref


def _corridor_params():
    """A 5x7 room: start at (2,1); a red door at (2,5); a blue ball at (1,3)."""
    from mesalab.tasks.grid import COLOUR_CHANNEL, N_GRID_CHANNELS, TYPE_CHANNEL, EnvParams

    grid = np.zeros((5, 7, N_GRID_CHANNELS), bool)
    grid[0, :, WALL_CHANNEL] = grid[-1, :, WALL_CHANNEL] = True
    grid[:, 0, WALL_CHANNEL] = grid[:, -1, WALL_CHANNEL] = True
    grid[3, 2, WALL_CHANNEL] = True
    grid[2, 5, TYPE_CHANNEL["door"]] = grid[2, 5, COLOUR_CHANNEL["red"]] = True
    grid[1, 3, TYPE_CHANNEL["ball"]] = grid[1, 3, COLOUR_CHANNEL["blue"]] = True
    base = np.zeros((5, 7), bool)
    base[2, 5] = True
    return EnvParams(grid=jnp.asarray(grid)[None], start=jnp.array([[2, 1]], jnp.int32),
                     base_target=jnp.asarray(base)[None], n_levels=jnp.int32(1), max_steps=jnp.int32(10),
                     level_offset=jnp.int32(0))


def test_step_rules_walls_objects_reward_and_timeout():
    env = GridEnv(5, 7, "global")
    p = _corridor_params()
    s = EnvState(jnp.int32(0), jnp.array([2, 1], jnp.int32), jnp.int32(0))
    up, right, down, left = 0, 1, 2, 3
    s1, r, d, ok = env.step_no_reset(s, jnp.int32(left), p)  # wall: stays
    assert s1.pos.tolist() == [2, 1] and not d and float(r) == 0.0
    s2, _, _, _ = env.step_no_reset(s, jnp.int32(down), p)
    assert s2.pos.tolist() == [3, 1]
    s3, _, _, _ = env.step_no_reset(s2, jnp.int32(right), p)  # wall at (3,2)
    assert s3.pos.tolist() == [3, 1]
    # walk right four times to the door: reward 1 - 0.9 * 4/10
    st = s
    for _ in range(4):
        st, r, d, ok = env.step_no_reset(st, jnp.int32(right), p)
    assert bool(d) and bool(ok) and float(r) == pytest.approx(1 - 0.9 * 4 / 10)
    # entering the ball ends the episode without reward
    st, _, _, _ = env.step_no_reset(s, jnp.int32(right), p)
    st, _, _, _ = env.step_no_reset(st, jnp.int32(up), p)
    st, r, d, ok = env.step_no_reset(st, jnp.int32(right), p)
    assert st.pos.tolist() == [1, 3] and bool(d) and not bool(ok) and float(r) == 0.0
    # time limit
    st = s
    for i in range(10):
        st, r, d, _ = env.step_no_reset(st, jnp.int32(left), p)
    assert bool(d) and int(st.t) == 10


def test_auto_reset_returns_start_observation():
    env = GridEnv(5, 7, "global")
    p = _corridor_params()
    s = EnvState(jnp.int32(0), jnp.array([2, 4], jnp.int32), jnp.int32(3))
    obs, s2, r, d, info = env.step(jax.random.key(0), s, jnp.int32(1), p)
    assert bool(d) and bool(info["success"]) and s2.pos.tolist() == [2, 1] and int(s2.t) == 0
    assert obs[2, 1, AGENT_CHANNEL] and obs[..., AGENT_CHANNEL].sum() == 1


def test_egocentric_view_is_centred_and_padded_with_walls():
    p = _corridor_params()
    view = np.asarray(egocentric_view(p.grid[0], jnp.array([2, 1], jnp.int32)))
    assert view.shape == (9, 13, p.grid.shape[-1])
    grid = np.asarray(p.grid[0])
    # the agent's cell (2,1) is the centre (4,6); the door (2,5) is four cells to its right
    assert (view[4, 6] == grid[2, 1]).all()
    assert (view[4, 6 + 4] == grid[2, 5]).all()
    assert view[0, 0, WALL_CHANNEL]  # outside the grid reads as wall


def test_whole_episode_batch_runs_under_jit_and_vmap():
    """No Python per step: thousands of envs stepped inside one jitted scan, deterministically."""
    task = get_task("red-door")
    env = task.env
    params = task.sample_params_checked(jax.random.key(0), "train", 64)

    @jax.jit
    def run(key):
        obs, st = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(key, 256), params)

        def body(c, k):
            st, tot = c
            a = jax.random.randint(k, (256,), 0, 4)
            obs, st, r, d, _ = jax.vmap(env.step, in_axes=(0, 0, 0, None))(jax.random.split(k, 256), st, a, params)
            return (st, tot + r.sum()), d.sum()

        (_, tot), dones = jax.lax.scan(body, (st, jnp.float32(0)), jax.random.split(key, 100))
        return tot, dones.sum()

    a, b = run(jax.random.key(1)), run(jax.random.key(1))
    assert float(a[0]) == float(b[0]) and int(a[1]) == int(b[1]) and int(a[1]) > 0


def test_all_tasks_observation_shapes():
    for task in list_tasks():
        env = task.env
        params = task.sample_params_checked(jax.random.key(0), "train", 4)
        obs, _ = env.reset(jax.random.key(0), params)
        assert obs.shape == env.obs_shape and obs.dtype == jnp.bool_
