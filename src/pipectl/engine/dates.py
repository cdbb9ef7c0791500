"""A spec's ``start_date`` and ``end_date`` as instants."""
from __future__ import annotations

from datetime import datetime, time as dtime

from pipectl.timing.clock import UTC


def instant(value: str | None, tz: str, end_of_day: bool = False) -> datetime | None:
    """A spec's start_date/end_date: a date means local midnight (end_date: the whole day)."""
    if value is None:
        return None
    from zoneinfo import ZoneInfo

    if len(value) == 10:
        d = datetime.fromisoformat(value)
        t = dtime(23, 59, 59) if end_of_day else dtime(0, 0)
        return datetime.combine(d.date(), t, ZoneInfo(tz)).astimezone(UTC)
    dt = datetime.fromisoformat(value)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=ZoneInfo(tz))
    return dt.astimezone(UTC)
