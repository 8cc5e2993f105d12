"""Probes, steering and retargeting are right on planted networks whose representation is known by construction,
and their labels, frames and ridge fits agree with brute force.

The planted networks wrap a random-initialised CNN that sees only the walls of its observation (so its own
channels say nothing about where any object is) and overwrite channel ``PLANT`` of its first spatial activation
``conv_0`` with the door's location map read from the observation. The *reader* variant also takes its action
from that channel: it walks (exact BFS inside its own observation, around objects) to the cell where the channel
is largest, so writing a larger value elsewhere in that channel retargets it by construction.

(The walls-only view matters for the control: a random CNN reading the whole observation already puts the door's
location in its first convolution, a random projection of one-hot patches; its door probe's selectivity measured
0.32 on lean and 0.42 on egocentric observations, so it is no "nothing there" control.)
"""

from collections import deque
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mesalab.diagnostics import evaluation_levels
from mesalab.diagnostics.activations import (ActivationData, activation_shapes, activations_on, candidate_objectives,
                                             cell_in_frame, first_best_action, frame_for, frame_of, initial_carry,
                                             model_step, record_data, spatial_layers)
from mesalab.diagnostics.probes import probe_layer, ridge_fit, ridge_path, spatial_label_maps
from mesalab.diagnostics.steering import projection_gap, retargeting, steering_effects, steering_rates
from mesalab.models import CNNActorCritic, make_model
from mesalab.tasks import EnvParams, EnvState, Level, get_task, level_grid
from mesalab.tasks.grid import (AGENT_CHANNEL, COLOUR_CHANNEL, DIRECTIONS, LEAN_TRIM, OBJECT_TYPES, TYPE_CHANNEL,
                                WALL_CHANNEL)
from mesalab.tasks.oracle import UNREACHABLE, distances_to

PLANT = 3  # the channel of conv_0 that holds the door map
N_LEVELS = 80  # levels per probe / retargeting pool (half fit, half held out)


# -- the planted networks ------------------------------------------------------------------------------------------

class Layout(NamedTuple):
    """Where the wall, door and object channels sit in an observation of one mode, and where the agent is."""

    wall: int
    door: int
    objects: tuple[int, ...]
    agent: int | None  # the agent channel (global); None: the agent is at the window's centre
    centre: tuple[int, int]


