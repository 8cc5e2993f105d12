"""The fast Gymnasium adapters: the NumPy single env steps exactly as the JAX one, the vector env's copies are the
single JAX env on the same levels with Gymnasium's NEXT_STEP autoreset, and the spaces pass the env checkers."""

import warnings
from collections import deque

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from gymnasium.vector import AutoresetMode

from mesalab.errors import ConfigError
from mesalab.tasks import get_task
from mesalab.tasks.grid import CHANNEL_NAMES, N_GRID_CHANNELS
from mesalab.tasks.gym_adapter import (MOVES, OBJECT_BIT, TARGET_BIT, WALL_BIT, MesalabGymEnv, base_reward,
                                       numpy_step)
from mesalab.tasks.gym_vector import FLAGS, MesalabVectorEnv

TASKS = ("red-door", "corner-goal", "maze")
MODES = ("egocentric", "global", "lean")
N_LEVELS = 48


def target_distances(cells) -> np.ndarray:
    """``int[H, W]``: moves from each cell to the nearest base-objective target of one level (``cells``: the
    adapter's cell codes), never through a wall or a non-target object (-1: unreachable)."""
    cells = np.asarray(cells)
    h, w = cells.shape
    dist = np.full((h, w), -1)
    queue = deque()
    for r, c in np.argwhere(cells & TARGET_BIT):
        dist[r, c] = 0
        queue.append((r, c))
    while queue:
        r, c = queue.popleft()
        for dr, dc in MOVES:
            nr, nc = r + dr, c + dc
            if 0 <= nr < h and 0 <= nc < w and dist[nr, nc] < 0 and not cells[nr, nc] & (WALL_BIT | OBJECT_BIT):
                dist[nr, nc] = dist[r, c] + 1
                queue.append((nr, nc))
    return dist


def episode_actions(env: MesalabGymEnv, level: int, style: str, rng) -> list[int]:
    """Actions for one episode of pool entry ``level``: ``"random"``; ``"guided"`` (mostly towards the target, so
    it succeeds at various step counts); ``"stall"`` (up and down only: most often runs out of steps)."""
    if style == "stall":
        return [int(a) for a in rng.choice([0, 2], size=env.task.max_steps + 5)]
    if style == "random":
        return [int(a) for a in rng.integers(0, 4, size=env.task.max_steps + 5)]
    cells = np.asarray(env.tables.cells[level])
    dist = target_distances(cells)
    h, w = cells.shape
    r, c = env.tables.start[level]
    out = []
    for _ in range(env.task.max_steps + 5):
        options = []
        for a, (dr, dc) in enumerate(MOVES):
            nr, nc = min(max(r + dr, 0), h - 1), min(max(c + dc, 0), w - 1)
            if cells[nr, nc] & WALL_BIT:
                nr, nc = r, c
            d = dist[nr, nc]
            options.append((d if d >= 0 else 10**6, a, nr, nc))
        best = min(options)
        pick = best if rng.random() < 0.7 else options[int(rng.integers(4))]
        out.append(pick[1])
        r, c = pick[2], pick[3]
    return out


def assert_same_step(a, b):
    obs_a, rew_a, term_a, trunc_a, info_a = a
    obs_b, rew_b, term_b, trunc_b, info_b = b
    assert obs_a.dtype == obs_b.dtype == np.uint8 and obs_a.shape == obs_b.shape
    np.testing.assert_array_equal(obs_a, obs_b)
    assert type(rew_a) is float and type(rew_b) is float
    assert rew_a == rew_b  # exactly: the same float32 value
    assert (term_a, trunc_a, info_a) == (term_b, trunc_b, info_b)
    assert all(type(x) is bool for x in (term_a, trunc_a, info_a["success"]))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("task", TASKS)
