"""The tick: its lock, and tries whose process vanished (kill -9, reboot, pid reuse)."""
from __future__ import annotations

import os
import subprocess
import time

import pytest
from filelock import FileLock

from harness import alive, cli, db, kill_session, make_project, ok, q, runs, tis, tries, wait_for

from pipectl.exec.executor import boot_id, process_start
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
    from harness import session_pids
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
        conn = db(root)
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
        conn = db(root)
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


# -- retries, trigger rules, states, hooks --------------------------------------------------

from datetime import datetime  # noqa: E402

from pipectl.model.pipeline import RetryPolicy  # noqa: E402
from pipectl.engine.step import trigger_outcome  # noqa: E402


def test_retry_policy_delay_and_budget():
    fixed = RetryPolicy(retries=3, retry_delay=10)
    assert [fixed.delay(n) for n in (1, 2, 3)] == [10, 10, 10]
    exp = RetryPolicy(retries=5, retry_delay=10, retry_backoff="exponential", max_retry_delay=50)
    assert [exp.delay(n) for n in (1, 2, 3, 4, 5)] == [10, 20, 40, 50, 50]
    uncapped = RetryPolicy(retries=5, retry_delay=1, retry_backoff="exponential")
    assert [uncapped.delay(n) for n in (1, 2, 3, 4)] == [1, 2, 4, 8]
    assert [fixed.may_retry(n, 1) for n in (1, 2, 3, 4)] == [True, True, True, False]
    assert RetryPolicy(retries=0).may_retry(1, 1) is False
    only = RetryPolicy(retries=3, retry_on_exit_codes=(75,), no_retry_exit_codes=(3,))
    assert (only.may_retry(1, 75), only.may_retry(1, 1), only.may_retry(1, 3), only.may_retry(1, None)) == (
        True, False, False, True)


def _run_once(root, date="2026-04-01", code=None):
    r = cli(root, "trigger", "p", "--date", date, "--wait")
    if code is not None:
        assert r.returncode == code, (r.stdout, r.stderr)
    (run,) = [x for x in runs(root, "p") if x["ds"] == date]
    return run


def test_fixed_retries_make_exactly_n_plus_one_tries(tmp_path):
    root = make_project(tmp_path, {"p": """
        tasks:
          t:
            run: "echo try $PIPECTL_TRY_NUMBER >> tries.txt; exit 1"
            retries: 2
            retry_delay: 0.2s
    """})
    run = _run_once(root, code=1)
    assert run["state"] == "failed"
    assert run["tasks"]["t"] == {"state": "failed", "tries": 3, "exit_code": 1, "reason": "exit_code"}
    assert (root / "tries.txt").read_text().split("\n")[:-1] == ["try 1", "try 2", "try 3"]
    t = tries(root)
    assert [(x["try_number"], x["state"], x["exit_code"]) for x in t] == [(1, "failed", 1), (2, "failed", 1), (3, "failed", 1)]
    for a, b in zip(t, t[1:]):
        assert 0.2 - 0.01 <= b["start"] - a["end"] < 0.2 + 2.0
    assert len({x["log_path"] for x in t}) == 3  # each try has its own log


def test_exponential_backoff_capped(tmp_path):
    root = make_project(tmp_path, {"p": """
        tasks:
          t:
            run: "exit 1"
            retries: 3
            retry_delay: 0.2s
            retry_backoff: exponential
            max_retry_delay: 0.5s
    """})
    assert cli(root, "trigger", "p", "--date", "2026-04-01", "--wait").returncode == 1
    t = tries(root)
    assert [(x["try_number"], x["state"]) for x in t] == [(1, "failed"), (2, "failed"), (3, "failed"), (4, "failed")]
    assert tis(root)[("2026-04-01", "t")]["state"] == "failed"
    # each retry is scheduled at (try end + delay): next_try_at as the task_retry events recorded it
    events = q(root, "SELECT ts, message FROM events WHERE kind = 'task_retry' ORDER BY id")
    delays = [datetime.fromisoformat(e["message"].rsplit("retry at ", 1)[1]).timestamp() - e["ts"] for e in events]
    assert [round(d, 3) for d in delays] == [0.2, 0.4, 0.5]  # 0.2 * 2**(n-1), capped at 0.5 (not 0.8)
    for a, b, d in zip(t, t[1:], delays):
        assert b["start"] - a["end"] >= d - 0.01


