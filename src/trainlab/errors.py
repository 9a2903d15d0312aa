"""The one exception for a bad config value, importable from anywhere without cycles."""

from __future__ import annotations


class ConfigError(ValueError):
    """A config value is out of range, of the wrong type, or not a parameter at all.

    Its message names the key as a user types it, the bad value and what is allowed. Raised
    by validation and by trainlab's constructors; the entry points print it as one line,
    while any other exception from a constructor keeps its traceback (a bug, not a setting).
    """


class RunDirError(ConfigError):
    """A run directory cannot be used as asked: a new run's dir already holds one, or a dir
    to resume or evaluate lacks its saved config or checkpoint (see :mod:`trainlab.rundir`)."""
