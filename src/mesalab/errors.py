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