def test_no_retry_exit_codes_fail_at_once(tmp_path):
    root = make_project(tmp_path, {"p": """
        tasks:
          t:
            run: "exit 3"
            retries: 3
            retry_delay: 0
            no_retry_exit_codes: [3]
    """})
    run = _run_once(root, code=1)
    assert run["tasks"]["t"] == {"state": "failed", "tries": 1, "exit_code": 3, "reason": "exit_code"}


def test_retry_on_exit_codes(tmp_path):
    root = make_project(tmp_path, {"p": """
        tasks:
          t:
            run: '[ "$PIPECTL_TRY_NUMBER" -lt 3 ] && exit 75; exit 1'
            retries: 5
            retry_delay: 0
            retry_on_exit_codes: [75]
          u:
            run: '[ "$PIPECTL_TRY_NUMBER" -lt 3 ] && exit 75; exit 0'
            retries: 5
            retry_delay: 0
            retry_on_exit_codes: [75]
    """})
    run = _run_once(root, code=1)
    assert run["tasks"]["t"] == {"state": "failed", "tries": 3, "exit_code": 1, "reason": "exit_code"}
    assert run["tasks"]["u"] == {"state": "success", "tries": 3, "exit_code": 0, "reason": None}


def test_trigger_outcome_table():
    S, F, U, K = "success", "failed", "upstream_failed", "skipped"
    cases = {
        ("all_success", (S, S)): "ready", ("all_success", (S, F)): U, ("all_success", (S, K)): K,
        ("all_success", (S, "running")): None,
        ("all_done", (S, F)): "ready", ("all_done", (U, K)): "ready", ("all_done", (S, "pending")): None,
        ("all_failed", (F, U)): "ready", ("all_failed", (F, S)): K, ("all_failed", (F, "running")): None,
        ("one_failed", (F, "running")): "ready", ("one_failed", (S, S)): K, ("one_failed", (S, "running")): None,
        ("one_success", (S, "running")): "ready", ("one_success", (F, F)): U, ("one_success", (F, "up_for_retry")): None,
        ("none_failed", (S, K)): "ready", ("none_failed", (S, F)): U, ("none_failed", (S, "pending")): None,
    }
    for (rule, ups), want in cases.items():
        assert trigger_outcome(rule, list(ups)) == want, (rule, ups)
    assert trigger_outcome("all_failed", []) == "ready"


def test_every_trigger_rule_through_a_run(tmp_path):
    root = make_project(tmp_path, {"p": """
        tasks:
          ok: {run: "true"}
          bad: {run: "exit 1"}
          r_all_success: {run: "true", needs: [ok, bad]}
          r_all_done: {run: "true", needs: [ok, bad], trigger_rule: all_done}
          r_all_failed_mixed: {run: "true", needs: [ok, bad], trigger_rule: all_failed}
          r_all_failed: {run: "true", needs: [bad], trigger_rule: all_failed}
          r_one_failed: {run: "true", needs: [ok, bad], trigger_rule: one_failed}
          r_one_failed_none: {run: "true", needs: [ok], trigger_rule: one_failed}
          r_one_success: {run: "true", needs: [ok, bad], trigger_rule: one_success}
          r_one_success_none: {run: "true", needs: [bad], trigger_rule: one_success}
          r_none_failed: {run: "true", needs: [ok, bad], trigger_rule: none_failed}
          r_none_failed_skip: {run: "true", needs: [ok, r_one_failed_none], trigger_rule: none_failed}
          r_after_skip: {run: "true", needs: [r_one_failed_none]}
    """})
    run = _run_once(root, code=1)
    got = {k: v["state"] for k, v in run["tasks"].items()}
    assert got == {
        "ok": "success", "bad": "failed",
        "r_all_success": "upstream_failed",
        "r_all_done": "success",
        "r_all_failed_mixed": "skipped",
        "r_all_failed": "success",
        "r_one_failed": "success",
        "r_one_failed_none": "skipped",
        "r_one_success": "success",
        "r_one_success_none": "upstream_failed",
        "r_none_failed": "upstream_failed",
        "r_none_failed_skip": "success",
        "r_after_skip": "skipped",
    }
    assert run["state"] == "failed"
    assert run["tasks"]["r_all_success"] == {"state": "upstream_failed", "tries": 0, "exit_code": None,
                                             "reason": "trigger_rule"}


