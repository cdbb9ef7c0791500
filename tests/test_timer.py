"""Due times kept within a second with plain ticks only: no --wait, no supervisor, no daemon.

Every test here starts work with a plain `tick` (or an operator command) and then only
watches the state file: whatever acts on the due times afterwards is pipectl's own
hand-off (wrappers' reapers, the project's timer process). Real short durations, since
real time is what is measured; the tolerance is the contract's 1 s.
"""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from harness import cli, make_project, ok, q, tries, wait_for

LATE = 1.0  # SPEC: due times are kept within 1 s


def timers(root) -> list[int]:
    """Pids of live timer processes of this project."""
    want = str(root).encode()
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        if stat[stat.rindex(b")") + 2:].split()[0] == b"Z":
            continue
        if b"pipectl.exec.timer" in argv and want in argv:
            pids.append(int(entry))
    return pids


def event_ts(root, kind: str) -> float:
    return q(root, "SELECT ts FROM events WHERE kind = ? ORDER BY id DESC LIMIT 1", (kind,))[0]["ts"]


RETRY = """
    schedule: "@daily"
    start_date: 2026-04-01
    tasks:
      flaky:
        run: 'test -e once || {{ touch once; exit 3; }}'
        retries: 2
        retry_delay: {delay}
      after: {{run: "true", needs: [flaky]}}
"""


def test_a_retry_starts_within_a_second_of_its_delay_after_one_plain_tick(tmp_path):
    root = make_project(tmp_path, {"r": RETRY.format(delay="2s")})
    r = ok(root, "--now", "2026-04-05T03:00:00Z", "tick")  # creates the run, starts try 1; nothing else runs
    assert "launched: r 2026-04-04 flaky try 1" in r.stdout
    done = wait_for(lambda: [t for t in tries(root) if t["task"] == "after" and t["end"]], timeout=15)
    assert done, [dict(t) for t in tries(root)]
    first, second = [t for t in tries(root) if t["task"] == "flaky"]
    assert (first["try_number"], first["state"], first["exit_code"]) == (1, "failed", 3)
    assert (second["try_number"], second["state"], second["exit_code"]) == (2, "success", 0)
    due = first["end"] + 2.0
    assert 0 <= second["start"] - due <= LATE, second["start"] - due
    # the timeline is the tick's --now, carried through wrapper, reaper and timer
    assert abs(second["start"] - 1775358000.0) < 60
    after = [t for t in tries(root) if t["task"] == "after"][0]
    assert 0 <= after["start"] - second["end"] <= LATE
    assert q(root, "SELECT state FROM runs")[0]["state"] == "success"
    assert wait_for(lambda: not timers(root), timeout=70)  # nothing due: the timer went away


SENSOR = """
    tasks:
      wait:
        sensor: {file: flag}
        poke_interval: 1s
        timeout: 1h
      after: {run: "true", needs: [wait]}
"""


def test_a_one_second_sensor_is_poked_every_second_without_ticks(tmp_path):
    root = make_project(tmp_path, {"s": SENSOR})
    ok(root, "trigger", "s")  # pokes once (not there), then leaves the next poke to the timer
    assert q(root, "SELECT state FROM task_instances WHERE task = 'wait'")[0]["state"] == "pending"
    time.sleep(2.5)  # a few pokes come and go
    (root / "flag").write_text("x")
    made = time.time()
    assert wait_for(lambda: [t for t in tries(root) if t["task"] == "after" and t["end"]], timeout=10)
    after = [t for t in tries(root) if t["task"] == "after"][0]
    # the next poke comes within its interval (1 s) of the file appearing, late by at most LATE
    assert after["start"] - made <= 1.0 + LATE, after["start"] - made
    assert q(root, "SELECT state FROM runs")[0]["state"] == "success"


ZERO = """
    tasks:
      wait:
        sensor: {command: "echo poke >> pokes; exit 1"}
        poke_interval: 0s
        timeout: 3s
        soft_fail: true
"""


def test_poke_interval_0s_is_accepted_and_pokes_about_once_a_second_not_in_a_busy_loop(tmp_path):
    root = make_project(tmp_path, {"z": ZERO})
    assert ok(root, "validate").returncode == 0
    ok(root, "trigger", "z")
    assert wait_for(lambda: q(root, "SELECT state FROM runs")[0]["state"] != "running", timeout=10)
    assert q(root, "SELECT state, reason FROM task_instances")[0]["state"] == "skipped"
    pokes = (root / "pokes").read_text().split()
    # 3 s at one poke per second (MIN_POKE_GAP), give or take one; a busy loop would make hundreds
    assert 3 <= len(pokes) <= 6, len(pokes)


