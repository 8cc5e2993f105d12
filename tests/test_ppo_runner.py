import json
import subprocess
import sys

import jax
import numpy as np
import pytest

from mesalab.errors import ConfigError, MesalabError, TrainingDivergedError
from mesalab.optimizers import PPOConfig, check_finite, make_train

SMALL = dict(total_steps=4096, num_envs=16, rollout_len=32, width=32, depth=1, pool_size=64)


def test_config_validation_messages():
    with pytest.raises(ConfigError, match="unknown config key"):
        PPOConfig.from_dict({"learning_rate": 0.1})
    with pytest.raises(ConfigError, match="must be float"):
        PPOConfig.from_dict({"lr": "fast"})
    with pytest.raises(ConfigError, match="must be int"):
        PPOConfig.from_dict({"num_envs": 2.5})
    with pytest.raises(ConfigError, match="less than one update"):
        PPOConfig(total_steps=10).validate()
    with pytest.raises(MesalabError, match="unknown task"):
        PPOConfig(task="nope").validate()
    with pytest.raises(ConfigError, match="lr"):
        PPOConfig(lr=-1.0).validate()
    cfg = PPOConfig.from_dict({"lr": 0.5, "n_levels": 4})
    assert cfg.lr == 0.5 and cfg.n_levels == 4 and isinstance(PPOConfig.from_dict({"lr": 1e-3}).lr, float)


def test_same_seed_same_numbers_and_metrics_shape():
    cfg = PPOConfig(**SMALL)
    train = jax.jit(make_train(cfg))
    m1, a = train(jax.random.key(3))
    m2, b = train(jax.random.key(3))
    _, c = train(jax.random.key(4))
    assert a["loss"].shape == (cfg.num_updates,)
    for k in a:
        np.testing.assert_array_equal(np.asarray(a[k]), np.asarray(b[k]))
    assert not np.array_equal(np.asarray(a["loss"]), np.asarray(c["loss"]))
    for x, y in zip(jax.tree_util.tree_leaves(m1), jax.tree_util.tree_leaves(m2)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_fixed_level_pool_and_cnn_run():
    cfg = PPOConfig(**{**SMALL, "n_levels": 4, "model": "cnn"})
    _, m = jax.jit(make_train(cfg))(jax.random.key(0))
    assert np.isfinite(np.asarray(m["loss"])).all()


def test_nan_training_is_reported_with_fix():
    with pytest.raises(TrainingDivergedError, match="lower the learning rate"):
        check_finite({"loss": np.array([[0.1, np.nan]])}, lr=0.5)


@pytest.mark.slow
def test_ppo_learns_red_door():
    """Scientific check: ~200k steps of PPO reach >= 90% success on the red-door training distribution."""
    cfg = PPOConfig(total_steps=200_000)
    _, m = jax.jit(make_train(cfg))(jax.random.key(0))
    assert np.nanmean(np.asarray(m["success_rate"])[-5:]) >= 0.9


def test_runner_trains_two_seeds_in_pinned_workers(tmp_path):
    """vmapped PPO over seeds deadlocked with 2 XLA threads on CPU; the runner's pinned workers must finish."""
    code = (
        "from mesalab.studies import launch\n"
        f"a = launch('run', 'red-door', {str(tmp_path / 'run')!r}, seeds=3, workers=2, episodes=20, "
        f"config={SMALL!r}, steps={SMALL['total_steps']})\n"
        "import json; print(json.dumps([v['seed'] for v in a.verdicts]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=400)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [0, 1, 2]
