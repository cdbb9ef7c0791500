"""DST semantics (SPEC §3, like Debian's cronie) on the 2026 transition days.

Transitions used (local wall clock):
- America/New_York: 2026-03-08 02:00 EST -> 03:00 EDT (07:00Z); 2026-11-01 02:00 EDT -> 01:00 EST (06:00Z)
- Europe/Berlin:    2026-03-29 02:00 CET -> 03:00 CEST (01:00Z); 2026-10-25 03:00 CEST -> 02:00 CET (01:00Z)
- Australia/Lord_Howe (30 minutes): 2026-04-05 02:00 LHDT -> 01:30 LHST (15:00Z on 04-04);
  2026-10-04 02:00 LHST -> 02:30 LHDT (15:30Z on 10-03)

The tables were computed by hand from those transitions; cronsim (written to
match Debian cron) is a second, independent oracle.
"""
from __future__ import annotations

from collections import Counter
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from cronsim import CronSim

from pipectl.model.pipeline import EverySchedule
from pipectl.timing.clock import to_local
from pipectl.timing.cron import NICKNAMES
from pipectl.timing.timetable import CronTimetable, due_intervals, fire_times, timetable
UTC = timezone.utc
NY, BERLIN, LH = "America/New_York", "Europe/Berlin", "Australia/Lord_Howe"


