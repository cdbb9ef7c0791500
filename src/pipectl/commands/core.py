"""Core engine commands: tick, trigger, run, status, runs, show, logs, explain, next."""
from __future__ import annotations

from ..cli import app  # noqa: F401
