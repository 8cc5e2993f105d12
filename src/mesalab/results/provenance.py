"""What every run records about how it was made: package versions, platform, time."""

from __future__ import annotations

import datetime as _dt
import importlib.metadata as md
import platform

PACKAGES = ("mesalab", "jax", "jaxlib", "equinox", "optax", "numpy", "duckdb")


def versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "platform": platform.platform()}
    for name in PACKAGES:
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = "not installed"
    return out


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