def test_numpy_step_equals_jax_step(task, mode):
    fast = MesalabGymEnv(task, n_levels=N_LEVELS, obs_mode=mode)
    slow = MesalabGymEnv(task, n_levels=N_LEVELS, obs_mode=mode, backend="jax")
    assert fast.backend == "numpy" and slow.backend == "jax"
    assert fast.observation_space == slow.observation_space
    rng = np.random.default_rng(7)
    counts = {"success": 0, "other object": 0, "truncated": 0}
    levels = set()
    for episode in range(36):
        # unseeded resets draw from np_randoms seeded alike and kept in step: the same levels
        seed = int(rng.integers(1 << 30)) if episode % 2 == 0 else None
        ra, rb = fast.reset(seed=seed), slow.reset(seed=seed)
        np.testing.assert_array_equal(ra[0], rb[0])
        assert ra[1] == rb[1] and 0 <= ra[1]["level"] < N_LEVELS
        levels.add(ra[1]["level"])
        style = ("guided", "random", "stall")[episode % 3]
        for t, action in enumerate(episode_actions(fast, ra[1]["level"], style, rng), start=1):
            a, b = fast.step(action), slow.step(action)
            assert_same_step(a, b)
            assert fast.observation_space.contains(a[0]) and set(np.unique(a[0])) <= {0, 1}
            sa, sb = fast.state, slow.state
            assert int(sa.level) == int(sb.level) and int(sa.t) == int(sb.t) == t
            np.testing.assert_array_equal(np.asarray(sa.pos), np.asarray(sb.pos))
            if a[2] or a[3]:
                counts["success" if a[4]["success"] else ("truncated" if a[3] else "other object")] += 1
                if a[3]:
                    assert t == fast.task.max_steps and a[1] == 0.0
                if a[4]["success"]:
                    assert abs(a[1] - (1 - 0.9 * t / fast.task.max_steps)) < 1e-6
                break
        else:
            pytest.fail("an episode outlived max_steps")
    assert len(levels) >= 10
    assert counts["success"] >= 5 and counts["truncated"] >= 2, counts
    if task == "red-door":
        assert counts["other object"] >= 1, counts


@pytest.mark.parametrize("task", TASKS)
def test_numpy_success_reward_at_every_step_count(task):
    """A success at step t earns the JAX program's float32 ``1 - 0.9 t / max_steps``, for every t."""
    fast = MesalabGymEnv(task, n_levels=8)
    slow = MesalabGymEnv(task, n_levels=8, backend="jax")
    cells = np.asarray(fast.tables.cells)
    level, row, col = (int(x) for x in np.argwhere(cells & TARGET_BIT)[0])
    for action, (dr, dc) in enumerate(MOVES):
        if 0 <= row - dr < cells.shape[1] and 0 <= col - dc < cells.shape[2]:
            break
    import jax.numpy as jnp

    from mesalab.tasks.grid import EnvState

    for t in range(fast.task.max_steps):
        r, c, t1, reward, terminated, truncated, success = numpy_step(fast.tables, level, row - dr, col - dc, t,
                                                                      action)
        state = EnvState(level=jnp.int32(level), pos=jnp.array([row - dr, col - dc], jnp.int32), t=jnp.int32(t))
        _, jax_reward, done, jax_success = slow._step(state, np.int32(action), slow.params)
        assert success and bool(jax_success) and terminated and not truncated and bool(done)
        assert (r, c, t1) == (row, col, t + 1)
        assert reward == float(jax_reward)
        assert abs(reward - base_reward(t + 1, fast.task.max_steps)) <= 1.2e-7


@pytest.mark.parametrize("mode", MODES)
def test_observation_space_and_channel_names(mode):
    task = get_task("red-door")
    env = MesalabGymEnv("red-door", n_levels=4, obs_mode=mode)
    space = env.observation_space
    assert isinstance(space, gymnasium.spaces.Box) and space.dtype == np.uint8
    assert np.all(space.low == 0) and np.all(space.high == 255)
    assert space.shape == task.env_for(mode).obs_shape
    expected = {"egocentric": CHANNEL_NAMES[:N_GRID_CHANNELS], "global": CHANNEL_NAMES, "lean": task.lean_channels}
    assert tuple(env.channel_names) == tuple(expected[mode]) and len(env.channel_names) == space.shape[-1]
    venv = MesalabVectorEnv("red-door", num_envs=2, n_levels=4, obs_mode=mode)
    assert venv.channel_names == env.channel_names and venv.single_observation_space == space


