"""Errors the library raises for failures worth one clear line, never a traceback.

They say what went wrong in the library's own terms; the CLI decides how it
looks and what it exits with (cli/app.py). A message that refers to a value the
caller supplied (the tasks pattern, the schedule, the run's date) names it as a
:class:`Param`, which reads as the concept here and as the flag in the CLI.
"""
from __future__ import annotations


class Param(str):
    """The name of a value the caller supplied, inside an error message ("tasks", "run_id")."""

    __slots__ = ()


class PipectlError(Exception):
    """A failure to report as one clear line: the work, a spec or the environment failed.

    ``parts`` are text and :class:`Param` names; ``str()`` joins them with each
    parameter's own name, :meth:`render` with the words a front end gives them.
    """

    def __init__(self, *parts: str):
        super().__init__(*parts)
        self.parts = parts

    def render(self, names: dict[str, str]) -> str:
        return "".join(names.get(p, p) if isinstance(p, Param) else str(p) for p in self.parts)

    def __str__(self) -> str:
        return "".join(str(p) for p in self.parts)


class UsageError(PipectlError):
    """The request is wrong: an unknown pipeline or task, a bad value, end before start, ..."""


class ConfigError(PipectlError):
    """``pipectl.toml`` missing or wrong."""


class StateError(PipectlError):
    """The state file is corrupt, foreign, or from a newer pipectl; it is never recreated silently."""
