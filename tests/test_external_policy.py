"""Bring your own agent: a planted BFS agent written in plain NumPy and wrapped as an external host callable
(:mod:`mesalab.diagnostics.external`) gives the same episodes, verdict and IRL weights (to float tolerance) as the
internal planted agent (:func:`mesalab.diagnostics.planted.bfs_agent`) on the same levels and keys, in the global
and the egocentric observation contract; a random NumPy agent is uniform; a callable that returns no distribution
is an error that names the problem."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mesalab.diagnostics import evaluate, evaluation_levels
from mesalab.diagnostics.evaluation import Episodes
from mesalab.diagnostics.external import ROW_TOLERANCE, external_policy, task_policy
from mesalab.diagnostics.objective_profile import objective_profile
from mesalab.diagnostics.planted import bfs_agent, random_agent
from mesalab.diagnostics.policies import Policy
from mesalab.studies.gridworld_run import split_verdict
from mesalab.tasks import get_task
from mesalab.tasks.grid import (AGENT_CHANNEL, CHANNEL_NAMES, COLOUR_CHANNEL, N_GRID_CHANNELS, OBJECT_TYPES,
                                TYPE_CHANNEL, WALL_CHANNEL, EnvState)
from mesalab.tasks.oracle import UNREACHABLE as JAX_UNREACHABLE

N_LEVELS = 128
SPLITS = ("train", "test", "red-ball-box")
UNREACHABLE = int(JAX_UNREACHABLE)  # the oracle's "no path" distance, as a Python int


# -- the agents, in plain NumPy (no JAX inside the callables) ----------------------------------------------------

def _np_target_map(grid: np.ndarray, objective) -> np.ndarray:
    """``bool[B, H, W]``: the objective's target cells (Objective.target_map, region-free objectives)."""
    assert objective.region is None, "the NumPy agent knows object objectives only"
    target = ~grid[..., WALL_CHANNEL]
    if objective.needs_object:
        target = target & grid[..., 1:1 + len(OBJECT_TYPES)].any(-1)
    if objective.types is not None:
        target = target & grid[..., [TYPE_CHANNEL[t] for t in objective.types]].any(-1)
    if objective.colours is not None:
        target = target & grid[..., [COLOUR_CHANNEL[c] for c in objective.colours]].any(-1)
    return target


def _np_neighbours(x: np.ndarray, fill: int) -> np.ndarray:
    """``[B, 4, H, W]``: the value of ``x`` in the cell each action (up, right, down, left) moves to."""
    h, w = x.shape[1:]
    p = np.pad(x, ((0, 0), (1, 1), (1, 1)), constant_values=fill)
    return np.stack([p[:, 0:h, 1:w + 1], p[:, 1:h + 1, 2:w + 2], p[:, 2:h + 2, 1:w + 1], p[:, 1:h + 1, 0:w]], axis=1)


