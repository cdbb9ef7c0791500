"""DST lint: `validate` and `next` name the dates on which a schedule time is skipped or repeated.

2026 transitions used: America/New_York 03-08 02:00 -> 03:00 and 11-01 02:00 -> 01:00;
Europe/Berlin 03-29 02:00 -> 03:00 and 10-25 03:00 -> 02:00; Australia/Lord_Howe 04-05
02:00 -> 01:30 and 10-04 02:00 -> 02:30 (half-hour shifts); America/Santiago 09-06 00:00 -> 01:00.
"""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from conftest import call_cli, make_project

from pipectl.timing.clock import to_local
from pipectl.timing.dstlint import dst_notes
from pipectl.timing.timetable import fire_times

UTC = timezone.utc
Y2026 = datetime(2026, 1, 1, tzinfo=UTC)
NY, BERLIN, LH = "America/New_York", "Europe/Berlin", "Australia/Lord_Howe"


@pytest.mark.parametrize("expr, tz, notes", [
    ("30 2 * * *", NY, ["02:30 does not exist on 2026-03-08 in America/New_York: runs at 03:00"]),
    ("0,30 2 * * *", NY, ["02:00 and 02:30 do not exist on 2026-03-08 in America/New_York: run once, at 03:00"]),
    ("30 1 * * *", NY, ["01:30 occurs twice on 2026-11-01 in America/New_York: runs once, at the first (UTC-04:00)"]),
    ("*/15 * * * *", NY, [
        "02:00, 02:15, 02:30 and 02:45 do not exist on 2026-03-08 in America/New_York: they do not run "
        "(the minute or hour field starts with *)",
        "01:00, 01:15, 01:30 and 01:45 occur twice on 2026-11-01 in America/New_York: each runs twice "
        "(UTC-04:00 and UTC-05:00)"]),
    ("* 1 * * *", NY, ["01:00 to 01:59 (60 fire times) occur twice on 2026-11-01 in America/New_York: each runs "
                       "twice (UTC-04:00 and UTC-05:00)"]),
    ("0 * * * *", BERLIN, [
        "02:00 does not exist on 2026-03-29 in Europe/Berlin: it does not run (the minute or hour field starts with *)",
        "02:00 occurs twice on 2026-10-25 in Europe/Berlin: runs twice (UTC+02:00 and UTC+01:00)"]),
    ("30 2 * * *", BERLIN, ["02:30 does not exist on 2026-03-29 in Europe/Berlin: runs at 03:00",
                            "02:30 occurs twice on 2026-10-25 in Europe/Berlin: runs once, at the first (UTC+02:00)"]),
    ("45 1 * * *", LH, ["01:45 occurs twice on 2026-04-05 in Australia/Lord_Howe: runs once, at the first (UTC+11:00)"]),
    ("0 2 * * *", LH, ["02:00 does not exist on 2026-10-04 in Australia/Lord_Howe: runs at 02:30"]),
    ("0 0 * * *", "America/Santiago", ["00:00 does not exist on 2026-09-06 in America/Santiago: runs at 01:00"]),
    # the changes fall on Sundays: a weekday job never meets them
    ("30 2 * * 1-5", NY, []),
    ("0 3 * * *", NY, []),
    ("30 2 * * *", "UTC", []),
])
def test_notes_name_each_date_and_what_happens(expr, tz, notes):
    assert dst_notes(expr, tz, Y2026, Y2026 + timedelta(days=365)) == notes


def test_a_skipped_time_runs_where_the_evaluator_runs_it():
    fires = [to_local(t, NY) for t in fire_times("30 2 * * *", NY, datetime(2026, 3, 7, 12, tzinfo=UTC), 2)]
    assert [f.isoformat() for f in fires] == ["2026-03-08T03:00:00-04:00", "2026-03-09T02:30:00-04:00"]


def test_only_changes_inside_the_window():
    start = datetime(2026, 3, 20, tzinfo=UTC)
    assert dst_notes("30 2 * * *", NY, start, start + timedelta(days=365)) == [
        "02:30 does not exist on 2027-03-14 in America/New_York: runs at 03:00"]
    assert dst_notes("30 2 * * *", NY, start, start + timedelta(days=30)) == []


SPECS = {
    "nightly": """
        schedule: "30 2 * * *"
        timezone: America/New_York
        tasks:
          a:
            run: "true"
        """,
    "twice": """
        schedule: ["30 1 * * *", {cron: "0 12 * * *", timezone: Europe/Berlin}]
        timezone: America/New_York
        tasks:
          a:
            run: "true"
        """,
    "utc": """
        schedule: "30 2 * * *"
        tasks:
          a:
            run: "true"
        """,
    "interval": """
        schedule: {every: 30m}
        timezone: America/New_York
        tasks:
          a:
            run: "true"
        """,
}
NOW = "2026-01-15T00:00:00Z"
WARNINGS = [
    "nightly: 02:30 does not exist on 2026-03-08 in America/New_York: runs at 03:00",
    "twice (30 1 * * *): 01:30 occurs twice on 2026-11-01 in America/New_York: runs once, at the first (UTC-04:00)",
]


def test_validate_warns_and_strict_fails(tmp_path):
    proj = make_project(tmp_path, SPECS)
    r = call_cli("--project", proj, "--now", NOW, "validate")
    assert r.returncode == 0, r.stderr
    assert r.stderr.splitlines() == [f"pipectl: warning: {w}" for w in WARNINGS]
    assert len(r.stdout.splitlines()) == 4
    strict = call_cli("--project", proj, "--now", NOW, "validate", "--strict")
    assert strict.returncode == 1
    assert strict.stderr.splitlines() == [f"pipectl: error: {w}" for w in WARNINGS]
    js = call_cli("--project", proj, "--now", NOW, "validate", "--json")
    assert js.returncode == 0 and json.loads(js.stdout)["warnings"] == WARNINGS


def test_next_warns_and_strict_fails(tmp_path):
    proj = make_project(tmp_path, SPECS)
    r = call_cli("--project", proj, "--now", NOW, "next", "nightly", "--count", "1")
    assert r.returncode == 0, r.stderr
    assert r.stderr.splitlines() == [f"pipectl: warning: {WARNINGS[0]}"]
    assert r.stdout.splitlines()[0] == "nightly: at 02:30 every day (America/New_York); times in America/New_York"
    js = call_cli("--project", proj, "--now", NOW, "next", "nightly", "--count", "1", "--json", "--strict")
    assert js.returncode == 1
    assert json.loads(js.stdout)[0]["fire_time"] == "2026-01-15T07:30:00+00:00"
    assert js.stderr.splitlines() == [f"pipectl: error: {WARNINGS[0]}"]
    for quiet in ("utc", "interval"):
        q = call_cli("--project", proj, "--now", NOW, "next", quiet, "--strict")
        assert (q.returncode, q.stderr) == (0, ""), quiet
