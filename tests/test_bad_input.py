"""Hostile input: spec values that cannot be evaluated, absurd arguments, a broken state directory.

Each gets one clear line (FILE:LINE:COL for specs), exit 1 or 2, and never stops an unrelated
pipeline: a value that only fails at run time fails its own task instance with a reason.
"""
from __future__ import annotations

import os
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from conftest import call_cli, make_project

OK_SPEC = """
tasks:
  a:
    run: "true"
"""


def cli(root, *args, now=None, timeout=60):
    pre = ["--project", str(root)] + (["--now", now] if now else [])
    return call_cli(*pre, *args, timeout=timeout, cwd=root)


def one_error_line(p) -> str:
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    assert "Traceback" not in p.stderr and "internal error" not in p.stderr, p.stderr
    return lines[0]


def spec_errors(p) -> list[str]:
    return [ln for ln in p.stderr.splitlines() if ln.startswith("pipelines/")]


# -- spec values that validate must refuse ----------------------------------------------------------

BAD_SPECS = {
    "retry_delay": ("tasks:\n  a:\n    run: 'false'\n    retries: 2\n    retry_delay: 100000000d\n",
                    "5:18: 'retry_delay': bad duration '100000000d': longer than the limit of 366d"),
    "timeout_inf": ("tasks:\n  a:\n    run: 'true'\n    timeout: .inf\n", "4:14: 'timeout': bad duration inf"),
    "every_float": ("schedule: {every: 1.0e+20}\ntasks:\n  a:\n    run: 'true'\n",
                    "1:19: 'every': bad duration 1e+20: longer than the limit of 366d"),
    "every_big_int": ("schedule: {every: 100000000000000000000}\ntasks:\n  a:\n    run: 'true'\n",
                      "1:19: 'every': bad duration 100000000000000000000"),
    "every_tiny": ("schedule: {every: 1ms}\ntasks:\n  a:\n    run: 'true'\n", "1:19: 'every' must be at least 1s"),
    "poke_interval": ("tasks:\n  s:\n    sensor: {file: x}\n    poke_interval: 99999999999999999999999s\n",
                      "4:20: 'poke_interval': bad duration"),
    "sla": ("sla: 400d\ntasks:\n  a:\n    run: 'true'\n", "1:6: 'sla': bad duration '400d'"),
    "start_date_year_1": ("schedule: '@daily'\nstart_date: 0001-01-01\ncatchup: true\ntasks:\n  a:\n    run: 'true'\n",
                          "2:13: 'start_date' must be between 1970-01-01 and 9000-12-31, got '0001-01-01'"),
    "end_date_9999": ("schedule: '@daily'\nend_date: 9999-12-31T23:59:59-12:00\ntasks:\n  a:\n    run: 'true'\n",
                      "2:11: 'end_date' must be between 1970-01-01 and 9000-12-31"),
    "retries": ("tasks:\n  a:\n    run: 'true'\n    retries: 9223372036854775808\n",
                "4:14: 'retries' must be between 0 and 1000, got 9223372036854775808"),
    "max_active_runs": ("max_active_runs: 100000000\ntasks:\n  a:\n    run: 'true'\n",
                        "1:18: 'max_active_runs' must be between 1 and 10000"),
    "priority": ("tasks:\n  a:\n    run: 'true'\n    priority: -99999999999\n", "4:15: 'priority' must be between"),
    "min_size": ("tasks:\n  s:\n    sensor: {file: x, min_size: 99999999999999999999}\n",
                 "3:33: 'min_size' must be between 0 and"),
    "binary_param": ("params:\n  x: !!binary aGVsbG8=\ntasks:\n  a:\n    run: 'echo {{ params.x }}'\n",
                     "2:6: unsupported YAML tag '!!binary'"),
    "python_tag": ("params:\n  x: !!python/object:os.system ls\ntasks:\n  a:\n    run: 'true'\n",
                   "2:6: unsupported YAML tag '!!python/object:os.system'"),
    "local_tag": ("tasks:\n  a:\n    run: !shell 'true'\n", "3:10: unsupported YAML tag '!shell'"),
    "set_tag": ("params:\n  x: !!set {a, b}\ntasks:\n  a:\n    run: 'true'\n", "2:6: unsupported YAML tag '!!set'"),
    "nan_param": ("params:\n  x: [1, .nan]\ntasks:\n  a:\n    run: 'true'\n",
                  "2:6: bad value for param 'x': numbers must be finite"),
    "bad_bool_param": ("params:\n  x: !!bool all\ntasks:\n  a:\n    run: 'true'\n",
                       "2:6: bad value for param 'x': KeyError"),
    "unhashable_param_key": ("params:\n  x: {[a, b]: 1}\ntasks:\n  a:\n    run: 'true'\n",
                             "2:6: bad value for param 'x': found unhashable key"),
    "long_name": ("name: " + "x" * 300 + "\ntasks:\n  a:\n    run: 'true'\n",
                  "1:7: pipeline name is 300 characters long; at most 100"),
    "long_task_name": ("tasks:\n  " + "t" * 101 + ":\n    run: 'true'\n",
                       "2:3: task name is 101 characters long; at most 100"),
    "recursive_alias": ("params:\n  r: &r [*r]\ntasks:\n  a:\n    run: 'true'\n",
                        "2:6: recursive YAML alias"),
}


