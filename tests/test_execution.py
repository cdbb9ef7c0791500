"""How a try runs: argv, cwd, environment, logs, quoting, detachment, promptness, timeouts."""
from __future__ import annotations

import time

from harness import alive, cli, make_project, ok, q, runs, session_pids, tis, tries, wait_for


def _env_file(path) -> dict[str, str]:
    out = {}
    for line in path.read_bytes().split(b"\0"):
        if b"=" in line:
            k, _, v = line.decode().partition("=")
            out[k] = v
    return out


def test_string_and_list_commands_cwd_and_logs(tmp_path):
    root = make_project(tmp_path, {"p": """
        tasks:
          shell:
            run: "echo one two | tr ' ' '\\n' > shell.txt; pwd >> shell.txt; echo to-log; echo to-err >&2"
          argv:
            run: [sh, -c, 'printf "%s|" "$0" "$1" > argv.txt; pwd >> argv.txt', "a b", "{{ ds }}"]
          sub:
            run: "pwd > here.txt"
            cwd: work
    """})
    (root / "work").mkdir()
    ok(root, "trigger", "p", "--date", "2026-04-01", "--wait")
    real = str(root.resolve())
    assert (root / "shell.txt").read_text().splitlines() == ["one", "two", real]
    # a list is exec'd as is: "a b" stays one argument, no shell splitting
    assert (root / "argv.txt").read_text().splitlines() == ["a b|2026-04-01|" + real]
    assert (root / "work" / "here.txt").read_text().strip() == real + "/work"
    t = {x["task"]: x for x in tries(root)}
    log = t["shell"]["log_path"]
    assert log.endswith("shell.1.log") and "/.pipectl/logs/p/" in log
    with open(log) as f:
        assert f.read().splitlines() == ["to-log", "to-err"]
    r = ok(root, "logs", "p", "shell", "--date", "2026-04-01")
    assert r.stdout.splitlines() == ["to-log", "to-err"]
    assert len({x["log_path"] for x in t.values()}) == 3


def test_environment_layering_and_pipectl_variables(tmp_path):
    root = make_project(tmp_path, {"p": """
        timezone: Europe/Berlin
        params: {x: default, y: keep}
        env: {LAYER: pipeline, ONLY_PIPE: p}
        tasks:
          e:
            run: "env -0 > env.bin"
            env: {LAYER: task, ONLY_TASK: t}
    """})
    ok(root, "trigger", "p", "--date", "2026-04-03", "--param", "x=hello world", "--wait",
       env={"FROM_SHELL": "inherited", "LAYER": "shell"}, now="2026-04-05T10:00:00Z")
    env = _env_file(root / "env.bin")
    assert env["FROM_SHELL"] == "inherited"
    assert env["LAYER"] == "task"
    assert env["ONLY_PIPE"] == "p"
    assert env["ONLY_TASK"] == "t"
    assert "PIPECTL_NOW" not in env
    # ds 2026-04-03 in Berlin is local midnight, 22:00 UTC the day before
    expected = {
        "PIPECTL_PIPELINE": "p",
        "PIPECTL_TASK": "e",
        "PIPECTL_RUN_ID": "manual__2026-04-02T22:00:00+00:00",
        "PIPECTL_DS": "2026-04-03",
        "PIPECTL_LOGICAL_DATE": "2026-04-02T22:00:00+00:00",
        "PIPECTL_DATA_INTERVAL_START": "2026-04-02T22:00:00+00:00",
        "PIPECTL_DATA_INTERVAL_END": "2026-04-02T22:00:00+00:00",
        "PIPECTL_TRY_NUMBER": "1",
        "PIPECTL_PARAM_X": "hello world",
        "PIPECTL_PARAM_Y": "keep",
    }
    assert {k: env.get(k) for k in expected} == expected
    (run,) = runs(root, "p")
    assert run["params"] == {"x": "hello world", "y": "keep"}


def test_param_values_cannot_inject_shell(tmp_path):
    root = make_project(tmp_path, {"p": """
        params: {x: "", y: ""}
        tasks:
          s:
            run: "echo {{ params.x }} > s.txt"
          l:
            run: [sh, -c, 'echo "$1" > l.txt', sh, "{{ params.y }}"]
    """})
    evil = "x; touch pwned"
    ok(root, "trigger", "p", "--date", "2026-04-01", "--param", f"x={evil}", "--param", "y=$(touch pwned2)", "--wait")
    assert (root / "s.txt").read_text() == evil + "\n"
    assert (root / "l.txt").read_text() == "$(touch pwned2)\n"
    assert not (root / "pwned").exists() and not (root / "pwned2").exists()
    r = ok(root, "trigger", "p", "--date", "2026-04-02", "--param", "x=`touch pwned3` 'q\"", "--wait")
    assert (root / "s.txt").read_text() == "`touch pwned3` 'q\"\n"
    assert not (root / "pwned3").exists()


def test_tries_outlive_the_tick_and_their_status_is_recorded(tmp_path):
    root = make_project(tmp_path, {"p": """
        tasks:
          slow:
            run: "while [ ! -e go ]; do sleep 0.02; done; sleep 0.5; echo done"
    """})
    ok(root, "trigger", "p", "--date", "2026-04-01")
    ok(root, "tick")
    # the tick has returned; the try goes on without it
    (t,) = tries(root)
    assert t["state"] == "running" and alive(t["pid"])
    (root / "go").touch()
    # no pipectl process is alive now; the wrapper's own reaper records the exit status
    done = wait_for(lambda: tis(root)[("2026-04-01", "slow")]["state"] == "success", timeout=6)
    assert done
    (t,) = tries(root)
    assert (t["state"], t["exit_code"]) == ("success", 0)
    assert t["end"] - t["start"] >= 0.5
    with open(t["log_path"]) as f:
        assert f.read() == "done\n"
    assert runs(root, "p")[0]["state"] == "success"
    # a later tick finds nothing left to do
    r = ok(root, "tick")
    assert "reaped" not in r.stdout


