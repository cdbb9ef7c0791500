"""`pipectl backfill`: planning, re-running only what failed, dry runs, Ctrl-C and resume, ordering."""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

import harness
from harness import counts, q
from conftest import call_cli, cli_env, make_project

NY = ZoneInfo("America/New_York")
MARCH = [(date(2026, 3, 1) + timedelta(days=i)).isoformat() for i in range(31)]

# Each task appends its ds to a counter file *before* it may fail, so the files
# say exactly how often each task's command ran for each date.
DAILY = """\
schedule: "0 2 * * *"
timezone: America/New_York
tasks:
  extract:
    run: echo {{ ds }} >> counts/extract
  transform:
    run: echo {{ ds }} >> counts/transform; test ! -e fail_{{ ds }}
  load:
    run: echo {{ ds }} >> counts/load
edges:
  - extract >> transform >> load
"""


def project(tmp_path: Path, spec: str = DAILY, name: str = "daily") -> Path:
    root = make_project(tmp_path / "proj", {name: spec})
    (root / "counts").mkdir()
    return root


cli, ok = harness.cli, harness.ok


def runs_by_ds(root, pipeline="daily") -> dict[str, sqlite3.Row]:
    return {r["ds"]: r for r in q(root, "SELECT * FROM runs WHERE pipeline = ? ORDER BY logical_date", (pipeline,))}


def tis(root, ds, pipeline="daily") -> dict[str, dict]:
    return harness.tis_by_task(root, pipeline, ds)


def snapshot(root: Path) -> dict[str, tuple[int, int, bytes]]:
    """Every file under the state dir with its size, mtime and bytes."""
    out = {}
    state = root / ".pipectl"
    if state.exists():
        for p in sorted(state.rglob("*")):
            if p.is_file():
                st = p.stat()
                out[str(p.relative_to(root))] = (st.st_size, st.st_mtime_ns, p.read_bytes())
    return out


# --------------------------------------------------------------------------- the month

def test_backfill_march_wait_makes_31_successful_backfill_runs(tmp_path):
    root = project(tmp_path)
    r = ok(root, "backfill", "daily", "--start", "2026-03-01", "--end", "2026-03-31", "--wait",
           "--max-active-runs", "8")
    assert "31 of 31 runs succeeded" in r.stdout
    runs = runs_by_ds(root)
    assert list(runs) == MARCH
    for ds, run in runs.items():
        assert run["run_type"] == "backfill"
        assert run["state"] == "success"
        assert run["priority"] == 0  # yields to scheduled runs
        assert run["max_active"] == 8 and run["batch"].startswith("backfill-")
        # the logical date is the 02:00 fire time in New York; on 8 March 02:00 does not exist and
        # cron fires right after the jump, at 03:00
        ld = datetime.fromisoformat(run["logical_date"])
        assert ld.astimezone(NY).date().isoformat() == ds
        assert ld.astimezone(NY).hour == (3 if ds == "2026-03-08" else 2)
        end = datetime.fromisoformat(run["data_interval_end"])
        assert end.astimezone(NY).date() == date.fromisoformat(ds) + timedelta(days=1)
    assert runs["2026-03-07"]["logical_date"] == "2026-03-07T07:00:00+00:00"
    assert runs["2026-03-09"]["logical_date"] == "2026-03-09T06:00:00+00:00"
    for task in ("extract", "transform", "load"):
        assert sorted(counts(root, task)) == MARCH  # each command exactly once per day
    # a backfill never moves the pipeline's schedule cursor
    assert [r["cursor"] for r in q(root, "SELECT cursor FROM pipelines WHERE name = 'daily'")] in ([], [None])
    events = q(root, "SELECT message FROM events WHERE kind = 'backfill'")
    assert len(events) == 1 and "2026-03-01..2026-03-31" in events[0]["message"]
    assert "31 created" in events[0]["message"]