@pytest.mark.parametrize("case", sorted(BAD_SPECS))
def test_validate_refuses_values_that_cannot_be_evaluated(tmp_path, case):
    text, expected = BAD_SPECS[case]
    root = make_project(tmp_path, {"p": text, "q": OK_SPEC})
    p = cli(root, "validate")
    assert p.returncode == 1, p.stdout + p.stderr
    assert "Traceback" not in p.stderr and "internal error" not in p.stderr
    errors = spec_errors(p)
    assert errors and all(e.startswith("pipelines/p.yaml:") for e in errors), p.stderr
    assert f"pipelines/p.yaml:{expected}" in errors[0], errors
    assert "ok  q  1 task" in p.stdout  # the other pipeline is unaffected


def test_alias_bomb_is_refused_at_once(tmp_path):
    # ~400 bytes that expand to 9**8 (43 million) strings: before, validate took minutes and gigabytes
    lines = ["params:", '  a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    prev = "a"
    for name in "bcdefgh":
        lines.append(f"  {name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
        prev = name
    text = "\n".join(lines + ["tasks:", "  t:", "    run: 'true'"]) + "\n"
    assert len(text) < 420
    root = make_project(tmp_path, {"bomb": text, "q": OK_SPEC})
    p = cli(root, "validate", timeout=20)  # a hang guard, not a speed assertion
    assert p.returncode == 1
    errors = spec_errors(p)
    assert len(errors) == 1 and errors[0].startswith("pipelines/bomb.yaml:"), p.stderr
    assert "YAML aliases expand this value to more than 200000 nodes" in errors[0]
    # and the tick skips only that pipeline
    t = cli(root, "tick", timeout=20)
    assert t.returncode == 0, t.stderr
    assert "pipeline bomb is invalid and was skipped" in t.stderr


def test_a_bad_spec_never_stops_the_others_run(tmp_path):
    """Before: `run q` died with `internal error: ValueError: year 275817 is out of range`."""
    root = make_project(tmp_path, {
        "p": "tasks:\n  a:\n    run: 'false'\n    retries: 2\n    retry_delay: 100000000d\n",
        "q": OK_SPEC,
    })
    r = cli(root, "run", "q")
    assert r.returncode == 0, r.stderr
    assert "q " in r.stdout and "success" in r.stdout
    bad = cli(root, "run", "p")
    assert bad.returncode == 1
    assert one_error_line(bad).startswith("pipectl: error: pipeline 'p' is invalid: pipelines/p.yaml:5:18:")


# -- values that fail only at run time fail only their task instance ---------------------------------

def _state(root):
    return sqlite3.connect(str(Path(root) / ".pipectl" / "state.db"), timeout=30)


def _tis(root, pipeline):
    conn = _state(root)
    try:
        return conn.execute(
            "SELECT ti.task, ti.state, ti.reason, r.state FROM task_instances ti JOIN runs r ON r.id = ti.run "
            "WHERE r.pipeline = ? ORDER BY ti.id", (pipeline,)).fetchall()
    finally:
        conn.close()


def test_http_sensor_url_with_a_space_fails_only_that_sensor(tmp_path):
    """Before: every tick died with `internal error: InvalidURL` and the sensor never timed out."""
    root = make_project(tmp_path, {
        "p": """
            params: {x: "a b"}
            tasks:
              s:
                sensor: {http: "http://127.0.0.1:9/{{ params.x }}"}
                timeout: 1h
              after:
                run: "true"
                needs: [s]
              anyway:
                run: "true"
                needs: [s]
                trigger_rule: all_done
        """,
        "q": OK_SPEC,
    })
    t = cli(root, "trigger", "p", "--wait", timeout=60)
    assert t.returncode == 1, t.stdout + t.stderr  # the run failed, cleanly
    assert "Traceback" not in t.stderr and "internal error" not in t.stderr
    assert _tis(root, "p") == [("s", "failed", "sensor_error", "failed"),
                               ("after", "upstream_failed", "trigger_rule", "failed"),
                               ("anyway", "success", None, "failed")]
    conn = _state(root)
    try:
        msg = conn.execute("SELECT message FROM events WHERE kind = 'task_failed' AND task = 's'").fetchone()[0]
    finally:
        conn.close()
    assert "'http://127.0.0.1:9/a b' is not a valid URL (contains ' ')" in msg
    r = cli(root, "run", "q")
    assert r.returncode == 0, r.stderr
    assert _tis(root, "q") == [("a", "success", None, "success")]


def test_a_run_snapshot_that_cannot_be_evaluated_fails_only_its_task_instance(tmp_path):
    """A run keeps the spec it was created with; one that cannot be evaluated (written by another
    version, or damaged) must fail its own task instance when its try is reaped, not every reaper and
    tick of the project."""
    root = make_project(tmp_path, {
        "p": "tasks:\n  a:\n    run: 'sleep 2; false'\n    retries: 2\n    retry_delay: 1m\n  b:\n    run: 'true'\n"
             "    needs: [a]\n    trigger_rule: all_done\n",
        "q": OK_SPEC,
    })
    t = cli(root, "trigger", "p")
    assert t.returncode == 0, t.stderr
    conn = _state(root)
    try:
        with conn:
            (spec,) = conn.execute("SELECT spec FROM runs WHERE pipeline = 'p'").fetchone()
            assert '"retry_delay":60.0' in spec
            conn.execute("UPDATE runs SET spec = ? WHERE pipeline = 'p'",
                         (spec.replace('"retry_delay":60.0', '"retry_delay":"100000000d"'),))
    finally:
        conn.close()
    time.sleep(3)  # the try has ended; its result waits to be reaped
    r = cli(root, "run", "q")  # steps the engine, reaping p's try on the way
    assert r.returncode == 0, r.stderr
    assert "internal error" not in r.stderr
    assert _tis(root, "q") == [("a", "success", None, "success")]
    w = cli(root, "tick", "--wait", timeout=60)
    assert w.returncode == 0, w.stderr
    assert _tis(root, "p") == [("a", "failed", "error", "failed"),
                               ("b", "success", None, "failed")]  # all_done: the run went on by its rules
    conn = _state(root)
    try:
        msg = conn.execute("SELECT message FROM events WHERE kind = 'task_failed' AND task = 'a'").fetchone()[0]
        tries = conn.execute("SELECT state, exit_code, reason FROM tries").fetchall()
    finally:
        conn.close()
    assert msg.startswith("cannot evaluate: TypeError")
    assert sorted(tries) == [("failed", 1, "error"), ("success", 0, None), ("success", 0, None)]


def test_retry_delays_never_leave_datetime_range():
    from pipectl.timing.durations import MAX_SPEC_SECONDS
    from pipectl.model.pipeline import RetryPolicy
    assert RetryPolicy(retry_delay=8.64e12).delay(1) == MAX_SPEC_SECONDS
    exp = RetryPolicy(retry_delay=60.0, retry_backoff="exponential")
    assert [exp.delay(n) for n in (1, 2, 3)] == [60.0, 120.0, 240.0]
    assert exp.delay(5000) == MAX_SPEC_SECONDS  # 2**4999 would overflow a float
    assert RetryPolicy(retry_delay=60.0, retry_backoff="exponential", max_retry_delay=600.0).delay(40) == 600.0


# -- command-line bounds -------------------------------------------------------------------------------

BAD_ARGS = [
    (("cron", "* * * * *", "--count", "1000000"), 2, "1000000 is not in the range 1<=x<=10000"),
    (("next", "q", "--count", "1e20"), 2, "'1e20' is not a valid integer"),
    (("next", "q", "--count", str(2**63)), 2, f"{2**63} is not in the range 1<=x<=10000"),
    (("runs", "q", "--limit", str(10**30)), 2, "is not in the range 1<=x<=10000"),
    (("logs", "q", "a", "--try", str(2**64)), 2, "is not in the range 1<=x<=10000"),
    (("--now", "0001-01-01", "tick"), 2, "bad --now '0001-01-01': must be between 1970-01-01 and 9000-12-31"),
    (("--now", "9999-12-31T23:59:59", "status"), 2, "must be between 1970-01-01 and 9000-12-31"),
    (("--now", "1" + "0" * 30, "tick"), 2, "bad --now value"),
    (("trigger", "q", "--date", "9999-12-31T23:59:59-05:00"), 2, "bad --date"),
    (("trigger", "q", "--date", "0001-01-01"), 2, "bad --date '0001-01-01'"),
    (("backfill", "q", "--start", "0001-01-01", "--end", "0001-01-03", "--dry-run"), 2, "bad --start"),
    (("prune", "--older-than", "100000000d"), 2, "longer than the limit of 36600d"),
    (("metrics", "--output", "/nonexistent-dir/x.prom"), 1,
     "cannot write metrics to /nonexistent-dir/x.prom: No such file or directory"),
    (("metrics", "--output", "/"), 2, "--output / is a directory"),
]


@pytest.mark.parametrize("argv, code, message", BAD_ARGS, ids=[" ".join(a[0])[:40] for a in BAD_ARGS])
def test_absurd_arguments_get_one_clear_line(tmp_path, argv, code, message):
    root = make_project(tmp_path, {"q": "schedule: '@daily'\ntasks:\n  a:\n    run: 'true'\n"})
    assert cli(root, "tick").returncode == 0  # a state file exists, so metrics gets as far as writing
    p = cli(root, *argv, timeout=30)
    assert p.returncode == code, p.stdout + p.stderr
    assert message in one_error_line(p)


def test_project_under_an_unknown_users_home(tmp_path):
    p = call_cli("--project", "~nouser-pipectl", "status")
    assert p.returncode == 2
    assert one_error_line(p) == ("pipectl: error: bad project directory '~nouser-pipectl': "
                                 "Could not determine home directory.")


def test_calendar_end_is_not_an_error(tmp_path):
    p = call_cli("--now", "9000-12-31", "cron", "@yearly", "--count", "10000", "--json")
    assert p.returncode == 0, p.stderr
    assert p.stdout.count("-01-01T00:00:00+00:00") == 999  # 9001 .. 9999, then datetime ends


# -- broken state: read-only and full disks ------------------------------------------------------------

def _mount_tmpfs(path: Path, size: str) -> bool:
    path.mkdir()
    if os.geteuid() != 0:
        return False
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
                       capture_output=True)
    return r.returncode == 0


@pytest.fixture
def small_state_dir(tmp_path):
    """A project whose state directory is its own little tmpfs (needs root and mount)."""
    root = make_project(tmp_path / "proj", {"q": "schedule: '* * * * *'\ntasks:\n  a:\n    run: 'true'\n"})
    state = root / ".pipectl"
    if not _mount_tmpfs(state, "2m"):
        pytest.skip("needs root and tmpfs mounts to make a read-only or full file system")
    try:
        yield root, state
    finally:
        subprocess.run(["umount", "-l", str(state)], capture_output=True)


def _snapshot(state: Path) -> dict:
    return {p.name: (p.stat().st_size, p.read_bytes()) for p in state.iterdir() if p.is_file() and p.name != "fill"}


def test_read_only_state_dir_gets_one_line_naming_the_path(small_state_dir):
    root, state = small_state_dir
    # --wait: no task, reaper or timer of this tick is still writing to the state dir when it is remounted
    assert cli(root, "tick", "--wait", now="2030-01-01T00:00:30").returncode == 0
    subprocess.run(["mount", "-o", "remount,ro", str(state)], check=True)
    before = _snapshot(state)
    for argv in (("trigger", "q"), ("tick",), ("pause", "q")):
        p = cli(root, *argv, now="2030-01-01T00:05:30")
        assert p.returncode == 1, (argv, p.stdout, p.stderr)
        line = one_error_line(p)
        assert str(state) in line and ("read-only" in line.lower()), line
    assert _snapshot(state) == before


def test_full_disk_gets_one_line_naming_the_path(small_state_dir):
    root, state = small_state_dir
    # --wait: no task, reaper or timer of this tick is still writing to the state dir when it is remounted
    assert cli(root, "tick", "--wait", now="2030-01-01T00:00:30").returncode == 0
    try:  # fill the file system to the last block
        with open(state / "fill", "wb") as f:
            while True:
                f.write(b"\0" * 4096)
                f.flush()
    except OSError:
        pass
    p = cli(root, "trigger", "q", "--param", "big=" + "x" * 20000, now="2030-01-01T00:05:30")
    assert p.returncode == 1, p.stdout + p.stderr
    line = one_error_line(p)
    assert line == f"pipectl: error: state file {state}/state.db: the disk is full; nothing was changed"
    (state / "fill").unlink()
    runs = cli(root, "--json", "runs", "q")
    assert runs.returncode == 0, runs.stderr
    assert '"run_type": "manual"' not in runs.stdout  # the trigger left nothing behind


# -- every failure is one stderr line --------------------------------------------------------------------

def test_bare_pipectl_prints_help_and_one_error_line():
    p = call_cli()
    assert p.returncode == 2
    assert "Commands:" in p.stdout
    assert one_error_line(p) == "pipectl: error: missing command (see 'pipectl --help')"


def test_init_under_an_unknown_users_home():
    p = call_cli("init", "~nouser-pipectl/x")
    assert p.returncode == 2
    assert one_error_line(p) == "pipectl: error: bad directory '~nouser-pipectl/x': Could not determine home directory."


def test_doctor_that_finds_problems_says_so_in_one_line(tmp_path):
    root = make_project(tmp_path, {"q": OK_SPEC})  # no tick has ever run: no state file, no ticks arriving
    p = cli(root, "--json", "doctor")
    assert p.returncode == 1
    line = one_error_line(p)
    assert line.startswith("pipectl: error: doctor found ") and line.endswith(("problem", "problems"))
    assert '"ok": false' in p.stdout


# -- bounded soak: the bench fuzzers at small counts ----------------------------------------------------

def _bench(name: str):
    import importlib
    import sys

    bench = str(Path(__file__).resolve().parent.parent / "bench")
    if bench not in sys.path:
        sys.path.insert(0, bench)
    return importlib.import_module(name)


def test_fuzzed_specs_never_crash_validate_tick_or_other_pipelines():
    line, ok, problems = _bench("fuzz_spec").run(cases=300, seed=14, batch=50, workers=2, case_timeout=10.0,
                                                 tick_timeout=60.0)
    assert ok, "\n".join([line, *problems[:20]])
    assert line.startswith("fuzz_spec: OK: 300 cases") and "12 real ticks" in line


def test_fuzzed_command_lines_get_one_clear_line():
    # thirty in the suite; `bench/fuzz_cli.py --invocations 2000` is the fuzzing
    line, ok, problems = _bench("fuzz_cli").run(invocations=30, seed=14, workers=2, timeout=60.0)
    assert ok, "\n".join([line, *problems[:20]])
    assert line.startswith("fuzz_cli: OK: 30 invocations")


def test_a_reaper_that_cannot_evaluate_a_runs_snapshot_fails_that_try_with_reason_error(tmp_path):
    """The reaper's own branch for a snapshot that breaks while a try is recorded, in one process:
    this test holds a supervisor pid file, so the wrapper leaves the try to this step (no race
    with a reaper or timer of its own)."""
    from harness import Project, wait_for
    from pipectl.exec.supervisors import register_supervisor, unregister_supervisor

    p = Project(tmp_path / "proj", {"p": "tasks:\n  a:\n    run: 'false'\n    retries: 2\n    retry_delay: 1m\n"})
    sup = register_supervisor(p.config)
    try:
        p.ok("trigger", "p", "--date", "2026-04-01")
        conn = _state(p.root)
        try:
            with conn:
                (spec,) = conn.execute("SELECT spec FROM runs WHERE pipeline = 'p'").fetchone()
                assert '"retry_delay":60.0' in spec
                conn.execute("UPDATE runs SET spec = ?", (spec.replace('"retry_delay":60.0', '"retry_delay":"100000000d"'),))
        finally:
            conn.close()
        (t,) = p.tries("p")
        assert wait_for(lambda: Path(t.status_path).exists() and Path(t.status_path).read_text().endswith("\n"))
        report = p.step()
    finally:
        unregister_supervisor(sup)
    assert report.reaped == ["p a try 1 cannot evaluate: TypeError: '<' not supported between instances of 'int' and 'str'"]
    (ti,) = p.tis("p", ds="2026-04-01").values()
    assert (ti.task, ti.state, ti.reason, ti.try_number) == ("a", "failed", "error", 1)
    assert [e["kind"] for e in p.q("SELECT kind FROM events WHERE task = 'a' AND message LIKE 'cannot evaluate%'")] == [
        "task_failed"]


def test_tick_wait_whose_run_failed_says_so_in_one_line(tmp_path):
    root = make_project(tmp_path, {"p": "schedule: '@daily'\ntasks:\n  a:\n    run: 'false'\n"})
    p = cli(root, "tick", "--wait", now="2026-04-02T00:00:30")
    assert p.returncode == 1, p.stdout + p.stderr
    assert one_error_line(p) == "pipectl: error: 1 run failed: p 2026-04-01"
    assert "finished runs: p 2026-04-01 failed" in p.stdout
