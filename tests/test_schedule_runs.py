"""Schedules become runs through real ticks: catchup, end_date, intervals, DST, max_active_runs, `next`."""
from __future__ import annotations

from datetime import datetime

from harness import cli, jcli, make_project, ok, q, runs, wait_for

DAILY = """
schedule: "0 2 * * *"
start_date: 2026-04-01
timezone: UTC
catchup: {catchup}
tasks:
  a:
    run: "true"
"""


def _lds(root, name="d", now=None):
    return [(r["logical_date"], r["ds"], r["run_type"]) for r in runs(root, name, now=now)]


def test_catchup_creates_every_missed_interval_once(tmp_path):
    root = make_project(tmp_path, {"d": DAILY.format(catchup="true")})
    now = "2026-04-05T03:00:00Z"
    ok(root, "tick", now=now)
    assert _lds(root, now=now) == [
        (f"2026-04-0{d}T02:00:00+00:00", f"2026-04-0{d}", "scheduled") for d in (1, 2, 3, 4)
    ]
    got = runs(root, "d", now=now)
    assert [(r["data_interval_start"], r["data_interval_end"]) for r in got] == [
        (f"2026-04-0{d}T02:00:00+00:00", f"2026-04-0{d + 1}T02:00:00+00:00") for d in (1, 2, 3, 4)
    ]
    assert [r["run_id"] for r in got] == [f"scheduled__2026-04-0{d}T02:00:00+00:00" for d in (1, 2, 3, 4)]

    # same now again: nothing new
    r = ok(root, "tick", now=now)
    assert "created" not in r.stdout
    assert len(q(root, "SELECT * FROM runs")) == 4

    # one day later: exactly one more (ds 2026-04-05)
    ok(root, "tick", now="2026-04-06T02:00:00Z")
    assert [x[1] for x in _lds(root)] == ["2026-04-01", "2026-04-02", "2026-04-03", "2026-04-04", "2026-04-05"]
    # a second before the next fire: nothing
    ok(root, "tick", now="2026-04-07T01:59:59Z")
    assert len(q(root, "SELECT * FROM runs")) == 5


def test_no_catchup_runs_only_the_latest_interval(tmp_path):
    root = make_project(tmp_path, {"d": DAILY.format(catchup="false")})
    now = "2026-04-05T03:00:00Z"
    ok(root, "tick", now=now)
    assert _lds(root) == [("2026-04-04T02:00:00+00:00", "2026-04-04", "scheduled")]
    ok(root, "tick", now=now)
    assert len(q(root, "SELECT * FROM runs")) == 1
    # after three days of downtime, only the most recent missed interval runs
    ok(root, "tick", now="2026-04-08T02:30:00Z")
    assert [x[1] for x in _lds(root)] == ["2026-04-04", "2026-04-07"]


def test_every_is_anchored_at_start_date(tmp_path):
    root = make_project(tmp_path, {"h": """
        schedule: {every: 1h}
        start_date: "2026-04-01T00:20:00"
        catchup: true
        tasks:
          a: {run: "true"}
    """})
    ok(root, "tick", now="2026-04-01T03:30:00Z")
    assert [r["logical_date"] for r in runs(root, "h")] == [
        "2026-04-01T00:20:00+00:00", "2026-04-01T01:20:00+00:00", "2026-04-01T02:20:00+00:00"]
    ok(root, "tick", now="2026-04-01T04:20:00Z")
    assert runs(root, "h")[-1]["logical_date"] == "2026-04-01T03:20:00+00:00"
    assert len(runs(root, "h")) == 4


def test_end_date_is_respected(tmp_path):
    root = make_project(tmp_path, {"d": """
        schedule: "0 2 * * *"
        start_date: 2026-04-01
        end_date: 2026-04-02
        catchup: true
        tasks:
          a: {run: "true"}
    """})
    ok(root, "tick", now="2026-04-10T00:00:00Z")
    assert [r["ds"] for r in runs(root, "d")] == ["2026-04-01", "2026-04-02"]
    ok(root, "tick", now="2026-04-20T00:00:00Z")
    assert len(q(root, "SELECT * FROM runs")) == 2


def test_dst_spring_forward_one_run_per_day_through_ticks(tmp_path):
    root = make_project(tmp_path, {"ny": """
        schedule: "30 2 * * *"
        timezone: America/New_York
        start_date: 2026-03-06
        catchup: true
        max_active_runs: 5
        tasks:
          a: {run: "true"}
    """})
    for day in ("07", "08", "09", "10"):
        ok(root, "tick", now=f"2026-03-{day}T12:00:00Z")
    got = [(r["logical_date"], r["ds"]) for r in runs(root, "ny")]
    assert got == [
        ("2026-03-06T07:30:00+00:00", "2026-03-06"),  # 02:30 EST
        ("2026-03-07T07:30:00+00:00", "2026-03-07"),  # 02:30 EST
        ("2026-03-08T07:00:00+00:00", "2026-03-08"),  # 02:30 does not exist: 03:00 EDT, right after the jump
        ("2026-03-09T06:30:00+00:00", "2026-03-09"),  # 02:30 EDT
    ]
    # the 2026-03-08 run's interval ends at the next fire, 02:30 EDT on the 9th
    r8 = runs(root, "ny")[2]
    assert r8["data_interval_end"] == "2026-03-09T06:30:00+00:00"
    # the run for ds 2026-03-08 is created at 2026-03-09 02:30 EDT, not before
    root2 = make_project(tmp_path / "b", {"ny": (root / "pipelines" / "ny.yaml").read_text()})
    ok(root2, "tick", now="2026-03-09T06:29:59Z")
    assert [r["ds"] for r in runs(root2, "ny")][-1] == "2026-03-07"
    ok(root2, "tick", now="2026-03-09T06:30:00Z")
    assert [r["ds"] for r in runs(root2, "ny")][-1] == "2026-03-08"


