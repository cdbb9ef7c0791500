"""Errors that the CLI turns into one line on stderr and an exit code, never a traceback."""
from __future__ import annotations


class PipectlError(Exception):
    """A failure to report as one clear line; ``exit_code`` 1 means the work or a spec failed."""

    exit_code = 1


class UsageError(PipectlError):
    """Bad arguments: unknown pipeline or task, bad date, end before start, ..."""

    exit_code = 2


class ConfigError(PipectlError):
    """``pipectl.toml`` missing or wrong."""

    exit_code = 2


class StateError(PipectlError):
    """The state file is corrupt, foreign, or from a newer pipectl; it is never recreated silently."""

    exit_code = 1
