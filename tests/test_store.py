"""The state file: schema version, WAL, one run per logical date, spec snapshots,
refusing corrupt or foreign files, and tick queries that do not grow with history."""
from __future__ import annotations

import sqlite3
import stat

import pytest

from harness import cli, make_project, ok, one_error_line, q, runs, state_db, tis

from pipectl.state.store import MIGRATIONS, Store
SIMPLE = """
tasks:
  a:
    run: "true"
"""


def test_schema_version_wal_and_permissions(tmp_path):
    root = make_project(tmp_path, {"p": SIMPLE})
    ok(root, "tick")
    conn = sqlite3.connect(state_db(root))
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        conn.close()
    assert stat.S_IMODE((root / ".pipectl").stat().st_mode) == 0o700
    assert stat.S_IMODE(state_db(root).stat().st_mode) == 0o600
    # opening again does not migrate twice
    s = Store(str(state_db(root)))
    try:
        assert s.conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    finally:
        s.close()


def test_one_run_per_logical_date(tmp_path):
    root = make_project(tmp_path, {"p": SIMPLE})
    r = ok(root, "trigger", "p", "--date", "2026-04-03")
    assert r.stdout.strip() == "manual__2026-04-03T00:00:00+00:00"
    r = cli(root, "trigger", "p", "--date", "2026-04-03")
    assert r.returncode == 2
    line = one_error_line(r)
    assert "already has a run" in line and "2026-04-03" in line
    # the same instant written differently is the same logical date
    r = cli(root, "trigger", "p", "--date", "2026-04-03T02:00:00+02:00")
    assert r.returncode == 2
    assert len(q(root, "SELECT * FROM runs")) == 1
    # a scheduled run can not be created beside a manual one either
    s = Store(str(state_db(root)))
    try:
        with pytest.raises(sqlite3.IntegrityError):
            s.conn.execute("INSERT INTO runs(run_id, pipeline, logical_date, ds, run_type, state, spec, created) "
                           "VALUES ('x', 'p', '2026-04-03T00:00:00+00:00', '2026-04-03', 'scheduled', 'queued', '{}', 0)")
    finally:
        s.close()


def test_spec_snapshot_survives_yaml_edits(tmp_path):
    root = make_project(tmp_path, {"p": """
        max_active_runs: 1
        tasks:
          first:
            run: "while [ ! -e go ]; do sleep 0.02; done; echo old-first >> out.txt"
          second:
            run: "echo old-second >> out.txt"
            needs: [first]
    """})
    ok(root, "trigger", "p", "--date", "2026-04-01")
    ok(root, "trigger", "p", "--date", "2026-04-02")
    assert [r["state"] for r in runs(root, "p")] == ["running", "queued"]
    (root / "pipelines" / "p.yaml").write_text(
        "max_active_runs: 1\ntasks:\n  renamed:\n    run: \"echo new >> out.txt\"\n")
    ok(root, "trigger", "p", "--date", "2026-04-03")
    (root / "go").touch()
    ok(root, "tick", "--wait")
    got = {r["ds"]: r for r in runs(root, "p")}
    assert sorted(got["2026-04-02"]["tasks"]) == ["first", "second"]
    assert sorted(got["2026-04-03"]["tasks"]) == ["renamed"]
    assert all(r["state"] == "success" for r in got.values())
    assert (root / "out.txt").read_text().split() == ["old-first", "old-second"] * 2 + ["new"]


@pytest.mark.parametrize("content", [
    b"\x00\xffgarbage" * 100,
    b"SQLite format 3\x00" + b"\xde\xad\xbe\xef" * 1000,
], ids=["garbage", "bad-sqlite-body"])
def test_corrupt_state_file_is_refused_and_left_untouched(tmp_path, content):
    root = make_project(tmp_path, {"p": SIMPLE})
    (root / ".pipectl").mkdir(mode=0o700)
    state_db(root).write_bytes(content)
    for args in (("tick",), ("tick", "--wait"), ("trigger", "p"), ("runs", "p"), ("status",)):
        r = cli(root, *args)
        assert r.returncode == 1, (args, r.stdout, r.stderr)
        line = one_error_line(r)
        assert line.startswith("pipectl: error: ") and "state.db" in line, line
        assert state_db(root).read_bytes() == content
    assert sorted(p.name for p in (root / ".pipectl").iterdir() if p.name.startswith("state.db")) == ["state.db"]


