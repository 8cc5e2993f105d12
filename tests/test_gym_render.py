import numpy as np
from gymnasium.utils.env_checker import check_env

from mesalab.tasks.gym_adapter import MesalabGymEnv


def test_gymnasium_check_env_passes():
    env = MesalabGymEnv("red-door", n_levels=16, render_mode="rgb_array")
    check_env(env, skip_render_check=False)


def test_gym_episode_terminates_and_renders():
    env = MesalabGymEnv("maze", n_levels=8, render_mode="rgb_array")
    obs, info = env.reset(seed=0)
    assert obs.shape == env.observation_space.shape and obs.dtype == np.uint8
    for _ in range(200):
        obs, r, term, trunc, info = env.step(env.action_space.sample())
        if term or trunc:
            break
    assert term or trunc
    img = env.render()
    assert img.ndim == 3 and img.shape[-1] == 3


def test_render_level_png(tmp_path):
    import jax

    from mesalab.tasks import get_task
    from mesalab.tasks.render import render_level_png

    task = get_task("red-door")
    p = task.sample_params_checked(jax.random.key(0), "test", 2)
    path = tmp_path / "level.png"
    render_level_png(path, np.asarray(p.grid[0]), np.asarray(p.start[0]), [1, 2], [1, 1], title="t")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