def test_default_obs_mode_and_backends():
    env = MesalabGymEnv("corner-goal-13", n_levels=4)
    assert env.obs_mode == get_task("corner-goal-13").obs_mode and env.backend == "numpy"
    kc = MesalabGymEnv("keys-chests", n_levels=4)
    assert kc.backend == "jax" and kc.channel_names == ("wall", "key", "chest", "inventory")
    with pytest.raises(ConfigError):
        MesalabGymEnv("keys-chests", n_levels=4, backend="numpy")
    with pytest.raises(ConfigError):
        MesalabGymEnv("red-door", n_levels=4, backend="torch")
    with pytest.raises(ConfigError):
        MesalabGymEnv("keys-chests", n_levels=4, obs_mode="lean")


@pytest.mark.parametrize("backend", ["numpy", "jax"])
def test_reset_options_level_and_bad_actions(backend):
    env = MesalabGymEnv("maze", n_levels=8, backend=backend)
    obs, info = env.reset(seed=0, options={"level": 5})
    assert info == {"level": 5} and int(env.state.level) == 5
    np.testing.assert_array_equal(np.asarray(env.state.pos), np.asarray(env.params.start[5]))
    with pytest.raises(ValueError):
        env.reset(options={"level": 8})
    for bad in (4, -1):
        with pytest.raises(ValueError):
            env.step(bad)
    with pytest.raises(RuntimeError):
        MesalabGymEnv("maze", n_levels=8, backend=backend).step(0)


def _gymnasium_warnings(caught) -> list[str]:
    return [f"{w.category.__name__}: {w.message}" for w in caught if "gymnasium" in (w.filename or "")]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("backend", ["numpy", "jax"])
def test_gymnasium_env_checker_passes_without_warnings(backend, mode):
    env_id = "mesalab-test/RedDoor-v0"
    if env_id not in gymnasium.registry:  # a spec lets the checker test every render mode
        gymnasium.register(env_id, entry_point=MesalabGymEnv)
    env = gymnasium.make(env_id, task="red-door", n_levels=16, obs_mode=mode, backend=backend,
                         render_mode="rgb_array" if mode == "egocentric" else None).unwrapped
    assert isinstance(env, MesalabGymEnv) and env.backend == backend
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env, skip_render_check=mode != "egocentric")
    assert _gymnasium_warnings(caught) == []


# -- the vector env --------------------------------------------------------------------------------------------------
VECTOR_CASES = [("red-door", "egocentric"), ("red-door", "lean"), ("corner-goal", "global"), ("maze", "egocentric"),
                ("maze", "lean"), ("keys-chests", "egocentric")]