def test_status_left_behind_is_recorded_by_a_later_tick(tmp_path):
    """When the wrapper leaves reaping to a live supervisor, the status file waits for the next tick."""
    import os

    root = make_project(tmp_path, {"p": """
        tasks:
          a: {run: "sleep 0.3; exit 3"}
          b: {run: "true", needs: [a]}
    """})
    ok(root, "trigger", "p", "--date", "2026-04-01")
    sup = root / ".pipectl" / "supervisors" / str(os.getpid())
    sup.parent.mkdir(exist_ok=True)
    sup.touch()  # pretend a --wait supervisor is alive: this test process
    try:
        assert wait_for(lambda: list((root / ".pipectl" / "status").glob("*.1")), 5)
        time.sleep(0.2)
        assert tis(root)[("2026-04-01", "a")]["state"] == "running"
    finally:
        sup.unlink()
    r = ok(root, "tick")
    assert "reaped: p 2026-04-01 a try 1 exit 3" in r.stdout
    (run,) = runs(root, "p")
    assert run["state"] == "failed"
    assert run["tasks"]["a"] == {"state": "failed", "tries": 1, "exit_code": 3, "reason": "exit_code"}
    assert run["tasks"]["b"]["state"] == "upstream_failed"


def test_downstream_starts_within_a_second_with_no_tick_alive(tmp_path):
    root = make_project(tmp_path, {"p": """
        tasks:
          up: {run: "sleep 0.3"}
          down: {run: "true", needs: [up]}
          last: {run: "true", needs: [down]}
    """})
    ok(root, "trigger", "p", "--date", "2026-04-01")
    assert wait_for(lambda: runs(root, "p")[0]["state"] == "success", timeout=4), runs(root, "p")
    t = {x["task"]: x for x in tries(root)}
    assert 0 <= t["down"]["start"] - t["up"]["end"] < 1.0
    assert 0 <= t["last"]["start"] - t["down"]["end"] < 1.0


def test_timeout_kills_the_whole_session(tmp_path):
    root = make_project(tmp_path, {"p": """
        tasks:
          t:
            run: "sh -c 'sleep 30 & echo $! > gc.pid; sleep 30'"
            timeout: 0.3s
    """})
    t0 = time.monotonic()
    r = cli(root, "trigger", "p", "--date", "2026-04-01", "--wait")
    assert r.returncode == 1, r.stderr
    assert time.monotonic() - t0 < 10
    (run,) = runs(root, "p")
    assert run["state"] == "failed"
    assert run["tasks"]["t"]["state"] == "failed"
    assert run["tasks"]["t"]["reason"] == "timeout"
    assert run["tasks"]["t"]["tries"] == 1
    (t,) = tries(root)
    assert (t["state"], t["reason"]) == ("failed", "timeout")
    assert 0.3 <= t["end"] - t["start"] < 3
    gc = int((root / "gc.pid").read_text())
    assert wait_for(lambda: not alive(gc), 3), f"grandchild {gc} survived the timeout"
    assert session_pids(t["pid"]) == [] or not any(alive(p) for p in session_pids(t["pid"]))


def test_a_task_that_cannot_start_fails_with_its_reason_in_the_log(tmp_path):
    root = make_project(tmp_path, {"p": """
        tasks:
          nocwd: {run: "true", cwd: nowhere}
          nobin: {run: [/no/such/binary]}
    """})
    r = cli(root, "trigger", "p", "--date", "2026-04-01", "--wait", timeout=30)
    assert r.returncode == 1
    (run,) = runs(root, "p")
    assert run["tasks"] == {
        "nocwd": {"state": "failed", "tries": 1, "exit_code": 127, "reason": "exit_code"},
        "nobin": {"state": "failed", "tries": 1, "exit_code": 127, "reason": "exit_code"},
    }
    out = ok(root, "logs", "p", "nocwd").stdout
    assert "could not start" in out and "nowhere" in out
    assert "/no/such/binary" in ok(root, "logs", "p", "nobin").stdout


def test_a_tick_forgets_supervisors_that_died_without_unregistering(tmp_path):
    """A stale pid file (its process gone, or the pid reused by another process) would make every
    wrapper leave reaping to someone who is not there; the next tick removes it."""
    import os
    import subprocess

    root = make_project(tmp_path, {"p": 'tasks:\n  a: {run: "true"}\n'})
    sups = root / ".pipectl" / "supervisors"
    sups.mkdir(parents=True)
    dead = subprocess.Popen(["true"])
    dead.wait()
    (sups / str(dead.pid)).write_text("12345")  # gone
    (sups / str(os.getpid())).write_text("1")  # pid alive, but a different process start time: reused
    from pipectl.exec.executor import process_start
    ok(root, "tick")
    assert sorted(p.name for p in sups.iterdir()) == []
    # a live supervisor's own file (right start time) stays; a dead one beside it goes
    (sups / str(os.getpid())).write_text(process_start(os.getpid()))
    (sups / str(dead.pid)).write_text("12345")
    ok(root, "--now", "2026-04-05T03:00:00Z", "tick")  # --now: the full tick, not the no-op fast path
    assert [p.name for p in sups.iterdir()] == [str(os.getpid())]
