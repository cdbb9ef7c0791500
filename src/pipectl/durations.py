"""Durations as written in specs and config: ``30s``, ``5m``, ``2h``, ``1d`` or integer seconds."""
from __future__ import annotations

import re

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")


class DurationError(ValueError):
    pass


def parse_duration(value: object) -> float:
    """Return seconds. Booleans are rejected: YAML turns ``yes`` into True, and True is an int."""
    if isinstance(value, bool) or value is None:
        raise DurationError(f"bad duration {value!r}: expected e.g. 30s, 5m, 2h, 1d or seconds")
    if isinstance(value, (int, float)):
        if value < 0:
            raise DurationError(f"bad duration {value!r}: must not be negative")
        return float(value)
    if isinstance(value, str):
        m = _RE.match(value)
        if m:
            return float(m.group(1)) * _UNITS[m.group(2) or "s"]
    raise DurationError(f"bad duration {value!r}: expected e.g. 30s, 5m, 2h, 1d or seconds")


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s"
    s = int(round(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            big, rest = divmod(s, size)
            sub = {"d": 3600, "h": 60, "m": 1}[unit]
            small = rest // sub
            suffix = {"d": "h", "h": "m", "m": "s"}[unit]
            return f"{big}{unit}{small}{suffix}" if small else f"{big}{unit}"
    return f"{s}s"
