"""An SLA miss is recorded once and its on_sla_miss hook runs once."""
from __future__ import annotations

from eventkit import make_project, ok, q, wait_for

SPEC = """
sla: 1h
on_sla_miss: "echo miss {{ pipeline }} {{ ds }} $PIPECTL_STATE >> misses.txt"
tasks:
  wait:
    sensor: {file: "never.txt"}
    poke_interval: 1m
    timeout: 10h
    sla: 2h
    on_sla_miss: "echo task-miss {{ task }} >> task-misses.txt"
"""


def test_sla_miss_fires_its_hook_exactly_once(tmp_path):
    from pipectl.config import load_config
    from pipectl.sla import misses_for
    from pipectl.tick import open_store

    root = make_project(tmp_path, {"slow": SPEC})
    ok(root, "trigger", "slow", "--date", "2026-04-09", now="2026-04-10T08:00:00Z")
    ok(root, "tick", now="2026-04-10T08:59:00Z")
    assert q(root, "SELECT * FROM sla_misses") == []
    for now in ("2026-04-10T09:01:00Z", "2026-04-10T09:30:00Z", "2026-04-10T09:45:00Z"):
        ok(root, "tick", now=now)
    assert wait_for(lambda: (root / "misses.txt").exists())
    ok(root, "tick", now="2026-04-10T10:30:00Z")
    assert wait_for(lambda: (root / "task-misses.txt").exists())
    ok(root, "tick", now="2026-04-10T11:00:00Z")
    assert (root / "misses.txt").read_text() == "miss slow 2026-04-09 sla_miss\n"
    assert (root / "task-misses.txt").read_text() == "task-miss wait\n"
    store = open_store(load_config(str(root)))
    try:
        got = misses_for(store, "slow")
    finally:
        store.close()
    assert [(m["task"], m["ds"]) for m in got] == [(None, "2026-04-09"), ("wait", "2026-04-09")]
    assert got[0]["deadline"].startswith("2026-04-10T09:00:00")  # manual run: creation + 1h
    assert got[1]["deadline"].startswith("2026-04-10T10:00:00")


def test_scheduled_run_sla_counts_from_the_interval_end(tmp_path):
    spec = """
schedule: "0 2 * * *"
start_date: 2026-04-09
sla: 30m
on_sla_miss: "echo miss {{ ds }} >> misses.txt"
tasks:
  wait:
    sensor: {file: "never.txt"}
    timeout: 10h
"""
    root = make_project(tmp_path, {"d": spec})
    ok(root, "tick", now="2026-04-10T02:20:00Z")  # run for ds 2026-04-09, created 20 min after the fire time
    assert q(root, "SELECT * FROM sla_misses") == []
    ok(root, "tick", now="2026-04-10T02:31:00Z")
    assert [r["task"] for r in q(root, "SELECT * FROM sla_misses")] == [""]
    assert wait_for(lambda: (root / "misses.txt").exists())
    assert (root / "misses.txt").read_text() == "miss 2026-04-09\n"
