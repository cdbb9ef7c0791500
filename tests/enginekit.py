"""Helpers for the engine tests: drive the real CLI against a project, read its state file."""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import time
from pathlib import Path

from conftest import make_project, run_cli  # noqa: F401  (re-exported for the test modules)

ERROR_PREFIX = "pipectl: error: "


def cli(root, *args, now: str | None = None, env=None, timeout: float = 60):
    pre = ["--project", str(root)]
    if now:
        pre += ["--now", now]
    return run_cli(*pre, *args, env=env, timeout=timeout)


def ok(root, *args, **kw):
    r = cli(root, *args, **kw)
    assert r.returncode == 0, f"exit {r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}"
    return r


def jcli(root, *args, **kw):
    return json.loads(ok(root, "--json", *args, **kw).stdout)


def runs(root, pipeline: str, now: str | None = None) -> list[dict]:
    """``runs P --json``, oldest first."""
    return list(reversed(jcli(root, "runs", pipeline, "--limit", "1000", now=now)))


def state_db(root) -> Path:
    return Path(root) / ".pipectl" / "state.db"


def db(root) -> sqlite3.Connection:
    conn = sqlite3.connect(str(state_db(root)), timeout=30)
    conn.row_factory = sqlite3.Row
    return conn


def q(root, sql: str, args=()) -> list[sqlite3.Row]:
    conn = db(root)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


def counts(root, task) -> list[str]:
    """What a counting task appended to counts/TASK: one word per time its command ran."""
    p = Path(root) / "counts" / task
    return p.read_text().split() if p.exists() else []


def tries(root, pipeline: str | None = None) -> list[sqlite3.Row]:
    """Every try with its run's ds and its task instance's name, in start order."""
    sql = """SELECT tries.*, task_instances.task AS task, runs.ds AS ds, runs.pipeline AS pipeline
             FROM tries JOIN task_instances ON task_instances.id = tries.ti JOIN runs ON runs.id = task_instances.run"""
    args: tuple = ()
    if pipeline:
        sql += " WHERE runs.pipeline = ?"
        args = (pipeline,)
    return q(root, sql + " ORDER BY tries.id", args)


def tis(root, pipeline: str | None = None) -> dict[tuple[str, str], sqlite3.Row]:
    """(ds, task) -> task instance row."""
    sql = "SELECT task_instances.*, runs.ds AS ds FROM task_instances JOIN runs ON runs.id = task_instances.run"
    args: tuple = ()
    if pipeline:
        sql += " WHERE runs.pipeline = ?"
        args = (pipeline,)
    return {(r["ds"], r["task"]): r for r in q(root, sql, args)}


def wait_for(fn, timeout: float = 5.0, interval: float = 0.02):
    """Poll ``fn`` until it returns something truthy; that value, or the last one at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v or time.monotonic() > deadline:
            return v
        time.sleep(interval)


def session_pids(sid: int) -> list[int]:
    from pipectl.exec.executor import session_members
    return session_members(sid)


def kill_session(sid: int) -> None:
    for pid in session_pids(sid):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    from pipectl.exec.executor import process_start
    return process_start(pid) is not None


def one_error_line(r) -> str:
    """The single stderr line of a failed command (and no traceback)."""
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, r.stderr
    assert "Traceback" not in r.stderr
    return lines[0]