def test_rerun_after_one_failed_day_reruns_only_its_failed_task_instances(tmp_path):
    root = project(tmp_path)
    (root / "fail_2026-03-05").touch()
    args = ("backfill", "daily", "--start", "2026-03-01", "--end", "2026-03-31", "--wait", "--max-active-runs", "8")
    r = cli(root, *args)
    assert r.returncode == 1, r.stderr
    assert "30 of 31 runs succeeded, 1 failed" in r.stdout
    assert "failed 2026-03-05" in r.stderr
    log = [line for line in r.stderr.splitlines() if "transform failed" in line][0]
    assert Path(log.split("log: ")[1]).exists()
    assert "load upstream_failed" in r.stderr
    assert tis(root, "2026-03-05")["load"]["state"] == "upstream_failed"

    # dry run first: exactly one date has work
    d = json.loads(ok(root, "--json", *args, "--dry-run").stdout)
    acts = {it["ds"]: it for it in d["plan"]}
    assert acts["2026-03-05"]["action"] == "rerun" and acts["2026-03-05"]["tasks"] == ["transform", "load"]
    assert {it["action"] for ds, it in acts.items() if ds != "2026-03-05"} == {"skip"}

    (root / "fail_2026-03-05").unlink()
    r = ok(root, *args)
    assert "1 of 1 runs succeeded" in r.stdout
    assert sorted(counts(root, "extract")) == MARCH
    assert sorted(counts(root, "load")) == MARCH
    transform = counts(root, "transform")
    assert sorted(transform) == sorted(MARCH + ["2026-03-05"])  # only the failed one ran again
    runs = runs_by_ds(root)
    assert len(runs) == 31 and {r["state"] for r in runs.values()} == {"success"}
    t = tis(root, "2026-03-05")
    assert (t["extract"]["try_number"], t["transform"]["try_number"], t["load"]["try_number"]) == (1, 2, 1)
    assert t["transform"]["budget_base"] == 1
    # both tries' logs survive
    logs = [r["log_path"] for r in q(root, "SELECT log_path FROM tries WHERE ti = ?", (t["transform"]["id"],))]
    assert len(logs) == 2 and all(Path(p).exists() for p in logs)
    rerun = q(root, "SELECT * FROM events WHERE kind = 'rerun'")
    assert len(rerun) == 1 and "transform, load" in rerun[0]["message"]

    # and a third time: nothing to do, nothing runs
    r = ok(root, *args)
    assert "0 of 0 runs" in r.stdout
    assert len(counts(root, "transform")) == 32


def test_dry_run_changes_nothing_on_disk(tmp_path):
    root = project(tmp_path)
    args = ("backfill", "daily", "--start", "2026-03-01", "--end", "2026-03-03")
    r = ok(root, *args, "--dry-run")
    assert "create (3 tasks)" in r.stdout and "would create 3 runs" in r.stdout
    assert not (root / ".pipectl").exists()  # not even the state dir

    ok(root, *args, "--end", "2026-03-02", "--wait")
    (root / "fail_2026-03-02").touch()
    before = snapshot(root)
    assert any(k.endswith("state.db") for k in before)
    for extra in ([], ["--reprocess", "all"], ["--reprocess", "missing"], ["--tasks", "load", "--backwards"]):
        r = ok(root, *args, "--dry-run", *extra)
        assert "nothing changed" in r.stdout
    d = json.loads(ok(root, "--json", *args, "--dry-run", "--reprocess", "all").stdout)
    assert [(it["ds"], it["action"]) for it in d["plan"]] == [
        ("2026-03-01", "rerun"), ("2026-03-02", "rerun"), ("2026-03-03", "create")]
    assert snapshot(root) == before
    assert len(runs_by_ds(root)) == 2


# --------------------------------------------------------------------------- Ctrl-C

SLOW = DAILY.replace("run: echo {{ ds }} >> counts/extract", "run: sleep 0.3; echo {{ ds }} >> counts/extract") \
            .replace("run: echo {{ ds }} >> counts/load", "run: sleep 0.3; echo {{ ds }} >> counts/load")


