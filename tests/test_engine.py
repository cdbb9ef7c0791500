"""The tick: its lock, and tries whose process vanished (kill -9, reboot, pid reuse)."""
from __future__ import annotations

import os
import subprocess
import time

import pytest
from filelock import FileLock

from enginekit import alive, cli, kill_session, make_project, ok, q, runs, tis, tries, wait_for

from pipectl.executor import boot_id, process_start

LONG_FIRST_TRY = """
tasks:
  t:
    run: '[ "$PIPECTL_TRY_NUMBER" = 1 ] && sleep 30; echo try $PIPECTL_TRY_NUMBER'
    retries: {retries}
    retry_delay: 0
"""


def test_second_tick_exits_at_once_while_one_holds_the_lock(tmp_path):
    root = make_project(tmp_path, {"d": """
        schedule: "0 2 * * *"
        start_date: 2026-04-01
        catchup: true
        tasks:
          a: {run: "true"}
    """})
    (root / ".pipectl").mkdir(mode=0o700)
    lock = FileLock(str(root / ".pipectl" / "tick.lock"))
    lock.acquire()
    try:
        t0 = time.monotonic()
        r = cli(root, "tick", now="2026-04-05T03:00:00Z")
        assert time.monotonic() - t0 < 5
        assert r.returncode == 0, r.stderr
        assert "another tick is running" in r.stderr
        assert r.stdout == ""
        r = cli(root, "tick", "--wait", now="2026-04-05T03:00:00Z")
        assert r.returncode == 0 and "another tick is running" in r.stderr
    finally:
        lock.release()
    assert not (root / ".pipectl" / "state.db").exists() or q(root, "SELECT * FROM runs") == []
    r = ok(root, "tick", now="2026-04-05T03:00:00Z")
    assert len(q(root, "SELECT * FROM runs")) == 4


def _running_try(root, timeout=5.0):
    """The first try once its task process is up."""
    def up():
        rows = [t for t in tries(root) if t["state"] == "running" and t["pid"]]
        return rows[0] if rows and len(os.listdir(f"/proc")) and len(_session(rows[0]["pid"])) >= 3 else None
    row = wait_for(up, timeout)
    assert row is not None, [dict(t) for t in tries(root)]
    return row


def _session(sid):
    from enginekit import session_pids
    return session_pids(sid)


@pytest.mark.parametrize("retries", [1, 0])
def test_wrapper_killed_9_is_lost_and_retried_by_policy(tmp_path, retries):
    root = make_project(tmp_path, {"p": LONG_FIRST_TRY.format(retries=retries)})
    ok(root, "trigger", "p", "--date", "2026-04-01")
    t1 = _running_try(root)
    members = _session(t1["pid"])
    kill_session(t1["pid"])
    assert wait_for(lambda: not any(alive(p) for p in members), 3)
    r = ok(root, "tick") if retries else cli(root, "tick")
    assert "lost: p 2026-04-01 t try 1" in r.stdout
    t = tries(root)
    assert (t[0]["try_number"], t[0]["state"], t[0]["reason"], t[0]["exit_code"]) == (1, "lost", "lost", None)
    if retries:
        assert "launched: p 2026-04-01 t try 2" in r.stdout
        ok(root, "tick", "--wait")
        (run,) = runs(root, "p")
        assert run["state"] == "success"
        assert run["tasks"] == {"t": {"state": "success", "tries": 2, "exit_code": 0, "reason": None}}
        assert [(x["try_number"], x["state"]) for x in tries(root)] == [(1, "lost"), (2, "success")]
    else:
        (run,) = runs(root, "p")
        assert run["state"] == "failed"
        assert run["tasks"] == {"t": {"state": "failed", "tries": 1, "exit_code": None, "reason": "lost"}}


def test_reboot_marks_running_try_lost(tmp_path):
    """After a reboot the recorded pid means nothing: a different boot id makes the try lost."""
    root = make_project(tmp_path, {"p": LONG_FIRST_TRY.format(retries=1)})
    ok(root, "trigger", "p", "--date", "2026-04-01")
    t1 = _running_try(root)
    real = t1["pid"]
    try:
        dead = subprocess.Popen(["true"])
        dead.wait()
        conn = __import__("enginekit").db(root)
        with conn:
            conn.execute("UPDATE tries SET pid = ?, boot_id = 'another-boot' WHERE id = ?", (dead.pid, t1["id"]))
        conn.close()
        r = ok(root, "tick")
        assert "lost: p 2026-04-01 t try 1" in r.stdout
        assert "launched: p 2026-04-01 t try 2" in r.stdout
        ok(root, "tick", "--wait")
        assert [(x["try_number"], x["state"], x["reason"]) for x in tries(root)] == [
            (1, "lost", "lost"), (2, "success", None)]
        assert runs(root, "p")[0]["state"] == "success"
    finally:
        kill_session(real)


def test_reused_pid_is_lost_and_the_stranger_is_left_alone(tmp_path):
    root = make_project(tmp_path, {"p": LONG_FIRST_TRY.format(retries=1)})
    ok(root, "trigger", "p", "--date", "2026-04-01")
    t1 = _running_try(root)
    kill_session(t1["pid"])
    # an unrelated process now holds a pid the try row names, with another start time
    stranger = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        assert process_start(stranger.pid) != "1"
        conn = __import__("enginekit").db(root)
        with conn:
            conn.execute("UPDATE tries SET pid = ?, pid_start = '1', boot_id = ? WHERE id = ?",
                         (stranger.pid, boot_id(), t1["id"]))
        conn.close()
        r = ok(root, "tick")
        assert "lost: p 2026-04-01 t try 1" in r.stdout
        assert stranger.poll() is None, "pipectl killed a process that merely reused the try's pid"
        ok(root, "tick", "--wait")
        assert [(x["try_number"], x["state"]) for x in tries(root)] == [(1, "lost"), (2, "success")]
    finally:
        stranger.kill()
        stranger.wait()


def test_orphaned_task_of_a_killed_wrapper_is_ended_before_the_retry(tmp_path):
    """kill -9 of the wrapper alone leaves its task running: the tick that finds the try
    lost ends that task so it never runs beside the retry."""
    root = make_project(tmp_path, {"p": LONG_FIRST_TRY.format(retries=1)})
    ok(root, "trigger", "p", "--date", "2026-04-01")
    t1 = _running_try(root)
    others = [p for p in _session(t1["pid"]) if p != t1["pid"]]
    os.kill(t1["pid"], 9)
    assert wait_for(lambda: not alive(t1["pid"]), 3)
    assert any(alive(p) for p in others)
    r = ok(root, "tick")
    assert "lost: p 2026-04-01 t try 1" in r.stdout
    assert wait_for(lambda: not any(alive(p) for p in others), 3)
    ok(root, "tick", "--wait")
    assert tis(root)[("2026-04-01", "t")]["state"] == "success"
