"""Atomic file writes: a file is written beside its final name (``.partial``) and renamed into place, so an
interrupted run never leaves a half-written config or checkpoint under the real name."""

from __future__ import annotations

import json
import os
from pathlib import Path

import equinox as eqx


def write_json_atomic(path: Path | str, obj) -> None:
    """Write ``obj`` as indented, key-sorted JSON (non-JSON values as their ``str``) to ``path``, atomically."""
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".partial")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str))
    os.replace(tmp, path)


def save_leaves_atomic(path: Path | str, model) -> None:
    """Serialise an Equinox model's array leaves to ``path`` (``eqx.tree_serialise_leaves``), atomically."""
    tmp = str(path) + ".partial"
    eqx.tree_serialise_leaves(tmp, model)
    os.replace(tmp, path)


def save_npz_atomic(path: Path | str, arrays: dict) -> None:
    """Write ``arrays`` (name -> array) as a compressed ``.npz`` to ``path``, atomically."""
    import numpy as np

    path = Path(path)
    tmp = path.with_name(path.name + ".partial")
    with open(tmp, "wb") as f:
        np.savez_compressed(f, **arrays)
    os.replace(tmp, path)
