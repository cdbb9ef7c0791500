"""SPEC §8: concurrent ticks create each run once and start each try once; kill -9 at any
instant loses no recorded result, never overlaps two processes of one task instance,
and the next tick carries on."""
from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter

from conftest import cli_env
from harness import cli, make_project, ok, q, runs, state_db, tries

# Each task appends one line per start; `flock -n` on a per-task-instance file detects
# two processes of one task instance running at once.
COUNTING = """
schedule: "0 2 * * *"
start_date: 2026-04-01
catchup: true
max_active_runs: {max_active}
tasks:
  a:
    run: &r 'flock -n "$PIPECTL_RUN_ID.$PIPECTL_TASK.lock" sh -c "echo $PIPECTL_RUN_ID $PIPECTL_TASK >> starts.txt; sleep {sleep}; echo $PIPECTL_RUN_ID $PIPECTL_TASK >> ends.txt" || echo "$PIPECTL_RUN_ID $PIPECTL_TASK" >> overlap.txt'
  b:
    run: *r
    needs: [a]
  c:
    run: *r
    needs: [a]
"""


def _lines(path):
    return path.read_text().splitlines() if path.exists() else []


def test_twenty_ticks_at_once_create_each_run_once_and_start_each_try_once(tmp_path):
    root = make_project(tmp_path, {"d": COUNTING.format(max_active=4, sleep=0.05)})
    now = "2026-04-05T03:00:00Z"
    env = cli_env({})
    procs = [subprocess.Popen([sys.executable, "-m", "pipectl", "--project", str(root), "--now", now, "tick"],
                              cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(20)]
    outs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0] * 20, outs
    created = [line for out, _ in outs for line in out.splitlines() if line.startswith("created:")]
    assert sorted(created) == [f"created: d 2026-04-0{d}T02:00:00+00:00" for d in (1, 2, 3, 4)]
    ok(root, "tick", "--wait", now=now)
    got = runs(root, "d")
    assert [(r["ds"], r["state"]) for r in got] == [(f"2026-04-0{d}", "success") for d in (1, 2, 3, 4)]
    expected = sorted(f"scheduled__2026-04-0{d}T02:00:00+00:00 {t}" for d in (1, 2, 3, 4) for t in "abc")
    assert sorted(_lines(root / "starts.txt")) == expected
    assert sorted(_lines(root / "ends.txt")) == expected
    assert _lines(root / "overlap.txt") == []
    assert Counter((t["ti"], t["try_number"]) for t in tries(root)) == Counter(
        {(t["ti"], 1): 1 for t in tries(root)})
    assert len(tries(root)) == 12
    assert len(q(root, "SELECT * FROM runs")) == 4


def _spawn(root, *args):
    return subprocess.Popen([sys.executable, "-m", "pipectl", "--project", str(root), *args],
                            cwd=root, env=cli_env({}), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_kill_9_at_random_moments_loses_nothing_and_never_overlaps(tmp_path):
    rng = random.Random(int(os.environ.get("PIPECTL_TEST_SEED", "20260405")))
    root = make_project(tmp_path, {"d": COUNTING.format(max_active=2, sleep=0.1).replace(
        "tasks:", "defaults:\n  retries: 0\ntasks:")})
    now = "2026-04-06T03:00:00Z"
    final: dict[tuple, str] = {}
    for i in range(10):
        if i % 2:
            p = _spawn(root, "--now", now, "run", "d", "--date", f"2026-05-{i:02d}")
        else:
            p = _spawn(root, "--now", now, "tick", "--wait")
        time.sleep(rng.uniform(0, 0.5))
        p.send_signal(signal.SIGKILL)
        p.wait()
        if not state_db(root).exists():
            continue
        # no recorded result is ever lost: a success stays a success, an ended try stays ended
        conn = sqlite3.connect(state_db(root), timeout=30)
        try:
            snapshot = [(("ti", k), s) for k, s in conn.execute("SELECT id, state FROM task_instances")]
            snapshot += [(("try", k), s) for k, s in conn.execute("SELECT id, state FROM tries")]
        except sqlite3.OperationalError as e:
            assert "no such table" in str(e)  # killed while creating the state file: nothing recorded yet
            continue
        finally:
            conn.close()
        for key, st in snapshot:
            if key in final:
                assert st == final[key], (key, final[key], st)
            if st in ("success", "failed", "lost") and (key[0] == "try" or st == "success"):
                final[key] = st
    r = cli(root, "--now", now, "tick", "--wait", timeout=120)
    assert r.returncode == 0, (r.stdout, r.stderr)
    got = runs(root, "d")
    if os.environ.get("PIPECTL_TEST_VERBOSE"):
        print(len(got), Counter(t["state"] for t in tries(root)), len(tries(root)))
    assert got, "no run was ever created"
    assert all(x["state"] == "success" for x in got), [(x["ds"], x["state"], x["tasks"]) for x in got]
    assert _lines(root / "overlap.txt") == []
    starts = Counter(_lines(root / "starts.txt"))
    # every try that started its command is a recorded try; none ran twice
    by_ti = Counter()
    for t in tries(root):
        by_ti[f"{q(root, 'SELECT run_id FROM runs WHERE ds = ?', (t['ds'],))[0]['run_id']} {t['task']}"] += 1
    for key, n in starts.items():
        assert n <= by_ti[key], (key, n, by_ti[key])
    for x in got:
        for task, ti in x["tasks"].items():
            assert ti["state"] == "success"
    conn = sqlite3.connect(state_db(root))
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    finally:
        conn.close()
