"""User-facing errors: each carries a one-line message that names the fix."""


class MesalabError(Exception):
    """Bad input or an unrecoverable run condition. The CLI prints ``str(err)`` on one line and exits 2."""


class ConfigError(MesalabError):
    """A malformed or invalid configuration value."""


class UnknownTaskError(MesalabError):
    """A task name that is not in the registry."""


class TrainingDivergedError(MesalabError):
    """Training produced non-finite numbers."""


class CorruptRunError(MesalabError):
    """A run folder (checkpoint, config or results database) that cannot be read."""


def check_output_dir(path, option: str = "--out"):
    """``Path(path)`` if a command can write its folder there: an existing folder it can write in, or a new path
    whose nearest existing parent is a folder it can write in. Creates nothing (a probe file is made and removed
    at once, the only honest test for root, read-only mounts and /proc). Otherwise a :class:`ConfigError` whose
    one line names ``option`` and the fix."""
    import os
    import tempfile
    from pathlib import Path

    try:
        path = Path(path)
        if path.exists() or path.is_symlink():
            if not path.is_dir():
                raise ConfigError(f"{option} {path} is an existing file, not a folder; pass a folder path (new, or a "
                                  f"folder this command wrote)")
            probe_in = path
        else:
            probe_in = path.parent
            while not (probe_in.exists() or probe_in.is_symlink()) and probe_in != probe_in.parent:
                probe_in = probe_in.parent
            if not probe_in.is_dir():
                raise ConfigError(f"{option} {path} is under {probe_in}, which is a file, not a folder; pass a path "
                                  f"under a folder")
        fd, probe = tempfile.mkstemp(prefix=".mesalab-write-test-", dir=probe_in)
        os.close(fd)
        os.unlink(probe)
    except ValueError as e:  # e.g. an embedded NUL character
        raise ConfigError(f"{option} {str(path)!r} is not a valid path ({e}); pass a folder path") from None
    except OSError as e:
        raise ConfigError(f"{option} {path} cannot be written ({e.strerror or e}); pass a folder you can write to") from None
    return path
