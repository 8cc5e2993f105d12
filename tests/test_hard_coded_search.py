"""The two ends of the algorithmic range against exact answers: a hashed table is exact on the observations it has
seen, and a value iteration network whose reward map is set by hand to the base objective is the BFS-optimal
policy, on any maze size."""

from __future__ import annotations

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mesalab.models import TabularActorCritic, ValueIterationNetwork, make_model
from mesalab.models.tabular import OPTIMISM
from mesalab.models.vin import value_iteration
from mesalab.tasks import get_task
from mesalab.tasks.families import LevelShape
from mesalab.tasks.grid import CHANNEL_NAMES, WALL_CHANNEL, EnvState
from mesalab.tasks.oracle import UNREACHABLE, distances_to, terminal_cells


def all_states(task, params):
    """``(obs[S, ...], level[S], pos[S, 2])`` of every free, non-terminal cell of every level."""
    grids = np.asarray(params.grid)
    levels, cells = [], []
    for i, g in enumerate(grids):
        term = np.asarray(terminal_cells(jnp.asarray(g), params.base_target[i]))
        free = ~g[..., WALL_CHANNEL] & ~term
        for r, c in zip(*np.nonzero(free)):
            levels.append(i)
            cells.append((r, c))
    levels, cells = jnp.asarray(levels, jnp.int32), jnp.asarray(cells, jnp.int32)
    obs = jax.vmap(lambda lv, p: task.env.observe(EnvState(lv, p, jnp.int32(0)), params))(levels, cells)
    return obs, levels, cells


def optimal_actions(params, levels, cells) -> np.ndarray:
    """``bool[S, 4]``: the actions on a shortest path to the base objective's target (exact backward BFS)."""
    from mesalab.tasks.grid import neighbours

    def one(lv, pos):
        g = params.grid[lv]
        d = distances_to(~g[..., WALL_CHANNEL], terminal_cells(g, params.base_target[lv]), params.base_target[lv])
        nb = neighbours(d, UNREACHABLE)[:, pos[0], pos[1]]
        return (nb == jnp.min(nb)) & (jnp.min(nb) < UNREACHABLE)

    return np.asarray(jax.vmap(one)(levels, cells))


# -- tabular ---------------------------------------------------------------------------------------------------------