def _run_vector_against_single(task, mode, num_envs=6, steps=240, seed=11):
    """Step the vector env with random actions and replay every copy on its own single JAX env (started on the
    level the vector env reports): every transition must match, and every autoreset follow NEXT_STEP."""
    exact_reward = task != "keys-chests"
    venv = MesalabVectorEnv(task, num_envs=num_envs, n_levels=N_LEVELS, obs_mode=mode)
    singles = [MesalabGymEnv(task, n_levels=N_LEVELS, obs_mode=mode, backend="jax") for _ in range(num_envs)]
    obs, info = venv.reset(seed=seed)
    assert venv.observation_space.contains(obs) and info["_level"].all()
    for i, env in enumerate(singles):
        o, i_info = env.reset(options={"level": int(info["level"][i])})
        np.testing.assert_array_equal(obs[i], o)
    ended = np.zeros(num_envs, bool)
    rng = np.random.default_rng(seed)
    stats = {"autoresets": 0, "terminated": 0, "truncated": 0, "success": 0}
    for _ in range(steps):
        actions = rng.integers(0, 4, size=num_envs)
        obs, reward, term, trunc, info = venv.step(actions)
        assert venv.observation_space.contains(obs)
        assert reward.shape == term.shape == trunc.shape == (num_envs,)
        assert term.dtype == trunc.dtype == np.bool_
        np.testing.assert_array_equal(info["_level"], ended)  # the copies reset now: those that ended last step
        np.testing.assert_array_equal(info["_success"], ~ended)
        for i, env in enumerate(singles):
            if ended[i]:  # NEXT_STEP: reset, action ignored, reward 0, not done
                stats["autoresets"] += 1
                o, i_info = env.reset(options={"level": int(info["level"][i])})
                np.testing.assert_array_equal(obs[i], o)
                assert reward[i] == 0.0 and not term[i] and not trunc[i] and not info["success"][i]
            else:
                o, r, te, tr, i_info = env.step(int(actions[i]))
                np.testing.assert_array_equal(obs[i], o)
                if exact_reward:
                    assert np.float32(reward[i]) == np.float32(r), (reward[i], r)
                else:  # keys-chests: XLA rounds the vmapped chest reward on its own (last float32 bit)
                    assert abs(float(reward[i]) - r) <= 2.5e-7 and (reward[i] == 0) == (r == 0), (reward[i], r)
                assert (bool(term[i]), bool(trunc[i]), bool(info["success"][i])) == (te, tr, i_info["success"])
                assert info["level"][i] == 0
                stats["terminated"] += te
                stats["truncated"] += tr
                stats["success"] += i_info["success"]
        ended = term | trunc
    return stats


@pytest.mark.parametrize("task,mode", VECTOR_CASES)
def test_vector_env_equals_single_jax_env_with_next_step_autoreset(task, mode):
    if task == "keys-chests":  # its single env is slow to compile and step: fewer copies
        stats = _run_vector_against_single(task, mode, num_envs=3, steps=200)
        assert stats["autoresets"] >= 8 and stats["terminated"] >= 1 and stats["truncated"] >= 1, stats
    else:
        stats = _run_vector_against_single(task, mode, steps=400)
        assert stats["autoresets"] >= 10 and stats["terminated"] >= 3 and stats["truncated"] >= 1, stats
    assert stats["success"] >= 1, stats


def test_vector_autoreset_ignores_the_action_and_seeds_reproduce():
    a = MesalabVectorEnv("red-door", num_envs=16, n_levels=N_LEVELS)
    b = MesalabVectorEnv("red-door", num_envs=16, n_levels=N_LEVELS)
    assert a.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
    assert isinstance(a.action_space, gymnasium.spaces.MultiDiscrete)
    assert a.action_space == gymnasium.spaces.MultiDiscrete([4] * 16) and a.single_action_space.n == 4
    assert a.observation_space.shape == (16, *a.single_observation_space.shape)
    oa, ia = a.reset(seed=3)
    ob, ib = b.reset(seed=3)
    np.testing.assert_array_equal(oa, ob)
    np.testing.assert_array_equal(ia["level"], ib["level"])
    rng = np.random.default_rng(0)
    ended = np.zeros(16, bool)
    resets = 0
    for _ in range(150):
        actions = rng.integers(0, 4, size=16)
        other = np.where(ended, (actions + 1 + rng.integers(0, 3, size=16)) % 4, actions)  # differ where ignored
        out_a, out_b = a.step(actions), b.step(other)
        for x, y in zip(out_a[:4], out_b[:4]):
            np.testing.assert_array_equal(x, y)
        for key in ("success", "_success", "level", "_level"):
            np.testing.assert_array_equal(out_a[4][key], out_b[4][key])
        resets += ended.sum()
        ended = out_a[2] | out_a[3]
    assert resets >= 20
    c = MesalabVectorEnv("red-door", num_envs=16, n_levels=N_LEVELS)
    _, ic = c.reset(seed=4)
    assert not np.array_equal(ic["level"], ia["level"])


