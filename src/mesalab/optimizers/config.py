"""Shared handling of base-optimizer configs: frozen dataclasses built from plain dicts (JSON files)."""

from __future__ import annotations

import dataclasses

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