def test_a_hashed_table_is_exact_on_the_observations_it_has_seen():
    task = get_task("maze")
    params, _ = task.sample_params(jax.random.key(0), task.train, 16)
    obs, _, _ = all_states(task, params)
    flat = np.asarray(obs).reshape(obs.shape[0], -1)
    _, first = np.unique(flat, axis=0, return_index=True)
    obs = obs[np.sort(first)]  # the distinct observations of 16 mazes
    n = obs.shape[0]
    model = make_model("tabular", key=jax.random.key(1), obs_shape=task.env.obs_shape, n_actions=4)
    slots = np.asarray(jax.vmap(lambda o: model(o)[1]["slot"])(obs))
    assert len(set(slots.tolist())) == n, "hash collisions among this level set"  # ~n^2/2^21 = 0.1 expected
    logits = jax.random.normal(jax.random.key(2), (n, 4))
    values = jax.random.normal(jax.random.key(3), (n,))
    planted = model.write(obs, logits, values)
    (got_l, got_v), _ = jax.vmap(planted)(obs)
    np.testing.assert_allclose(np.asarray(got_l), np.asarray(logits), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(np.asarray(got_v), np.asarray(values), rtol=1e-6, atol=1e-6)
    # an observation it has not seen reads an untouched slot: the uniform policy, the optimistic initial value
    other, _ = task.sample_params(jax.random.key(9), task.test, 1)
    fresh, _, _ = all_states(task, other)
    unseen = [o for o in np.asarray(fresh) if not (flat == o.reshape(-1)).all(1).any()][:20]
    (ul, uv), _ = jax.vmap(planted)(jnp.asarray(np.stack(unseen)))
    untouched = ~np.isin(np.asarray(jax.vmap(lambda o: model(o)[1]["slot"])(jnp.asarray(np.stack(unseen)))), slots)
    assert untouched.sum() >= 18 and np.all(np.asarray(ul)[untouched] == 0)
    np.testing.assert_allclose(np.asarray(uv)[untouched], OPTIMISM, rtol=1e-6)


def test_the_hash_is_a_pure_function_of_the_observation():
    obs = jnp.zeros((5, 5, 3), jnp.bool_).at[2, 3, 1].set(True)
    a = TabularActorCritic(obs.shape, 4)
    s1, s2 = a(obs)[1]["slot"], a(obs.astype(jnp.float32))[1]["slot"]
    assert int(s1) == int(s2)  # the same cells, however they are typed
    s3 = a(obs.at[0, 0, 0].set(True))[1]["slot"]
    assert int(s3) != int(s1)


# -- value iteration network -----------------------------------------------------------------------------------------

def planted_vin(task, iterations: int) -> ValueIterationNetwork:
    """A VIN whose reward map is exactly the goal channel (the maze's base objective): 1 on the goal, 0 elsewhere."""
    shape = task.env.obs_shape
    names = [CHANNEL_NAMES[i] for i in task.env.channels] if task.env.obs_mode == "lean" else list(CHANNEL_NAMES)
    goal = names.index("type:goal")
    vin = ValueIterationNetwork(shape, 4, channels=4, iterations=iterations, key=jax.random.key(0))
    w = jnp.zeros_like(vin.conv_w).at[goal, 0].set(1.0)
    vin = eqx.tree_at(lambda m: (m.conv_w, m.reward_w), vin, (w, jnp.zeros_like(vin.reward_w).at[0].set(1.0)))
    return eqx.tree_at(lambda m: m.beta, vin, jnp.asarray(100.0))


@pytest.mark.parametrize("obs_mode,size", [("egocentric", 9), ("global", 9), ("lean", 9), ("egocentric", 17)])
def test_a_vin_with_the_base_objective_as_reward_is_bfs_optimal(obs_mode, size):
    task = get_task("maze")
    if size != 9:
        task = dataclasses.replace(task, name=f"maze-{size}", shape=LevelShape(size, size, max_objects=1))
    task = task.with_obs_mode(obs_mode)
    params, _ = task.sample_params(jax.random.key(size), task.test, 6)
    obs, levels, cells = all_states(task, params)
    best = optimal_actions(params, levels, cells)
    assert best.any(1).all()  # a perfect maze: the goal is reachable from every free cell
    vin = planted_vin(task, iterations=size * size // 2)  # more than the free cells of a perfect maze: any path
    (logits, _), acts = jax.vmap(vin)(obs)
    chosen = np.asarray(jnp.argmax(logits, -1))
    assert best[np.arange(len(chosen)), chosen].all()
    r = np.asarray(acts["reward_map"])
    assert set(np.unique(r).tolist()) <= {0.0, 1.0} and (r == 1.0).sum(axis=(1, 2)).max() == 1


def test_value_iteration_is_exact_on_a_corridor_and_zero_at_budget_zero():
    # a 1 x 5 corridor with the goal at the right end; V_K(s) is the best K-step discounted sum of entering rewards,
    # by hand: from cell 0 the goal is 4 steps away (0 in 3); cell 1 reaches it at step 3 (0.5^2); cell 2 at step 2
    # then bumps the right wall, staying on it (0.5 + 0.25); cells 3 and 4 collect it at every step (1 + 0.5 + 0.25)
    reward = jnp.zeros((1, 5)).at[0, 4].set(1.0)
    blocked = jnp.zeros((1, 5), jnp.bool_)
    q, v = value_iteration(reward, blocked, iterations=3, gamma=0.5)
    np.testing.assert_allclose(np.asarray(v[0]), [0.0, 0.25, 0.75, 1.75, 1.75], atol=1e-6)
    np.testing.assert_allclose(np.asarray(q[0, 1]), [0.0, 0.25, 0.0, 0.0], atol=1e-6)  # up/down/left stay or go back
    q0, v0 = value_iteration(reward, blocked, iterations=0)
    assert not np.asarray(q0).any() and not np.asarray(v0).any()
    # with budget 0 the policy is uniform whatever the reward map: no search, no preference
    task = get_task("maze")
    vin = planted_vin(task, 0)
    params, _ = task.sample_params(jax.random.key(0), task.test, 1)
    obs, _, _ = all_states(task, params)
    (logits, _), _ = jax.vmap(vin)(obs[:10])
    assert not np.asarray(logits).any()


def test_the_search_budget_is_a_test_time_dial():
    task = get_task("maze")
    vin = planted_vin(task, 4)
    assert vin.with_iterations(40).iterations == 40 and vin.iterations == 4
    params, _ = task.sample_params(jax.random.key(3), task.test, 4)
    obs, levels, cells = all_states(task, params)
    best = optimal_actions(params, levels, cells)
    accuracy = lambda m: best[np.arange(len(obs)), np.asarray(jnp.argmax(jax.vmap(m)(obs)[0][0], -1))].mean()  # noqa
    short, long = accuracy(vin), accuracy(vin.with_iterations(200))
    assert long == 1.0 and short < 0.9


# -- bits from search --------------------------------------------------------------------------------------------------

def test_bits_from_search_are_zero_at_budget_zero_and_rise_to_the_ceiling():
    from mesalab.diagnostics.search_bits import search_bits

    task = get_task("maze")
    params, _ = task.sample_params(jax.random.key(5), task.test, 60)
    vin = planted_vin(task, 0)
    rows = {r.budget: r for r in search_bits(task, vin, (0, 2, 8, 40), params, jax.random.key(6), "egocentric")}
    assert rows[0].gain == 0.0 and rows[0].gain_ci == (0.0, 0.0)  # the same episodes: zero by construction
    assert rows[2].gain < rows[8].gain < rows[40].gain
    assert rows[8].gain_ci[0] > 0
    # with search past every distance the planted VIN walks shortest paths: every level solved, bits at the ceiling
    assert rows[40].success == 1.0 and rows[40].bits == pytest.approx(rows[40].ceiling, rel=1e-6)
    assert 0 < rows[40].share <= 1.0 and rows[0].success < 0.5


# -- trained (slow) -------------------------------------------------------------------------------------------------

def _success(task, model, params, obs_mode: str, key, greedy=True) -> np.ndarray:
    from mesalab.diagnostics.evaluation import evaluate
    from mesalab.diagnostics.policies import model_policy

    episodes = jax.jit(lambda p, k: evaluate(task, model_policy(model, obs_mode, greedy=greedy), p, k))(params, key)
    return np.asarray(episodes.first_reach)[:, 0] <= np.asarray(episodes.length)


@pytest.mark.slow
def test_a_trained_vin_keeps_solving_mazes_twice_the_size():
    """The issue's bar: a VIN trained on 9x9 mazes keeps >= 90% success on unseen 17x17 mazes with its search
    budget scaled to the size; and the search carries its competence (budget 0 is the uniform policy)."""
    from mesalab.diagnostics.search_bits import search_bits
    from mesalab.optimizers import PPOConfig
    from mesalab.optimizers.ppo import make_train

    config = PPOConfig(task="maze", model="vin", ticks=40, obs_mode="global", total_steps=262_144)
    model, metrics = jax.jit(make_train(config))(jax.random.key(0))
    assert float(np.mean(np.asarray(metrics["success_rate"])[-4:])) >= 0.95
    big = dataclasses.replace(get_task("maze"), name="maze-17", shape=LevelShape(17, 17, max_objects=1),
                              max_steps=240).with_obs_mode("global")
    params, _ = big.sample_params(jax.random.key(17), big.test, 200)
    solved = _success(big, model.with_iterations(17 * 17 // 2), params, "global", jax.random.key(1))
    assert solved.mean() >= 0.9, solved.mean()
    small = get_task("maze").with_obs_mode("global")
    test, _ = small.sample_params(jax.random.key(9), small.test, 100)
    rows = {r.budget: r for r in search_bits(small, model, (0, 4, 40), test, jax.random.key(2), "global")}
    assert rows[0].gain == 0.0 and rows[4].gain_ci[0] > 0 and rows[40].gain > rows[4].gain


@pytest.mark.slow
def test_a_trained_table_memorises_its_mazes_and_stays_near_random_elsewhere():
    """The issue's bar: a tabular agent reaches >= 95% on its N = 16 training mazes and stays near the random agent
    on unseen mazes."""
    from mesalab.diagnostics.stats import wilson_interval
    from mesalab.optimizers import PPOConfig
    from mesalab.optimizers.ppo import make_train, training_distribution

    config = PPOConfig(task="maze", model="tabular", n_levels=16, total_steps=1_048_576)
    model, _ = jax.jit(make_train(config))(jax.random.key(0))
    task = get_task("maze")
    seen, _ = task.sample_params(jax.random.key(config.level_seed), training_distribution(task, config), 16)
    assert _success(task, model, seen, "egocentric", jax.random.key(1)).mean() >= 0.95
    unseen, _ = task.sample_params(jax.random.key(123), task.test, 400)
    trained = _success(task, model, unseen, "egocentric", jax.random.key(2), greedy=False)
    uniform = _success(task, TabularActorCritic(task.env.obs_shape, 4), unseen, "egocentric", jax.random.key(2),
                       greedy=False)
    lo, hi = wilson_interval(int(uniform.sum()), uniform.size)
    assert trained.mean() <= hi + 0.1, (trained.mean(), uniform.mean())


@pytest.mark.parametrize("kind,names", [
    ("tabular", {"input", "slot", "logits", "value"}),
    ("vin", {"input", "features", "reward_map", "value_map", "q_values", "logits", "value"}),
    ("transformer", {"input", "tokens", "layer_0/residual", "layer_0/attention", "layer_1/residual",
                     "layer_1/attention", "summary", "logits", "value"}),
])
def test_each_range_model_is_a_ppo_model_with_named_activations(kind, names):
    from mesalab.optimizers import PPOConfig, init_model

    config = PPOConfig(task="maze", model=kind, width=16, ticks=5, obs_mode="global").validate()
    model = init_model(config, jax.random.key(0))
    task = get_task("maze").with_obs_mode("global")
    params, _ = task.sample_params(jax.random.key(1), task.test, 2)
    obs, _ = task.env.reset(jax.random.key(2), params)
    (logits, value), acts = model(obs)
    assert set(acts) == names and logits.shape == (4,) and value.shape == () and logits.dtype == jnp.float32
    if kind == "transformer":
        assert acts["tokens"].shape == (81, 16) and acts["layer_1/attention"].shape == (81,)
        total = float(acts["layer_1/attention"].sum())  # the summary token's attention on the cells (rest: itself)
        assert 0.0 < total < 1.0 and float(acts["layer_1/attention"].min()) > 0.0
    # interventions replace a named activation (the functional hook every model offers)
    (l2, _), _ = model(obs, interventions={"logits": jnp.zeros(4)})
    assert not np.asarray(l2).any()


# -- the learned reward map as the mesa-objective ------------------------------------------------------------------

def _channel(task, name):
    names = [CHANNEL_NAMES[i] for i in task.env.channels] if task.env.obs_mode == "lean" else list(CHANNEL_NAMES)
    return names.index(name)


def _reward_of_channel(task, channel_name, sign=1.0):
    """A VIN whose reward map is ``sign`` on the cells with ``channel_name`` set and 0 elsewhere."""
    shape = task.env.obs_shape
    vin = ValueIterationNetwork(shape, 4, channels=4, iterations=5, key=jax.random.key(0))
    w = jnp.zeros_like(vin.conv_w).at[_channel(task, channel_name), 0].set(1.0)
    return eqx.tree_at(lambda m: (m.conv_w, m.reward_w), vin, (w, jnp.zeros_like(vin.reward_w).at[0].set(sign)))


@pytest.mark.parametrize("obs_mode", ["global", "egocentric", "lean"])
def test_a_reward_map_on_the_doors_agrees_with_the_door_not_with_red(obs_mode):
    """Planted reward maps on red-door's test levels (blue doors, red distractors), every observation mode: a map on
    the door channel has rho = 1 with the base objective and a negative one with 'red' (the door is never red
    there); a map on the red channel the reverse; a map on the walls ranks no free cell above another (rho 0)."""
    from mesalab.diagnostics.reward_map import reward_map_agreement, reward_on_grid

    task = get_task("red-door").with_obs_mode(obs_mode)
    params, _ = task.sample_params(jax.random.key(3), task.test, 12)
    door = {a.objective: a for a in reward_map_agreement(task, _reward_of_channel(task, "type:door"), params,
                                                         obs_mode)}
    assert door["door"].rho == pytest.approx(1.0) and door["door"].n_levels == 12
    assert door["red"].rho_ci[1] < 0
    red = {a.objective: a for a in reward_map_agreement(task, _reward_of_channel(task, "colour:red"), params,
                                                        obs_mode)}
    assert red["red"].rho == pytest.approx(1.0) and red["door"].rho_ci[1] < 0
    walls = reward_map_agreement(task, _reward_of_channel(task, "wall"), params, obs_mode)
    assert all(a.rho == 0.0 for a in walls)
    # the map is moved back onto the grid: the door's cell carries the reward, wherever the agent starts
    grid_reward = reward_on_grid(task, _reward_of_channel(task, "type:door"), params, obs_mode)
    doors = np.asarray(task.base_objective.target_map(params.grid))
    assert np.array_equal(grid_reward == 1.0, doors)


def test_reward_maps_are_read_only_from_a_vin():
    from mesalab.diagnostics.reward_map import reward_map_agreement
    from mesalab.errors import ConfigError

    task = get_task("maze")
    params, _ = task.sample_params(jax.random.key(0), task.test, 2)
    with pytest.raises(ConfigError, match="value iteration network"):
        reward_map_agreement(task, TabularActorCritic(task.env.obs_shape, 4), params, "egocentric")
