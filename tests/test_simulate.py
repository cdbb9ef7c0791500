"""`pipectl simulate`: the real scheduler over a scratch copy of the state, on a virtual clock,
with tasks stubbed. What it reports is what the engine did in the copy; the real project is
never changed and no task runs."""
from __future__ import annotations

import os

import pytest

from harness import Project

NY_0230 = """\
schedule: "30 2 * * *"
timezone: America/New_York
start_date: 2026-03-06
tasks:
  work: {run: "touch ran_{{ ds }}"}
"""

NY_0130 = """\
schedule: "30 1 * * *"
timezone: America/New_York
start_date: 2026-10-30
tasks:
  work: {run: "true"}
"""


def happenings(data: dict, kind: str, pipeline: str | None = None) -> list[dict]:
    return [h for h in data["happenings"] if h["kind"] == kind and (pipeline is None or h["pipeline"] == pipeline)]


def test_the_night_clocks_go_forward_a_fixed_time_in_the_skipped_hour_runs_right_after_the_jump(tmp_path):
    project = Project(tmp_path, {"ny": NY_0230})
    data = project.jcli("simulate", "--from", "2026-03-08T05:00:00Z", "--to", "2026-03-09T12:00:00Z")
    # the first tick creates the latest closed interval (catchup: false); then fire times 03-07 02:30
    # EST, 03-08 03:00 EDT (02:30 does not exist), 03-09 02:30 EDT: a run is created when its
    # interval closes, at the next fire time
    assert [(h["at"], h["logical_date"]) for h in happenings(data, "run_created")] == [
        ("2026-03-08T05:00:00+00:00", "2026-03-06T07:30:00+00:00"),
        ("2026-03-08T07:00:00+00:00", "2026-03-07T07:30:00+00:00"),
        ("2026-03-09T06:30:00+00:00", "2026-03-08T07:00:00+00:00")]
    assert data["dst"] == [
        "America/New_York: 2026-03-08 02:00 EST -> 03:00 EDT (clocks go forward 1h)",
        "ny: 02:30 does not exist on 2026-03-08 in America/New_York: runs at 03:00"]
    assert data["runs"] == {"ny": {"states": {"success": 3}, "first": "2026-03-06T07:30:00+00:00",
                                   "last": "2026-03-08T07:00:00+00:00"}}
    assert not list(tmp_path.glob("**/ran_*"))  # the stub ran, not the task


def test_the_night_clocks_go_back_a_fixed_time_in_the_repeated_hour_runs_once(tmp_path):
    project = Project(tmp_path, {"ny": NY_0130})
    data = project.jcli("simulate", "--from", "2026-10-31T12:00:00Z", "--to", "2026-11-02T12:00:00Z")
    assert [h["at"] for h in happenings(data, "run_created")] == [
        "2026-10-31T12:00:00+00:00",  # the first tick: the latest closed interval
        "2026-11-01T05:30:00+00:00",  # 01:30 EDT, the first of the two 01:30s
        "2026-11-02T06:30:00+00:00"]  # 01:30 EST
    assert "ny: 01:30 occurs twice on 2026-11-01 in America/New_York: runs once, at the first (UTC-04:00)" in data["dst"]


RETRYING = """\
schedule: "0 3 * * *"
start_date: 2026-04-01
tasks:
  flaky: {run: "exit 0", retries: 2, retry_delay: 5m}
  after: {run: "true", needs: [flaky]}
"""


