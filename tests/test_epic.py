"""EPIC distance (mesalab.diagnostics.epic) against known answers: its closed-form invariances, an independent
brute-force NumPy implementation (a tiny MDP, and gridworld levels built from the environment's own
transitions), the absorbing-state representation of time-dependent rewards against the environment's and the
IRL model's returns, and planted agents on red-door."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mesalab.diagnostics import bfs_agent, evaluate, evaluation_levels
from mesalab.diagnostics import epic as E
from mesalab.diagnostics.grid_mdp import level_mdp
from mesalab.diagnostics.objective_profile import ObjectiveProfile, objective_profile
from mesalab.tasks.grid import COLOUR_CHANNEL, OBJECT_TYPES, TYPE_CHANNEL
from reference import env_transition_table


def _random_mdps(seed, n=3, s=6, a=3):
    rng = np.random.default_rng(seed)
    r = rng.normal(size=(n, s, a, s))
    d_s = rng.dirichlet(np.ones(s), size=n)
    d_a = rng.dirichlet(np.ones(a), size=n)
    cov = rng.random((n, s, a, s)) * (rng.random((n, s, a, s)) < 0.5)
    return r, d_s, d_a, cov


def _epic(r1, r2, cov, d_s, d_a, gamma):
    f = lambda x: jnp.asarray(x, jnp.float32)  # noqa: E731
    return float(E.epic_distance(f(r1), f(r2), f(cov), f(d_s), f(d_a), gamma))


@pytest.mark.parametrize("gamma", [1.0, 0.9])
def test_shaping_rescaling_and_constants_give_zero_negation_one(gamma):
    r, d_s, d_a, cov = _random_mdps(0)
    phi = np.random.default_rng(1).normal(size=d_s.shape) * 3.0  # one potential per MDP
    shaped = r + gamma * phi[:, None, None, :] - phi[:, :, None, None]
    assert _epic(r, shaped, cov, d_s, d_a, gamma) < 1e-5
    per_level_constant = np.array([2.0, -5.0, 0.5])[:, None, None, None]
    assert _epic(r, 3.7 * shaped + per_level_constant, cov, d_s, d_a, gamma) < 1e-5
    assert _epic(r, -r, cov, d_s, d_a, gamma) == pytest.approx(1.0, abs=1e-6)
    assert _epic(r, -0.2 * shaped, cov, d_s, d_a, gamma) == pytest.approx(1.0, abs=1e-5)


def test_symmetric_and_in_unit_interval():
    r1, d_s, d_a, cov = _random_mdps(2)
    for seed in range(5):
        r2 = np.random.default_rng(10 + seed).normal(size=r1.shape) + 0.5 * seed * r1
        d12, d21 = _epic(r1, r2, cov, d_s, d_a, 1.0), _epic(r2, r1, cov, d_s, d_a, 1.0)
        assert d12 == pytest.approx(d21, abs=1e-6)
        assert 0.05 < d12 < 0.95, d12  # two different rewards: strictly inside, not at an end
    # a reward correlated with r1 is closer than an unrelated one
    rng = np.random.default_rng(3)
    near, far = r1 + 0.3 * rng.normal(size=r1.shape), rng.normal(size=r1.shape)
    assert _epic(r1, near, cov, d_s, d_a, 1.0) < _epic(r1, far, cov, d_s, d_a, 1.0)


def _epic_brute_force(r1, r2, cov, d_s, d_a, gamma):
    """The definition, one term at a time: expectations by enumerating (S, A, S') with S, S' ~ D_S, A ~ D_A
    independent, each MDP (leading index) on its own; the weighted Pearson correlation by np.cov."""
    def canon(r, ds, da):
        n_s, n_a, _ = r.shape
        triples = list(itertools.product(range(n_s), range(n_a), range(n_s)))
        mean_all = sum(ds[x] * da[b] * ds[y] * r[x, b, y] for x, b, y in triples)
        out = np.empty_like(r)
        for s, a, s2 in triples:
            nxt = sum(da[b] * ds[y] * r[s2, b, y] for b in range(n_a) for y in range(n_s))
            here = sum(da[b] * ds[y] * r[s, b, y] for b in range(n_a) for y in range(n_s))
            out[s, a, s2] = r[s, a, s2] + gamma * nxt - here - gamma * mean_all
        return out

    c1 = np.stack([canon(r1[i], d_s[i], d_a[i]) for i in range(r1.shape[0])])
    c2 = np.stack([canon(r2[i], d_s[i], d_a[i]) for i in range(r1.shape[0])])
    m = np.cov(np.stack([c1.ravel(), c2.ravel()]), aweights=cov.ravel())
    rho = m[0, 1] / np.sqrt(m[0, 0] * m[1, 1])
    return np.sqrt((1 - rho) / 2)


@pytest.mark.parametrize("gamma", [1.0, 0.7])
def test_tiny_case_equals_brute_force(gamma):
    r1, d_s, d_a, cov = _random_mdps(4, n=2, s=4, a=2)
    r2 = np.random.default_rng(5).normal(size=r1.shape) + r1
    want = _epic_brute_force(r1, r2, cov, d_s, d_a, gamma)
    assert 0.05 < want < 0.95
    assert _epic(r1, r2, cov, d_s, d_a, gamma) == pytest.approx(want, abs=2e-6)


# -- gridworld levels ----------------------------------------------------------------------------------------


def _env_level(task, params, i):
    """NumPy view of level i read off the environment: next cell of every (action, cell) with terminal cells
    absorbing, the terminal map, the free map."""
    nxt, done, _, free = env_transition_table(task.env, params, i)
    h, w = free.shape
    flat = nxt[..., 0] * w + nxt[..., 1]  # [4, H, W]
    grid = np.asarray(params.grid[i])
    terminal = grid[..., 1:1 + len(OBJECT_TYPES)].any(-1) | np.asarray(params.base_target[i])
    cells = np.arange(h * w).reshape(h, w)
    flat = np.where(terminal[None], cells[None], flat)  # absorbed: every action loops
    flat[:, ~free] = -1
    return flat, terminal, free


def _np_feature_maps(task, grid):
    f = task.features
    maps = [grid[..., TYPE_CHANNEL[t]] for t in f.types] + [grid[..., COLOUR_CHANNEL[c]] for c in f.colours]
    assert not f.regions and not f.step  # red-door's basis
    return np.stack(maps).astype(np.float64), np.asarray(f.urgent, np.float64)


def _np_reward_maps(task, grid, terminal, w):
    """The documented representation, in NumPy: (per_step, on_entry, potential) of weights w."""
    maps, urgent = _np_feature_maps(task, grid)
    urgent_part = np.tensordot(w * urgent, maps, axes=1)
    per_step = np.where(terminal, urgent_part, 0.0)
    on_entry = np.tensordot(w * (1 - urgent), maps, axes=1) + np.where(terminal, 0.0, urgent_part)
    return per_step, on_entry, np.zeros_like(per_step)


def _np_objective_maps(objective, grid, max_steps):
    g = np.asarray(objective.target_map(jnp.asarray(grid)), np.float64)
    return 0.9 / max_steps * g, np.zeros_like(g), (0.1 - 0.9 / max_steps) * g


def _np_grid_epic(levels, rewards1, rewards2):
    """EPIC by the definition over dense per-level tables (gamma = 1, D_S uniform on free cells, coverage
    uniform over each level's real transitions, levels alike), all in float64 NumPy."""
    c1s, c2s, covs = [], [], []
    for (flat, terminal, free), m1, m2 in zip(levels, rewards1, rewards2):
        live = (free & ~terminal).ravel().astype(np.float64)
        d_s = free.ravel() / free.sum()

        def table(maps):
            per_step, on_entry, pot = (x.ravel() for x in maps)
            r = per_step[None, :] + live[:, None] * on_entry[None, :] + pot[None, :] - pot[:, None]
            return np.repeat(r[:, None, :], 4, axis=1)

        def canon(r):
            m = np.einsum("xay,a,y->x", r, np.full(4, 0.25), d_s)
            return r + m[None, None, :] - m[:, None, None] - d_s @ m

        cov = np.zeros((free.size, 4, free.size))
        for a in range(4):
            for s in np.flatnonzero(free.ravel()):
                cov[s, a, flat[a].ravel()[s]] = 1.0 / (4 * free.sum() * len(levels))
        c1s.append(canon(table(m1)))
        c2s.append(canon(table(m2)))
        covs.append(cov)
    m = np.cov(np.stack([np.concatenate([c.ravel() for c in c1s]), np.concatenate([c.ravel() for c in c2s])]),
               aweights=np.concatenate([c.ravel() for c in covs]))
    return np.sqrt((1 - m[0, 1] / np.sqrt(m[0, 0] * m[1, 1])) / 2)


@pytest.fixture(scope="module")
def red_door_levels(red_door):
    params = evaluation_levels(red_door, "test", 5)
    return params, [_env_level(red_door, params, i) for i in range(5)]


def test_gridworld_epic_equals_numpy_definition_on_environment_transitions(red_door, red_door_levels):
    params, levels = red_door_levels
    grids = np.asarray(params.grid)
    rng = np.random.default_rng(0)
    objs = red_door.candidate_objectives
    for trial in range(3):
        w = rng.normal(size=len(red_door.features))
        got = E.objective_epic(red_door, params.grid, params.base_target, w)
        fitted = [_np_reward_maps(red_door, grids[i], levels[i][1], w) for i in range(len(levels))]
        for j, obj in enumerate(objs):
            cand = [_np_objective_maps(obj, grids[i], red_door.max_steps) for i in range(len(levels))]
            want = _np_grid_epic(levels, fitted, cand)
            assert got.distance[j] == pytest.approx(want, abs=1e-5), (trial, obj.name)
        assert got.names == ("base:door", "proxy:red")
    # between the candidates themselves (on test levels the door is blue and a red key is present)
    between = _np_grid_epic(levels, *[[_np_objective_maps(o, grids[i], red_door.max_steps)
                                       for i in range(len(levels))] for o in objs])
    assert got.between[0, 1] == pytest.approx(between, abs=1e-5) and got.between[1, 0] == got.between[0, 1]
    assert between > 0.3 and np.all(np.diag(got.between) == 0)


def test_closed_form_canonical_values_equal_dense_tables(red_door, red_door_levels):
    """canonical_values (potential dropped) equals canonicalize on the dense table (potential included) on every
    covered transition, and the table-level epic_distance equals the closed-form pipeline."""
    params, _ = red_door_levels
    rng = np.random.default_rng(1)
    w = jnp.asarray(rng.normal(size=len(red_door.features)), jnp.float32)
    c_fit, c_obj, t_fit, t_obj, covs, d_ss = [], [], [], [], [], []
    for i in range(params.grid.shape[0]):
        grid, bt = params.grid[i], params.base_target[i]
        mdp = level_mdp(grid, bt)
        # red-door's rewards have no on_entry part (every feature is an urgent object feature): random maps too
        noise = E.LevelRewards(*(jnp.asarray(rng.normal(size=grid.shape[:2]), jnp.float32) for _ in range(3)))
        for rewards, closed, tables in ((E.weight_rewards(red_door, grid, bt, w), c_fit, t_fit),
                                        (E.objective_rewards(red_door.base_objective, grid, 40), c_obj, t_obj),
                                        (noise, [], [])):
            table = E.reward_table(rewards, mdp)
            dense = E.canonicalize(table, E.state_distribution(mdp), jnp.full((4,), 0.25, jnp.float32))
            cov = E.coverage(mdp)
            covered = (np.asarray(cov) > 0).astype(np.float32)
            on_cov = np.einsum("sat,sat->as", np.asarray(dense), covered)  # C at (s, a, next(s, a))
            fast = np.asarray(E.canonical_values(rewards, mdp)).reshape(4, -1)
            free = np.asarray(mdp.free).ravel()
            np.testing.assert_allclose(fast[:, free], on_cov[:, free], atol=1e-5)
            closed.append(fast)
            tables.append(table)
            if rewards is noise:  # and discounted
                dense = E.canonicalize(E.reward_table(noise, mdp, 0.9), E.state_distribution(mdp),
                                       jnp.full((4,), 0.25, jnp.float32), 0.9)
                on_cov = np.einsum("sat,sat->as", np.asarray(dense), covered)
                fast = np.asarray(E.canonical_values(noise, mdp, 0.9)).reshape(4, -1)
                np.testing.assert_allclose(fast[:, free], on_cov[:, free], atol=1e-5)
        covs.append(E.coverage(mdp))
        d_ss.append(E.state_distribution(mdp))
    d_a = jnp.full((len(covs), 4), 0.25, jnp.float32)
    dense_d = float(E.epic_distance(jnp.stack(t_fit), jnp.stack(t_obj), jnp.stack(covs), jnp.stack(d_ss), d_a))
    got = E.objective_epic(red_door, params.grid, params.base_target, np.asarray(w))
    assert got.distance[0] == pytest.approx(dense_d, abs=1e-5)


def test_absorbing_representation_earns_the_environment_and_irl_returns(red_door, red_door_levels):
    """On random trajectories (the environment's own transitions, padded to T steps on the terminal cell), the
    absorbing-state rewards sum to the environment's return 1 - 0.9 (t+1)/T for the base objective and to the
    IRL model's return (urgent u (T - t) on entering a terminal cell, the rest on every step) for weights."""
    params, levels = red_door_levels
    task, big_t = red_door, red_door.max_steps
    rng = np.random.default_rng(2)
    w = rng.normal(size=len(task.features))
    for i, (flat, terminal, free) in enumerate(levels):
        grid = np.asarray(params.grid[i])
        door = np.asarray(params.base_target[i]).ravel()
        mdp = level_mdp(params.grid[i], params.base_target[i])
        live = (free & ~terminal).ravel()
        maps = {name: [np.asarray(x, np.float64).ravel() for x in rw] for name, rw in (
            ("obj", E.objective_rewards(task.base_objective, params.grid[i], big_t)),
            ("fit", E.weight_rewards(task, params.grid[i], params.base_target[i], jnp.asarray(w, jnp.float32))))}
        fmaps, urgent = _np_feature_maps(task, grid)
        u_map = np.where(terminal, np.tensordot(w * urgent, fmaps, 1), 0.0).ravel()
        r_map = (np.tensordot(w * (1 - urgent), fmaps, 1)
                 + np.where(terminal, 0.0, np.tensordot(w * urgent, fmaps, 1))).ravel()
        assert np.array_equal(np.asarray(mdp.terminal), terminal)
        start = int(params.start[i][0]) * grid.shape[1] + int(params.start[i][1])
        for _ in range(40):
            s, ended, env_ret, irl_ret, ret = start, False, 0.0, 0.0, {"obj": 0.0, "fit": 0.0}
            for t in range(big_t):
                s2 = flat[rng.integers(4)].ravel()[s]
                if not ended:
                    irl_ret += u_map[s2] * (big_t - t) + r_map[s2]
                    if door[s2]:
                        env_ret = 1 - 0.9 * (t + 1) / big_t
                    ended = bool(terminal.ravel()[s2])
                for name, (per_step, on_entry, pot) in maps.items():
                    ret[name] += per_step[s2] + live[s] * on_entry[s2] + pot[s2] - pot[s]
                s = s2
            assert ret["obj"] == pytest.approx(env_ret, abs=1e-5)
            assert ret["fit"] == pytest.approx(irl_ret, rel=1e-5, abs=1e-4)


def test_identities_and_degenerate_rewards(red_door):
    train = evaluation_levels(red_door, "train", 20)
    test = evaluation_levels(red_door, "test", 20)
    names = red_door.features.names
    door_only = np.eye(len(names))[names.index("door")]
    red_only = np.eye(len(names))[names.index("red")]
    e = E.objective_epic(red_door, test.grid, test.base_target, door_only, np.stack([door_only, 2 * door_only]))
    assert e.distance[0] < 1e-4 and e.distance[1] > 0.3  # "reach a door" is the base objective up to scale
    assert e.ci_high[0] < 1e-4 and e.n_replicates == 2 and e.n_levels == 20
    e = E.objective_epic(red_door, test.grid, test.base_target, red_only)
    assert e.distance[1] < 1e-4 and e.distance[0] > 0.3 and e.n_replicates == 0 and np.all(np.isnan(e.ci_low))
    assert E.objective_epic(red_door, test.grid, test.base_target, -door_only).distance[0] == pytest.approx(1, abs=1e-5)
    # on training levels the door is red and nothing else is: the candidates coincide
    e = E.objective_epic(red_door, train.grid, train.base_target, door_only + red_only)
    assert e.between[0, 1] < 1e-4 and np.all(e.distance < 1e-4)
    # a reward that is constant on these levels (zero; or the type/colour gauge: +1 on every type, -1 on every
    # colour, 0 on every object) has no direction: NaN, never a number
    gauge = np.array([1.0 if n in red_door.features.types else -1.0 for n in names])
    for w in (np.zeros(len(names)), gauge):
        assert np.all(np.isnan(E.objective_epic(red_door, test.grid, test.base_target, w).distance))
    # a step reward c is -c on reaching any object (features docstring): equal distances
    from mesalab.tasks.features import FeatureBasis
    import dataclasses

    stepped = dataclasses.replace(red_door, features=FeatureBasis(types=("door", "key", "ball", "box"),
                                                                  colours=red_door.features.colours, step=True))
    obj_cost = np.r_[np.ones(4) * 0.7, np.zeros(4), 0.0] + np.r_[door_only, 0.0]
    step_cost = np.r_[np.zeros(8), -0.7] + np.r_[door_only, 0.0]
    a = E.objective_epic(stepped, test.grid, test.base_target, obj_cost).distance
    b = E.objective_epic(stepped, test.grid, test.base_target, step_cost).distance
    np.testing.assert_allclose(a, b, atol=1e-5)
    assert a[0] > 0.05  # and it is not the base objective


def _profile(task, split, policy, n=30):
    params = evaluation_levels(task, split, n)
    ep = jax.jit(lambda k: evaluate(task, policy, params, k))(jax.random.key(0))
    return objective_profile(task, params, ep, split, policy, irl_levels=n, n_boot=100)


def test_planted_agents_recovered_objective_is_epic_closest_to_the_planted_one(red_door):
    door, red = red_door.candidate_objectives
    # training levels: BFS to the door; door and red coincide there, so both candidates are equally close
    prof = _profile(red_door, "train", bfs_agent(red_door, door))
    e, b = prof.epic, prof.behavioral
    assert e.names == ("base:door", "proxy:red") and e.n_levels == 30 and e.n_replicates == 100
    assert b.weight_replicates.shape == (100, len(red_door.features))
    reps = b.weight_replicates / np.abs(b.weight_replicates).sum(-1, keepdims=True)
    np.testing.assert_allclose(np.quantile(reps, [0.025, 0.975], axis=0), [b.ci_low, b.ci_high], atol=1e-12)
    assert e.between[0, 1] < 1e-4
    assert e.distance[0] < 0.2 and e.distance[0] <= e.distance[1] + 1e-4
    # test levels: BFS to the door is closest to the base objective, BFS to red to the proxy, intervals apart
    for planted, j in ((door, 0), (red, 1)):
        e = _profile(red_door, "test", bfs_agent(red_door, planted)).epic
        assert e.distance[j] < 0.2 and e.distance[1 - j] > e.distance[j] + 0.3, (planted.name, e)
        assert e.ci_high[j] < e.ci_low[1 - j], (planted.name, e)
    # profiles built without EPIC (other constructors) still work
    assert ObjectiveProfile("test", prof.behavioral, prof.bits, prof.reading).epic is None


def test_a_constant_reward_has_no_distance_and_raises_no_warning():
    """A reward with no variance on the states (e.g. no red object on the levels) has no EPIC distance ("-"); the
    division that would make it 0/0 must not print a RuntimeWarning into the user's terminal."""
    import warnings

    from mesalab.diagnostics.epic import _distances

    cov = np.eye(3)
    u = np.zeros((1, 3))
    v = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        d = _distances(cov, u, v)
        d2 = _distances(cov, v, v)
    assert d.shape == (1, 2) and np.isnan(d).all()
    assert d2[0, 0] == 0.0 and np.isnan(d2[0, 1]) and np.isnan(d2[1]).all()
