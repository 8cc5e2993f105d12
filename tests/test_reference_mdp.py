"""The grid MDP, soft value iteration, its gradient and optimization power against independent references
(tests/reference.py): the transition table is read off ``env.step_no_reset`` itself, the soft-optimal policy
and the random walk are plain float64 NumPy recursions written from the documented rules."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mesalab.diagnostics import soft_value_iteration as SVI
from mesalab.diagnostics.grid_mdp import (arrivals, level_mdp, predecessor_logsumexp, predecessor_sum,
                                          successor)
from mesalab.diagnostics.evaluation import evaluation_levels
from mesalab.tasks import GridEnv, get_task, list_tasks
from reference import (central_difference_gradient, entered_ends_episode, env_transition_table,
                       episode_log_likelihood_np, flat_successors, sample_soft_episode, soft_policy_log_probs_np)

# the static-grid engine's tasks (keys-chests' product-space MDP has its own references: tests/test_keys_chests.py)
TASK_NAMES = [t.name for t in list_tasks() if isinstance(t.env, GridEnv)]
N_LEVELS = 40


@functools.lru_cache(maxsize=None)
def _pool(name, split):
    return evaluation_levels(get_task(name), split, N_LEVELS, seed=777)


def _levels(task, split, n=N_LEVELS):
    """The first ``n`` of a fixed pool of generated levels (one generator compile per task and split)."""
    return jax.tree_util.tree_map(lambda x: x[:n] if getattr(x, "ndim", 0) and x.shape[0] == N_LEVELS else x,
                                  _pool(task.name, split))


@pytest.mark.parametrize("split", ["train", "test"])
@pytest.mark.parametrize("name", TASK_NAMES)
def test_level_mdp_equals_the_environment_stepped_from_every_cell(name, split):
    """successor / blocked / terminal / free of ``level_mdp`` against the transition table read off the env."""
    task = get_task(name)
    env = task.env
    params = _levels(task, split)
    h, w = env.height, env.width
    index = jnp.asarray(np.arange(h * w, dtype=np.float32).reshape(h, w))
    n_terminal = 0
    for i in range(N_LEVELS):
        nxt, done, _, free = env_transition_table(env, params, i)
        mdp = level_mdp(params.grid[i], params.base_target[i])
        succ = np.asarray(successor(index, mdp)).round().astype(int)
        want = flat_successors(nxt).reshape(4, h, w)
        np.testing.assert_array_equal(np.where(free, succ, -1), want, err_msg=f"{name} {split} level {i}")
        np.testing.assert_array_equal(np.asarray(mdp.free), free)
        stays = (want == np.arange(h * w).reshape(h, w)) & free
        np.testing.assert_array_equal(np.asarray(mdp.blocked) & free, stays)
        # terminal: entering the cell ends the episode (at t = 0 the time limit cannot)
        term = entered_ends_episode(nxt, done, free)
        entered = np.zeros((h, w), bool)
        for a in range(4):
            entered[tuple(nxt[a][free].T)] = True
        np.testing.assert_array_equal(np.asarray(mdp.terminal) & entered, term)
        n_terminal += int(term.sum())
    assert n_terminal > 0  # the table covered objects (and base targets)


def _arrival_reference(x, nxt, free, log=False):
    """Total (or log-sum of mass/4) of x[a, s] over (s, a) with s -a-> s', from the env's table."""
    h, w = free.shape
    tot = np.zeros((h, w)) if not log else np.full((h, w), -np.inf)
    for a in range(4):
        for r, c in zip(*np.nonzero(free)):
            nr, nc = nxt[a, r, c]
            if log:
                tot[nr, nc] = np.logaddexp(tot[nr, nc], x[r, c] - np.log(4.0))
            else:
                tot[nr, nc] += x[a, r, c]
    return tot


@pytest.mark.parametrize("name", TASK_NAMES)
def test_predecessor_sums_equal_the_environments_transitions(name):
    """predecessor_sum, the generic arrivals and predecessor_logsumexp move mass exactly as the env does
    (mass only on cells an agent can act from: free and not terminal)."""
    task = get_task(name)
    params = _levels(task, "test", 6)
    rng = np.random.default_rng(0)
    for i in range(6):
        nxt, done, _, free = env_transition_table(task.env, params, i)
        mdp = level_mdp(params.grid[i], params.base_target[i])
        alive = free & ~np.asarray(mdp.terminal)
        x = np.where(alive, rng.uniform(0.1, 1.0, (4,) + free.shape), 0.0)
        want = _arrival_reference(x, nxt, alive)
        xj = jnp.asarray(x, jnp.float32)
        np.testing.assert_allclose(np.asarray(predecessor_sum(xj, mdp)), want, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(np.asarray(jnp.sum(arrivals(xj, mdp, 0.0), axis=0)), want, rtol=1e-5, atol=1e-6)
        log_mass = np.where(alive, rng.normal(size=free.shape), -np.inf)
        want_log = _arrival_reference(log_mass, nxt, alive, log=True)
        got_log = np.asarray(predecessor_logsumexp(jnp.asarray(log_mass, jnp.float32), mdp))
        np.testing.assert_array_equal(np.isneginf(got_log), np.isneginf(want_log))
        fin = np.isfinite(want_log)
        np.testing.assert_allclose(got_log[fin], want_log[fin], rtol=1e-5, atol=1e-5)


def _random_maps(rng, shape, scale=0.6):
    """Nonzero random urgent and plain reward maps on every cell (the documented rule covers any map; the
    feature basis puts urgent rewards on terminal cells only)."""
    return rng.normal(0.0, scale, shape), rng.normal(0.0, scale, shape)


@pytest.mark.parametrize("name", TASK_NAMES)
def test_soft_policy_equals_numpy_backward_recursion_at_random_rewards(name):
    task = get_task(name)
    params = _levels(task, "test", 4)
    rng = np.random.default_rng(1)
    soft = jax.jit(SVI.soft_policy_log_probs, static_argnums=3)
    for i in range(4):
        nxt, done, _, free = env_transition_table(task.env, params, i)
        term = entered_ends_episode(nxt, done, free)
        nflat = flat_successors(nxt)
        mdp = level_mdp(params.grid[i], params.base_target[i])
        for horizon in (task.max_steps, 7):
            urgent, plain = _random_maps(rng, free.shape)
            got = np.asarray(soft(jnp.asarray(urgent, jnp.float32), jnp.asarray(plain, jnp.float32), mdp, horizon))
            want = soft_policy_log_probs_np(urgent, plain, nflat, term, horizon).reshape(got.shape)
            act = free & ~term  # cells the agent can act from
            # float32 rounding accumulates over the horizon's backward steps (the reference is float64)
            np.testing.assert_allclose(got[:, :, act], want[:, :, act], rtol=1e-4, atol=2e-4 * max(1.0, horizon / 32),
                                       err_msg=f"{name} level {i} T={horizon}")
            # the rewards matter: far from the uniform policy somewhere
            assert np.abs(want[:, :, act] + np.log(4.0)).max() > 0.3


def _check_log_likelihood_gradient(task, params, level_ids, rng, dtype, terminal_only_urgent, rtol, atol):
    value_and_grad = jax.jit(jax.value_and_grad(SVI.episode_log_likelihood, argnums=(0, 1)))
    n_short, max_fd_u, max_fd_r = 0, 0.0, 0.0
    for i in level_ids:
        nxt, done, _, free = env_transition_table(task.env, params, i)
        term = entered_ends_episode(nxt, done, free)
        nflat, dflat = flat_successors(nxt), done.reshape(4, -1)
        mdp = level_mdp(params.grid[i], params.base_target[i])
        horizon = task.max_steps
        for _ in range(2):
            urgent, plain = _random_maps(rng, free.shape)
            if terminal_only_urgent:
                urgent = np.where(term, urgent, 0.0)
            log_pi = soft_policy_log_probs_np(urgent, plain, nflat, term, horizon)
            cells, actions, length = sample_soft_episode(rng, log_pi, nflat, dflat, np.asarray(params.start[i]),
                                                         free.shape[1])
            n_short += length < horizon
            ll, (g_u, g_r) = value_and_grad(jnp.asarray(urgent, dtype), jnp.asarray(plain, dtype), mdp,
                                            jnp.asarray(cells, jnp.int32), jnp.asarray(actions, jnp.int32),
                                            jnp.int32(length))

            def ll_np(u, r):
                return episode_log_likelihood_np(u, r, nflat, term, cells, actions, length, horizon)

            assert float(ll) == pytest.approx(ll_np(urgent, plain), rel=rtol, abs=atol)
            mask = term if terminal_only_urgent else np.ones_like(term)
            fd_u = central_difference_gradient(lambda u: ll_np(np.where(mask, u, 0.0), plain), urgent)
            fd_r = central_difference_gradient(lambda r: ll_np(urgent, r), plain)
            np.testing.assert_allclose(np.where(mask, np.asarray(g_u), 0.0), fd_u, rtol=rtol, atol=atol)
            np.testing.assert_allclose(np.asarray(g_r), fd_r, rtol=rtol, atol=atol)
            max_fd_u, max_fd_r = max(max_fd_u, np.abs(fd_u).max()), max(max_fd_r, np.abs(fd_r).max())
    assert max_fd_u > 0.1 and max_fd_r > 0.1  # both maps matter to the likelihood somewhere
    return n_short


@pytest.mark.parametrize("name", TASK_NAMES)
def test_episode_log_likelihood_and_its_custom_gradient_against_numpy_finite_differences(name):
    """The value and the closed-form (custom VJP) gradient of ``episode_log_likelihood`` with respect to both
    reward maps, against central differences of the float64 NumPy log-likelihood, on episodes sampled from
    the reference soft-optimal policy itself (some end on an object, some run to the time limit). float32, with
    urgent rewards on terminal cells as the feature basis builds them."""
    task = get_task(name)
    n_short = _check_log_likelihood_gradient(task, _levels(task, "test", 4), [0, 1, 2, 3], np.random.default_rng(2),
                                             jnp.float32,
                                             terminal_only_urgent=True, rtol=2e-3, atol=2e-3)
    assert n_short > 0


def test_episode_log_likelihood_gradient_is_exact_in_float64_for_any_reward_maps(red_door):
    """In float64 the closed-form gradient equals the NumPy finite differences to 1e-6 for arbitrary urgent
    and plain maps (in float32, large urgent rewards on non-terminal cells, which the feature basis never
    builds, lose a few digits to cancellation)."""
    params = _levels(red_door, "test", 2)  # levels are generated in float32 mode
    # the project is float32 / int32 throughout; x64 mode mixes int64 literals in, so promotion is relaxed here
    with jax.enable_x64(True), jax.numpy_dtype_promotion("standard"):
        _check_log_likelihood_gradient(red_door, params, [0, 1], np.random.default_rng(3), jnp.float64,
                                       terminal_only_urgent=False, rtol=1e-6, atol=1e-6)