def test_ctrl_c_loses_nothing_and_the_same_command_resumes(tmp_path):
    root = project(tmp_path, SLOW)
    days = MARCH[:10]
    args = ["--project", str(root), "backfill", "daily", "--start", days[0], "--end", days[-1], "--wait",
            "--max-active-runs", "2"]
    proc = subprocess.Popen([sys.executable, "-m", "pipectl", *args], env=cli_env(), cwd=str(tmp_path),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 30
    while len(counts(root, "load")) < 3 and time.time() < deadline:
        time.sleep(0.05)
    assert len(counts(root, "load")) >= 3
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "Re-run the same command to resume" in err
    assert "pipectl backfill daily --start 2026-03-01 --end 2026-03-10 --max-active-runs 2 --wait" in err

    # nothing in flight, every try that ran is recorded with its exit status
    assert q(root, "SELECT count(*) FROM tries WHERE state IN ('starting', 'running')")[0][0] == 0
    assert q(root, "SELECT count(*) FROM task_instances WHERE state = 'running'")[0][0] == 0
    for task in ("extract", "transform", "load"):
        done = q(root, """SELECT runs.ds FROM tries JOIN task_instances ON task_instances.id = tries.ti
                          JOIN runs ON runs.id = task_instances.run WHERE task_instances.task = ?
                          AND tries.state = 'success' AND tries.exit_code = 0""", (task,))
        assert sorted(r["ds"] for r in done) == sorted(counts(root, task))
    runs = runs_by_ds(root)
    unfinished = [ds for ds, r in runs.items() if r["state"] != "success"]
    assert unfinished, "interrupted too late to test anything"
    assert len(counts(root, "load")) < 10

    r = call_cli(*args)
    assert r.returncode == 0, r.stderr
    runs = runs_by_ds(root)
    assert list(runs) == days and {r["state"] for r in runs.values()} == {"success"}
    for task in ("extract", "transform", "load"):
        assert sorted(counts(root, task)) == days  # resumed without running anything twice
    assert q(root, "SELECT max(try_number) FROM task_instances")[0][0] == 1


# --------------------------------------------------------------------------- without --wait, order, limits

def test_without_wait_runs_are_queued_for_ticks_and_never_duplicated(tmp_path):
    root = project(tmp_path)
    args = ("backfill", "daily", "--start", "2026-03-01", "--end", "2026-03-04", "--max-active-runs", "2")
    r = ok(root, *args)
    assert "4 runs created" in r.stdout and "pipectl tick" in r.stdout
    runs = runs_by_ds(root)
    assert {r["state"] for r in runs.values()} == {"queued"}
    assert counts(root, "extract") == []
    r = ok(root, *args)  # again: all four are in progress, none added
    assert "0 runs created" in r.stdout and "4 in progress" in r.stdout
    assert len(runs_by_ds(root)) == 4
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
    from pipectl.spec.config import load_config
    from pipectl.engine.step import Clock, Engine, StepReport
    from pipectl.state.store import Store
    store = Store(str(root / ".pipectl" / "state.db"))
    try:
        engine = Engine(load_config(root), store, Clock())
        engine.promote()
        states = [r.state for r in store.runs_for("daily")]
        assert sorted(states) == ["queued", "queued", "running", "running"]  # the backfill's own limit
        engine.drive(None, StepReport())
    finally:
        store.close()
    assert {r["state"] for r in runs_by_ds(root).values()} == {"success"}
    assert sorted(counts(root, "extract")) == MARCH[:4]


def test_backwards_runs_newest_first(tmp_path):
    root = project(tmp_path)
    ok(root, "backfill", "daily", "--start", "2026-03-01", "--end", "2026-03-04", "--backwards", "--wait",
       "--max-active-runs", "1")
    assert counts(root, "extract") == ["2026-03-04", "2026-03-03", "2026-03-02", "2026-03-01"]
    runs = runs_by_ds(root)
    starts = sorted(runs, key=lambda ds: runs[ds]["start"])
    assert starts == ["2026-03-04", "2026-03-03", "2026-03-02", "2026-03-01"]


def test_forwards_with_limit_one_runs_oldest_first(tmp_path):
    root = project(tmp_path)
    ok(root, "backfill", "daily", "--start", "2026-03-01", "--end", "2026-03-03", "--wait")
    assert counts(root, "extract") == ["2026-03-01", "2026-03-02", "2026-03-03"]
    assert counts(root, "load") == ["2026-03-01", "2026-03-02", "2026-03-03"]


# --------------------------------------------------------------------------- reprocess modes, task selection

def test_reprocess_missing_and_all(tmp_path):
    root = project(tmp_path)
    (root / "fail_2026-03-02").touch()
    r = cli(root, "backfill", "daily", "--start", "2026-03-01", "--end", "2026-03-02", "--wait")
    assert r.returncode == 1
    (root / "fail_2026-03-02").unlink()
    ok(root, "backfill", "daily", "--start", "2026-03-01", "--end", "2026-03-03", "--reprocess", "missing", "--wait")
    runs = runs_by_ds(root)
    assert runs["2026-03-02"]["state"] == "failed"  # missing: existing runs untouched
    assert runs["2026-03-03"]["state"] == "success"
    assert counts(root, "transform").count("2026-03-02") == 1

    # all: asks first; "no" changes nothing
    r = cli(root, "backfill", "daily", "--start", "2026-03-01", "--end", "2026-03-03", "--reprocess", "all",
            input="n\n")
    assert r.returncode == 1 and "re-run 9 task instances" in r.stderr
    assert counts(root, "extract").count("2026-03-01") == 1
    assert {r["state"] for r in runs_by_ds(root).values()} == {"success", "failed"}
    r = ok(root, "backfill", "daily", "--start", "2026-03-01", "--end", "2026-03-03", "--reprocess", "all",
           "--wait", input="y\n")
    assert "3 of 3 runs succeeded" in r.stdout
    assert sorted(counts(root, "extract")) == ["2026-03-01", "2026-03-01", "2026-03-02", "2026-03-02",
                                               "2026-03-03", "2026-03-03"]
    ok(root, "backfill", "daily", "--start", "2026-03-03", "--end", "2026-03-03", "--reprocess", "all", "--yes",
       "--wait")
    assert counts(root, "extract").count("2026-03-03") == 3
    assert tis(root, "2026-03-03")["extract"]["try_number"] == 3


def test_tasks_regex_selects_tasks_and_their_downstream(tmp_path):
    root = project(tmp_path)
    # new runs hold only the selected tasks; their unselected upstreams count as done
    ok(root, "backfill", "daily", "--start", "2026-03-01", "--end", "2026-03-02", "--tasks", "^trans", "--wait")
    assert counts(root, "extract") == []
    assert sorted(counts(root, "transform")) == ["2026-03-01", "2026-03-02"]
    assert sorted(counts(root, "load")) == ["2026-03-01", "2026-03-02"]
    assert set(tis(root, "2026-03-01")) == {"transform", "load"}
    assert q(root, "SELECT count(*) FROM events WHERE kind = 'backfill' AND message LIKE '%selected tasks only%'")[0][0] == 2
    # existing runs: only the selected task instances are re-run
    ok(root, "backfill", "daily", "--start", "2026-03-01", "--end", "2026-03-01", "--tasks", "load$",
       "--reprocess", "all", "--yes", "--wait")
    assert counts(root, "transform").count("2026-03-01") == 1
    assert counts(root, "load").count("2026-03-01") == 2


def test_pipeline_without_time_schedule_needs_schedule(tmp_path):
    root = project(tmp_path, DAILY.replace('schedule: "0 2 * * *"\n', ""), name="manual")
    r = cli(root, "backfill", "manual", "--start", "2026-03-01", "--end", "2026-03-02")
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [r.stderr.strip()]
    assert "--schedule" in r.stderr
    assert not (root / ".pipectl").exists()
    r = cli(root, "backfill", "manual", "--start", "2026-03-01", "--end", "2026-03-02", "--schedule", "61 * * * *")
    assert r.returncode == 2 and "minute" in r.stderr
    ok(root, "backfill", "manual", "--start", "2026-03-01", "--end", "2026-03-02", "--schedule", "@daily", "--wait")
    runs = runs_by_ds(root, "manual")
    assert list(runs) == ["2026-03-01", "2026-03-02"]
    assert runs["2026-03-01"]["logical_date"] == "2026-03-01T05:00:00+00:00"  # local midnight in New York


def test_hourly_schedule_and_datetime_bounds(tmp_path):
    root = project(tmp_path, DAILY.replace('"0 2 * * *"', '"0 */6 * * *"').replace("America/New_York", "UTC"),
                   name="hourly")
    d = json.loads(ok(root, "--json", "backfill", "hourly", "--start", "2026-03-01", "--end", "2026-03-02",
                      "--dry-run").stdout)
    assert len(d["plan"]) == 8 and d["plan"][0]["logical_date"] == "2026-03-01T00:00:00+00:00"
    d = json.loads(ok(root, "--json", "backfill", "hourly", "--start", "2026-03-01T06:00:00Z",
                      "--end", "2026-03-01T12:00:00Z", "--dry-run").stdout)
    assert [it["logical_date"] for it in d["plan"]] == ["2026-03-01T06:00:00+00:00", "2026-03-01T12:00:00+00:00"]


@pytest.mark.parametrize("args, needle", [
    (["--start", "2026-03-05", "--end", "2026-03-01"], "before --start"),
    (["--start", "2026-13-01", "--end", "2026-03-01"], "bad --start"),
    (["--start", "yesterday", "--end", "2026-03-01"], "bad --start"),
    (["--start", "2026-03-01", "--end", "2026-03-02", "--tasks", "nope"], "matches no task"),
    (["--start", "2026-03-01", "--end", "2026-03-02", "--tasks", "("], "bad --tasks regex"),
    (["--start", "2026-03-01", "--end", "2026-03-02", "--reprocess", "some"], "bad --reprocess"),
    (["--start", "2026-03-01"], "--end"),
])
def test_bad_input_exits_2_with_one_line_and_changes_nothing(tmp_path, args, needle):
    root = project(tmp_path)
    r = cli(root, "backfill", "daily", *args, "--wait")
    assert r.returncode == 2, r.stderr
    assert needle in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert not (root / ".pipectl").exists()


def test_unknown_pipeline_exits_2(tmp_path):
    root = project(tmp_path)
    r = cli(root, "backfill", "nope", "--start", "2026-03-01", "--end", "2026-03-02")
    assert r.returncode == 2 and "unknown pipeline 'nope'" in r.stderr
    assert not (root / ".pipectl").exists()


def test_scheduled_runs_are_left_alone_and_dispatched_first(tmp_path):
    """A scheduled run inside the range is not duplicated; backfill runs have priority 0 (scheduled: 1)."""
    root = project(tmp_path)
    ok(root, "--now", "2026-03-03T08:00:00Z", "tick")  # creates the scheduled run for 2026-03-02
    sched = runs_by_ds(root)
    assert [(ds, r["run_type"]) for ds, r in sched.items()] == [("2026-03-02", "scheduled")]
    cursor = q(root, "SELECT cursor FROM pipelines WHERE name = 'daily'")[0]["cursor"]
    d = json.loads(ok(root, "--json", "backfill", "daily", "--start", "2026-03-01", "--end", "2026-03-03",
                      "--dry-run").stdout)
    assert [it["action"] for it in d["plan"]][1] in ("in progress", "skip")
    ok(root, "backfill", "daily", "--start", "2026-03-01", "--end", "2026-03-03", "--wait")
    runs = runs_by_ds(root)
    assert [(ds, r["run_type"], r["priority"]) for ds, r in runs.items()] == [
        ("2026-03-01", "backfill", 0), ("2026-03-02", "scheduled", 1), ("2026-03-03", "backfill", 0)]
    assert {r["state"] for r in runs.values()} == {"success"}
    assert q(root, "SELECT cursor FROM pipelines WHERE name = 'daily'")[0]["cursor"] == cursor
    assert sorted(counts(root, "extract")) == MARCH[:3]