SERIAL = """
schedule: "0 2 * * *"
start_date: 2026-04-01
catchup: true
max_active_runs: 1
tasks:
  a:
    run: "echo start {{ ds }} >> order.txt; sleep 0.05; echo end {{ ds }} >> order.txt"
"""
SERIAL_ORDER = [w for d in (1, 2, 3, 4) for w in ("start", f"2026-04-0{d}", "end", f"2026-04-0{d}")]


def test_max_active_runs_one_runs_in_order_under_tick_wait(tmp_path):
    root = make_project(tmp_path, {"d": SERIAL})
    ok(root, "tick", "--wait", now="2026-04-05T03:00:00Z")
    assert [x["state"] for x in runs(root, "d")] == ["success"] * 4
    assert (root / "order.txt").read_text().split() == SERIAL_ORDER
    rows = q(root, "SELECT start, end FROM runs ORDER BY logical_date")
    for prev, nxt in zip(rows, rows[1:]):
        assert nxt["start"] >= prev["end"]


def test_max_active_runs_one_queued_runs_follow_without_a_tick(tmp_path):
    """A finished run frees its slot at once: the next queued run starts from the
    wrapper's reaper, not a minute later on the next cron tick."""
    # Each try waits for a gate file, so what the tick leaves behind does not depend on
    # how fast a loaded machine runs the first task.
    gated = SERIAL.replace('run: "echo start', 'run: "while [ ! -e gate ]; do sleep 0.02; done; echo start')
    root = make_project(tmp_path, {"d": gated})
    ok(root, "tick", now="2026-04-05T03:00:00Z")
    assert sorted((x["ds"], x["state"]) for x in runs(root, "d")) == [
        ("2026-04-01", "running"), ("2026-04-02", "queued"), ("2026-04-03", "queued"), ("2026-04-04", "queued")]
    (root / "gate").touch()
    done = wait_for(lambda: [r["state"] for r in q(root, "SELECT state FROM runs")] == ["success"] * 4, timeout=8)
    assert done, [x["state"] for x in runs(root, "d")]
    assert (root / "order.txt").read_text().split() == SERIAL_ORDER


def test_next_json(tmp_path):
    root = make_project(tmp_path, {"d": DAILY.format(catchup="true"), "ny": """
        schedule: "30 2 * * *"
        timezone: America/New_York
        start_date: 2026-03-01
        tasks:
          a: {run: "true"}
    """})
    got = jcli(root, "next", "d", "--count", "2", now="2026-04-05T03:00:00Z")
    assert got == [
        {"fire_time": "2026-04-06T02:00:00+00:00", "logical_date": "2026-04-05T02:00:00+00:00", "ds": "2026-04-05"},
        {"fire_time": "2026-04-07T02:00:00+00:00", "logical_date": "2026-04-06T02:00:00+00:00", "ds": "2026-04-06"},
    ]
    got = jcli(root, "next", "ny", "--count", "3", now="2026-03-07T12:00:00Z")
    fire = [datetime.fromisoformat(g["fire_time"]) for g in got]
    ld = [datetime.fromisoformat(g["logical_date"]) for g in got]
    assert [f.isoformat() for f in fire] == [d.isoformat() for d in (
        datetime.fromisoformat("2026-03-08T07:00:00+00:00"), datetime.fromisoformat("2026-03-09T06:30:00+00:00"),
        datetime.fromisoformat("2026-03-10T06:30:00+00:00"))] or [f.utcoffset() is not None for f in fire]
    assert [x.timestamp() for x in fire] == [datetime.fromisoformat(s).timestamp() for s in (
        "2026-03-08T07:00:00+00:00", "2026-03-09T06:30:00+00:00", "2026-03-10T06:30:00+00:00")]
    assert [x.timestamp() for x in ld] == [datetime.fromisoformat(s).timestamp() for s in (
        "2026-03-07T07:30:00+00:00", "2026-03-08T07:00:00+00:00", "2026-03-09T06:30:00+00:00")]
    assert [g["ds"] for g in got] == ["2026-03-07", "2026-03-08", "2026-03-09"]
    # `next` agrees with what ticks then create
    for g in got[:2]:
        ok(root, "tick", now=g["fire_time"])
    assert [r["ds"] for r in runs(root, "ny")][-2:] == ["2026-03-07", "2026-03-08"]
    assert cli(root, "next", "nope").returncode == 2


def test_every_without_start_date_is_anchored_at_the_first_tick_minute(tmp_path):
    """The anchor is the minute of the first tick that saw the pipeline: whole-minute logical
    dates, and the cron tick at that minute an hour later always finds the interval closed."""
    root = make_project(tmp_path, {"h": """
        schedule: {every: 1h}
        tasks:
          a: {run: "true"}
    """})
    r = ok(root, "tick", now="2026-04-01T10:05:27Z")
    assert "created" not in r.stdout
    ok(root, "tick", now="2026-04-01T11:05:00Z")
    assert [x["logical_date"] for x in runs(root, "h")] == ["2026-04-01T10:05:00+00:00"]
    ok(root, "tick", now="2026-04-01T12:05:00Z")
    assert [x["logical_date"] for x in runs(root, "h")] == ["2026-04-01T10:05:00+00:00", "2026-04-01T11:05:00+00:00"]
    assert [x["data_interval_end"] for x in runs(root, "h")] == ["2026-04-01T11:05:00+00:00", "2026-04-01T12:05:00+00:00"]
