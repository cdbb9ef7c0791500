"""Durations as written in specs and config: ``30s``, ``5m``, ``2h``, ``1d`` or integer seconds.

Also the bounds every duration, date and count pipectl accepts must stay within, so that
the arithmetic done on them later (a retry time, a catch-up, a timeout) can never overflow
a datetime: an unevaluable value is refused where it is written, not at 3 a.m. in a tick.
"""
from __future__ import annotations

import math
import re

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")


from pipectl.model.limits import DAY, MAX_SPEC_SECONDS  # noqa: E402,F401  (the spec's longest duration)
# Longest duration anything accepts (pipectl.toml, `prune --older-than`): a century.
MAX_SECONDS = 36600 * DAY
# Dates pipectl accepts (start_date, end_date, --now, --date, --start, --end): far enough from
# datetime's year 1 and 9999 that a century of durations or a cron's next fire never leaves its range.
MIN_DATE = "1970-01-01"
MAX_DATE = "9000-12-31"
# Largest --count / --limit: a screenful is tens; ten thousand is already a file.
MAX_COUNT = 10000


class DurationError(ValueError):
    pass


def parse_duration(value: object, maximum: float = MAX_SECONDS) -> float:
    """Return seconds. Booleans are rejected: YAML turns ``yes`` into True, and True is an int."""
    if isinstance(value, bool) or value is None:
        raise DurationError(f"bad duration {value!r}: expected e.g. 30s, 5m, 2h, 1d or seconds")
    seconds = None
    if isinstance(value, (int, float)):
        if value < 0:
            raise DurationError(f"bad duration {value!r}: must not be negative")
        if isinstance(value, int) and value > maximum:
            seconds = math.inf  # float(10**400) would raise
        else:
            seconds = float(value)
    elif isinstance(value, str):
        m = _RE.match(value)
        if m:
            seconds = float(m.group(1)) * _UNITS[m.group(2) or "s"]
    if seconds is None or math.isnan(seconds):
        raise DurationError(f"bad duration {_short(value)}: expected e.g. 30s, 5m, 2h, 1d or seconds")
    if seconds > maximum:
        raise DurationError(f"bad duration {_short(value)}: longer than the limit of {format_duration(maximum)}")
    return seconds


def _short(value: object) -> str:
    try:
        text = repr(value)
    except ValueError:  # an int with more digits than Python will print
        return "(a number too large to print)"
    return text if len(text) <= 40 else text[:37] + "..."


def date_bounds_problem(year: int, month: int = 1, day: int = 1) -> str | None:
    """Why a date is outside the range pipectl accepts, or None."""
    if (year, month, day) < tuple(map(int, MIN_DATE.split("-"))) or year > int(MAX_DATE[:4]):
        return f"must be between {MIN_DATE} and {MAX_DATE}"
    return None


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
