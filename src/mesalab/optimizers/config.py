"""Shared handling of base-optimizer configs: frozen dataclasses built from plain dicts (JSON files).

Every setting is checked by one helper, :func:`check_setting`: its type (a bool is not a number, a float is not an
int), that a number is finite (no NaN or infinity), and that it lies in the :class:`Range` the config class declares
for it in ``RANGES``. A config class must declare a range for each of its numeric fields (a missing one is a
programming error, raised as ``TypeError``), so a new field cannot skip validation.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from typing import ClassVar, NamedTuple

from mesalab.errors import ConfigError


class Range(NamedTuple):
    """The allowed values of a numeric setting: ``lo``..``hi`` (either end open), plus the special values ``also``
    (e.g. ``-1`` for "the task's own")."""

    lo: float
    hi: float
    lo_open: bool = False
    hi_open: bool = False
    also: tuple = ()

    def __contains__(self, v) -> bool:
        if v in self.also:
            return True
        above = v > self.lo if self.lo_open else v >= self.lo
        below = v < self.hi if self.hi_open else v <= self.hi
        return above and below

    def __str__(self) -> str:
        txt = f"{'(' if self.lo_open else '['}{_num(self.lo)}, {_num(self.hi)}{')' if self.hi_open else ']'}"
        return txt + "".join(f" or {_num(a)}" for a in self.also)


def _num(v) -> str:
    if isinstance(v, float):
        return str(int(v)) if v.is_integer() and abs(v) < 1e16 else f"{v:g}"
    return str(v)


def _show(value) -> str:
    r = repr(value)
    return r if len(r) <= 60 else r[:40] + f"... ({len(r)} characters)"


def _kind(typ: type) -> str:
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(typ, typ.__name__)


def check_setting(name: str, value, typ: type, rng: Range | None = None, what: str = ""):
    """``value`` converted to ``typ`` (an int for a float setting becomes a float) if it is of that type, finite
    and in ``rng``; otherwise a one-line :class:`ConfigError` naming the setting, its value and the allowed range.
    ``what`` prefixes the name in messages (e.g. ``"PPO setting"``; empty for a command-line option such as
    ``--steps``)."""
    label = f"{what} {name}" if what else name
    allowed = f" in {rng}" if rng is not None else ""
    if typ is bool:
        ok = isinstance(value, bool)
    elif typ is int:
        ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    elif typ is float:
        ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    else:
        ok = isinstance(value, typ)
    if not ok:
        tname = {bool: "bool", int: "int", float: "float", str: "str"}.get(typ, typ.__name__)
        raise ConfigError(f"{label} must be {tname} ({_kind(typ)}{allowed}), got {_show(value)}")
    if typ is int:
        value = int(value)
    elif typ is float:
        try:
            number = float(value)
        except OverflowError:  # an integer too large for a float
            number = math.inf
        if not math.isfinite(number):
            raise ConfigError(f"{label} must be a finite number{allowed}, got {_show(value)}")
        value = number
    if rng is not None and value not in rng:
        raise ConfigError(f"{label} must be in {rng}, got {_show(value)}")
    return value


def _field_types(cls) -> dict[str, type]:
    """Field name -> the type of its default (configs are flat: bool, int, float, str)."""
    defaults = cls()
    return {f.name: type(getattr(defaults, f.name)) for f in dataclasses.fields(cls)}


def _range_of(cls, name: str, typ: type) -> Range | None:
    ranges = getattr(cls, "RANGES", {})
    if name in ranges:
        return ranges[name]
    if typ in (int, float):
        raise TypeError(f"{cls.__name__}.RANGES declares no range for numeric field {name!r}")
    return None


def check_settings(cls, d: dict, what: str) -> dict:
    """The settings ``d`` (a JSON object) checked one by one against config class ``cls``: unknown keys, types,
    finiteness, ranges. Returns them converted (ints for float settings become floats). Relations between
    settings are left to ``cls.validate()``, so this can check a config file before command-line overrides."""
    if not isinstance(d, dict):
        raise ConfigError(f"config must be a JSON object of {what} settings, e.g. {{\"lr\": 0.001}}")
    types = _field_types(cls)
    unknown = sorted(set(d) - set(types), key=str)
    if unknown:
        raise ConfigError(f"unknown config key(s) {unknown}; valid keys: {', '.join(types)}")
    return {k: check_setting(k, v, types[k], _range_of(cls, k, types[k]), f"{what} setting") for k, v in d.items()}


def check_fields(config) -> None:
    """Check every field of a config instance (built in Python, not from a dict) like :func:`check_settings`."""
    cls = type(config)
    for name, typ in _field_types(cls).items():
        check_setting(name, getattr(config, name), typ, _range_of(cls, name, typ), f"{cls.settings_name} setting")


def config_from_dict(cls, d: dict, what: str):
    """Build config dataclass ``cls`` from ``d``, rejecting unknown keys, wrong types, non-finite numbers and
    out-of-range values with one-line errors, then ``validate()`` it. ``what`` names the settings in messages
    (e.g. "PPO")."""
    return cls(**check_settings(cls, d, what)).validate()


class DictConfig:
    """Mixin for frozen config dataclasses: ``to_dict()`` and ``from_dict(d)`` (plain dicts, e.g. JSON files).

    A subclass names its settings for error messages: ``class PPOConfig(DictConfig, settings_name="PPO")``, and
    declares the allowed range of every numeric field in a class attribute ``RANGES = {"lr": Range(0, 1, True,
    True), ...}`` (no annotation, so it is not a field); its ``validate()`` starts with ``self.check_fields()``.
    """

    settings_name: ClassVar[str] = "config"
    RANGES: ClassVar[dict[str, Range]] = {}

    def __init_subclass__(cls, settings_name: str | None = None, **kwargs):
        super().__init_subclass__(**kwargs)
        if settings_name is not None:
            cls.settings_name = settings_name

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict):
        """Build from a plain dict, rejecting unknown keys, wrong types and out-of-range values with one-line
        errors."""
        return config_from_dict(cls, d, cls.settings_name)

    @classmethod
    def check_dict(cls, d: dict) -> dict:
        """The settings of ``d`` checked one by one (see :func:`check_settings`), without building a config."""
        return check_settings(cls, d, cls.settings_name)

    def check_fields(self) -> None:
        """Type, finiteness and range of every field (one-line :class:`ConfigError` naming the first bad one)."""
        check_fields(self)
