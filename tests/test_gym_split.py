"""The Gymnasium adapter's level pools: "test" is drawn with its own key and shares no level with "train"."""

import jax
import numpy as np
import pytest

from mesalab.errors import ConfigError
from mesalab.tasks import get_task, list_tasks
from mesalab.tasks import gym_adapter
from mesalab.tasks.gym_adapter import MesalabGymEnv, keep_disjoint, level_pool
from mesalab.tasks.level_hash import level_hash, level_hashes

N = 256  # large enough that sharing a key would show (the old adapter gave maze 256 of 256 train mazes at test)
TASK_NAMES = [t.name for t in list_tasks()]


@pytest.fixture(scope="module")
def pools():
    return {name: (level_pool(name, "train", N, 0), level_pool(name, "test", N, 0)) for name in TASK_NAMES}


def _walls_and_starts(params):
    return np.asarray(params.grid[..., 0]), np.asarray(params.start)


@pytest.mark.parametrize("name", TASK_NAMES)
def test_test_pool_shares_no_level_with_train(pools, name):
    train, test = pools[name]
    assert int(test.n_levels) == N and test.grid.shape[0] == N
    assert set(level_hashes(test)).isdisjoint(level_hashes(train))


# keys-chests is an open room: walls and start alone do not tell its levels apart (1 in 25 share a start)
@pytest.mark.parametrize("name", [n for n in TASK_NAMES if n != "keys-chests"])
def test_old_shared_key_behaviour_is_gone(pools, name):
    """The old adapter drew "test" with the train key: maze's test mazes were the train mazes, and red-door and
    corner-goal repeated the wall layout and start of the train level at the same index (all 256 levels of
    red-door, 248 of corner-goal, where solvability filtering shifted a few)."""
    task = get_task(name)
    train, test = pools[name]
    old_test = task.sample_params_checked(jax.random.key(0), "test", N)  # what the old adapter returned
    tw, ts = _walls_and_starts(train)
    ew, es = _walls_and_starts(test)
    ow, os_ = _walls_and_starts(old_test)
    # matched as sets of (walls, start): solvability filtering shifts the later levels of a pool by one index
    old_levels = {(w.tobytes(), s.tobytes()) for w, s in zip(ow, os_)}
    old_same = np.array([(w.tobytes(), s.tobytes()) in old_levels for w, s in zip(tw, ts)])
    assert old_same.sum() >= N * 9 // 10  # the defect, reproduced on the old key scheme
    same = np.all(tw == ew, axis=(1, 2)) & np.all(ts == es, axis=1)
    assert same.sum() <= N // 32
    assert not np.array_equal(np.asarray(test.grid), np.asarray(old_test.grid))


def test_train_pool_reproducible_from_level_seed(pools):
    train, _ = pools["maze"]
    again = level_pool("maze", "train", N, 0)
    assert np.array_equal(np.asarray(again.grid), np.asarray(train.grid))
    assert np.array_equal(np.asarray(again.start), np.asarray(train.start))
    # the train pool is the one earlier versions of the adapter drew (jax.random.key(level_seed))
    legacy = get_task("maze").sample_params_checked(jax.random.key(0), "train", N)
    assert level_hashes(legacy) == level_hashes(train)
    other = level_pool("maze", "train", N, 1)
    assert level_hashes(other) != level_hashes(train)


def test_env_test_split_is_not_the_train_split():
    """Through the public Env only (fails on the old adapter, whose maze test pool was the train pool)."""
    test = MesalabGymEnv("maze", "test", n_levels=N, level_seed=0).params
    train = MesalabGymEnv("maze", "train", n_levels=N, level_seed=0).params
    assert set(level_hashes(test)).isdisjoint(level_hashes(train))


def test_env_uses_the_split_pools(pools):
    train, test = pools["red-door"]
    env_test = MesalabGymEnv("red-door", "test", n_levels=N, level_seed=0)
    env_train = MesalabGymEnv("red-door", "train", n_levels=N, level_seed=0)
    assert level_hashes(env_test.params) == level_hashes(test)
    assert level_hashes(env_train.params) == level_hashes(train)
    obs, info = env_test.reset(seed=3)
    assert obs.shape == env_test.observation_space.shape and 0 <= info["level"] < N


@pytest.mark.parametrize("split", ["validation", "Test", "", None])
def test_unknown_split_is_a_one_line_config_error(split):
    with pytest.raises(ConfigError) as err:
        MesalabGymEnv("maze", split, n_levels=8)
    msg = str(err.value)
    assert "\n" not in msg and "'train'" in msg and "'test'" in msg
    with pytest.raises(ConfigError):
        level_pool("maze", split, 8)


def test_keep_disjoint_drops_collisions_in_order():
    idx = keep_disjoint(["a", "b", "c", "d", "e", "f"], {"b", "d", "x"}, 3)
    assert idx.tolist() == [0, 2, 4]
    with pytest.raises(ConfigError) as err:
        keep_disjoint(["a", "b", "c"], ["a", "b"], 2)
    assert "\n" not in str(err.value) and "only 1 of 3" in str(err.value)


def test_too_few_disjoint_test_levels_raise(monkeypatch):
    """With the old shared key (and no oversampling) every maze test level is a train level: ConfigError."""
    monkeypatch.setattr(gym_adapter, "split_key", lambda level_seed, split: jax.random.key(level_seed))
    monkeypatch.setattr(gym_adapter, "n_test_candidates", lambda n: n)
    with pytest.raises(ConfigError) as err:
        level_pool("maze", "test", 16, 0)
    msg = str(err.value)
    assert "\n" not in msg and "maze" in msg and "only 0 of 16" in msg


def test_level_hash_covers_grid_and_start():
    grid = np.zeros((5, 5, 10), bool)
    grid[0, :, 0] = True
    h = level_hash(grid, (1, 1))
    assert h == level_hash(grid.copy(), np.array([1, 1], np.int32))
    assert h != level_hash(grid, (1, 2))
    g2 = grid.copy()
    g2[2, 2, 1] = True
    assert h != level_hash(g2, (1, 1))