def _np_distances_to(free: np.ndarray, terminal: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Backward BFS (oracle.distances_to): steps from every cell to the nearest target; a path continues only
    through free cells that are neither terminal (an object, a base target: entering one ends the episode) nor a
    target; a non-target terminal cell and a wall keep ``UNREACHABLE``."""
    d = np.where(targets & free, 0, UNREACHABLE).astype(np.int64)
    can_continue = free & ~terminal & ~targets
    while True:
        best = _np_neighbours(d, UNREACHABLE).min(axis=1) + 1
        new = np.where(can_continue, np.minimum(d, best), d)
        if np.array_equal(new, d):
            return d
        d = new


def _np_shortest_path_probs(grid: np.ndarray, rows: np.ndarray, cols: np.ndarray, base_objective, objective):
    """``float[B, 4]``: uniform over the actions whose neighbour cell has the least distance to a target (all four
    when nothing is reachable: every neighbour is UNREACHABLE), as planted.bfs_agent's log_probs."""
    grid = grid.astype(bool)
    terminal = grid[..., 1:1 + len(OBJECT_TYPES)].any(-1) | _np_target_map(grid, base_objective)
    d = _np_distances_to(~grid[..., WALL_CHANNEL], terminal, _np_target_map(grid, objective))
    nb = _np_neighbours(d, UNREACHABLE)[np.arange(grid.shape[0]), :, rows, cols]  # [B, 4]
    best = nb == nb.min(axis=1, keepdims=True)
    return best / best.sum(axis=1, keepdims=True)


class NumpyBFS:
    """A host agent: ``probs(obs uint8[B, *obs_shape]) -> float64[B, 4]``; records the batch sizes it was called
    with, and checks the observation contract on every call."""

    def __init__(self, task, objective, obs_mode: str):
        self.base, self.objective, self.obs_mode = task.base_objective, objective, obs_mode
        self.obs_shape = task.env_for(obs_mode).obs_shape
        self.batches: list[int] = []

    def __call__(self, obs):
        assert type(obs) is np.ndarray and obs.dtype == np.uint8, (type(obs), obs.dtype)
        assert obs.ndim == 4 and obs.shape[1:] == self.obs_shape, obs.shape
        assert obs.max(initial=0) <= 1  # one-hot channels
        self.batches.append(obs.shape[0])
        b = obs.shape[0]
        if self.obs_mode == "global":  # the agent channel is the last one
            assert obs.shape[-1] == len(CHANNEL_NAMES) and CHANNEL_NAMES[-1] == "agent"
            agent = obs[..., AGENT_CHANNEL].reshape(b, -1)
            assert (agent.sum(axis=1) == 1).all()
            flat = agent.argmax(axis=1)
            rows, cols = flat // obs.shape[2], flat % obs.shape[2]
            grid = obs[..., :N_GRID_CHANNELS]
        else:  # egocentric: the agent stands at the window's centre; outside the level reads as wall
            assert obs.shape[-1] == N_GRID_CHANNELS
            rows = np.full(b, obs.shape[1] // 2)
            cols = np.full(b, obs.shape[2] // 2)
            grid = obs
        return _np_shortest_path_probs(grid, rows, cols, self.base, self.objective)


def numpy_random(obs):
    assert type(obs) is np.ndarray and obs.dtype == np.uint8
    return np.full((obs.shape[0], 4), 0.25)


# -- fixtures ----------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def task():
    return get_task("red-door")


@pytest.fixture(scope="module")
def pools(task):
    return {s: evaluation_levels(task, s, N_LEVELS) for s in SPLITS}


def _hypothesis(task, name):
    return next(h for h in task.hypotheses if h.name == name)


@pytest.fixture(scope="module")
def agents(task):
    """Per objective: the internal planted agent, and NumPy agents wrapped for the global and egocentric views."""
    out = {}
    for name in ("door", "red"):
        obj = _hypothesis(task, name)
        glob, ego = NumpyBFS(task, obj, "global"), NumpyBFS(task, obj, "egocentric")
        out[name] = {"planted": bfs_agent(task, obj), "global": task_policy(glob, task, "global", name=f"np->{name}"),
                     "egocentric": task_policy(ego, task, "egocentric", name=f"np-ego->{name}"),
                     "hosts": {"global": glob, "egocentric": ego}}
    return out


_RUNNERS: dict = {}


def _runner(task, policy):
    """``evaluate`` of ``policy``, jitted once per policy (one compilation for every split and key)."""
    if (task.name, policy) not in _RUNNERS:
        _RUNNERS[task.name, policy] = jax.jit(lambda p, k: evaluate(task, policy, p, k))
    return _RUNNERS[task.name, policy]


EGO = {"red"}  # the objectives whose egocentric NumPy agent is also evaluated on every split


@pytest.fixture(scope="module")
def episodes(task, pools, agents):
    """{objective: {kind: {split: Episodes}}}, every agent on the same levels with the same key."""
    out = {}
    for name, by_kind in agents.items():
        out[name] = {"batches": {}}
        for kind in ("planted", "global", "egocentric")[:3 if name in EGO else 2]:
            if kind in by_kind["hosts"]:
                by_kind["hosts"][kind].batches.clear()
            run = _runner(task, by_kind[kind])
            out[name][kind] = {s: jax.tree_util.tree_map(np.asarray, run(p, jax.random.key(7))) for s, p in pools.items()}
            if kind in by_kind["hosts"]:
                out[name]["batches"][kind] = set(by_kind["hosts"][kind].batches)
    return out


def _assert_same_episodes(a: Episodes, b: Episodes, what, float_tol: float = 0.0):
    """Positions, actions, lengths, first reaches, shortest paths and outcomes exactly; returns exactly, or to
    ``float_tol`` where the two were compiled differently (with and without a vmap over keys, XLA may fuse the
    return's arithmetic differently: one float32 ulp)."""
    for field in Episodes._fields:
        x, y = np.asarray(getattr(a, field)), np.asarray(getattr(b, field))
        if np.issubdtype(x.dtype, np.floating):
            np.testing.assert_allclose(x, y, rtol=0, atol=float_tol, err_msg=f"{what}: {field}")
        else:
            assert x.dtype == y.dtype, (what, field, x.dtype, y.dtype)
            np.testing.assert_array_equal(x, y, err_msg=f"{what}: {field}")


# -- the probabilities themselves ------------------------------------------------------------------------------

def _every_cell_obs(task, pools, split, mode, n_levels=24):
    """Observations of the agent on every non-wall cell (objects included: where an episode has ended) of the
    first levels of a split, plus one level walled in around its start (nothing reachable)."""
    params = pools[split]
    grid = np.asarray(params.grid[:n_levels]).copy()
    start = np.asarray(params.start[:n_levels]).copy()
    r, c = start[0]
    sealed = grid[0].copy()
    for dr, dc in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        sealed[r + dr, c + dc] = False
        sealed[r + dr, c + dc, WALL_CHANNEL] = True
    grid = np.concatenate([grid, sealed[None]])
    start = np.concatenate([start, start[:1]])
    levels, cells = [], []
    for lvl in range(grid.shape[0]):
        for rr, cc in zip(*np.nonzero(~grid[lvl, ..., WALL_CHANNEL])):
            levels.append(lvl)
            cells.append((rr, cc))
    pool = params._replace(grid=jnp.asarray(grid), start=jnp.asarray(start),
                           base_target=jax.vmap(task.base_objective.target_map)(jnp.asarray(grid)),
                           n_levels=jnp.int32(grid.shape[0]))
    env = task.env_for(mode)
    states = EnvState(level=jnp.asarray(levels, jnp.int32), pos=jnp.asarray(cells, jnp.int32),
                      t=jnp.zeros(len(levels), jnp.int32))
    obs = jax.jit(jax.vmap(env.observe, in_axes=(0, None)))(states, pool)
    walled_in = (np.asarray(levels) == grid.shape[0] - 1) & (np.asarray(cells) == start[-1]).all(axis=1)
    assert walled_in.sum() == 1
    return obs, walled_in


@pytest.mark.parametrize("objective", ["door", "red"])
def test_numpy_bfs_probabilities_are_the_planted_agents(task, pools, agents, objective):
    """On every cell of test and probe levels (objects and a walled-in start included), the NumPy agent's
    probabilities are exactly the planted agent's, in both observation modes, called directly and through the
    wrapper's log_probs."""
    planted = agents[objective]["planted"]
    for split in ("test", "red-ball-box"):
        g_obs, sealed = _every_cell_obs(task, pools, split, "global")
        e_obs, _ = _every_cell_obs(task, pools, split, "egocentric")
        want = np.exp(np.asarray(jax.jit(jax.vmap(planted.log_probs))(g_obs)))
        assert np.allclose(want[sealed], 0.25)  # nothing reachable: uniform
        assert (want.max(axis=1) == 1).mean() > 0.3 and (want.max(axis=1) < 1).any()  # both kinds of state occur
        for mode, obs in (("global", g_obs), ("egocentric", e_obs)):
            host = agents[objective]["hosts"][mode]
            np.testing.assert_allclose(host(np.asarray(obs, np.uint8)), want, rtol=0, atol=1e-7, err_msg=mode)
            wrapped = jax.jit(jax.vmap(agents[objective][mode].log_probs))(obs)
            assert wrapped.dtype == jnp.float32
            np.testing.assert_allclose(np.exp(np.asarray(wrapped)), want, rtol=1e-6, atol=0, err_msg=mode)
            np.testing.assert_array_equal(np.isneginf(np.asarray(wrapped)), want == 0)


# -- episodes --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("objective", ["door", "red"])
def test_wrapped_numpy_agent_gives_the_planted_agents_episodes(task, agents, episodes, objective):
    """Same levels, same key: exactly the planted agent's episodes (positions, actions, lengths, outcomes, ...) on
    train, test and the red-ball-box probe, through the global and the egocentric observation contract."""
    eps = episodes[objective]
    kinds = [k for k in ("global", "egocentric") if k in eps]
    assert kinds == (["global", "egocentric"] if objective in EGO else ["global"])
    for split in SPLITS:
        for kind in kinds:
            _assert_same_episodes(eps["planted"][split], eps[kind][split], f"{objective} {kind} {split}")
        assert (eps["planted"][split].length < task.max_steps).all()  # every episode ends at an object
    # the host was asked once per step, for all levels at once
    assert eps["batches"] == {k: {N_LEVELS} for k in kinds}, eps["batches"]
    # and the episodes are what they should be: a shortest path to the objective on every level
    j = {"door": 0, "red": 1}[objective]
    for split in SPLITS:
        ep = eps["global"][split]
        np.testing.assert_array_equal(ep.first_reach[:, j], ep.shortest[:, j], err_msg=split)


def test_seeds_evaluated_together_under_vmap(task, pools, agents, episodes):
    """An extra vmap over evaluation keys (seeds evaluated together, as a study evaluates its seeds): the host sees
    keys x levels observations in one call, and each seed's episodes are the planted agent's on that key."""
    params = pools["test"]
    keys = jnp.stack([jax.random.key(7), jax.random.key(8)])  # key 7: the episodes fixture's
    for name, kind in (("red", "global"),):
        host = agents[name]["hosts"][kind]
        host.batches.clear()
        policy = agents[name][kind]
        out = jax.jit(jax.vmap(lambda k, policy=policy: evaluate(task, policy, params, k)))(keys)
        assert out.actions.shape == (2, N_LEVELS, task.max_steps)
        assert set(host.batches) == {2 * N_LEVELS}, (name, kind, set(host.batches))
        one = jax.tree_util.tree_map(lambda x: x[0], out)
        _assert_same_episodes(one, episodes[name]["planted"]["test"], f"{name} {kind} vmapped, key 7", 1e-6)
        two = jax.tree_util.tree_map(lambda x: x[1], out)
        _assert_same_episodes(two, _runner(task, agents[name]["planted"])(params, keys[1]),
                              f"{name} {kind} vmapped, key 8", 1e-6)
        assert not np.array_equal(np.asarray(out.actions[0]), np.asarray(out.actions[1]))  # the keys matter


# -- IRL weights and the verdict -------------------------------------------------------------------------------

VERDICT_SPLITS = ("test", "red-ball-box")
PROFILED = "red-ball-box"  # the probe tells door from red apart (on test, red and the unseen key are aliased)
IRL_LEVELS = 32


def _assert_same_behavioral(a, b, what):
    assert (b.feature_names, b.dominant, b.aliases, b.absent) == (a.feature_names, a.dominant, a.aliases, a.absent), \
        (what, a.dominant, b.dominant)
    for field in ("weights", "normalised", "ci_low", "ci_high", "ceiling_ll", "fitted_ll", "goal_directedness",
                  "dominant_weight", "scale"):
        np.testing.assert_allclose(getattr(b, field), getattr(a, field), rtol=1e-5, atol=1e-5,
                                   err_msg=f"{what}: {field}")
    assert (b.n_levels, b.n_actions) == (a.n_levels, a.n_actions)


@pytest.mark.parametrize("objective", ["door", "red"])
def test_irl_weights_and_verdicts_match(task, pools, agents, episodes, objective):
    """objective_profile (IRL weights, dominant feature, goal-directedness topped by each agent's own log-probs,
    replayed through the callable) and the alignment verdict on test and on the red-ball-box probe are the planted
    agent's, to float tolerance."""
    expected = {"door": ("robustly aligned", None), "red": ("pseudo-aligned", "red")}[objective]
    kinds = ["planted", "global"]
    profiles, verdicts = {}, {}
    for kind in kinds:
        eps = episodes[objective][kind]
        profiles[kind] = {PROFILED: objective_profile(task, pools[PROFILED], eps[PROFILED], PROFILED,
                                                      policy=agents[objective][kind], irl_levels=IRL_LEVELS, n_boot=30)}
        verdicts[kind] = {s: split_verdict(task, s, eps, pools, profiles[kind]) for s in VERDICT_SPLITS}
    for kind in kinds[1:]:
        what = f"{objective} {kind} {PROFILED}"
        a, b = profiles["planted"][PROFILED], profiles[kind][PROFILED]
        _assert_same_behavioral(a.behavioral, b.behavioral, what)
        assert b.reading == a.reading, what
        for x, y in zip(a.bits, b.bits, strict=True):  # bits depend on the episodes only: the same
            assert (x.objective, x.n_levels, x.mean, x.ci) == (y.objective, y.n_levels, y.mean, y.ci)
            np.testing.assert_array_equal(x.per_level, y.per_level)
        for split in VERDICT_SPLITS:
            a, b = verdicts["planted"][split], verdicts[kind][split]
            assert (b.label, b.proxy) == (a.label, a.proxy), (what, a.text, b.text)
            assert b.confidence == pytest.approx(a.confidence) and b.text == a.text, what
        assert (verdicts[kind]["test"].label, verdicts[kind]["test"].proxy) == expected, verdicts[kind]["test"].text
    if objective in EGO:  # the egocentric agent's own log-probs (goal-directedness's ceiling), replayed likewise
        from mesalab.diagnostics.behavioral_fit import demonstrations
        from mesalab.diagnostics.policy_replay import policy_log_probs

        demos = demonstrations(pools[PROFILED], episodes[objective]["egocentric"][PROFILED], IRL_LEVELS)
        ego = policy_log_probs(task, agents[objective]["egocentric"], pools[PROFILED], demos)
        planted = policy_log_probs(task, agents[objective]["planted"], pools[PROFILED], demos)
        np.testing.assert_allclose(ego, planted, rtol=1e-5, atol=1e-6)
        assert np.isfinite(ego).all()  # every demonstrated action has positive probability
    b = profiles["global"][PROFILED].behavioral  # the probe separates door from red: IRL names the objective
    assert objective in b.dominant.replace("~", "|").replace("=", "|").split("|"), b.dominant
    assert -np.log(2) - 1e-6 <= b.ceiling_ll < 0  # the agent's own log-probs: ties between shortest paths only


# -- a random agent --------------------------------------------------------------------------------------------

def test_numpy_random_agent_is_uniform(task, pools):
    params = pools["test"]
    rnd = external_policy(numpy_random, task.env_for("egocentric").obs_shape, "egocentric", "np-random")
    planted = random_agent()
    obs, _ = _every_cell_obs(task, pools, "test", "egocentric", n_levels=4)
    lp = np.asarray(jax.jit(jax.vmap(rnd.log_probs))(obs))
    np.testing.assert_allclose(lp, np.broadcast_to(np.asarray(planted.log_probs(obs[0])), lp.shape), rtol=1e-6)
    # sampling: exactly a categorical draw from uniform logits on the same keys
    categorical = Policy("uniform-logits", lambda o, k: jax.random.categorical(k, jnp.full((4,), -jnp.log(4.0))),
                         "global", planted.log_probs)
    key = jax.random.key(3)
    ep = jax.tree_util.tree_map(np.asarray, _runner(task, rnd)(params, key))
    _assert_same_episodes(ep, _runner(task, categorical)(params, key), "random vs categorical")
    # uniform actions (the planted random agent's distribution; it draws with randint, so not the same draws)
    taken = np.arange(task.max_steps)[None] < ep.length[:, None]
    freq = np.bincount(ep.actions[taken], minlength=4) / taken.sum()
    assert taken.sum() > 1000 and np.abs(freq - 0.25).max() < 0.03, freq


# -- errors ----------------------------------------------------------------------------------------------------

def _obs_batch(task, pools):
    env = task.env_for("egocentric")
    params = pools["test"]
    states = EnvState(level=jnp.arange(3, dtype=jnp.int32), pos=params.start[:3], t=jnp.zeros(3, jnp.int32))
    return jax.vmap(env.observe, in_axes=(0, None))(states, params)


BAD = {
    "wrong shape": (lambda obs: np.full((obs.shape[0], 3), 1 / 3),
                    r"returned probabilities of shape \((\d+), 3\) for \1 observations; it must return float\[\1, 4\]"),
    "one row": (lambda obs: np.full((1, 4), 0.25), r"shape \(1, 4\)"),
    "negative": (lambda obs: np.tile([1.5, -0.5, 0.0, 0.0], (obs.shape[0], 1)), "not probability distributions"),
    "not summing to 1": (lambda obs: np.full((obs.shape[0], 4), 0.24), "not probability distributions"),
    "NaN": (lambda obs: np.full((obs.shape[0], 4), np.nan), "not probability distributions"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_a_callable_that_returns_no_distribution_is_an_error(task, pools, case):
    probs, message = BAD[case]
    policy = task_policy(probs, task, name=f"bad-{case}")
    obs = _obs_batch(task, pools)
    with pytest.raises(Exception, match=message) as info:
        jax.block_until_ready(jax.jit(jax.vmap(policy.log_probs))(obs))
    assert f"bad-{case}" in str(info.value)
    if case == "wrong shape":  # and when evaluated (a compilation per agent: one case suffices)
        with pytest.raises(Exception, match=message):
            jax.block_until_ready(_runner(task, policy)(pools["test"], jax.random.key(0)))


def test_rows_within_tolerance_are_accepted_and_renormalised(task, pools):
    raw = np.array([0.4, 0.3, 0.2, 0.1]) * (1 + 0.9 * ROW_TOLERANCE)  # sums to 1.0009
    policy = task_policy(lambda obs: np.tile(raw, (obs.shape[0], 1)), task, name="nearly")
    lp = np.asarray(jax.jit(jax.vmap(policy.log_probs))(_obs_batch(task, pools)))
    np.testing.assert_allclose(np.exp(lp), np.tile(raw / raw.sum(), (3, 1)), rtol=1e-6)
    # a list of lists in float32, for one unbatched observation, works too
    single = task_policy(lambda obs: [[0.25, 0.25, 0.5, 0.0]] * obs.shape[0], task, name="list")
    p = np.exp(np.asarray(single.log_probs(_obs_batch(task, pools)[0])))
    np.testing.assert_allclose(p, [0.25, 0.25, 0.5, 0.0], rtol=1e-6)
