"""Reading and operator commands on real situations: runs in progress, a pipeline that
never ran, history behind a broken spec, try-by-try `show`, sub-daily runs named by
--at/--run-id, logs headers."""
from __future__ import annotations

import re

from harness import cli, jcli, make_project, ok, one_error_line, q, wait_for

NOW = "2026-04-05T03:00:00Z"

CHAIN = """
schedule: "0 2 * * *"
start_date: 2026-04-01
catchup: false
max_active_runs: 1
tasks:
  extract: {run: "echo extracting {{ ds }}"}
  load: {run: "echo loading; exit 3", needs: [extract]}
  report: {run: "true", needs: [load]}
"""


def _no_trace(r):
    assert "Traceback" not in r.stderr and "internal error" not in r.stderr, r.stderr


def test_status_and_runs_work_for_a_project_that_never_ran(tmp_path):
    root = make_project(tmp_path, {"etl": CHAIN})
    for args in (("status",), ("status", "etl"), ("runs", "etl")):
        r = cli(root, *args, now=NOW)
        _no_trace(r)
        assert r.returncode == 0, (args, r.stderr)
    assert "etl" in cli(root, "status", now=NOW).stdout
    assert "no runs yet" in cli(root, "runs", "etl", now=NOW).stdout


def test_status_and_runs_work_while_runs_are_queued_and_running(tmp_path):
    root = make_project(tmp_path, {"slow": """
        max_active_runs: 1
        tasks:
          nap: {run: "sleep 120"}
    """})
    ok(root, "trigger", "slow", "--date", "2026-04-01")
    ok(root, "trigger", "slow", "--date", "2026-04-02")
    states = {r["ds"]: r["state"] for r in jcli(root, "runs", "slow")}
    assert states == {"2026-04-01": "running", "2026-04-02": "queued"}
    for args in (("status",), ("status", "slow"), ("runs", "slow")):
        r = cli(root, *args)
        _no_trace(r)
        assert r.returncode == 0, (args, r.stderr)
    out = cli(root, "runs", "slow").stdout
    assert "running" in out and "queued" in out
    assert "2026-04-02 00:00" in out  # the logical date with its time of day, not cut
    from pipectl.exec.executor import kill_session
    for r in q(root, "SELECT pid FROM tries WHERE pid IS NOT NULL"):
        kill_session(r["pid"])


def test_status_says_how_long_ago_in_words(tmp_path):
    root = make_project(tmp_path, {"etl": CHAIN})
    ok(root, "tick", now="2026-04-05T03:00:00Z")
    r = ok(root, "status", now="2026-12-02T03:00:00Z")
    assert "ago" in r.stdout and not re.search(r"\d{5,}s ago", r.stdout + r.stderr)
    assert "241d ago" in r.stdout


def _broken(root):
    (root / "pipelines" / "etl.yaml").write_text(CHAIN + "  oops: [\n")


def test_history_survives_a_bad_edit(tmp_path):
    root = make_project(tmp_path, {"etl": CHAIN})
    assert cli(root, "tick", "--wait", now=NOW).returncode == 1  # the run fails: load exits 3
    _broken(root)
    run_id = "scheduled__2026-04-04T02:00:00+00:00"
    # every reading command still reads the runs, through their own snapshots
    (r,) = jcli(root, "runs", "etl")
    assert (r["run_id"], r["state"]) == (run_id, "failed")
    d = jcli(root, "show", "etl", "--date", "2026-04-04")
    assert [t["task"] for t in d["task_instances"]] == ["extract", "load", "report"]
    assert ok(root, "logs", "etl", "extract").stdout == "extracting 2026-04-04\n"
    g = jcli(root, "grid", "etl")
    assert g["runs"][0]["tasks"] == {"extract": "success", "load": "failed", "report": "upstream_failed"}
    assert jcli(root, "graph", "etl", "--date", "2026-04-04")["tasks"]["load"]["state"] == "failed"
    r = ok(root, "explain", "etl")
    assert "load" in r.stdout
    # status names the pipeline invalid, with the first error (file:line)
    st = ok(root, "status", now=NOW)
    assert "invalid" in st.stdout and "pipelines/etl.yaml:" in st.stdout
    (s,) = jcli(root, "status", now=NOW)
    assert s["valid"] is False and s["last_run"]["run_id"] == run_id and s["errors"]
    # operator commands on existing runs work too
    r = ok(root, "retry", "etl", "--date", "2026-04-04")
    assert "load" in r.stdout
    # the retry starts at once (from the run's snapshot) and fails again: exit 3
    load = lambda: q(root, "SELECT state, try_number FROM task_instances WHERE task = 'load'")[0]  # noqa: E731
    assert wait_for(lambda: load()["state"] == "failed", timeout=10)
    assert load()["try_number"] == 2
    ok(root, "mark", "etl", "success", "--date", "2026-04-04", "--task", "load")
    assert q(root, "SELECT state FROM task_instances WHERE task = 'load'")[0]["state"] == "success"
    # creating new runs still needs a valid spec
    r = cli(root, "trigger", "etl", "--date", "2026-04-10")
    assert r.returncode == 1 and "invalid" in one_error_line(r)
    assert q(root, "SELECT count(*) FROM runs")[0][0] == 1


