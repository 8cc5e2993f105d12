"""Shared handling of base-optimizer configs: frozen dataclasses built from plain dicts (JSON files)."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from mesalab.errors import ConfigError


def config_from_dict(cls, d: dict, what: str):
    """Build config dataclass ``cls`` from ``d``, rejecting unknown keys and wrong types with one-line errors,
    then ``validate()`` it. ``what`` names the settings in messages (e.g. "PPO")."""
    if not isinstance(d, dict):
        raise ConfigError(f"config must be a JSON object of {what} settings, e.g. {{\"lr\": 0.001}}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - set(fields))
    if unknown:
        raise ConfigError(f"unknown config key(s) {unknown}; valid keys: {', '.join(fields)}")
    defaults = cls()
    kwargs = {}
    for k, v in d.items():
        typ = type(getattr(defaults, k))
        if typ is bool:
            ok = isinstance(v, bool)
        elif typ is int:
            ok = isinstance(v, int) and not isinstance(v, bool)
        elif typ is float:
            ok = isinstance(v, (int, float)) and not isinstance(v, bool)
            v = float(v) if ok else v
        else:
            ok = isinstance(v, typ)
        if not ok:
            raise ConfigError(f"config key {k!r} must be {typ.__name__}, got {v!r}")
        kwargs[k] = v
    return cls(**kwargs).validate()


class DictConfig:
    """Mixin for frozen config dataclasses: ``to_dict()`` and ``from_dict(d)`` (plain dicts, e.g. JSON files).

    A subclass names its settings for error messages: ``class PPOConfig(DictConfig, settings_name="PPO")``.
    """

    settings_name: ClassVar[str] = "config"

    def __init_subclass__(cls, settings_name: str | None = None, **kwargs):
        super().__init_subclass__(**kwargs)
        if settings_name is not None:
            cls.settings_name = settings_name

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict):
        """Build from a plain dict, rejecting unknown keys and wrong types with one-line errors."""
        return config_from_dict(cls, d, cls.settings_name)
