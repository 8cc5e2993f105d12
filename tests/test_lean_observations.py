"""The "lean" observation: the egocentric view less its always-wall rings and the channels a task never sets.
It must be lossless (nothing it drops ever varies), equal to the cropped full view, and usable end to end."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mesalab.errors import ConfigError
from mesalab.tasks import get_task
from mesalab.tasks.grid import CHANNEL_NAMES, EnvState, LEAN_TRIM, N_GRID_CHANNELS, WALL_CHANNEL

LEAN_TASKS = ("red-door", "corner-goal", "corner-goal-13", "maze")


@pytest.mark.parametrize("name", LEAN_TASKS)
def test_what_lean_drops_never_varies(name):
    """On every split (probes too), 500 levels each: every level is walled at its border (so the window's two
    outer rings are wall wherever the agent stands), and every channel the lean view drops is never set."""
    task = get_task(name)
    kept = {CHANNEL_NAMES.index(c) for c in task.lean_channels}
    assert WALL_CHANNEL in kept and len(kept) == len(task.lean_channels)
    for split in task.splits:
        grid = np.asarray(task.sample_params_checked(jax.random.key(7), split, 500).grid)
        for border in (grid[:, 0], grid[:, -1], grid[:, :, 0], grid[:, :, -1]):
            assert border[..., WALL_CHANNEL].all(), (name, split)
        dropped = [c for c in range(N_GRID_CHANNELS) if c not in kept]
        assert not grid[..., dropped].any(), (name, split, [CHANNEL_NAMES[c] for c in dropped if grid[..., c].any()])


@pytest.mark.parametrize("name", LEAN_TASKS)
def test_the_lean_view_is_the_full_view_cropped_and_the_crop_is_wall(name):
    """At every free cell of 20 levels: lean == full[2:-2, 2:-2, kept channels], and the cropped rings of the full
    view hold wall only (so the full view can be rebuilt from the lean one)."""
    task = get_task(name)
    full_env, lean_env = task.env_for("egocentric"), task.env_for("lean")
    h, w = task.shape.height, task.shape.width
    assert lean_env.obs_shape == (2 * h - 5, 2 * w - 5, len(task.lean_channels))
    params = task.sample_params_checked(jax.random.key(3), "test", 20)
    free = ~np.asarray(params.grid[..., WALL_CHANNEL])
    lv, r, c = np.nonzero(free)
    states = EnvState(level=jnp.asarray(lv, jnp.int32), pos=jnp.stack([jnp.asarray(r), jnp.asarray(c)], -1).astype(jnp.int32),
                      t=jnp.zeros(len(lv), jnp.int32))
    full = np.asarray(jax.vmap(full_env.observe, in_axes=(0, None))(states, params))
    lean = np.asarray(jax.vmap(lean_env.observe, in_axes=(0, None))(states, params))
    t = LEAN_TRIM
    np.testing.assert_array_equal(lean, full[:, t:-t, t:-t][..., list(lean_env.channels)])
    ring = np.ones(full.shape[1:3], bool)
    ring[t:-t, t:-t] = False
    assert full[:, ring][..., WALL_CHANNEL].all() and not full[:, ring][..., 1:].any()


def test_obs_mode_is_checked_and_variants_are_one_object_per_mode():
    from mesalab.optimizers import PPOConfig

    task = get_task("red-door")
    assert task.with_obs_mode("lean") is task.with_obs_mode("lean") is not task
    assert task.with_obs_mode("") is task and task.with_obs_mode("egocentric") is task
    assert task.with_obs_mode("lean").env.obs_shape == (13, 13, 9)
    with pytest.raises(ConfigError, match="obs_mode 'sideways' is not offered by task 'red-door'; use one of: egocentric, global, lean"):
        PPOConfig(obs_mode="sideways").validate()
    with pytest.raises(ConfigError, match="'lean' is not offered by task 'keys-chests'"):
        PPOConfig(task="keys-chests", obs_mode="lean").validate()
    with pytest.raises(ConfigError, match="has no 'lean' observations"):
        get_task("keys-chests").with_obs_mode("lean")


def test_a_lean_run_trains_evaluates_diagnoses_and_reloads(tmp_path):
    """A run with ``obs_mode: lean`` end to end, in-process: its models read 13x13x9 inputs, its episodes and
    profile come from lean observations, and ``diagnose`` rebuilds the models from the folder."""
    from mesalab.studies import launch
    from mesalab.studies.gridworld_run import diagnose_run, load_model

    small = dict(total_steps=4096, num_envs=16, rollout_len=32, width=32, depth=1, pool_size=64, obs_mode="lean")
    out = tmp_path / "lean"
    launch("run", "red-door", out, seeds=1, workers=0, episodes=20, config=small, steps=small["total_steps"])
    model = load_model(out, 0)
    assert model.hidden[0].weight.shape == (32, 13 * 13 * 9)
    diagnose_run(out, irl_levels=10, bootstrap=20)


def test_a_config_file_without_total_steps_keeps_the_runs_300k_steps():
    """``mesalab run red-door --config lean.json`` where the file sets only obs_mode: the run's default budget
    stays (it used to become PPOConfig's 1M); a total_steps in the file, or --steps, still wins."""
    from mesalab.optimizers import PPOConfig
    from mesalab.studies import find
    from mesalab.studies.contract import Options

    study = find("run", "red-door")

    def steps(**kw):
        s = study.configure("red-door", Options(**kw))
        return PPOConfig(**s["ppo"]).total_steps

    assert steps() == 300_000
    assert steps(config={"obs_mode": "lean"}, config_given=True) == 300_000
    assert steps(config={"obs_mode": "lean", "total_steps": 8192}, config_given=True) == 8192
    assert steps(config={"obs_mode": "lean"}, config_given=True, steps=16384) == 16384