def test_show_has_one_row_per_try_with_its_own_state_in_dag_order(tmp_path):
    root = make_project(tmp_path, {"p": """
        tasks:
          zfinal: {run: "true", needs: [flaky]}
          flaky: {run: "exit $((2 - PIPECTL_TRY_NUMBER))", retries: 1, retry_delay: 0, needs: [first]}
          first: {run: "echo one"}
    """})
    ok(root, "trigger", "p", "--date", "2026-04-01", "--wait")
    d = jcli(root, "show", "p")
    assert [t["task"] for t in d["task_instances"]] == ["first", "flaky", "zfinal"]
    out = ok(root, "show", "p").stdout
    lines = out.splitlines()
    flaky = next(i for i, ln in enumerate(lines) if ln.startswith("flaky"))
    assert re.match(r"flaky\s+success\s+2\s", lines[flaky])
    assert re.match(r"\s+try 1\s+failed\s+\d\d:\d\d:\d\d\s+\S+\s+1\s+exit_code", lines[flaky + 1]), lines[flaky + 1]
    assert lines[flaky + 2].split() == ["log", ".pipectl/logs/p/manual__2026-04-01T000000_0000/flaky.1.log"] or \
        lines[flaky + 2].strip().endswith("flaky.1.log")
    assert re.match(r"\s+try 2\s+success\s+\d\d:\d\d:\d\d\s+\S+\s+0\s*$", lines[flaky + 3]), lines[flaky + 3]
    order = [ln.split()[0] for ln in lines if ln and not ln.startswith(" ") and ln.split()[0] in ("first", "flaky", "zfinal")]
    assert order == ["first", "flaky", "zfinal"]


def test_show_event_lines_align(tmp_path):
    root = make_project(tmp_path, {"p": """
        tasks:
          a_long_task_name: {run: "true"}
          b: {run: "true", needs: [a_long_task_name]}
    """})
    ok(root, "trigger", "p", "--date", "2026-04-01", "--wait")
    out = ok(root, "show", "p").stdout
    ev = out.split("events:\n", 1)[1].splitlines()
    starts = {len(m.group(1)) for ln in ev if (m := re.match(r"(\s+\S+\s+\S+\s+)\S", ln))}
    assert len(starts) == 1, ev  # every event's task column starts at the same place


def test_show_event_messages_give_times_in_the_pipelines_zone_not_iso(tmp_path):
    root = make_project(tmp_path, {"p": """
        timezone: America/New_York
        tasks:
          flaky: {run: "exit 4", retries: 1, retry_delay: 1h}
    """})
    ok(root, "trigger", "p", "--date", "2026-04-09", now="2026-04-10T12:00:00Z")

    def retry_message():
        events = jcli(root, "show", "p", now="2026-04-10T12:01:00Z")["events"]
        return next((e["message"] for e in events if e["kind"] == "task_retry"), None)

    assert wait_for(lambda: retry_message() is not None)
    retry = retry_message()
    assert re.search(r"retry at 2026-04-10T13:00:00(\.\d+)?\+00:00$", retry), retry  # JSON keeps the stored ISO
    out = ok(root, "show", "p", now="2026-04-10T12:01:00Z").stdout
    line = next(ln for ln in out.split("events:\n", 1)[1].splitlines() if "task_retry" in ln)
    assert line.rstrip().endswith("exit_code (exit 4); retry at 09:00:00"), line  # 13:00 UTC is 09:00 in New York
    created = next(ln for ln in out.split("events:\n", 1)[1].splitlines() if "run_created" in ln)
    assert created.rstrip().endswith("manual run for 2026-04-09T04:00:00+00:00"), created  # a logical date names its run