def layout(task) -> Layout:
    env = task.env
    types = [TYPE_CHANNEL[t] for t in OBJECT_TYPES]
    if task.obs_mode == "lean":
        ch = env.channels
        return Layout(ch.index(WALL_CHANNEL), ch.index(TYPE_CHANNEL["door"]), tuple(ch.index(t) for t in types
                      if t in ch), None, ((env.obs_shape[0] - 1) // 2, (env.obs_shape[1] - 1) // 2))
    agent = AGENT_CHANNEL if task.obs_mode == "global" else None
    return Layout(WALL_CHANNEL, TYPE_CHANNEL["door"], tuple(types), agent,
                  ((env.obs_shape[0] - 1) // 2, (env.obs_shape[1] - 1) // 2))


def _apply(intervention, a):
    if intervention is None:
        return a
    return intervention(a) if callable(intervention) else jnp.broadcast_to(intervention, a.shape).astype(a.dtype)


class Planted(eqx.Module):
    """A random CNN on the walls-only view, with ``conv_0[..., PLANT]`` overwritten by the door map (``plant``),
    acting by its own random heads or (``reader``) walking to the argmax of that channel."""

    inner: CNNActorCritic
    lay: Layout = eqx.field(static=True)
    plant: bool = eqx.field(static=True)
    reader: bool = eqx.field(static=True)
    gain: float = eqx.field(static=True, default=10.0)  # the reader's logit on its BFS action (others 0)

    def __call__(self, obs, interventions=None):
        lay = self.lay
        ivs = dict(interventions or {})
        user = ivs.get("conv_0")
        door = obs[..., lay.door].astype(jnp.float32)

        def conv0(a):
            if self.plant:
                a = a.at[..., PLANT].set(door)
            return _apply(user, a)

        ivs["conv_0"] = conv0
        (logits, value), acts = self.inner(obs[..., lay.wall:lay.wall + 1], ivs)
        if self.reader:
            goal_map = acts["conv_0"][..., PLANT]
            target = (jnp.arange(goal_map.size) == jnp.argmax(goal_map.reshape(-1))).reshape(goal_map.shape)
            free = ~obs[..., lay.wall]
            terminal = jnp.any(obs[..., list(lay.objects)], axis=-1)
            d = distances_to(free, terminal, target)
            if lay.agent is None:
                pos = jnp.array(lay.centre, jnp.int32)
            else:
                flat = jnp.argmax(obs[..., lay.agent].reshape(-1))
                pos = jnp.stack([flat // obs.shape[1], flat % obs.shape[1]]).astype(jnp.int32)
            action = first_best_action(d, pos)
            go = (jnp.max(goal_map) > 0.5) & (action >= 0)
            logits = jnp.where(go, self.gain * (jnp.arange(4) == action).astype(jnp.float32), jnp.zeros(4, jnp.float32))
            acts["logits"] = logits
        return (logits, value), acts


def planted(task, plant=True, reader=False, channels=32, seed=0, gain=10.0) -> Planted:
    h, w, _ = task.env.obs_shape
    inner = CNNActorCritic((h, w, 1), 4, (channels,), 32, key=jax.random.key(seed))
    return Planted(inner, layout(task), plant, reader, gain)


def first_steps(data: ActivationData, steps: int) -> ActivationData:
    """The first ``steps`` recorded states of every level (per-level fields kept)."""
    cut = {f: getattr(data, f)[:, :steps] for f in ("obs", "alive", "pos", "action", "distance", "bfs_action")}
    return data._replace(**cut)


@pytest.fixture(scope="module")
def pool():
    """The levels every test here plays: 80 red-door test levels and the hand-built one (last), generated once (an
    observation mode is a view of the same levels)."""
    task = get_task("red-door")
    grid, start = _hand_level()
    return _with_levels(evaluation_levels(task, "test", N_LEVELS), [grid], [start], task)


@pytest.fixture(scope="module")
def probed(pool):
    """The planted network's whole episodes on the pool (a random walk by its random heads, lean observations), the
    spatial probes of its conv_0 on the first 8 states, and the same probes on the control network (no planted
    channel), on the same states."""
    task = get_task("red-door").with_obs_mode("lean")
    model, control = planted(task), planted(task, plant=False)
    episodes = record_data(task, model, pool, jax.random.key(1), steps=task.max_steps)
    data = first_steps(episodes, 8)
    shapes = activation_shapes(model, task.env.obs_shape)
    frame = frame_for(task.obs_mode, task.env.obs_shape, shapes["conv_0"][:2])
    acts = activations_on(model, data.obs, ["conv_0"])["conv_0"]
    rand = activations_on(control, data.obs, ["conv_0"])["conv_0"]
    base = f"target:{task.base_objective.name}"
    scores, weights = probe_layer(data, acts, "conv_0", frame, rand, labels=[base, "target:red"], n_boot=200)
    return dict(task=task, params=pool, episodes=episodes, data=data, frame=frame, acts=acts, base=base,
                scores={s.label: s for s in scores}, weights={w.label: w for w in weights})


# -- 1. the planted representation bar ------------------------------------------------------------------------------

def test_planted_channel_is_found_by_the_spatial_probe(probed):
    s = probed["scores"][probed["base"]]
    assert probed["base"] == "target:door"
    assert s.kind == "spatial" and s.metric == "accuracy" and s.n_test > 100
    assert s.value >= 0.99, s
    assert s.selectivity >= 0.9 and s.selectivity_ci[0] >= 0.85, s
    assert s.chance < 0.05, s  # one target cell among the cells in view
    # the probe's weight sits on the planted channel
    w = probed["weights"][probed["base"]].w
    assert int(np.argmax(np.abs(w))) == PLANT and abs(w[PLANT]) > 0.9 * np.linalg.norm(w)
    # control: the same network without the planted channel (walls only) carries nothing about the door
    assert abs(s.random_selectivity) <= 0.05, s
    assert s.random_init < 0.2, s
    # nor does the planted network about the red object (never the door on the test split)
    red = probed["scores"]["target:red"]
    assert abs(red.selectivity) <= 0.05, red


# -- 2. the planted retargeting bar -----------------------------------------------------------------------------------

def test_writing_the_probe_direction_retargets_the_planted_reader(probed):
    task, data = probed["task"], probed["data"]
    reader = planted(task, reader=True)  # the same conv_0 as the probed network, acting on its PLANT channel
    c = data.candidates.index(task.base_objective.name)
    maps = spatial_label_maps(data, c, np.arange(data.alive.shape[0]), probed["frame"])
    w = probed["weights"][probed["base"]].w
    gap = projection_gap(probed["acts"], maps, data.alive, w)
    assert gap == pytest.approx(abs(w[PLANT]) / np.linalg.norm(w), abs=0.02)
    out = {r.direction: r for r in retargeting(task, reader, {"test": probed["params"]}, jax.random.key(2), "conv_0",
                                               probed["base"], probed["frame"], w, gap, greedy=True)}
    assert out["probe"].n_levels >= 0.9 * len(probed["params"].start), out
    assert out["probe"].rate >= 0.99, out
    assert out["random"].rate <= 0.05, out
    assert out["none"].reached == 0, out
    assert out["random"].norm == out["probe"].norm
    assert out["probe"].norm == pytest.approx(2.0 * gap)


# -- 3. exact labels against a plain-Python BFS --------------------------------------------------------------------

def _python_targets(task, grid):
    """Every candidate's target cells from the one-hot grid, by hand."""
    h, w, _ = grid.shape
    g = np.asarray(grid)
    obj = g[..., 1:1 + len(OBJECT_TYPES)].any(-1) & ~g[..., WALL_CHANNEL]
    is_type = {t: g[..., TYPE_CHANNEL[t]] & obj for t in OBJECT_TYPES}
    by_name = {
        "door": is_type["door"],
        "red": obj & g[..., COLOUR_CHANNEL["red"]],
        "unseen type": is_type["key"],
        "not ball/box": is_type["door"] | is_type["key"],
        "goal": is_type["goal"],
    }
    corner = np.zeros((h, w), bool)
    corner[1:4, w - 4:w - 1] = True  # the top-right 3x3 interior corner
    by_name["corner"] = corner & ~g[..., WALL_CHANNEL]
    return np.stack([by_name[o.name] for o in candidate_objectives(task)])


def _python_distance(grid, terminal, target, start):
    """Fewest steps from ``start`` to a ``target`` cell: walls cannot be entered, terminal cells not left."""
    h, w, _ = grid.shape
    wall = np.asarray(grid[..., WALL_CHANNEL])
    if target[start]:
        return 0
    seen, queue = {start}, deque([(start, 0)])
    while queue:
        (r, c), d = queue.popleft()
        if terminal[r, c] and (r, c) != start:
            continue
        for dr, dc in ((-1, 0), (0, 1), (1, 0), (0, -1)):
            n = (r + dr, c + dc)
            if 0 <= n[0] < h and 0 <= n[1] < w and not wall[n] and n not in seen:
                if target[n]:
                    return d + 1
                seen.add(n)
                queue.append((n, d + 1))
    return int(UNREACHABLE)


def _python_action(grid, terminal, target, pos):
    """The lowest action whose next cell is one step closer (-1 when no target is reachable)."""
    h, w, _ = grid.shape
    best, arg = int(UNREACHABLE), -1
    for a, (dr, dc) in enumerate(np.asarray(DIRECTIONS)):
        n = (pos[0] + int(dr), pos[1] + int(dc))
        if not (0 <= n[0] < h and 0 <= n[1] < w) or grid[n[0], n[1], WALL_CHANNEL]:
            continue
        if target[n]:
            d = 0
        elif terminal[n]:
            d = int(UNREACHABLE)
        else:
            d = _python_distance(grid, terminal, target, n)
        if d < best:
            best, arg = d, a
    return arg


def _hand_level():
    """A 9x9 red-door level with a red ball walled off (an unreachable candidate) and a box in the corridor to the
    door."""
    walls = np.zeros((9, 9), bool)
    walls[0, :] = walls[-1, :] = walls[:, 0] = walls[:, -1] = True
    walls[6, 1] = walls[7, 2] = True  # the red ball at (7, 1) is enclosed
    walls[2, 2:7] = True  # a corridor row 1 towards the door at (1, 7)
    t = {name: i for i, name in enumerate(OBJECT_TYPES)}
    level = Level(jnp.asarray(walls), jnp.array([[1, 7], [7, 1], [1, 4]], jnp.int32),
                  jnp.array([t["door"], t["ball"], t["box"]], jnp.int32), jnp.array([1, 0, 2], jnp.int32),
                  jnp.ones(3, bool), jnp.array([4, 4], jnp.int32))
    return level_grid(level), jnp.array([4, 4], jnp.int32)


def _with_levels(params: EnvParams, grids, starts, task) -> EnvParams:
    grid = jnp.concatenate([params.grid, jnp.stack(grids)])
    start = jnp.concatenate([params.start, jnp.stack(starts)])
    return params._replace(grid=grid, start=start, base_target=jax.vmap(task.base_objective.target_map)(grid),
                           n_levels=jnp.int32(grid.shape[0]))


def _goal_levels(pool, task, n):
    """corner-goal levels from the pool's first ``n`` mazes: the walls and start kept, a green goal on the door's
    cell, nothing else."""
    grid = np.zeros(np.asarray(pool.grid[:n]).shape, bool)
    grid[..., WALL_CHANNEL] = np.asarray(pool.grid[:n, ..., WALL_CHANNEL])
    door = np.asarray(pool.grid[:n, ..., TYPE_CHANNEL["door"]])
    grid[..., TYPE_CHANNEL["goal"]] = door
    grid[..., COLOUR_CHANNEL["green"]] = door
    grid = jnp.asarray(grid)
    return EnvParams(grid, pool.start[:n], jax.vmap(task.base_objective.target_map)(grid), jnp.int32(n),
                     jnp.int32(task.max_steps), jnp.int32(0))


def _check_labels(task, params, data, levels):
    """Every label of ``data`` on pool entries ``levels`` against plain Python, replaying the recorded actions by
    the environment's rules: how many (state, candidate) labels were reachable / unreachable."""
    n, s = data.alive.shape
    h, w = task.shape.height, task.shape.width
    assert data.candidates == tuple(o.name for o in candidate_objectives(task))
    checked = {"reachable": 0, "unreachable": 0}
    for i in levels:
        grid = np.asarray(params.grid[i])
        targets = _python_targets(task, grid)
        np.testing.assert_array_equal(data.target[i], targets)
        base = targets[data.candidates.index(task.base_objective.name)]
        terminal = grid[..., 1:1 + len(OBJECT_TYPES)].any(-1) | base
        pos = tuple(int(x) for x in params.start[i])
        alive, t = True, 0
        for step in range(s):
            assert data.alive[i, step] == alive, (i, step)
            if not alive:
                continue
            assert tuple(data.pos[i, step]) == pos, (i, step)
            for c in range(len(data.candidates)):
                d = _python_distance(grid, terminal, targets[c], pos)
                assert data.distance[i, step, c] == d, (i, step, data.candidates[c])
                assert data.bfs_action[i, step, c] == _python_action(grid, terminal, targets[c], pos), (i, step, c)
                checked["reachable" if d < UNREACHABLE else "unreachable"] += 1
            dr, dc = (int(x) for x in np.asarray(DIRECTIONS)[data.action[i, step]])
            nxt = (min(max(pos[0] + dr, 0), h - 1), min(max(pos[1] + dc, 0), w - 1))
            pos = pos if grid[nxt[0], nxt[1], WALL_CHANNEL] else nxt
            t += 1
            alive = not (terminal[pos] or t >= task.max_steps)
        assert not alive  # the whole episode was recorded
        on = [c for c in range(len(data.candidates)) if targets[c][pos]]
        assert data.ends_on[i] == (on[0] if on else len(data.candidates)), i
    return checked


def test_labels_equal_plain_python_bfs(probed):
    task, pool, episodes = probed["task"], probed["params"], probed["episodes"]
    hand = len(pool.start) - 1
    checked = _check_labels(task, pool, episodes, [*range(12), hand])
    assert checked["reachable"] > 200 and checked["unreachable"] > 0  # the hand level's walled-off red ball
    red = episodes.candidates.index("red")
    alive = episodes.alive[hand]
    assert (episodes.distance[hand, :, red][alive] == UNREACHABLE).all()
    assert (episodes.bfs_action[hand, :, red][alive] == -1).all()
    # the probed states are the first 8 of these episodes
    np.testing.assert_array_equal(probed["data"].distance, episodes.distance[:, :8])


def test_labels_of_a_region_objective_equal_plain_python_bfs(pool):
    """corner-goal: the corner's targets are free cells, entered without ending the episode."""
    task = get_task("corner-goal").with_obs_mode("lean")
    params = _goal_levels(pool, task, 8)
    model = make_model("mlp", key=jax.random.key(0), obs_shape=task.env.obs_shape, n_actions=4, width=8, depth=1)
    data = record_data(task, model, params, jax.random.key(3), steps=task.max_steps)  # whole episodes
    checked = _check_labels(task, params, data, range(8))
    assert checked["reachable"] > 100


# -- 4. frames agree with the environment's observations --------------------------------------------------------

@pytest.mark.parametrize("mode", ["egocentric", "global", "lean"])
def test_frames_agree_with_observations(mode, pool):
    task = get_task("red-door").with_obs_mode(mode)
    env, lay, params = task.env, layout(task), pool
    h, w = task.shape.height, task.shape.width
    obs_shape = env.obs_shape
    # every free cell of six levels as the agent's cell
    walls = np.asarray(params.grid[:6, ..., WALL_CHANNEL])
    cells = [(i, (r, c)) for i in range(6) for r in range(h) for c in range(w)
             if not walls[i, r, c]]
    level = jnp.array([x[0] for x in cells], jnp.int32)
    pos = jnp.array([x[1] for x in cells], jnp.int32)
    strides = (1, 2) if mode != "global" else (1,)
    for stride in strides:
        act_shape = (-(-obs_shape[0] // stride), -(-obs_shape[1] // stride))
        frame = frame_for(mode, obs_shape, act_shape)
        assert frame.stride == stride and frame.trim == (LEAN_TRIM if mode == "lean" else 0)

        def one(lv, p):
            obs = env.observe(EnvState(lv, p, jnp.int32(0)), params)
            grid = params.grid[lv]
            door = task.base_objective.target_map(grid)
            seen = frame_of(frame, door, p)
            flat = jnp.argmax(door.reshape(-1))
            cell = jnp.stack([flat // w, flat % w]).astype(jnp.int32)
            idx, inside = cell_in_frame(frame, (h, w), cell, p)
            return obs, seen, idx, inside, cell

        obs, seen, idx, inside, cell = (np.asarray(x) for x in jax.jit(jax.vmap(one))(level, pos))
        door_obs = obs[..., lay.door][:, ::stride, ::stride]
        np.testing.assert_array_equal(seen, door_obs)  # the frame's door map is the observation's door channel
        assert seen.shape[1:] == act_shape
        k = np.arange(len(level))
        # the frame's cell of the door holds the door in the observation exactly when it is inside the frame
        np.testing.assert_array_equal(seen[k, idx[:, 0], idx[:, 1]] & inside, inside)
        in_window = np.ones(len(k), bool) if mode == "global" else (
            np.all(np.abs(cell - np.asarray(pos)) <= np.array([h - 1, w - 1]) - frame.trim, -1))
        if stride == 1:
            np.testing.assert_array_equal(inside, in_window)
            np.testing.assert_array_equal(inside, door_obs.reshape(len(k), -1).any(-1))
            if mode == "global":
                np.testing.assert_array_equal(idx, cell)
            else:  # the agent sits at the window's centre, the door at its offset from there
                np.testing.assert_array_equal(idx, cell - np.asarray(pos) + np.array(lay.centre))
        else:  # stride 2: inside only where the door sits on an even observation cell
            offset = cell - np.asarray(pos) + np.array(lay.centre)
            np.testing.assert_array_equal(inside, in_window & np.all(offset % 2 == 0, -1))
        assert inside.any()


# -- 5. ridge against the NumPy closed form ------------------------------------------------------------------------

def _numpy_ridge(x, y, lam):
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    mu, sd = x.mean(0), x.std(0)
    sd = np.where(sd > 1e-6, sd, 1.0)
    z = (x - mu) / sd
    ym = y.mean(0)
    coef = np.linalg.solve(z.T @ z + lam * np.eye(x.shape[1]), z.T @ (y - ym))
    w = coef / sd[:, None]
    return w, ym - mu @ w


@pytest.mark.parametrize("n,d", [(200, 12), (30, 60)])  # the primal and the dual (fewer samples) branches
def test_ridge_matches_numpy_closed_form(n, d):
    rng = np.random.default_rng(n)
    x = rng.normal(size=(n, d)) * rng.uniform(0.5, 3.0, d) + rng.normal(size=d)
    y = x[:, :3] @ rng.normal(size=(3, 2)) + 0.3 * rng.normal(size=(n, 2)) + 5.0
    ridges = (0.1, 1.0, 10.0)
    path = ridge_path(x.astype(np.float32), y.astype(np.float32), ridges)
    assert len(path) == len(ridges)
    for lam, (w, b) in zip(ridges, path):
        wn, bn = _numpy_ridge(x, y, lam)
        assert w.shape == (d, 2) and b.shape == (2,)
        np.testing.assert_allclose(w, wn, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(b, bn, rtol=1e-4, atol=1e-4)
    w1, b1 = ridge_fit(x.astype(np.float32), y.astype(np.float32), 1.0)
    np.testing.assert_array_equal(w1, path[1][0])
    np.testing.assert_array_equal(b1, path[1][1])
    # a constant column (a dead unit) is standardised by 1, not 0: no NaN, (almost) no weight, the same predictions
    x[:, 1] = 4.0
    for lam, (w, b) in zip(ridges, ridge_path(x.astype(np.float32), y.astype(np.float32), ridges)):
        wn, bn = _numpy_ridge(x, y, lam)
        assert np.isfinite(w).all() and abs(w[1]).max() < 1e-3  # float32 eigh leaves ~1e-4 on the null direction
        np.testing.assert_allclose(np.delete(w, 1, 0), np.delete(wn, 1, 0), rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(x @ w + b, x @ wn + bn, rtol=1e-4, atol=1e-4)


# -- 6. activation names and shapes of every model kind -----------------------------------------------------------

EXPECTED_NAMES = {
    "mlp": {"input", "hidden_0", "hidden_1", "logits", "value"},
    "cnn": {"input", "conv_0", "conv_1", "hidden_0", "logits", "value"},
    "gru": {"input", "encoding", "tick_0/gru", "tick_1/gru", "logits", "value"},
    "convgru": {"input", "encoding", "tick_0/gru_0", "tick_0/gru_1", "tick_1/gru_0", "tick_1/gru_1", "hidden_0",
                "logits", "value"},
}


@pytest.fixture(scope="module")
def episode_obs(pool):
    """Observations ``[3, 4, ...]`` of red-door (egocentric): three levels, four cells each."""
    task, params = get_task("red-door"), pool
    free = np.argwhere(~np.asarray(params.grid[..., WALL_CHANNEL]))
    obs = [[task.env.observe(EnvState(jnp.int32(i), jnp.asarray(cell[1:], jnp.int32), jnp.int32(t)), params)
            for t, cell in enumerate(free[free[:, 0] == i][:4])] for i in range(3)]
    return task, np.asarray(jnp.stack([jnp.stack(o) for o in obs]))


@pytest.mark.parametrize("kind", ["mlp", "cnn", "gru", "convgru"])
def test_activation_shapes_name_every_layer(kind, episode_obs):
    task, obs = episode_obs
    obs_shape = task.env.obs_shape
    model = make_model(kind, key=jax.random.key(0), obs_shape=obs_shape, n_actions=4, width=8, depth=2, ticks=2,
                       channels=4)
    shapes = activation_shapes(model, obs_shape)
    assert set(shapes) == EXPECTED_NAMES[kind]
    assert shapes["logits"] == (4,) and shapes["value"] == ()
    assert shapes["input"] == (obs_shape if kind in ("cnn", "convgru") else (int(np.prod(obs_shape)),))
    spatial = {"cnn": {"input", "conv_0", "conv_1"}, "convgru": {"input", "encoding", "tick_0/gru_0", "tick_0/gru_1",
                                                                 "tick_1/gru_0", "tick_1/gru_1"}}.get(kind, set())
    assert set(spatial_layers(shapes)) == spatial
    if kind == "convgru":  # the 17x17 egocentric view is encoded with stride 2: a frame of stride 2
        frame = frame_for("egocentric", obs_shape, shapes["encoding"][:2])
        assert shapes["encoding"] == (9, 9, 4) and frame.stride == 2 and frame.shape == (9, 9)
    acts = activations_on(model, obs, list(shapes))
    for name, shape in shapes.items():
        assert acts[name].shape == (*obs.shape[:2], *shape), name
    if kind in ("gru", "convgru"):
        three = set(activation_shapes(model, obs_shape, ticks=3))
        assert three == shapes.keys() | {n.replace("tick_1", "tick_2") for n in shapes}
        # replayed with the carry threaded from each episode's start, as by hand
        carry = initial_carry(model)
        for t in range(obs.shape[1]):
            (_, carry), step_acts = model_step(model, jnp.asarray(obs[1, t]), carry)
            np.testing.assert_allclose(acts["logits"][1, t], np.asarray(step_acts["logits"]), rtol=1e-5, atol=1e-6)


# -- 7. steering sanity ------------------------------------------------------------------------------------------------

def test_zero_coefficient_steering_changes_nothing(probed):
    task = probed["task"]
    # a soft reader: its BFS action toward the PLANT channel's argmax has probability ~0.6, so the episodes depend
    # on the sampling keys and on conv_0 (pursuit rates strictly between 0 and 1)
    model = planted(task, reader=True, gain=1.5)
    objectives = candidate_objectives(task)
    before, after, has = steering_rates(task, model, probed["params"], jax.random.key(4), "conv_0",
                                        task.base_objective, objectives, coef=0.0)
    np.testing.assert_array_equal(before, after)  # the same keys, the same episodes
    assert has.all()
    effects = steering_effects(task, model, {"test": probed["params"]}, jax.random.key(4), "conv_0",
                               task.base_objective, objectives, coef=0.0, n_boot=100)
    for e in effects:
        assert e.rate_after == e.rate_before and e.change == 0.0 and e.change_ci == (0.0, 0.0)
    assert 0.0 < before[:, 0].mean() < 1.0


def test_subtracting_the_goal_vector_stops_the_planted_reader(pool):
    """Global observations: the door's steering vector at conv_0 is exactly its map on the PLANT channel, so
    subtracting it blanks the reader's goal; with no goal it takes action 0 (up) every step, so it reaches the door
    only where the door lies straight up the start's column with nothing in between."""
    task = get_task("red-door").with_obs_mode("global")
    reader = planted(task, reader=True, channels=8)
    params, n = pool, len(pool.start)
    objectives = candidate_objectives(task)
    effects = {e.objective: e for e in steering_effects(task, reader, {"test": params}, jax.random.key(5), "conv_0",
                                                        task.base_objective, objectives, greedy=True, n_boot=200)}
    door = effects["door"]
    assert door.rate_before == 1.0 and door.n_levels == n
    _, after, _ = steering_rates(task, reader, params, jax.random.key(5), "conv_0", task.base_objective, objectives,
                                 greedy=True)
    expected = []
    for i in range(n):  # walk up from the start: the first non-free cell decides
        grid, (r, c) = np.asarray(params.grid[i]), (int(params.start[i][0]), int(params.start[i][1]))
        while not grid[r - 1, c, WALL_CHANNEL] and not grid[r, c, 1:1 + len(OBJECT_TYPES)].any():
            r -= 1
        expected.append(bool(grid[r, c, TYPE_CHANNEL["door"]]))
    np.testing.assert_array_equal(after[:, 0], expected)
    assert door.rate_after == pytest.approx(np.mean(expected)) and door.rate_after <= 0.3
    assert door.change <= -0.7 and door.change_ci[1] < 0


# -- 5. probe metrics of a sweep cell ------------------------------------------------------------------------------

def test_sweep_probe_metrics_read_the_planted_channel(pool):
    """``probe/L/...`` (a sweep cell's probe metrics): the planted door channel is found at its best layer, beside
    the control network; red (never the door on the test split) is not."""
    from mesalab.diagnostics.mesa_objective import probe_metrics
    from mesalab.tasks.grid import take_levels

    task = get_task("red-door").with_obs_mode("lean")
    levels = take_levels(pool, jnp.arange(40))
    m = probe_metrics(task, planted(task), planted(task, plant=False), levels, jax.random.key(2), steps=8)
    assert m["probe/target:door/value"] >= 0.99, m
    assert m["probe/target:door/selectivity"] >= 0.9 and m["probe/target:door/gain_over_random"] >= 0.8, m
    assert abs(m["probe/target:red/selectivity"]) <= 0.1, m
    assert {k.rsplit("/", 1)[1] for k in m} == {"selectivity", "value", "gain_over_random"}


@pytest.mark.slow
def test_a_user_preset_sweeps_probe_selectivity(tmp_path):
    """A TOML preset with ``[eval] internal_probes`` stores every cell's probe metrics and tests a hypothesis on one."""
    import subprocess
    import sys

    import duckdb

    path = tmp_path / "probe.toml"
    path.write_text('''name = "door-representation-channels"
description = "Is the door's location more decodable with more channels?"
condition = "Algorithmic range: a richer model class represents more of the task."
seeds = 2
[base]
task = "red-door"
model = "cnn"
obs_mode = "lean"
width = 16
total_steps = 2048
num_envs = 8
rollout_len = 16
[dial]
name = "channels"
values = [4, 8]
label = "convolution channels"
[[hypotheses]]
statement = "door-location selectivity rises with channels"
metric = "probe/target:door/selectivity"
direction = 1
label = "door-location probe selectivity"
[eval]
episodes = 40
irl_levels = 0
internal_probes = 20
''')
    out = tmp_path / "sweep"
    proc = subprocess.run([sys.executable, "-m", "mesalab", "sweep", str(path), "--out", str(out), "--workers", "1"],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    with duckdb.connect(str(out / "sweep.duckdb"), read_only=True) as db:
        rows = db.execute("SELECT cell_id, value FROM cell_metrics WHERE metric = 'probe/target:door/selectivity'"
                          ).fetchall()
    assert len(rows) == 4 and all(np.isfinite(v) and -1 <= v <= 1 for _, v in rows), rows
    assert "door-location selectivity rises with channels" in (out / "report.html").read_text()
    bad = path.read_text().replace("internal_probes = 20", "internal_probes = 5")
    path.write_text(bad)
    proc = subprocess.run([sys.executable, "-m", "mesalab", "sweep", str(path), "--out", str(tmp_path / "s2")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "internal_probes" in proc.stderr + proc.stdout
