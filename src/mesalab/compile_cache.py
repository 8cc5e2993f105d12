"""JAX's persistent compilation cache for mesalab processes: a compiled program (a PPO chunk, an evaluator, an IRL
fit) is written to disk once and loaded by every later process that builds the same program, so a second run of
the same configuration skips most of its compile time.

The folder is ``$MESALAB_COMPILE_CACHE`` if set (``off`` turns the cache off), else ``mesalab/jax`` under the
user's cache directory (``$XDG_CACHE_HOME``, default ``~/.cache``). The cache key covers the program, the compile
options, the JAX/jaxlib versions and the device, so a cached program gives the same numbers as a fresh compile.
:func:`enable` also exports the setting to the environment, so spawned worker processes use the same folder.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ENV = "MESALAB_COMPILE_CACHE"
MIN_COMPILE_SECONDS = 0.2  # programs that compile faster than this are not worth a disk entry
# A size limit turns on JAX's file lock around every cache read and write (lru_cache.LRUCache; it needs the
# `filelock` package). Without it an entry is written in place (Path.write_bytes), so a process reading the entry
# another one is still writing can load a truncated executable: a test worker died of that (a segfault in
# deserialize_executable) while two pytest workers and a CLI subprocess shared the folder. Least recently used
# entries beyond the limit are evicted.
MAX_BYTES = 4 * 2**30
_here = True  # whether enable() may turn the cache on in this process (see only_in_subprocesses)


def cache_dir() -> Path | None:
    """The cache folder this process would use, or ``None`` when the cache is turned off."""
    value = os.environ.get(ENV, "").strip()
    if value.lower() in ("off", "0", "false", "no"):
        return None
    if value:
        return Path(value).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mesalab" / "jax"


def add_missing_access_times(path: Path) -> int:
    """Give every entry of the cache folder ``path`` that lacks one the access-time file JAX's size-limited cache
    keeps beside it (``<key>-atime``: the time in ns, 8 bytes little-endian); returns how many were added. Entries
    written with no size limit (by mesalab before it set one, or by another JAX program) have none, and JAX's
    eviction, which reads the access time of every entry on each write, then fails every write with
    FileNotFoundError: nothing new would be cached again. Done under JAX's own lock file."""
    import time

    import filelock

    with filelock.FileLock(str(path / ".lockfile")):
        missing = [p for p in path.glob("*-cache") if not (path / (p.name[:-len("-cache")] + "-atime")).exists()]
        stamp = time.time_ns().to_bytes(8, "little")
        for p in missing:
            (path / (p.name[:-len("-cache")] + "-atime")).write_bytes(stamp)
    return len(missing)


def only_in_subprocesses() -> None:
    """From now on :func:`enable` does nothing in this process; processes it starts still read ``$MESALAB_COMPILE_CACHE``
    and use the cache. The test suite's workers call it: two CI workers died inside JAX's executable deserializer
    while several processes shared a cache folder, while the CLI subprocesses the tests start are where the cache
    saves most time."""
    global _here
    _here = False


def enable() -> Path | None:
    """Turn the persistent compilation cache on for this process and the workers it spawns; returns the folder
    (``None`` when turned off, or when the folder cannot be created: then compiling simply is not cached; also
    ``None`` after :func:`only_in_subprocesses`)."""
    path = cache_dir()
    if path is None or not _here:
        return None
    try:
        path.mkdir(parents=True, exist_ok=True)
        add_missing_access_times(path)
    except OSError:
        return None
    settings = {"jax_compilation_cache_dir": str(path),
                "jax_persistent_cache_min_compile_time_secs": MIN_COMPILE_SECONDS,
                "jax_persistent_cache_min_entry_size_bytes": 0,
                "jax_compilation_cache_max_size": MAX_BYTES}
    os.environ[ENV] = str(path)
    for name, value in settings.items():  # read by JAX when a process (a spawned worker too) imports it
        os.environ[name.upper()] = str(value)
    if "jax" in sys.modules:  # already imported here: set it directly
        import jax

        for name, value in settings.items():
            jax.config.update(name, value)
    return path