def test_foreign_sqlite_file_is_refused_and_left_untouched(tmp_path):
    root = make_project(tmp_path, {"p": SIMPLE})
    (root / ".pipectl").mkdir(mode=0o700)
    conn = sqlite3.connect(state_db(root))
    conn.execute("CREATE TABLE recipes(name TEXT)")
    conn.execute("INSERT INTO recipes VALUES ('soup')")
    conn.commit()
    conn.close()
    before = state_db(root).read_bytes()
    for args in (("tick",), ("trigger", "p"), ("runs", "p")):
        r = cli(root, *args)
        assert r.returncode == 1, (args, r.stdout, r.stderr)
        line = one_error_line(r)
        assert "not a pipectl state file" in line, line
        assert state_db(root).read_bytes() == before
    conn = sqlite3.connect(state_db(root))
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    assert conn.execute("SELECT name FROM recipes").fetchall() == [("soup",)]
    conn.close()


def _plans(store: Store, call) -> list[str]:
    """EXPLAIN QUERY PLAN of every SELECT that ``call`` runs."""
    seen: list[str] = []
    store.conn.set_trace_callback(seen.append)
    try:
        call()
    finally:
        store.conn.set_trace_callback(None)
    plans = []
    for sql in seen:
        if sql.lstrip().upper().startswith("SELECT"):
            rows = store.conn.execute("EXPLAIN QUERY PLAN " + sql).fetchall()
            plans.append(" | ".join(r[3] for r in rows))
    assert plans, seen
    return plans


def test_tick_queries_use_the_partial_indexes(tmp_path):
    root = make_project(tmp_path, {"p": SIMPLE})
    ok(root, "tick")
    s = Store(str(state_db(root)))
    try:
        # lots of finished history: the active-work queries must not scan it
        with s.tx():
            for i in range(300):
                pk = s.insert_run(run_id=f"h{i}", pipeline="p", logical_date=f"2020-01-01T00:00:{i:05d}", ds="2020-01-01",
                                  interval=(None, None), run_type="manual", params={}, spec={}, now=0)
                s.set_run_state(pk, "success", 0)
                s.insert_task_instances(pk, [("a", "a", None, None, "success")])
        s.conn.execute("ANALYZE")
        for plan in _plans(s, s.active_runs):
            assert "USING INDEX runs_active" in plan, plan
        plans = _plans(s, s.count_active)
        assert any("runs_active" in p for p in plans) and any("tries_active" in p for p in plans), plans
        assert not any(p.startswith("SCAN") for p in plans), plans
        for plan in _plans(s, s.active_tries):
            assert "SEARCH tries USING INDEX tries_active" in plan and "SCAN" not in plan, plan
        for plan in _plans(s, s.running_counts):
            assert "tries_active" in plan, plan
        for plan in _plans(s, lambda: s.task_instances(1)):
            assert "ti_by_run" in plan or "sqlite_autoindex_task_instances" in plan, plan
    finally:
        s.close()


def test_ti_rows_unique_per_run_and_task(tmp_path):
    root = make_project(tmp_path, {"p": SIMPLE})
    ok(root, "trigger", "p", "--date", "2026-04-01", "--wait")
    assert [(k, r["state"], r["try_number"]) for k, r in tis(root).items()] == [(("2026-04-01", "a"), "success", 1)]
    assert [(t["task"], t["try_number"], t["state"], t["exit_code"]) for t in q(
        root, "SELECT tries.*, task_instances.task FROM tries JOIN task_instances ON task_instances.id = tries.ti")] == [
        ("a", 1, "success", 0)]
