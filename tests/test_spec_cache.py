"""A long-lived engine (the timer, a --wait supervisor) keeps each run's spec snapshot
parsed. Row ids are reused once prune deletes the newest runs, so the cache must never
hand a new run the snapshot of a deleted one that had its id."""
from __future__ import annotations

from harness import make_project, ok

SPEC = """
tasks:
  a: {{run: "echo {word}"}}
"""


def test_a_reused_run_id_never_gets_the_deleted_runs_spec(tmp_path):
    from pipectl.spec.config import load_config
    from pipectl.engine.step import Clock, Engine
    from pipectl.state.store import Store
    root = make_project(tmp_path, {"p": SPEC.format(word="one")})
    ok(root, "trigger", "p", "--date", "2026-04-01", "--wait")
    config = load_config(str(root))
    engine = Engine(config, Store(config.state_db, create=False), Clock())
    first = engine.store.run_by_date("p", "2026-04-01T00:00:00+00:00")
    assert engine.spec_of(first).tasks["a"].run == "echo one"

    ok(root, "--now", "2030-01-01T00:00:00Z", "prune", "--older-than", "1d")
    assert engine.store.run(first.id) is None
    (root / "pipelines" / "p.yaml").write_text(SPEC.format(word="two").lstrip())
    ok(root, "trigger", "p", "--date", "2026-04-02")
    second = engine.store.run_by_date("p", "2026-04-02T00:00:00+00:00")
    assert second.id == first.id  # SQLite gave the new run the deleted one's row id
    assert engine.spec_of(second).tasks["a"].run == "echo two"