MARK = """
    tasks:
      gate:
        sensor: {file: never-there}
        poke_interval: 1h
      load: {run: "true", needs: [gate]}
"""


def test_mark_starts_what_it_made_ready_at_once(tmp_path):
    root = make_project(tmp_path, {"m": MARK})
    ok(root, "--now", "2026-04-05T03:00:00Z", "trigger", "m", "--date", "2026-04-04")
    ok(root, "--now", "2026-04-05T03:00:00Z", "mark", "m", "--date", "2026-04-04", "--task", "gate", "success")
    marked = event_ts(root, "mark")
    assert wait_for(lambda: [t for t in tries(root) if t["task"] == "load" and t["end"]], timeout=10)
    load = [t for t in tries(root) if t["task"] == "load"][0]
    assert 0 <= load["start"] - marked <= LATE, load["start"] - marked
    assert q(root, "SELECT state FROM runs")[0]["state"] == "success"


FAILS = """
    tasks:
      a: {run: 'test -e fixed'}
      b: {run: "true", needs: [a]}
"""


def test_retry_starts_the_task_at_once_and_its_downstream_follows(tmp_path):
    root = make_project(tmp_path, {"f": FAILS})
    assert cli(root, "run", "f", "--date", "2026-04-04").returncode == 1
    (root / "fixed").write_text("")
    ok(root, "retry", "f", "--date", "2026-04-04")
    retried = event_ts(root, "retry")
    assert wait_for(lambda: [t for t in tries(root) if t["task"] == "b" and t["end"]], timeout=10)
    a2 = [t for t in tries(root) if t["task"] == "a"][1]
    assert (a2["try_number"], a2["state"]) == (2, "success")
    assert 0 <= a2["start"] - retried <= LATE, a2["start"] - retried


QUEUED = """
    max_active_runs: 1
    tasks:
      t: {run: 'sleep 3'}
"""


def test_a_queued_run_starts_within_a_second_of_the_slot_freeing(tmp_path):
    root = make_project(tmp_path, {"q": QUEUED})
    ok(root, "trigger", "q", "--date", "2026-04-01")
    ok(root, "trigger", "q", "--date", "2026-04-02")
    assert [r["state"] for r in q(root, "SELECT state FROM runs ORDER BY id")] == ["running", "queued"]
    assert wait_for(lambda: len([t for t in tries(root) if t["end"]]) == 2, timeout=10)
    one, two = tries(root)
    assert (one["ds"], two["ds"]) == ("2026-04-01", "2026-04-02")
    assert 0 <= two["start"] - one["end"] <= LATE, two["start"] - one["end"]


def test_one_timer_per_project_a_plain_tick_is_never_refused_and_kill_9_loses_nothing(tmp_path):
    import subprocess
    import sys

    root = make_project(tmp_path, {"r": RETRY.format(delay="6s")})
    ok(root, "--now", "2026-04-05T03:00:00Z", "tick")
    assert wait_for(lambda: len(timers(root)) == 1, timeout=10)  # the failing try's reaper handed off
    offset = str(1775358000.0 - time.time())
    # more hand-offs while it lives start nothing new: five more timers exit at once
    extra = [subprocess.Popen([sys.executable, "-m", "pipectl.exec.timer", str(root), offset]) for _ in range(5)]
    for p in extra:
        assert p.wait(timeout=30) == 0
    assert len(timers(root)) == 1
    # the timer sleeps without the tick lock: ticks run meanwhile
    r = ok(root, "--now", "2026-04-05T03:00:01Z", "tick")
    assert "another tick is running" not in r.stderr
    # kill -9 it: the next tick takes over and the retry is not lost
    os.kill(timers(root)[0], signal.SIGKILL)
    assert wait_for(lambda: not timers(root), timeout=5)
    ok(root, "--now", "2026-04-05T03:00:02Z", "tick")
    assert wait_for(lambda: len([t for t in tries(root) if t["task"] == "flaky"]) == 2, timeout=15)
    assert wait_for(lambda: q(root, "SELECT state FROM runs")[0]["state"] == "success", timeout=10)
    assert [t["try_number"] for t in tries(root) if t["task"] == "flaky"] == [1, 2]
    assert wait_for(lambda: not timers(root), timeout=70)  # nothing due within a minute: it exits


def test_a_timer_with_nothing_due_exits_at_once(tmp_path):
    import subprocess
    import sys

    root = make_project(tmp_path, {"q": QUEUED})
    ok(root, "trigger", "q", "--date", "2026-04-01")
    t0 = time.monotonic()
    p = subprocess.run([sys.executable, "-m", "pipectl.exec.timer", str(root), "0"], timeout=30)
    assert p.returncode == 0
    assert time.monotonic() - t0 < 10
    assert Path(root, ".pipectl", "timer.lock").exists()