def test_sla_miss_is_printed_in_words(tmp_path):
    root = make_project(tmp_path, {"p": """
        sla: 1h
        tasks:
          wait:
            sensor: {file: "never.txt"}
            poke_interval: 1m
            timeout: 10h
            sla: 2h
    """})
    ok(root, "trigger", "p", "--date", "2026-04-09", now="2026-04-10T08:00:00Z")
    ok(root, "tick", now="2026-04-10T10:30:00Z")
    assert [m["task"] for m in jcli(root, "show", "p")["sla_misses"]] == [None, "wait"]
    out = ok(root, "show", "p", now="2026-04-10T10:31:00Z").stdout
    assert "SLA miss: the run was due by 04-10 09:00 UTC" in out
    assert "SLA miss: task wait was due by 04-10 10:00 UTC" in out
    assert "{" not in out and "'deadline'" not in out


SUBDAILY = """
schedule: "0 */6 * * *"
start_date: 2026-04-01
catchup: true
tasks:
  a: {run: "echo at {{ logical_date }}"}
"""


def test_sub_daily_runs_are_addressable_and_never_picked_silently(tmp_path):
    root = make_project(tmp_path, {"q": SUBDAILY})
    ok(root, "tick", "--wait", now="2026-04-02T01:00:00Z")
    assert [r["logical_date"] for r in jcli(root, "runs", "q")][-1] == "2026-04-01T00:00:00+00:00"
    for args in (("show", "q"), ("logs", "q", "a"), ("explain", "q")):
        r = cli(root, *args, "--date", "2026-04-01")
        assert r.returncode == 2, (args, r.stderr)
        line = one_error_line(r)
        assert "2026-04-01 matches 4 runs of q" in line
        assert all(f"2026-04-01 {h}:00" in line for h in ("00", "06", "12", "18")), line
    d = jcli(root, "show", "q", "--date", "2026-04-01", "--at", "12:00")
    assert d["logical_date"] == "2026-04-01T12:00:00+00:00"
    d = jcli(root, "show", "q", "--at", "2026-04-01T18:00")
    assert d["logical_date"] == "2026-04-01T18:00:00+00:00"
    d = jcli(root, "show", "q", "--run-id", "scheduled__2026-04-01T06:00:00+00:00")
    assert d["logical_date"] == "2026-04-01T06:00:00+00:00"
    r = ok(root, "logs", "q", "a", "--at", "2026-04-01T06:00")
    assert r.stdout == "at 2026-04-01T06:00:00+00:00\n"
    assert "try 1" in r.stderr and "exit 0" in r.stderr
    r = cli(root, "show", "q", "--run-id", "nope")
    assert r.returncode == 2 and "no run 'nope'" in one_error_line(r)
    r = cli(root, "show", "q", "--at", "09:00")
    assert r.returncode == 2 and "--date" in one_error_line(r)
    assert jcli(root, "graph", "q", "--at", "2026-04-01T06:00")["tasks"]["a"]["state"] == "success"
    ok(root, "mark", "q", "failed", "--at", "2026-04-01T06:00", "--task", "a")
    ok(root, "retry", "q", "--run-id", "scheduled__2026-04-01T06:00:00+00:00")  # starts it at once

    def tasks_a():
        return {r["logical_date"][11:16]: r["tasks"]["a"] for r in jcli(root, "runs", "q") if r["ds"] == "2026-04-01"}

    assert wait_for(lambda: tasks_a()["06:00"]["state"] == "success", timeout=10)
    assert {k: (v["state"], v["tries"]) for k, v in tasks_a().items()} == {
        "00:00": ("success", 1), "06:00": ("success", 2), "12:00": ("success", 1), "18:00": ("success", 1)}
    # grid honours times in --start/--end
    g = jcli(root, "grid", "q", "--start", "2026-04-01T06:00", "--end", "2026-04-01T12:00")
    assert [r["logical_date"] for r in g["runs"]] == ["2026-04-01T06:00:00+00:00", "2026-04-01T12:00:00+00:00"]
    g = jcli(root, "grid", "q", "--start", "2026-04-01", "--end", "2026-04-01")
    assert len(g["runs"]) == 4


def test_logs_header_on_stderr_keeps_stdout_raw_and_follow_ends_with_the_exit(tmp_path):
    root = make_project(tmp_path, {"p": """
        tasks:
          a: {run: "echo one; sleep 1; echo two; exit 4"}
    """})
    ok(root, "trigger", "p", "--date", "2026-04-01")
    assert wait_for(lambda: q(root, "SELECT count(*) FROM tries")[0][0] == 1, 5)
    r = cli(root, "logs", "p", "a", "--follow")
    assert r.returncode == 0
    assert r.stdout == "one\ntwo\n"
    head, *rest = r.stderr.splitlines()
    assert head.startswith("==> p manual__2026-04-01T00:00:00+00:00 a try 1: ")
    assert head.endswith(".pipectl/logs/p/manual__2026-04-01T000000_0000/a.1.log")
    assert rest and rest[-1].startswith("==> a try 1 ended: failed, exit 4")


