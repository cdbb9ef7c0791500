"""Reading commands over a real state file: status, runs, show, logs, explain; invalid
pipelines beside valid ones; bad arguments."""
from __future__ import annotations

import re

from harness import cli, jcli, make_project, ok, one_error_line, q, runs, tis, wait_for

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?\+00:00$")

ETL = """
schedule: "0 2 * * *"
start_date: 2026-04-01
catchup: false
tasks:
  extract:
    run: "echo extracting {{ ds }}"
  load:
    run: "echo loading; exit {{ params.code }}"
    needs: [extract]
params: {code: "0"}
"""


def test_runs_json_fields(tmp_path):
    root = make_project(tmp_path, {"etl": ETL})
    ok(root, "tick", "--wait", now="2026-04-05T03:00:00Z")
    (run,) = jcli(root, "runs", "etl")
    assert set(run) >= {"run_id", "pipeline", "logical_date", "ds", "run_type", "state", "start", "end", "tasks"}
    assert run["run_id"] == "scheduled__2026-04-04T02:00:00+00:00"
    assert (run["pipeline"], run["logical_date"], run["ds"], run["run_type"], run["state"]) == (
        "etl", "2026-04-04T02:00:00+00:00", "2026-04-04", "scheduled", "success")
    assert ISO.match(run["start"]) and ISO.match(run["end"]) and run["end"] >= run["start"]
    assert run["tasks"] == {
        "extract": {"state": "success", "tries": 1, "exit_code": 0, "reason": None},
        "load": {"state": "success", "tries": 1, "exit_code": 0, "reason": None},
    }
    # newest first, manual runs included
    r = cli(root, "trigger", "etl", "--date", "2026-04-10", "--param", "code=5", "--wait", now="2026-04-05T03:00:00Z")
    assert r.returncode == 1
    assert r.stdout.splitlines()[0] == "manual__2026-04-10T00:00:00+00:00"
    got = jcli(root, "runs", "etl")
    assert [(x["ds"], x["run_type"], x["state"]) for x in got] == [
        ("2026-04-10", "manual", "failed"), ("2026-04-04", "scheduled", "success")]
    assert got[0]["tasks"]["load"] == {"state": "failed", "tries": 1, "exit_code": 5, "reason": "exit_code"}
    assert got[0]["params"] == {"code": "5"}
    assert len(jcli(root, "runs", "etl", "--limit", "1")) == 1


def test_status_json_fields(tmp_path):
    root = make_project(tmp_path, {"etl": ETL, "manual": "tasks:\n  a: {run: 'true'}\n"})
    now = "2026-04-05T03:00:00Z"
    before = jcli(root, "status", now=now)
    assert [(s["name"], s["last_run"]) for s in before] == [("etl", None), ("manual", None)]
    ok(root, "tick", "--wait", now=now)
    got = {s["name"]: s for s in jcli(root, "status", now=now)}
    assert set(got) == {"etl", "manual"}
    etl = got["etl"]
    assert set(etl) >= {"name", "paused", "valid", "schedule", "next_run", "last_run"}
    assert (etl["paused"], etl["valid"]) == (False, True)
    assert "02:00" in etl["schedule"]
    assert etl["next_run"] == "2026-04-06T02:00:00+00:00"
    assert etl["last_run"]["run_id"] == "scheduled__2026-04-04T02:00:00+00:00"
    assert etl["last_run"]["state"] == "success"
    assert etl["last_run"]["tasks"]["load"]["state"] == "success"
    assert got["manual"]["next_run"] is None and got["manual"]["last_run"] is None
    one = jcli(root, "status", "etl", now=now)
    assert [s["name"] for s in one] == ["etl"]
    assert cli(root, "status", "nope").returncode == 2


def test_show_json_and_logs(tmp_path):
    root = make_project(tmp_path, {"etl": ETL.replace("exit {{ params.code }}", "exit $((3 - PIPECTL_TRY_NUMBER))")
                                   .replace("needs: [extract]", "needs: [extract]\n    retries: 2\n    retry_delay: 0")})
    ok(root, "tick", "--wait", now="2026-04-05T03:00:00Z")
    d = jcli(root, "show", "etl", "--date", "2026-04-04")
    assert (d["run_id"], d["ds"], d["state"]) == ("scheduled__2026-04-04T02:00:00+00:00", "2026-04-04", "success")
    tis = {t["task"]: t for t in d["task_instances"]}
    load = tis["load"]
    assert (load["state"], load["tries"], load["exit_code"]) == ("success", 3, 0)
    assert [(t["try"], t["state"], t["exit_code"], t["reason"]) for t in load["try_log"]] == [
        (1, "failed", 2, "exit_code"), (2, "failed", 1, "exit_code"), (3, "success", 0, None)]
    assert all(t["log"].endswith(f"load.{t['try']}.log") for t in load["try_log"])
    assert all(t["duration"] is not None and t["duration"] >= 0 for t in load["try_log"])
    assert any(e["kind"] == "task_retry" for e in d["events"])
    # the same run by its logical date
    assert jcli(root, "show", "etl", "--date", "2026-04-04T02:00:00+00:00")["run_id"] == d["run_id"]
    r = ok(root, "logs", "etl", "extract", "--date", "2026-04-04")
    assert r.stdout == "extracting 2026-04-04\n"
    assert ok(root, "logs", "etl", "load").stdout == "loading\n"
    assert ok(root, "logs", "etl", "load", "--try", "1").stdout == "loading\n"
    r = cli(root, "logs", "etl", "load", "--try", "9")
    assert r.returncode == 2 and "no try 9" in one_error_line(r)
    r = cli(root, "logs", "etl", "nope")
    assert r.returncode == 2 and "unknown task" in one_error_line(r)
    # text rendering works too
    r = ok(root, "show", "etl", "--date", "2026-04-04")
    assert "load" in r.stdout and "success" in r.stdout


