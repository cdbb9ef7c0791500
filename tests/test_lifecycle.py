"""A try's life ends with nothing left behind.

Whenever a try ends (its command exited, it timed out, or it was lost), no process of its
session survives it, and the next try of the same task instance starts only once the
previous one's session is empty -- as systemd kills a unit's cgroup. Each task below
holds an flock on a per-task-instance file for as long as any of its processes runs, so
two tries overlapping show up as a failed `flock -n`.

Status files are read without ever blocking (a FIFO planted at a status path is
ignored), and a status directory deleted under a running try is recreated by the wrapper.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from harness import alive, cli, make_project, ok, q, runs, tis, tries, wait_for

from pipectl.exec import executor
DATE = "2026-04-01"

# Each try appends its number to starts.txt while holding ti.lock; a try that cannot take the
# lock because an earlier try's process still holds it appends to overlap.txt instead.
PROBE = ('flock -n ti.lock sh -c \'echo $PIPECTL_TRY_NUMBER >> starts.txt; echo $$ > holder.$PIPECTL_TRY_NUMBER; '
         '{body}\' || echo $PIPECTL_TRY_NUMBER >> overlap.txt')


def _lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def _spec(run: str, extra: str = "") -> str:
    """A pipeline of one task ``t`` whose command is ``run`` (a YAML block: no quoting)."""
    return "tasks:\n  t:\n    run: |\n      " + run + "\n" + extra


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass


def _dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def _forget(root: Path, pids: list[int]) -> None:
    """Kill what a failing assertion would otherwise leave running after the test."""
    for pid in pids:
        for member in executor.session_members(pid):
            _kill(member)


def test_a_try_lost_while_starting_leaves_no_task_behind_to_overlap_its_retry(tmp_path):
    """The launcher was killed -9 after the wrapper began (so the try was never recorded as
    started), then the wrapper died too: the task it started is an orphan in its session."""
    root = make_project(tmp_path, {"p": _spec(PROBE.format(body="sleep 30"), "    retries: 1\n    retry_delay: 0\n")})
    ok(root, "trigger", "p", "--date", DATE)
    assert wait_for(lambda: (root / "holder.1").exists() and len(tries(root)) == 1, 5)
    (t,) = tries(root)
    wrapper, holder = t["pid"], int((root / "holder.1").read_text())
    try:
        # what a launcher killed between starting the wrapper and recording its pid leaves
        conn = __import__("sqlite3").connect(root / ".pipectl" / "state.db")
        with conn:
            conn.execute("UPDATE tries SET state = 'starting', pid = NULL, pid_start = NULL, launcher_pid = ? "
                         "WHERE id = ?", (_dead_pid(), t["id"]))
        conn.close()
        _kill(wrapper)
        assert wait_for(lambda: not alive(wrapper), 3)
        assert alive(holder)
        r = ok(root, "tick")
        assert "lost: p 2026-04-01 t try 1" in r.stdout
        # the orphan was killed by the tick that declared its try lost, before the retry started
        assert not alive(holder)
        assert wait_for(lambda: _lines(root / "starts.txt") == ["1", "2"], 5), _lines(root / "starts.txt")
        assert _lines(root / "overlap.txt") == []
        got = [(x["try_number"], x["state"], x["reason"]) for x in tries(root)]
        assert got == [(1, "lost", "lost"), (2, "running", None)]
    finally:
        _forget(root, [x["pid"] for x in tries(root) if x["pid"]] + [wrapper])


def test_a_grandchild_of_a_killed_parent_does_not_outlive_the_try(tmp_path):
    """The task's direct process is killed -9 while its background child runs on: the try
    fails with exit 137 and its retry starts only after the child is gone."""
    probe = PROBE.format(body="sleep 30").replace("'", "'\\''")
    spec = _spec(f"sh -c '({probe}) & sleep 0.3; kill -9 $$'", "    retries: 1\n    retry_delay: 0\n")
    root = make_project(tmp_path, {"p": spec})
    r = cli(root, "trigger", "p", "--date", DATE, "--wait", timeout=60)
    assert r.returncode == 1, (r.stdout, r.stderr)
    (run,) = runs(root, "p")
    assert run["tasks"]["t"] == {"state": "failed", "tries": 2, "exit_code": 137, "reason": "exit_code"}
    assert [(x["try_number"], x["state"], x["exit_code"]) for x in tries(root)] == [(1, "failed", 137),
                                                                                  (2, "failed", 137)]
    holders = [int((root / f"holder.{n}").read_text()) for n in (1, 2) if (root / f"holder.{n}").exists()]
    try:
        assert _lines(root / "starts.txt") == ["1", "2"]
        assert _lines(root / "overlap.txt") == []
        assert wait_for(lambda: not any(alive(h) for h in holders), 3), holders
    finally:
        for h in holders:
            _kill(h)


def test_a_successful_try_leaves_no_background_process(tmp_path):
    root = make_project(tmp_path, {"p": _spec("sleep 30 & echo $! > bg.pid")})
    ok(root, "trigger", "p", "--date", DATE, "--wait", timeout=60)
    bg = int((root / "bg.pid").read_text())
    try:
        assert runs(root, "p")[0]["tasks"]["t"]["state"] == "success"
        assert not alive(bg)
    finally:
        _kill(bg)


def test_a_timeout_also_ends_processes_that_left_the_tasks_process_group(tmp_path):
    """timeout(1) signals the task's process group; a child that moved to a group of its
    own (as a job-control shell's jobs do) is still in the try's session."""
    job = (f"{sys.executable} -c 'import os, time; os.setpgid(0, 0); time.sleep(30)' & echo $! > gc.pid; "
           "sleep 0.2; read x x x x g x < /proc/$$/stat; read x x x x j x < /proc/$!/stat; echo $g $j > pgids; wait")
    root = make_project(tmp_path, {"p": _spec(job, "    timeout: 1s\n")})
    r = cli(root, "trigger", "p", "--date", DATE, "--wait", timeout=60)
    assert r.returncode == 1
    gc = int((root / "gc.pid").read_text())
    try:
        assert runs(root, "p")[0]["tasks"]["t"] == {"state": "failed", "tries": 1, "exit_code": 124,
                                                     "reason": "timeout"}
        task_group, job_group = (root / "pgids").read_text().split()
        assert task_group != job_group  # the premise: the job left the group timeout(1) signals
        assert not alive(gc)
    finally:
        _kill(gc)


def test_a_retry_waits_until_the_previous_sessions_processes_are_gone(tmp_path):
    """A leftover that was not killed when its try ended (e.g. a try recorded by an older
    pipectl) is killed before the retry starts."""
    root = make_project(tmp_path, {"p": _spec(PROBE.format(body="sleep 30"), "    retries: 1\n    retry_delay: 0\n")})
    # try 1's process group leader is the wrapper; the wrapper is still alive, so the tick
    # records nothing: fail try 1 by hand (an older pipectl's result) and keep its task alive
    ok(root, "trigger", "p", "--date", DATE)
    assert wait_for(lambda: (root / "holder.1").exists(), 5)
    (t,) = tries(root)
    holder = int((root / "holder.1").read_text())
    try:
        conn = __import__("sqlite3").connect(root / ".pipectl" / "state.db")
        with conn:
            conn.execute("UPDATE tries SET state = 'failed', exit_code = 1, reason = 'exit_code', \"end\" = start "
                         "WHERE id = ?", (t["id"],))
            conn.execute("UPDATE task_instances SET state = 'up_for_retry', next_try_at = 0 WHERE id = ?", (t["ti"],))
        conn.close()
        ok(root, "tick")
        assert not alive(holder)
        assert wait_for(lambda: _lines(root / "starts.txt") == ["1", "2"], 5), _lines(root / "starts.txt")
        assert _lines(root / "overlap.txt") == []
    finally:
        _forget(root, [x["pid"] for x in tries(root) if x["pid"]])


def test_a_fifo_at_a_status_path_does_not_hang_the_tick(tmp_path):
    root = make_project(tmp_path, {"p": 'tasks:\n  t:\n    run: "while [ ! -e go ]; do sleep 0.02; done"\n'})
    ok(root, "trigger", "p", "--date", DATE)
    assert wait_for(lambda: len(tries(root)) == 1 and tries(root)[0]["state"] == "running", 5)
    (t,) = tries(root)
    try:
        os.mkfifo(t["status_path"])
        r = cli(root, "tick", timeout=20)
        assert r.returncode == 0, r.stderr
        assert tis(root)[(DATE, "t")]["state"] == "running"
        # the wrapper replaces what sits at its status path instead of blocking on it
        (root / "go").touch()
        assert wait_for(lambda: tis(root)[(DATE, "t")]["state"] == "success", 10), tries(root)[0]["state"]
        (t,) = tries(root)
        assert (t["state"], t["exit_code"]) == ("success", 0)
    finally:
        _forget(root, [t["pid"]])


def test_a_status_directory_deleted_under_a_running_try_loses_no_result(tmp_path):
    import shutil

    root = make_project(tmp_path, {"p": 'tasks:\n  t:\n    run: "while [ ! -e go ]; do sleep 0.02; done"\n'})
    ok(root, "trigger", "p", "--date", DATE)
    assert wait_for(lambda: len(tries(root)) == 1 and tries(root)[0]["state"] == "running", 5)
    (t,) = tries(root)
    try:
        shutil.rmtree(root / ".pipectl" / "status")
        (root / "go").touch()
        assert wait_for(lambda: tis(root)[(DATE, "t")]["state"] == "success", 10), tries(root)[0]["state"]
        (t,) = tries(root)
        assert (t["state"], t["exit_code"], t["reason"]) == ("success", 0, None)
        assert (root / ".pipectl" / "status").stat().st_mode & 0o777 == 0o700
    finally:
        _forget(root, [t["pid"]])


def _wrapper(status: Path, *argv: str, cwd: Path) -> subprocess.Popen:
    """The wrapper as a launcher starts it, with no reaper to start when it ends."""
    return subprocess.Popen(["/bin/sh", executor.WRAPPER, str(status), "0", "2", str(cwd / "sups"), "", "", "0",
                             "0022", "--", *argv], cwd=cwd, start_new_session=True)


def test_a_try_given_up_before_its_wrapper_claimed_it_never_runs(tmp_path):
    """A launcher killed between starting the wrapper and recording it: a reaper that finds no
    claim gives the try up for good, and a wrapper that only comes up afterwards runs nothing."""
    status = tmp_path / "status" / "7.1"
    assert executor.unrecorded_try(str(status)) == ("never", None)
    w = _wrapper(status, "sh", "-c", "echo ran > ran.txt", cwd=tmp_path)
    assert w.wait(10) == 0
    assert not (tmp_path / "ran.txt").exists()
    assert executor.read_status(str(status)) is None
    assert executor.unrecorded_try(str(status)) == ("never", None)


def test_a_wrapper_that_claimed_its_try_names_its_session(tmp_path):
    status = tmp_path / "status" / "7.1"
    w = _wrapper(status, "sh", "-c", "echo $$ > task.pid; while [ ! -e go ]; do sleep 0.02; done", cwd=tmp_path)
    try:
        assert wait_for(lambda: (tmp_path / "task.pid").exists(), 5)
        assert executor.unrecorded_try(str(status)) == ("ran", w.pid)
        assert executor.is_wrapper(w.pid, str(status))
        task = int((tmp_path / "task.pid").read_text())
        assert os.getsid(task) == w.pid
        (tmp_path / "go").touch()
        assert w.wait(10) == 0
        assert executor.read_status(str(status))[0] == 0
        # the claim and the status are private whatever the umask the wrapper ran under
        assert {p.name: p.stat().st_mode & 0o777 for p in status.parent.iterdir()} == {"7.1": 0o600, "7.1.pid": 0o600}
    finally:
        _forget(tmp_path, [w.pid])


def test_soak_kill_bounded(tmp_path):
    """bench/soak_kill.py at a small size: kill -9 of ticks, supervisors, backfills, wrappers and
    reapers at random instants loses no result, starts no try twice, leaves nothing running."""
    import importlib.util

    path = Path(__file__).resolve().parent.parent / "bench" / "soak_kill.py"
    spec = importlib.util.spec_from_file_location("soak_kill", path)
    soak_kill = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(soak_kill)
    seed = int(os.environ.get("PIPECTL_TEST_SEED", "20260405"))
    # eight kills exercise the mechanism in the suite; `bench/soak_kill.py --kills 200` is the soak
    r = soak_kill.soak(kills=8, seed=seed, sleep=0.05, window=0.6, workdir=str(tmp_path))
    assert r["kills"] == 8
    assert (r["lost"], r["doubles"], r["stuck"], r["orphans"], r["integrity"]) == ([], [], [], [], "ok"), \
        soak_kill.verdict(r)
    assert r["runs"] > 0 and r["starts"] > 0


def test_a_live_wrapper_whose_claim_was_deleted_is_adopted_not_given_up(tmp_path):
    status = tmp_path / "status" / "7.1"
    w = _wrapper(status, "sh", "-c", "echo $$ > task.pid; while [ ! -e go ]; do sleep 0.02; done", cwd=tmp_path)
    try:
        assert wait_for(lambda: (tmp_path / "task.pid").exists(), 5)
        os.unlink(executor.claim_path(str(status)))
        assert executor.unrecorded_try(str(status)) == ("ran", w.pid)
        assert executor.read_claim(str(status)) is None  # nothing written over it
        (tmp_path / "go").touch()
        assert w.wait(10) == 0
        assert executor.read_status(str(status))[0] == 0
    finally:
        _forget(tmp_path, [w.pid])
