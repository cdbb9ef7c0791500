"""An SLA miss is recorded once and its on_sla_miss hook runs once."""
from __future__ import annotations

from harness import make_project, ok, qd as q, wait_for

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
    from pipectl.spec.config import load_config
    from pipectl.engine.sla import misses_for
    from pipectl.engine.tick import open_store
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


def test_queued_runs_sla_read_once_per_distinct_snapshot(tmp_path, monkeypatch):
    """A catch-up queues thousands of runs with one snapshot, and every step (each reaper's too)
    looks at every active run: their SLAs come from one parse per distinct snapshot, and runs
    that wait behind max_active_runs still miss their SLA (only the runs that have one)."""
    from datetime import datetime, timedelta, timezone

    from pipectl.spec.config import load_config
    from pipectl.model.pipeline import Pipeline
    from pipectl.engine.step import Clock, Engine
    from pipectl.engine.sla import check
    from pipectl.spec.loader import load_pipelines
    from pipectl.engine.tick import open_store
    body = "schedule: \"0 * * * *\"\nstart_date: 2026-04-01\ntasks:\n  t: {run: \"true\"}\n"
    root = make_project(tmp_path, {"with_sla": "sla: 30m\n" + body, "without": body})
    config = load_config(root)
    store = open_store(config)
    try:
        specs = load_pipelines(config).pipelines
        base = datetime(2026, 4, 1, tzinfo=timezone.utc)
        creator = Engine(config, store, Clock.at(base + timedelta(days=1)))
        for name in ("with_sla", "without"):
            for h in range(12):
                lo = base + timedelta(hours=h)
                assert creator.create_run(specs[name], lo, run_type="scheduled", interval=(lo, lo + timedelta(hours=1)))
        parses = []
        real = Pipeline.from_dict
        monkeypatch.setattr(Pipeline, "from_dict", classmethod(lambda cls, d: parses.append(1) or real(d)))
        # 05:45: the runs whose interval ended at 05:00 or before (hours 0..4) are past 30m
        engine = Engine(config, store, Clock.at(base + timedelta(hours=5, minutes=45)))
        assert check(engine) == 5
        assert len(parses) == 2 + 5  # the two snapshots, and each run that missed (for its on_sla_miss)
        assert check(engine) == 0  # recorded once; a later step of the same process parses nothing again
        assert len(parses) == 2 + 5
        later = Engine(config, store, Clock.at(base + timedelta(hours=12, minutes=31)))
        assert check(later) == 7
        assert len(parses) == 2 + 5 + 2 + 7
    finally:
        store.close()
    got = q(root, "SELECT r.pipeline, r.logical_date, m.task FROM sla_misses m JOIN runs r ON r.id = m.run "
                  "ORDER BY r.logical_date")
    assert [(g["pipeline"], g["task"]) for g in got] == [("with_sla", "")] * 12
    assert [g["logical_date"][11:16] for g in got] == [f"{h:02d}:00" for h in range(12)]
    assert {r["state"] for r in q(root, "SELECT state FROM runs")} == {"queued"}
