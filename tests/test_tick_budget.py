"""A plain tick returns within tick_budget: slow sensor pokes wait for a later step."""
from __future__ import annotations

import json
import sqlite3
import time

from conftest import make_project, run_cli

SPEC = """
    schedule: "@daily"
    start_date: 2026-04-01
    tasks:
      wait:
        sensor: {command: "sleep 8"}
        poke_interval: 1s
        timeout: 1h
      after: {run: "true", needs: [wait]}
"""


def test_a_tick_skips_a_poke_that_could_outlast_its_budget(tmp_path):
    root = make_project(tmp_path, {"p": SPEC})
    toml = (root / "pipectl.toml").read_text()
    (root / "pipectl.toml").write_text(toml.replace("[pipectl]\n", '[pipectl]\ntick_budget = "5s"\n'))
    t0 = time.monotonic()
    r = run_cli("--project", root, "--now", "2026-04-05T03:00:00Z", "tick")
    elapsed = time.monotonic() - t0
    assert r.returncode == 0, r.stderr
    assert "created: p 2026-04-04T00:00:00+00:00" in r.stdout
    assert elapsed < 5, elapsed
    con = sqlite3.connect(root / ".pipectl" / "state.db")
    state, started = con.execute("SELECT state, sensor_started FROM task_instances WHERE task = 'wait'").fetchone()
    assert (state, started) == ("pending", None)  # never poked: the poke could run 10 s


def test_without_a_tight_budget_the_sensor_is_poked(tmp_path):
    root = make_project(tmp_path, {"p": SPEC.replace("sleep 8", "true")})
    r = run_cli("--project", root, "trigger", "p", "--wait", "--date", "2026-04-01")
    assert r.returncode == 0, r.stderr
    runs = json.loads(run_cli("--project", root, "--json", "runs", "p").stdout)
    assert runs[0]["tasks"]["wait"]["state"] == "success"
    assert runs[0]["tasks"]["after"]["state"] == "success"