def test_vector_env_rejects_bad_actions_without_stepping():
    env = MesalabVectorEnv("maze", num_envs=4, n_levels=8)
    ref = MesalabVectorEnv("maze", num_envs=4, n_levels=8)
    env.reset(seed=1)
    ref.reset(seed=1)
    for bad in ([0, 1, 2, 4], [0, -1, 0, 0], [0, 1, 2], np.array([0.0, 1, 2, 3]), np.array([0, 1, 2, 2**33]),
                np.array([0, 1, 2, 7], np.int32), np.array([-4, 0, 0, 0], np.int32)):
        with pytest.raises(ValueError):
            env.step(bad)
    for actions in ([1, 2, 3, 0], np.array([3, 3, 1, 0], np.int64), np.array([2, 0, 1, 1], np.uint8)):
        out, want = env.step(actions), ref.step(np.asarray(actions, np.int32))
        for x, y in zip(out[:4], want[:4]):
            np.testing.assert_array_equal(x, y)


def test_vector_level_draws_are_the_documented_hash_and_uniform():
    """Known answer: the levels of a reset are the module docstring's hash of the seed drawn from np_random."""
    def mix(x):
        x = np.uint32(x)
        x ^= x >> np.uint32(16)
        x = np.uint32((int(x) * 0x85EBCA6B) & 0xFFFFFFFF)
        x ^= x >> np.uint32(13)
        x = np.uint32((int(x) * 0xC2B2AE35) & 0xFFFFFFFF)
        return x ^ (x >> np.uint32(16))

    n, pool = 64, N_LEVELS
    env = MesalabVectorEnv("maze", num_envs=n, n_levels=pool)
    _, info = env.reset(seed=5)
    seed = int(np.random.default_rng(5).integers(0, 2**31 - 1))
    h0 = mix(int(mix(seed)) ^ 0)
    want = [int(mix((int(h0) + i * 0x9E3779B9) & 0xFFFFFFFF)) % pool for i in range(n)]
    assert info["level"].tolist() == want
    counts = np.zeros(pool, int)
    for s in range(40):
        counts += np.bincount(env.reset(seed=s)[1]["level"], minlength=pool)
    expected = 40 * n / pool
    assert np.all(np.abs(counts - expected) < 5 * np.sqrt(expected)), counts


def test_vector_outputs_layout():
    env = MesalabVectorEnv("red-door", num_envs=3, n_levels=4, obs_mode="global")
    obs, _ = env.reset(seed=0)
    out = env.step([0, 1, 2])
    assert out[0].shape == (3, 9, 9, 11) and out[0].dtype == np.uint8
    assert out[1].dtype == np.float32 and out[2].dtype == out[3].dtype == np.bool_
    assert set(out[4]) == {"success", "_success", "level", "_level"} and len(FLAGS) == 5
    assert out[0][..., -1].sum() == 3  # one agent cell per copy


# -- Stable-Baselines3 -----------------------------------------------------------------------------------------------
def test_stable_baselines3_check_env_and_ppo():
    pytest.importorskip("stable_baselines3")
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    env = MesalabGymEnv("red-door", n_levels=16)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sb3_check_env(env)
    bounds = [str(w.message) for w in caught if "bound" in str(w.message).lower() or "255" in str(w.message)]
    assert bounds == []
    model = PPO("MlpPolicy", env, n_steps=128, batch_size=64, n_epochs=1, seed=0, verbose=0)
    model.learn(total_timesteps=256)
    obs, _ = env.reset(seed=0)
    action, _ = model.predict(obs, deterministic=True)
    assert env.action_space.contains(int(action))
