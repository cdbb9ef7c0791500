"""Instants, zones and calendar days: the time helpers every layer shares.

Instants are aware datetimes (UTC inside pipectl) or epoch seconds (the store,
the clock); a ``ds`` is a calendar date in a pipeline's timezone. Stdlib only:
the no-op tick may import this.
"""
from __future__ import annotations

from datetime import date, datetime, time as dtime, timezone, tzinfo
from functools import lru_cache

UTC = timezone.utc
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@lru_cache(maxsize=64)
def zone(name: str | None) -> tzinfo:
    """The timezone a schedule or a pipeline names (None, "" and the UTC spellings are UTC);
    ValueError ``unknown timezone 'name'`` when there is none."""
    if name in (None, "", "UTC", "Etc/UTC", "Z"):
        return UTC
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError  # here: importing it costs more than all of this module
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise ValueError(f"unknown timezone {name!r}") from None


def timezone_error(name: object) -> str | None:
    """None when ``name`` is an IANA timezone name, else ``unknown timezone 'name'``: the one
    check of what a spec, pipectl.toml or a command line may name as a timezone."""
    from zoneinfo import ZoneInfo
    try:
        ZoneInfo(name)
    except Exception:  # not found, not a key (ValueError), not a string (TypeError)
        return f"unknown timezone {name!r}"
    return None


def aware(t: datetime) -> datetime:
    """``t`` itself; ValueError when it is naive (an instant needs its offset)."""
    if t.tzinfo is None or t.utcoffset() is None:
        raise ValueError(f"naive datetime {t.isoformat()}: expected an aware instant")
    return t


def from_epoch(ts: float) -> datetime:
    """Epoch seconds as an aware UTC datetime."""
    return datetime.fromtimestamp(ts, UTC)


def iso(dt: datetime | None) -> str | None:
    """An aware instant as ISO 8601 in UTC: how the store writes a logical date and JSON
    output shows it. None stays None."""
    return None if dt is None else dt.astimezone(UTC).isoformat()


def epoch_iso(ts: float | None) -> str | None:
    """Epoch seconds as ISO 8601 in UTC; None stays None."""
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat()


def to_local(dt: datetime, tz: str | None) -> datetime:
    """The aware instant ``dt`` shown in timezone ``tz``."""
    return dt.astimezone(zone(tz))


def ds_of(logical_date: datetime, tz: str | None) -> str:
    """``ds``: the logical date's calendar date in the pipeline's timezone."""
    return to_local(logical_date, tz).date().isoformat()


def local_midnight(day: date | str, tz: str | None) -> datetime:
    """The instant (UTC) at which calendar day ``day`` (a date or ``YYYY-MM-DD``) begins in ``tz``."""
    if isinstance(day, str):
        day = date.fromisoformat(day)
    return datetime.combine(day, dtime(0, 0), zone(tz)).astimezone(UTC)