def test_a_failing_stub_retries_at_its_real_delays_then_fails_the_run(tmp_path):
    project = Project(tmp_path, {"r": RETRYING})
    data = project.jcli("simulate", "--from", "2026-04-02T02:59:00Z", "--to", "2026-04-02T04:00:00Z",
                        "--stub", "flaky=exit:1,duration:1m")
    starts = [(h["at"], h["task"], h["message"]) for h in happenings(data, "try_started")]
    assert starts == [("2026-04-02T03:00:00+00:00", "flaky", "try 1"),
                      ("2026-04-02T03:06:00+00:00", "flaky", "try 2"),
                      ("2026-04-02T03:12:00+00:00", "flaky", "try 3")]
    assert [h["at"] for h in happenings(data, "task_retry")] == ["2026-04-02T03:01:00+00:00",
                                                                "2026-04-02T03:07:00+00:00"]
    assert [(h["at"], h["task"]) for h in happenings(data, "task_failed")] == [("2026-04-02T03:13:00+00:00", "flaky")]
    assert [h["task"] for h in happenings(data, "task_upstream_failed")] == ["after"]
    assert data["runs"]["r"]["states"] == {"failed": 1}


def test_a_duration_stub_delays_the_downstream_start_by_exactly_that(tmp_path):
    project = Project(tmp_path, {"r": RETRYING})
    data = project.jcli("simulate", "--from", "2026-04-02T02:59:00Z", "--to", "2026-04-02T04:00:00Z",
                        "--stub", "r.flaky=duration:20m")
    assert [(h["at"], h["task"]) for h in happenings(data, "try_started")] == [
        ("2026-04-02T03:00:00+00:00", "flaky"), ("2026-04-02T03:20:00+00:00", "after")]
    assert [h["at"] for h in happenings(data, "run_success")] == ["2026-04-02T03:20:00+00:00"]


def test_a_stub_longer_than_the_timeout_times_out(tmp_path):
    spec = RETRYING.replace('retries: 2, retry_delay: 5m', 'timeout: 10m')
    project = Project(tmp_path, {"r": spec})
    data = project.jcli("simulate", "--from", "2026-04-02T02:59:00Z", "--to", "2026-04-02T04:00:00Z",
                        "--stub", "flaky=duration:1h")
    [failed] = happenings(data, "task_failed")
    assert failed["at"].startswith("2026-04-02T03:10:00") and failed["message"] == "timeout (exit 124)"


SENSING = """\
schedule: "0 3 * * *"
start_date: 2026-04-01
tasks:
  wait: {sensor: {file: "incoming/{{ ds }}.csv"}, poke_interval: 10m, timeout: 30m}
  load: {run: "true", needs: [wait]}
"""


def test_a_sensor_that_never_sees_its_file_times_out_at_its_timeout(tmp_path):
    project = Project(tmp_path, {"s": SENSING})
    data = project.jcli("simulate", "--from", "2026-04-02T02:59:00Z", "--to", "2026-04-02T04:00:00Z",
                        "--stub", "wait=sensor:never")
    [failed] = happenings(data, "task_failed")
    assert failed["task"] == "wait" and failed["at"] == "2026-04-02T03:30:00+00:00"
    ok = project.jcli("simulate", "--from", "2026-04-02T02:59:00Z", "--to", "2026-04-02T04:00:00Z")
    assert ok["runs"]["s"]["states"] == {"success": 1}  # by default a sensor is satisfied at once


def test_the_real_project_is_never_touched(tmp_path, monkeypatch):
    import tempfile
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))  # where the rehearsal's copy goes
    project = Project(tmp_path, {"ny": NY_0230})
    project.ok("tick", "--wait", now="2026-03-07T12:00:00Z")
    db = project.path(".pipectl", "state.db")
    before = (db.read_bytes(), db.stat().st_mtime_ns, sorted(p.name for p in project.path(".pipectl").rglob("*")))
    ran = sorted(p.name for p in tmp_path.rglob("ran_*"))
    out = project.ok("simulate", "--from", "2026-03-08T05:00:00Z", "--to", "2026-03-12T05:00:00Z").stdout
    assert "runs created (logical dates, each pipeline's local time):" in out
    assert "  ny: 4 success; 03-07 02:30 EST .. 03-10 02:30 EDT" in out
    assert (db.read_bytes(), db.stat().st_mtime_ns, sorted(p.name for p in project.path(".pipectl").rglob("*"))) == before
    assert sorted(p.name for p in tmp_path.rglob("ran_*")) == ran
    assert os.listdir(scratch) == []  # the scratch copy is gone


