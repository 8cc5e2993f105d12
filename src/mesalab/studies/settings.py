"""Settings of a study from its command-line options: a config file's own values are checked first (so a
command-line override cannot hide a bad value in the file), then the overrides, then the whole config."""

from __future__ import annotations

from mesalab.errors import ConfigError


def steps_range(config_cls) -> tuple[int, int]:
    rng = config_cls.RANGES["total_steps" if "total_steps" in config_cls.RANGES else "steps"]
    return int(rng.lo), int(rng.hi)


def check_count(option: str, value, lo: int, hi: int, why: str = "") -> None:
    """A one-line error unless ``value`` (an integer option; ``None`` = not given) is in ``[lo, hi]``."""
    if value is not None and not lo <= value <= hi:
        raise ConfigError(f"{option} must be at least {lo} and at most {hi}{why}, got {value}")


def check_steps_cover_an_update(steps: int, overrides: dict, config_cls=None) -> None:
    from mesalab.optimizers import PPOConfig

    config_cls = config_cls or PPOConfig
    d = config_cls()
    per_update = overrides.get("num_envs", d.num_envs) * overrides.get("rollout_len", d.rollout_len)
    if steps < per_update:
        raise ConfigError(f"--steps {steps} is less than one {config_cls.settings_name} update "
                          f"(num_envs*rollout_len={per_update}); pass --steps of at least {per_update}")


def ppo_overrides(file_values: dict, steps: int | None, base: dict | None = None, config_cls=None) -> dict:
    """The settings of a gridworld trainer (``config_cls``: PPO's by default, or AlphaZero's) a config file and
    ``--steps`` change (checked; ``base``: settings they apply over)."""
    from mesalab.optimizers import PPOConfig

    config_cls = config_cls or PPOConfig
    check_count("--steps", steps, *steps_range(config_cls))
    overrides = config_cls.check_dict(dict(file_values))
    if steps is not None:
        check_steps_cover_an_update(steps, {**(base or {}), **overrides}, config_cls)
        overrides["total_steps"] = steps
    return overrides


def ppo_config(file_values: dict, steps: int | None, task: str):
    """The PPO config of ``mesalab run TASK``."""
    from mesalab.optimizers import PPOConfig

    file_values = PPOConfig.check_dict(dict(file_values))
    if file_values.get("task", task) != task:
        raise ConfigError(f"config file names task {file_values['task']!r} but the command names {task!r}; make them agree")
    overrides = ppo_overrides(file_values, steps)
    overrides["task"] = task
    return PPOConfig.from_dict(overrides)


def supervised_overrides(config_cls, file_values: dict, steps: int | None) -> dict:
    """The settings of a supervised config (ICL, maze-path) a config file and ``--steps`` change (checked)."""
    check_count("--steps", steps, *steps_range(config_cls))
    overrides = config_cls.check_dict(dict(file_values))
    if steps is not None:
        overrides["steps"] = steps
    return overrides