def Z(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def fires_on(expr: str, tz: str, day: date) -> list[datetime]:
    """Every fire whose local calendar date is ``day``."""
    zone = ZoneInfo(tz)
    after = datetime(day.year, day.month, day.day, tzinfo=zone).astimezone(UTC) - timedelta(days=1)
    out = []
    for t in fire_times(expr, tz, after, 400):
        d = t.astimezone(zone).date()
        if d > day:
            break
        if d == day:
            out.append(t)
    return out


def z(s: str) -> datetime:
    """'03-08T07:00' -> 2026-03-08T07:00Z."""
    return datetime.fromisoformat(f"2026-{s}:00+00:00")


# -- fixed-time jobs: exactly the instants listed ------------------------------

FIXED = [
    # skipped hour: runs once, right after the jump
    (NY, date(2026, 3, 8), "30 2 * * *", ["03-08T07:00"]),
    (NY, date(2026, 3, 8), "0 2 * * *", ["03-08T07:00"]),
    (NY, date(2026, 3, 8), "15 1 * * *", ["03-08T06:15"]),
    (NY, date(2026, 3, 8), "0,30 2 * * *", ["03-08T07:00"]),  # two skipped times, one run
    # repeated hour: runs once, at the first occurrence (EDT)
    (NY, date(2026, 11, 1), "30 2 * * *", ["11-01T07:30"]),
    (NY, date(2026, 11, 1), "0 2 * * *", ["11-01T07:00"]),
    (NY, date(2026, 11, 1), "15 1 * * *", ["11-01T05:15"]),
    (NY, date(2026, 11, 1), "0,30 1 * * *", ["11-01T05:00", "11-01T05:30"]),
    (BERLIN, date(2026, 3, 29), "30 2 * * *", ["03-29T01:00"]),
    (BERLIN, date(2026, 3, 29), "0 2 * * *", ["03-29T01:00"]),
    (BERLIN, date(2026, 3, 29), "15 1 * * *", ["03-29T00:15"]),
    (BERLIN, date(2026, 10, 25), "30 2 * * *", ["10-25T00:30"]),
    (BERLIN, date(2026, 10, 25), "0 2 * * *", ["10-25T00:00"]),
    (BERLIN, date(2026, 10, 25), "15 1 * * *", ["10-24T23:15"]),
    # Lord Howe back 30 min: 01:30-01:59 happen twice; 02:00 and 02:30 once (LHST)
    (LH, date(2026, 4, 5), "30 2 * * *", ["04-04T16:00"]),
    (LH, date(2026, 4, 5), "0 2 * * *", ["04-04T15:30"]),
    (LH, date(2026, 4, 5), "15 1 * * *", ["04-04T14:15"]),
    (LH, date(2026, 4, 5), "45 1 * * *", ["04-04T14:45"]),
    # Lord Howe forward 30 min: 02:00-02:29 do not exist; 02:30 does
    (LH, date(2026, 10, 4), "30 2 * * *", ["10-03T15:30"]),
    (LH, date(2026, 10, 4), "0 2 * * *", ["10-03T15:30"]),
    (LH, date(2026, 10, 4), "15 2 * * *", ["10-03T15:30"]),
    (LH, date(2026, 10, 4), "15 1 * * *", ["10-03T14:45"]),
]


@pytest.mark.parametrize("tz, day, expr, want", FIXED, ids=[f"{c[0]}-{c[1]}-{c[2]}" for c in FIXED])
def test_fixed_time_jobs_on_dst_days(tz, day, expr, want):
    assert fires_on(expr, tz, day) == [z(s) for s in want]


# -- wildcard jobs: every matching real instant --------------------------------

WILD = [
    # (tz, day, expr, fires that local day, UTC window, fires in that window)
    (NY, date(2026, 3, 8), "*/15 * * * *", 92, ("03-08T06:30", "03-08T07:30"),
     ["03-08T06:30", "03-08T06:45", "03-08T07:00", "03-08T07:15", "03-08T07:30"]),
    (NY, date(2026, 3, 8), "0 * * * *", 23, ("03-08T05:00", "03-08T08:00"),
     ["03-08T05:00", "03-08T06:00", "03-08T07:00", "03-08T08:00"]),
    (NY, date(2026, 3, 8), "30 * * * *", 23, ("03-08T05:00", "03-08T08:00"),
     ["03-08T05:30", "03-08T06:30", "03-08T07:30"]),
    (NY, date(2026, 11, 1), "*/15 * * * *", 100, ("11-01T05:00", "11-01T07:00"),
     ["11-01T05:00", "11-01T05:15", "11-01T05:30", "11-01T05:45", "11-01T06:00", "11-01T06:15",
      "11-01T06:30", "11-01T06:45", "11-01T07:00"]),
    (NY, date(2026, 11, 1), "0 * * * *", 25, ("11-01T04:00", "11-01T07:00"),
     ["11-01T04:00", "11-01T05:00", "11-01T06:00", "11-01T07:00"]),
    (NY, date(2026, 11, 1), "30 * * * *", 25, ("11-01T04:00", "11-01T07:00"),
     ["11-01T04:30", "11-01T05:30", "11-01T06:30"]),
    (BERLIN, date(2026, 3, 29), "*/15 * * * *", 92, ("03-29T00:30", "03-29T01:30"),
     ["03-29T00:30", "03-29T00:45", "03-29T01:00", "03-29T01:15", "03-29T01:30"]),
    (BERLIN, date(2026, 3, 29), "0 * * * *", 23, ("03-29T00:00", "03-29T02:00"),
     ["03-29T00:00", "03-29T01:00", "03-29T02:00"]),
    (BERLIN, date(2026, 3, 29), "30 * * * *", 23, ("03-29T00:00", "03-29T02:00"),
     ["03-29T00:30", "03-29T01:30"]),
    (BERLIN, date(2026, 10, 25), "*/15 * * * *", 100, ("10-25T00:00", "10-25T01:00"),
     ["10-25T00:00", "10-25T00:15", "10-25T00:30", "10-25T00:45", "10-25T01:00"]),
    (BERLIN, date(2026, 10, 25), "0 * * * *", 25, ("10-24T23:00", "10-25T02:00"),
     ["10-24T23:00", "10-25T00:00", "10-25T01:00", "10-25T02:00"]),
    (BERLIN, date(2026, 10, 25), "30 * * * *", 25, ("10-24T23:00", "10-25T02:00"),
     ["10-24T23:30", "10-25T00:30", "10-25T01:30"]),
    # Lord Howe back: 01:30 and 01:45 twice (LHDT 14:30Z/14:45Z, LHST 15:00Z/15:15Z)
    (LH, date(2026, 4, 5), "*/15 * * * *", 98, ("04-04T14:00", "04-04T15:30"),
     ["04-04T14:00", "04-04T14:15", "04-04T14:30", "04-04T14:45", "04-04T15:00", "04-04T15:15",
      "04-04T15:30"]),
    (LH, date(2026, 4, 5), "0 * * * *", 24, ("04-04T13:00", "04-04T16:30"),
     ["04-04T13:00", "04-04T14:00", "04-04T15:30", "04-04T16:30"]),
    (LH, date(2026, 4, 5), "30 * * * *", 25, ("04-04T13:00", "04-04T16:30"),
     ["04-04T13:30", "04-04T14:30", "04-04T15:00", "04-04T16:00"]),
    (LH, date(2026, 4, 5), "15 */2 * * *", 12, ("04-04T13:00", "04-04T16:00"),
     ["04-04T13:15", "04-04T15:45"]),
    # Lord Howe forward: 02:00 and 02:15 do not exist
    (LH, date(2026, 10, 4), "*/15 * * * *", 94, ("10-03T15:00", "10-03T16:00"),
     ["10-03T15:00", "10-03T15:15", "10-03T15:30", "10-03T15:45", "10-03T16:00"]),
    (LH, date(2026, 10, 4), "0 * * * *", 23, ("10-03T14:00", "10-03T16:30"),
     ["10-03T14:30", "10-03T16:00"]),
    (LH, date(2026, 10, 4), "30 * * * *", 24, ("10-03T14:00", "10-03T16:30"),
     ["10-03T14:00", "10-03T15:00", "10-03T15:30", "10-03T16:30"]),
]


@pytest.mark.parametrize("tz, day, expr, count, window, want", WILD,
                         ids=[f"{c[0]}-{c[1]}-{c[2]}" for c in WILD])
def test_wildcard_jobs_on_dst_days(tz, day, expr, count, window, want):
    fires = fires_on(expr, tz, day)
    assert len(fires) == count
    lo, hi = z(window[0]), z(window[1])
    assert [t for t in fires if lo <= t <= hi] == [z(s) for s in want]
    assert fires == sorted(set(fires))


def test_lord_howe_window_local_times():
    # the same instants, read on the wall clock: what a Lord Howe user sees
    fires = fires_on("*/15 * * * *", LH, date(2026, 4, 5))
    walls = [to_local(t, LH).strftime("%H:%M%z") for t in fires if z("04-04T14:00") <= t <= z("04-04T15:30")]
    assert walls == ["01:00+1100", "01:15+1100", "01:30+1100", "01:45+1100", "01:30+1030", "01:45+1030",
                     "02:00+1030"]


# -- against cronsim -------------------------------------------------------------

DAYS = [(NY, date(2026, 3, 8)), (NY, date(2026, 11, 1)), (BERLIN, date(2026, 3, 29)),
        (BERLIN, date(2026, 10, 25)), (LH, date(2026, 4, 5)), (LH, date(2026, 10, 4))]
EXPRS = ["30 2 * * *", "0 2 * * *", "15 1 * * *", "45 1 * * *", "0,30 1,2 * * *", "*/15 * * * *",
         "0 * * * *", "30 * * * *", "*/7 * * * *", "15 */2 * * *", "0 1-3 * * *", "@daily", "@hourly"]


# cronsim 2.8 steps minutes and hours assuming 60-minute hours, so around Lord
# Howe's 30-minute shifts it drops real matching instants of wildcard jobs:
# "30 * * * *" misses 01:30 LHST on 04-05 (15:00Z) and 02:30 LHDT on 10-04
# (15:30Z); "15 */2 * * *" misses 02:15 LHST on 04-05 (15:45Z). SPEC §3 says a
# wildcard job runs at every matching real instant, as cronie does, so these
# follow the hand tables above; strict xfail flags a cronsim that gets fixed.
CRONSIM_WRONG = {("30 * * * *", LH, date(2026, 4, 5)), ("30 * * * *", LH, date(2026, 10, 4)),
                 ("15 */2 * * *", LH, date(2026, 4, 5))}
ORACLE_CASES = [
    pytest.param(expr, tz, day, id=f"{expr}-{tz}-{day}",
                 marks=[pytest.mark.xfail(strict=True, reason="cronsim bug with 30-minute DST shift")]
                 if (expr, tz, day) in CRONSIM_WRONG else [])
    for expr in EXPRS for tz, day in DAYS
]


@pytest.mark.parametrize("expr, tz, day", ORACLE_CASES)
def test_matches_cronsim_across_transition(expr, tz, day):
    # Start at local midnight two days before: cronsim's next() is not strictly
    # after a start inside the repeated hour (from 01:00 EST on 2026-11-01 it
    # returns 01:30 EDT, earlier than the start), so start from unambiguous times.
    zone = ZoneInfo(tz)
    start = datetime(day.year, day.month, day.day, tzinfo=zone) - timedelta(days=2)
    sim = CronSim(NICKNAMES.get(expr, expr), start)
    n = 300
    want = [next(sim).astimezone(UTC) for _ in range(n)]
    assert fire_times(expr, tz, start, n) == want


@pytest.mark.parametrize("tz", [NY, BERLIN, LH])
@pytest.mark.parametrize("expr", ["*/15 * * * *", "30 * * * *", "30 2 * * *", "15 1 * * *"])
def test_walk_back_equals_walk_forward(tz, expr):
    tt = CronTimetable(expr, tz)
    forward = fire_times(expr, tz, Z(2026, 1, 1), 40000 if expr.startswith("*") else 400)
    forward = [t for t in forward if t.year == 2026]
    # latest_at_or_before and previous_before agree with next_after at every fire
    for a, b in zip(forward, forward[1:]):
        assert tt.latest_at_or_before(b - timedelta(seconds=1)) == a
        assert tt.previous_before(b) == a
        assert tt.latest_at_or_before(b) == b


# -- one run per calendar day, all year ------------------------------------------


@pytest.mark.parametrize("tz", [NY, BERLIN, LH, "America/Santiago", "Asia/Tehran", "UTC"])
@pytest.mark.parametrize("expr", ["0 2 * * *", "30 2 * * *", "15 1 * * *", "0 0 * * *"])
def test_daily_is_one_run_per_calendar_day_all_year(tz, expr):
    zone = ZoneInfo(tz)
    fires = fire_times(expr, tz, Z(2025, 12, 30), 370)
    per_day = Counter(t.astimezone(zone).date() for t in fires)
    days = [date(2026, 1, 1) + timedelta(days=i) for i in range(365)]
    assert [d for d in days if per_day[d] != 1] == []
    # and daily data intervals cover every ds once
    tt = CronTimetable(expr, tz)
    start = datetime(2026, 1, 1, tzinfo=zone)
    got = due_intervals(tt, None, start, None, datetime(2027, 1, 1, 12, tzinfo=zone), catchup=True)
    assert [to_local(s, tz).date() for s, _ in got][:365] == days


# -- intervals follow real time ----------------------------------------------------


@pytest.mark.parametrize("tz, day", DAYS, ids=[f"{tz}-{d}" for tz, d in DAYS])
def test_every_hour_is_evenly_spaced_across_transition(tz, day):
    zone = ZoneInfo(tz)
    anchor = datetime(day.year, day.month, day.day, tzinfo=zone) - timedelta(days=1)
    tt = timetable(EverySchedule(3600), tz, anchor)
    fires, t = [], anchor - timedelta(seconds=1)
    for _ in range(72):
        t = tt.next_after(t)
        fires.append(t)
    assert fires[0] == anchor
    assert {b - a for a, b in zip(fires, fires[1:])} == {timedelta(hours=1)}
    assert all(f.tzinfo is UTC for f in fires)


def test_every_hour_wall_clock_in_new_york_fall_back():
    anchor = datetime(2026, 11, 1, 0, 0, tzinfo=ZoneInfo(NY))
    tt = timetable(EverySchedule(3600), NY, anchor)
    fires, t = [], anchor - timedelta(seconds=1)
    for _ in range(4):
        t = tt.next_after(t)
        fires.append(to_local(t, NY).strftime("%H:%M%z"))
    assert fires == ["00:00-0400", "01:00-0400", "01:00-0500", "02:00-0500"]


def test_due_intervals_across_spring_forward():
    # Daily at 02:30 New York: the 2026-03-08 run fires at 03:00 EDT, and its
    # neighbours' intervals stretch/shrink around it; ds stays one per day.
    tt = CronTimetable("30 2 * * *", NY)
    got = due_intervals(tt, None, Z(2026, 3, 7), None, Z(2026, 3, 10, 12), catchup=True)
    assert got == [(z("03-07T07:30"), z("03-08T07:00")), (z("03-08T07:00"), z("03-09T06:30")),
                   (z("03-09T06:30"), z("03-10T06:30"))]
