"""schedule: {file: GLOB}: one run per new file, deduplicated by path, size and mtime."""
from __future__ import annotations

import os

from harness import make_project, ok, run_rows

SPEC = """
schedule: {file: "incoming/*.csv"}
tasks:
  load:
    run: "echo {{ params.file }} >> seen.txt"
"""


def test_one_run_per_new_file(tmp_path):
    import json

    root = make_project(tmp_path, {"ingest": SPEC})
    (root / "incoming").mkdir()
    (root / "incoming" / "a.csv").write_text("1")
    (root / "incoming" / "b.csv").write_text("2")
    os.utime(root / "incoming" / "a.csv", (1_700_000_000, 1_700_000_000))
    (root / "incoming" / "ignored.txt").write_text("x")
    ok(root, "tick", "--wait", now="2026-04-10T08:00:00Z")
    rows = run_rows(root, "ingest")
    assert [(r["run_type"], json.loads(r["params"])["file"], r["state"]) for r in rows] == [
        ("file", "incoming/a.csv", "success"), ("file", "incoming/b.csv", "success")]
    from datetime import datetime, timedelta

    first, second = (datetime.fromisoformat(r["logical_date"]) for r in rows)
    assert second - first == timedelta(microseconds=1) and first.isoformat().startswith("2026-04-10T08:00:00")
    ok(root, "tick", "--wait", now="2026-04-10T08:01:00Z")
    assert len(run_rows(root, "ingest")) == 2  # nothing new
    (root / "incoming" / "a.csv").write_text("1,2")  # rewritten: a new size and mtime
    (root / "incoming" / "c.csv").write_text("3")
    ok(root, "tick", "--wait", now="2026-04-10T08:02:00Z")
    assert len(run_rows(root, "ingest")) == 4
    assert sorted((root / "seen.txt").read_text().split()) == [
        "incoming/a.csv", "incoming/a.csv", "incoming/b.csv", "incoming/c.csv"]