def test_tick_lines_name_sub_daily_runs_by_their_time_of_day(tmp_path):
    root = make_project(tmp_path, {"q": SUBDAILY, "etl": CHAIN.replace("exit 3", "exit 0")})
    r = ok(root, "tick", "--wait", now="2026-04-02T03:00:00Z")
    lines = r.stdout.splitlines()
    assert "launched: q 2026-04-01 00:00 a try 1" in lines
    assert "reaped: q 2026-04-01 06:00 a try 1 exit 0" in lines
    assert "finished runs: q 2026-04-01 06:00 success" in lines
    # a daily pipeline keeps naming its runs by ds alone
    assert "launched: etl 2026-04-01 extract try 1" in lines
    tick_log = ok(root, "logs", "--tick").stdout
    assert "q 2026-04-01 06:00 a try 1" in tick_log


def test_a_tab_in_yaml_is_called_a_tab(tmp_path):
    root = make_project(tmp_path, {"t": "tasks:\n\ta: {run: 'true'}\n"})
    r = cli(root, "validate")
    assert r.returncode == 1
    assert "pipelines/t.yaml:2:1: YAML syntax error: a tab character; YAML indents with spaces only" in r.stderr


def test_validate_warns_when_a_cwd_does_not_exist(tmp_path):
    root = make_project(tmp_path, {"w": """
        tasks:
          a: {run: "true", cwd: nowhere}
          b: {run: "true", cwd: pipelines}
    """})
    r = cli(root, "validate")
    assert r.returncode == 0  # a warning: something upstream may create it
    warn = [ln for ln in r.stderr.splitlines() if "warning" in ln]
    assert len(warn) == 1 and "task 'a' has cwd 'nowhere', which does not exist" in warn[0]
    assert jcli(root, "validate")["warnings"] == [warn[0].split("warning: ", 1)[1]]


def test_install_systemd_user_mentions_linger(tmp_path):
    root = make_project(tmp_path, {"p": "tasks:\n  a: {run: 'true'}\n"})
    r = ok(root, "install", "systemd", "--user", "--print", env={"USER": "nobody-lingers"})
    assert "loginctl enable-linger nobody-lingers" in r.stderr
    assert "loginctl" not in r.stdout  # the units printed stay clean


def test_metrics_and_assets_before_the_first_tick(tmp_path):
    root = make_project(tmp_path, {"p": "schedule: '0 2 * * *'\ntasks:\n  a: {run: 'true'}\n"})
    r = ok(root, "metrics")
    assert "# TYPE pipectl_runs gauge" in r.stdout
    ok(root, "assets")
    assert not (root / ".pipectl" / "state.db").exists()  # reading never creates the state file


def test_runs_task_strip_reads_in_dag_order(tmp_path):
    root = make_project(tmp_path, {"p": """
        tasks:
          last: {run: "exit 1", needs: [first]}
          first: {run: "true"}
    """})
    cli(root, "trigger", "p", "--date", "2026-04-01", "--wait")
    out = ok(root, "runs", "p").stdout
    assert "✔✘" in out  # first (success) before last (failed), although the file lists last first


def test_show_fits_60_columns_wrapping_reasons_and_events_under_their_column(tmp_path):
    root = make_project(tmp_path, {"p": """
        tasks:
          load_dimensions: {run: "exit 3"}
          report: {run: "true", needs: [load_dimensions]}
    """})
    r = cli(root, "trigger", "p", "--date", "2026-04-01", "--wait")
    assert r.returncode == 1
    out = ok(root, "show", "p", env={"COLUMNS": "60"}).stdout
    lines = out.splitlines()
    # only a log path may run past the edge: it prints whole so that it can be copied
    assert [ln for ln in lines if len(ln) > 60 and not ln.lstrip().startswith("log ")] == [], out
    ev = out.split("events:\n", 1)[1].splitlines()
    created = next(i for i, ln in enumerate(ev) if "run_created" in ln)
    # the message continues indented below its event, never at the left edge
    assert ev[created + 1].startswith("      ") and "manual run for 2026-04-01" in " ".join(ev[created:created + 3]), ev
    report = next(i for i, ln in enumerate(lines) if ln.startswith("report"))
    assert re.match(r"report\s+upstream_failed\s*$", lines[report]) and lines[report + 1].strip() == "trigger_rule", out