def test_failure_stops_dependents_while_an_unrelated_branch_succeeds(tmp_path):
    root = make_project(tmp_path, {"p": """
        tasks:
          a: {run: "exit 2"}
          b: {run: "touch b-ran"}
          c: {run: "touch c-ran"}
          x: {run: "sleep 0.2"}
          y: {run: "touch y-ran"}
        edges:
          - a >> b >> c
          - x >> y
    """})
    run = _run_once(root, code=1)
    assert {k: (v["state"], v["tries"]) for k, v in run["tasks"].items()} == {
        "a": ("failed", 1), "b": ("upstream_failed", 0), "c": ("upstream_failed", 0),
        "x": ("success", 1), "y": ("success", 1)}
    assert run["state"] == "failed"
    assert not (root / "b-ran").exists() and not (root / "c-ran").exists()
    assert (root / "y-ran").exists()
    r = cli(root, "tick", "--wait")
    assert r.returncode == 0  # nothing left to drive


def test_hooks_get_state_exit_code_and_log(tmp_path):
    hook = 'echo "$PIPECTL_TASK $PIPECTL_STATE $PIPECTL_EXIT_CODE $PIPECTL_TRY_NUMBER $PIPECTL_LOG" >> hooks.txt'
    root = make_project(tmp_path, {"p": f"""
        on_failure: '{hook}'
        on_retry: '{hook}'
        on_success: '{hook}'
        tasks:
          flaky:
            run: "exit 4"
            retries: 1
            retry_delay: 0.2s
          fine:
            run: "true"
          loud:
            run: "true"
            on_success: "echo hook-output; exit 7"
    """})
    run = _run_once(root, code=1)
    assert {k: v["state"] for k, v in run["tasks"].items()} == {"flaky": "failed", "fine": "success", "loud": "success"}
    logs = {(x["task"], x["try_number"]): x["log_path"] for x in tries(root)}
    want = sorted([
        f"flaky up_for_retry 4 1 {logs['flaky', 1]}",
        f"flaky failed 4 2 {logs['flaky', 2]}",
        f"fine success 0 1 {logs['fine', 1]}",
    ])
    assert wait_for(lambda: sorted((root / "hooks.txt").read_text().splitlines()) == want, 3), \
        (root / "hooks.txt").read_text()
    hooks_log = (root / logs["loud", 1]).parent / "hooks.log" if not logs["loud", 1].startswith("/") else \
        __import__("pathlib").Path(logs["loud", 1]).parent / "hooks.log"
    assert wait_for(lambda: hooks_log.exists() and "pipectl: hook on_success exited 7" in hooks_log.read_text(), 3)
    assert "hook-output" in hooks_log.read_text()
    # a failing hook never changes task state
    assert tis(root)[("2026-04-01", "loud")]["state"] == "success"
    assert runs(root, "p")[0]["tasks"]["loud"] == {"state": "success", "tries": 1, "exit_code": 0, "reason": None}


def test_claimed_try_whose_launcher_died_before_starting_it_costs_no_retry(tmp_path):
    """kill -9 between claiming a task instance and starting its wrapper: nothing ran, so
    even with retries: 0 the next tick starts it (once) instead of failing it."""
    import time as _time
    from datetime import datetime, timezone

    from pipectl.spec.config import load_config
    from pipectl.engine.step import Clock, Engine
    from pipectl.spec.loader import load_pipelines
    from pipectl.engine.tick import open_store
    root = make_project(tmp_path, {"p": """
        tasks:
          t: {run: "echo ran >> ran.txt"}
    """})
    config = load_config(root)
    store = open_store(config)
    try:
        eng = Engine(config, store, Clock())
        pk = eng.create_run(load_pipelines(config).pipelines["p"], datetime(2026, 4, 1, tzinfo=timezone.utc),
                            run_type="manual")
        eng.promote()
        (ti,) = store.task_instances(pk)
        dead = subprocess.Popen(["true"])
        dead.wait()
        with store.tx():
            n = store.claim_task_instance(ti.id, _time.time())
            store.insert_try(ti.id, n, launcher_pid=dead.pid, launcher_start="1", boot_id=boot_id(),
                             status_path=str(root / ".pipectl" / "status" / "never"), log_path=str(root / "never.log"),
                             timeout=None, pool=None, now=_time.time())
    finally:
        store.close()
    r = ok(root, "tick", "--wait")
    assert "lost: p 2026-04-01 t try 1" in r.stdout
    (run,) = runs(root, "p")
    assert run["state"] == "success"
    assert run["tasks"]["t"] == {"state": "success", "tries": 2, "exit_code": 0, "reason": None}
    assert [(x["try_number"], x["state"]) for x in tries(root)] == [(1, "lost"), (2, "success")]
    assert (root / "ran.txt").read_text() == "ran\n"