QUICKSTART_LIKE = """\
schedule: "0 2 * * *"
timezone: America/Los_Angeles
start_date: 2026-04-01
catchup: {window: 3d}
tasks:
  extract: {run: "true"}
  load: {run: "true", needs: [extract]}
"""


def test_what_unpausing_after_ten_days_does_with_a_catch_up_window(tmp_path):
    project = Project(tmp_path, {"daily": QUICKSTART_LIKE})
    project.ok("tick", "--wait", now="2026-04-05T12:00:00Z")
    project.ok("pause", "daily", now="2026-04-05T12:00:00Z")
    paused = project.jcli("simulate", "--from", "2026-04-15T12:00:00Z", "--to", "2026-04-15T13:00:00Z")
    assert paused["runs"] == {}
    data = project.jcli("simulate", "daily", "--unpause", "--from", "2026-04-15T12:00:00Z",
                        "--to", "2026-04-15T13:00:00Z", "--stub", "extract=duration:10m")
    assert [h["logical_date"] for h in happenings(data, "run_created")] == [
        "2026-04-12T09:00:00+00:00", "2026-04-13T09:00:00+00:00", "2026-04-14T09:00:00+00:00"]
    [skip] = happenings(data, "catchup_skipped")
    assert skip["message"].startswith("catch-up skipped 7 missed runs, 2026-04-05 02:00 to 2026-04-11 02:00 "
                                      "(catchup window 3d)")
    # max_active_runs 1: one run after another, each 10 minutes of extract
    assert [h["at"] for h in happenings(data, "run_success")] == [
        "2026-04-15T12:10:00+00:00", "2026-04-15T12:20:00+00:00", "2026-04-15T12:30:00+00:00"]
    text = project.ok("simulate", "daily", "--unpause", "--from", "2026-04-15T12:00:00Z",
                      "--to", "2026-04-15T13:00:00Z").stdout
    assert "catch-up skips: 1" in text and "catchup_skipped daily: catch-up skipped 7 missed runs" in text
    assert project.runs("daily")[-1].ds == "2026-04-04"  # the real state still ends where the pause left it
    assert project.q("SELECT paused FROM pipelines WHERE name = 'daily'")[0][0] == 1


BAD = [
    (["--from", "2026-04-02T00:00:00Z", "--to", "2026-04-01T00:00:00Z"],
     "--to 2026-04-01T00:00:00+00:00 is not after --from 2026-04-02T00:00:00+00:00"),
    (["nope", "--from", "2026-04-01T00:00:00Z", "--to", "2026-04-02T00:00:00Z"], "no pipeline named 'nope'"),
    (["--from", "2026-04-01T00:00:00Z", "--to", "2026-04-02T00:00:00Z", "--stub", "flaky"], "--stub 'flaky': expected"),
    (["--from", "2026-04-01T00:00:00Z", "--to", "2026-04-02T00:00:00Z", "--stub", "flaky=exit:300"],
     "--stub 'flaky=exit:300': cannot read 'exit:300'"),
    (["--from", "2026-04-01T00:00:00Z", "--to", "2026-04-02T00:00:00Z", "--stub", "ghost=exit:1"],
     "--stub ghost: no task 'ghost'"),
    (["--from", "2026-04-01T00:00:00Z", "--to", "2028-04-02T00:00:00Z"], "a rehearsal spans at most 366 days"),
    (["--from", "yesterday", "--to", "2026-04-02T00:00:00Z"], "bad --from value 'yesterday'"),
]


@pytest.mark.parametrize("args, message", BAD, ids=[m for _, m in BAD])
def test_bad_arguments_get_one_line_and_exit_2(tmp_path, args, message):
    project = Project(tmp_path, {"r": RETRYING})
    r = project.cli("simulate", *args)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], r.stderr
    assert not project.path(".pipectl", "state.db").exists()
