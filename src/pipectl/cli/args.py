"""Parsing the command line's values: dates, datetimes, timezones, params and pipeline names,
each bad one a UsageError naming the option (exit 2)."""
from __future__ import annotations

from datetime import date, datetime
from typing import TYPE_CHECKING

from pipectl.model.errors import PipectlError, UsageError
from pipectl.timing.clock import UTC
from pipectl.timing.durations import date_bounds_problem

if TYPE_CHECKING:
    from pipectl.model.pipeline import Pipeline


def parse_now(value: str, option: str = "--now") -> datetime:
    """ISO 8601 to an aware UTC datetime; a naive value means UTC (``Z`` accepted)."""
    try:
        dt = datetime.fromisoformat(value.strip())
    except (ValueError, AttributeError):
        raise UsageError(f"bad {option} value {value!r}: expected ISO 8601, e.g. 2026-04-05T03:00:00Z") from None
    _check_bounds(dt, option, value)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


def parse_date_arg(value: str, option: str = "--date", tz: str = "UTC") -> date | datetime:
    """A ``--date``-style argument.

    ``YYYY-MM-DD`` returns a ``date`` (a ``ds``: match runs by their calendar date).
    Anything else must be an ISO datetime and returns an aware UTC ``datetime``
    (a logical date); a naive one is read in ``tz`` (the pipeline's timezone), like
    ``start_date`` in a spec. Check ``isinstance(x, datetime)`` first: a datetime is
    also a date.
    """
    text = (value or "").strip()
    if len(text) == 10:
        try:
            d = date.fromisoformat(text)
        except ValueError:
            raise UsageError(f"bad {option} {value!r}: expected YYYY-MM-DD or an ISO 8601 datetime") from None
        _check_bounds(d, option, value)
        return d
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"bad {option} {value!r}: expected YYYY-MM-DD or an ISO 8601 datetime") from None
    _check_bounds(dt, option, value)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=zone(tz))
    return dt.astimezone(UTC)


def _check_bounds(d: date, option: str, value: str) -> None:
    """Dates far outside the range pipectl works in would overflow datetime arithmetic later."""
    problem = date_bounds_problem(d.year, d.month, d.day)
    if problem:
        raise UsageError(f"bad {option} {value!r}: {problem}")


def parse_date_range(start: str, end: str, tz: str = "UTC") -> tuple[date | datetime, date | datetime]:
    """``--start``/``--end`` pair; UsageError when end is before start."""
    a = parse_date_arg(start, "--start", tz)
    b = parse_date_arg(end, "--end", tz)
    if _sort_key(b, tz) < _sort_key(a, tz):
        raise UsageError(f"--end {end} is before --start {start}")
    return a, b


def _sort_key(d: date | datetime, tz: str) -> datetime:
    if isinstance(d, datetime):
        return d
    return datetime(d.year, d.month, d.day, tzinfo=zone(tz)).astimezone(UTC)


def zone(name: str):
    """The timezone ``--tz`` and friends name, or a UsageError naming the bad timezone."""
    from pipectl.timing.clock import timezone_error, zone as resolve
    problem = timezone_error(name)
    if problem:
        raise UsageError(problem)
    return resolve(name)


def parse_params(pairs: list[str] | None) -> dict[str, str]:
    """``--param k=v`` repeated, to a dict; later ones win."""
    out: dict[str, str] = {}
    for p in pairs or ():
        k, sep, v = p.partition("=")
        if not sep or not k.strip():
            raise UsageError(f"bad --param {p!r}: expected NAME=VALUE")
        out[k.strip()] = v
    return out


def resolve_pipeline(loaded, name: str) -> "Pipeline":
    """The named pipeline from a ``LoadResult``.

    Unknown name: UsageError (exit 2) listing the known ones. A pipeline whose spec
    is invalid: PipectlError (exit 1) with its first spec error, since the fix is in
    the YAML, not the command line.
    """
    if name in loaded.pipelines:
        return loaded.pipelines[name]
    invalid = getattr(loaded, "invalid", {}) or {}
    if name in invalid:
        errs = invalid[name]
        more = f" (and {len(errs) - 1} more; run `pipectl validate`)" if len(errs) > 1 else ""
        raise PipectlError(f"pipeline {name!r} is invalid: {errs[0]}{more}" if errs else f"pipeline {name!r} is invalid")
    known = ", ".join(sorted(loaded.pipelines)) or "none"
    raise UsageError(f"unknown pipeline {name!r} (known: {known})")
