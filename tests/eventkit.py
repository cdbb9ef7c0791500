"""Helpers for the sensor / asset / fan-out / SLA / file-trigger tests: the real CLI plus state reads."""
from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

from conftest import make_project, run_cli  # noqa: F401


def cli(root, *args, now=None, timeout=60):
    pre = ["--project", str(root)] + (["--now", now] if now else [])
    return run_cli(*pre, *args, timeout=timeout)


def ok(root, *args, **kw):
    r = cli(root, *args, **kw)
    assert r.returncode == 0, f"exit {r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}"
    return r


def q(root, sql, args=()):
    conn = sqlite3.connect(str(Path(root) / ".pipectl" / "state.db"), timeout=30)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute(sql, args).fetchall()]
    finally:
        conn.close()


def run_rows(root, pipeline):
    return q(root, "SELECT * FROM runs WHERE pipeline = ? ORDER BY logical_date", (pipeline,))


def tis(root, pipeline, ds=None):
    sql = """SELECT task_instances.*, runs.ds AS ds FROM task_instances JOIN runs ON runs.id = task_instances.run
             WHERE runs.pipeline = ?"""
    args = [pipeline]
    if ds:
        sql += " AND runs.ds = ?"
        args.append(ds)
    return {r["task"]: r for r in q(root, sql + " ORDER BY task_instances.id", args)}


def tries_of(root, pipeline):
    return q(root, """SELECT tries.* FROM tries JOIN task_instances ON task_instances.id = tries.ti
                      JOIN runs ON runs.id = task_instances.run WHERE runs.pipeline = ?""", (pipeline,))


def jcli(root, *args, **kw):
    return json.loads(ok(root, "--json", *args, **kw).stdout)


def wait_for(pred, timeout=10.0):
    end = time.time() + timeout
    while time.time() < end:
        if pred():
            return True
        time.sleep(0.05)
    return pred()


def epoch(text):
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
