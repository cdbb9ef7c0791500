"""Where croniter 7 departs from cron's DST rules, and why timing/timetable.py does not use it.

Each case asserts the SPEC §3 answer twice: once for pipectl (must pass) and once
for croniter (expected to fail: xfail, non-strict so a fixed croniter only
shows up as XPASS). The cases croniter gets right (skipped hour of fixed-time
jobs, wildcard jobs in both directions, 30-minute shifts) are covered by
test_dst.py against hand tables and cronsim.
"""
from __future__ import annotations

from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import pytest

from pipectl.timing.timetable import CronTimetable, fire_times
from croniter import croniter  # noqa: E402  (a test dependency: see pyproject.toml)

UTC = timezone.utc


def z(s: str) -> datetime:
    return datetime.fromisoformat(f"{s}:00+00:00")


CASES = [
    # A fixed-time job in the repeated hour runs once (first occurrence);
    # croniter runs it at both occurrences.
    ("30 1 * * *", "America/New_York", "2026-10-31T12:00",
     ["2026-11-01T05:30", "2026-11-02T06:30"]),  # croniter: 11-01T05:30, 11-01T06:30
    ("15 1 * * *", "America/New_York", "2026-10-31T12:00",
     ["2026-11-01T05:15", "2026-11-02T06:15"]),  # croniter: 11-01T05:15, 11-01T06:15
    ("30 2 * * *", "Europe/Berlin", "2026-10-24T12:00",
     ["2026-10-25T00:30", "2026-10-26T01:30"]),  # croniter: 10-25T00:30, 10-25T01:30
    ("45 1 * * *", "Australia/Lord_Howe", "2026-04-04T12:00",
     ["2026-04-04T14:45", "2026-04-05T15:15"]),  # croniter: 04-04T14:45, 04-04T15:15
    ("0 1-3 * * *", "America/New_York", "2026-11-01T03:00",
     ["2026-11-01T05:00", "2026-11-01T07:00"]),  # croniter: 11-01T05:00, 11-01T06:00
    # a fall-back at midnight (Santiago 2026-04-05 00:00 -> 04-04 23:00)
    ("30 23 * * *", "America/Santiago", "2026-04-04T12:00",
     ["2026-04-05T02:30", "2026-04-06T03:30"]),  # croniter: 04-05T02:30, 04-05T03:30
    # Asked from inside the second copy of the hour (01:00 EST), the 01:30 job has
    # already run at 01:30 EDT; croniter offers 01:30 EST.
    ("30 1 * * *", "America/New_York", "2026-11-01T06:00",
     ["2026-11-02T06:30"]),  # croniter: 11-01T06:30
]


def _croniter_next(expr, tz, start, n):
    it = croniter(expr, start.astimezone(ZoneInfo(tz)))
    return [it.get_next(datetime).astimezone(UTC) for _ in range(n)]


@pytest.mark.parametrize("expr, tz, start, want", CASES)
def test_pipectl(expr, tz, start, want):
    assert fire_times(expr, tz, z(start), len(want)) == [z(w) for w in want]


@pytest.mark.xfail(reason="croniter runs fixed-time jobs in a repeated hour twice", strict=False)
@pytest.mark.parametrize("expr, tz, start, want", CASES)
def test_croniter(expr, tz, start, want):
    assert _croniter_next(expr, tz, z(start), len(want)) == [z(w) for w in want]


def test_pipectl_previous_in_repeated_hour():
    # croniter's get_prev from 2026-11-02T12:00Z gives 11-02T06:30, 11-01T06:30, 11-01T05:30
    tt = CronTimetable("30 1 * * *", "America/New_York")
    t, got = z("2026-11-02T12:00"), []
    for _ in range(3):
        t = tt.previous_before(t)
        got.append(t)
    assert got == [z("2026-11-02T06:30"), z("2026-11-01T05:30"), z("2026-10-31T05:30")]
