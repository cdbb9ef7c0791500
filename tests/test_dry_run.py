"""Previews: `tick --dry-run` and `unpause --dry-run` say what would be created and started and
touch nothing; `status` and `next` warn before a catch-up backlog lands."""
from __future__ import annotations

import hashlib
import os
import time

from harness import cli, jcli, make_project, ok, runs, tries

NOW = "2026-04-10T03:00:00Z"
CATCHUP = """
    schedule: "0 2 * * *"
    start_date: 2026-04-01
    catchup: true
    max_active_runs: 2
    tasks:
      extract: {run: "touch ran-{{ pipeline }}-extract-{{ ds }}"}
      load: {run: "touch ran-{{ pipeline }}-load-{{ ds }}", needs: [extract]}
"""
LATEST = CATCHUP.replace("catchup: true", "catchup: false")
DAYS = [f"2026-04-0{d}" for d in range(1, 10)]  # intervals closed by 2026-04-10 03:00 UTC


def tree(root) -> list:
    """Every file under the state dir with its size and mtime, and the state file's digest.
    SQLite's shared-memory index (state.db-shm) is left out: any reader of a WAL database
    writes its read marks there; it holds no state."""
    state = root / ".pipectl"
    if not state.exists():
        return []
    out = sorted((str(p.relative_to(state)), p.stat().st_size, p.stat().st_mtime_ns) for p in state.rglob("*")
                 if not p.name.endswith("-shm"))
    out.append(hashlib.sha256((state / "state.db").read_bytes()).hexdigest())
    return out


def ran(root) -> list[str]:
    return sorted(p.name for p in root.glob("ran-*"))


def test_tick_dry_run_on_a_new_project_says_what_the_tick_does_and_creates_nothing(tmp_path):
    root = make_project(tmp_path, {"p": CATCHUP})
    d = jcli(root, "tick", "--dry-run", now=NOW)
    assert d["dry_run"] is True
    assert [(r["pipeline"], r["ds"], r["run_type"]) for r in d["created"]] == [("p", ds, "scheduled") for ds in DAYS]
    # max_active_runs 2: the two oldest runs start their first task
    assert [(t["ds"], t["task"], t["try"]) for t in d["starts"]] == [("2026-04-01", "extract", 1), ("2026-04-02", "extract", 1)]
    text = ok(root, "tick", "--dry-run", now=NOW).stdout
    assert text.splitlines()[0] == "tick --dry-run at 2026-04-10T03:00:00+00:00: nothing was changed"
    assert "would create 9 runs:" in text and "would start 2 task instances:" in text
    assert "  p 2026-04-01 extract try 1" in text
    time.sleep(0.3)
    assert not (root / ".pipectl").exists() and ran(root) == []
    # the real tick does exactly what the preview said
    real = jcli(root, "tick", now=NOW)
    assert [r["ds"] for r in runs(root, "p")] == DAYS
    assert sorted(real["launched"]) == ["p 2026-04-01 extract try 1", "p 2026-04-02 extract try 1"]


def test_dry_runs_leave_the_state_file_logs_and_processes_alone(tmp_path):
    root = make_project(tmp_path, {"p": CATCHUP, "q": LATEST})
    ok(root, "tick", "--wait", now="2026-04-03T03:00:00Z")
    done = ran(root)
    assert len([t for t in tries(root)]) == len(done)
    ok(root, "pause", "q", now="2026-04-03T03:00:00Z")
    before, procs = tree(root), set(os.listdir("/proc"))
    d = jcli(root, "tick", "--dry-run", now=NOW)
    assert [r["ds"] for r in d["created"]] == DAYS[2:]  # p catches up from its cursor; q is paused
    u = jcli(root, "unpause", "q", "--dry-run", now=NOW)
    assert [(r["pipeline"], r["ds"]) for r in u["created"]] == [("q", "2026-04-09")]  # catchup: false: the latest
    assert [(t["pipeline"], t["ds"], t["task"]) for t in u["starts"]] == [("q", "2026-04-09", "extract")]
    ok(root, "unpause", "q", "--dry-run", now=NOW)
    time.sleep(0.3)
    assert tree(root) == before  # state.db's bytes and mtime, the WAL, logs, statuses, tick log and lock
    assert ran(root) == done
    # no wrapper, sensor or foreach process of this project was started (they name the project)
    assert not [pid for pid in set(os.listdir("/proc")) - procs if pid.isdigit() and str(root) in _cmdline(pid)]
    assert jcli(root, "status", "q", now=NOW)[0]["paused"] is True


def _cmdline(pid: str) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().decode(errors="replace")
    except OSError:
        return ""


def test_unpause_dry_run_honours_catchup(tmp_path):
    root = make_project(tmp_path, {"p": CATCHUP})
    ok(root, "pause", "p", now="2026-04-01T00:00:00Z")
    u = jcli(root, "unpause", "p", "--dry-run", now=NOW)
    assert [r["ds"] for r in u["created"]] == DAYS
    r = ok(root, "unpause", "p", "--dry-run", now=NOW)
    assert r.stdout.splitlines()[0] == "unpause p --dry-run at 2026-04-10T03:00:00+00:00: nothing was changed"
    assert runs(root, "p") == []
    # the real unpause and tick agree
    ok(root, "unpause", "p", now=NOW)
    ok(root, "tick", now=NOW)
    assert [x["ds"] for x in runs(root, "p")] == DAYS


def test_status_and_next_warn_of_a_pending_catch_up(tmp_path):
    root = make_project(tmp_path, {"p": CATCHUP, "q": LATEST})
    warning = ("pipectl: warning: catch-up: 9 runs of p pending since 2026-04-01 (catchup: true); "
               "preview with `pipectl tick --dry-run`")
    for args in (("status",), ("status", "p"), ("next", "p"), ("--json", "next", "p")):
        r = ok(root, *args, now=NOW)
        assert warning in r.stderr.splitlines(), (args, r.stderr)
        assert "of q" not in r.stderr  # catchup: false never piles up
    ok(root, "pause", "p", now=NOW)
    r = ok(root, "next", "p", now=NOW)
    assert ("pipectl: warning: catch-up: unpausing p creates 9 runs since 2026-04-01 (catchup: true); "
            "preview with `pipectl unpause p --dry-run`") in r.stderr.splitlines()
    ok(root, "unpause", "p", now=NOW)
    ok(root, "tick", now=NOW)
    r = cli(root, "next", "p", now=NOW)
    assert r.returncode == 0 and "catch-up" not in r.stderr