def test_explain_names_the_upstream_a_task_waits_on(tmp_path):
    root = make_project(tmp_path, {"p": """
        tasks:
          first: {run: "while [ ! -e go ]; do sleep 0.05; done"}
          second: {run: "true", needs: [first]}
    """})
    ok(root, "trigger", "p", "--date", "2026-04-01")
    d = jcli(root, "explain", "p", "--date", "2026-04-01")
    why = {t["task"]: (t["state"], t["why"]) for t in d["tasks"]}
    assert why["first"][0] == "running" and "running try 1" in why["first"][1]
    assert why["second"][0] == "pending"
    assert "waiting on upstream" in why["second"][1] and "first (running)" in why["second"][1]
    r = ok(root, "explain", "p")
    assert "first (running)" in r.stdout
    (root / "go").touch()
    ok(root, "tick", "--wait")
    assert runs(root, "p")[0]["state"] == "success"


def test_invalid_pipeline_is_skipped_while_others_run(tmp_path):
    root = make_project(tmp_path, {"good": ETL, "bad": """
        schedule: "0 2 * * *"
        start_date: 2026-04-01
        tasks:
          a: {run: "touch bad-ran", retires: 3}
    """})
    now = "2026-04-05T03:00:00Z"
    r = ok(root, "tick", "--wait", now=now)
    assert "bad" in r.stderr and "invalid" in r.stderr
    assert [x["state"] for x in runs(root, "good")] == ["success"]
    assert not (root / "bad-ran").exists()
    st = {s["name"]: s for s in jcli(root, "status", now=now)}
    assert st["bad"]["valid"] is False and st["good"]["valid"] is True
    assert st["bad"]["last_run"] is None
    # nothing in the state file for it beyond its pipelines entry
    for table, col in (("runs", "pipeline"), ("events", "pipeline")):
        assert q(root, f"SELECT count(*) FROM {table} WHERE {col} LIKE '%bad%'")[0][0] == 0
    rows = q(root, "SELECT name, valid, spec, cursor FROM pipelines WHERE name LIKE '%bad%'")
    assert all((r["valid"], r["spec"], r["cursor"]) == (0, None, None) for r in rows)
    r = cli(root, "runs", "bad")
    assert r.returncode == 1 and "invalid" in one_error_line(r)


def test_bad_arguments_exit_2_with_one_line(tmp_path):
    root = make_project(tmp_path, {"etl": ETL})
    for args in (("trigger", "etl", "--date", "2026-13-45"), ("trigger", "etl", "--date", "yesterday"),
                 ("show", "etl", "--date", "nope"), ("trigger", "nope"), ("trigger", "etl", "--param", "novalue"),
                 ("runs", "nope"), ("logs", "etl", "extract", "--date", "04/01/2026")):
        r = cli(root, *args)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert one_error_line(r).startswith("pipectl: error: "), args
    r = cli(root, "--now", "not-a-time", "tick")
    assert r.returncode == 2
    assert q(root, "SELECT count(*) FROM runs")[0][0] == 0 if (root / ".pipectl" / "state.db").exists() else True
    r = cli(root, "show", "etl", "--date", "2026-04-01")
    assert r.returncode == 2


def test_explain_says_what_a_sensor_waits_for_and_when_it_checks_next(tmp_path):
    root = make_project(tmp_path, {"s": """
        tasks:
          wait_export:
            sensor: {file: "incoming/{{ ds }}.csv"}
            poke_interval: 1m
            timeout: 2h
          load: {run: "true", needs: [wait_export]}
    """})
    ok(root, "trigger", "s", "--date", "2026-04-01", now="2026-04-02T08:00:00Z")
    d = jcli(root, "explain", "s", "--date", "2026-04-01", now="2026-04-02T08:00:30Z")
    why = {t["task"]: t["why"] for t in d["tasks"]}
    assert "incoming/2026-04-01.csv" in why["wait_export"]
    assert "next check at 2026-04-02T08:01:00" in why["wait_export"]
    assert "times out at 2026-04-02T10:00:00" in why["wait_export"]
    assert why["load"].startswith("waiting on upstream (all_success): wait_export (pending)")


def test_explain_says_when_a_retry_comes_and_when_the_pipeline_is_paused(tmp_path):
    root = make_project(tmp_path, {"r": """
        schedule: "0 2 * * *"
        tasks:
          flaky: {run: "exit 4", retries: 2, retry_delay: 1h}
    """})
    ok(root, "trigger", "r", "--date", "2026-04-01")
    assert wait_for(lambda: tis(root, "r")[("2026-04-01", "flaky")]["state"] == "up_for_retry", 5)
    ok(root, "pause", "r")
    d = jcli(root, "explain", "r", "--date", "2026-04-01")
    (flaky,) = d["tasks"]
    assert flaky["state"] == "up_for_retry"
    assert flaky["why"].startswith("retry 1 of 2 (try 2) at ") and ", in " in flaky["why"]
    assert flaky["why"].endswith("; after exit 4") and flaky["ready"] is False
    assert d["notes"] == ["r is paused: no new scheduled runs (`pipectl unpause r`); runs already created keep going"]
