"""The no-op tick answered before typer loads (quicktick), and its hand-over to the full CLI."""
from __future__ import annotations

import fcntl
import os
import sqlite3
import subprocess
import sys

from conftest import cli_env, make_project, run_cli

from pipectl.engine.quicktick import _plain_tick_project
DAILY = """
    schedule: "0 2 * * *"
    start_date: 2020-01-01
    tasks:
      a: {run: "true"}
"""

PROBE = """
import sys
from pipectl.engine.quicktick import main
code = main(sys.argv[1:])
print(code, "typer" in sys.modules, "pipectl.engine.step" in sys.modules, "yaml" in sys.modules)
"""


def probe(*args, cwd=None):
    r = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, env=cli_env(), cwd=cwd)
    assert r.returncode == 0, r.stderr
    return r.stdout.splitlines()


def test_argument_forms():
    assert _plain_tick_project(["tick"]) == (True, None)
    assert _plain_tick_project(["--project", "/p", "tick"]) == (True, "/p")
    assert _plain_tick_project(["tick", "--project=/p", "--no-color"]) == (True, "/p")
    for argv in (["tick", "--wait"], ["--json", "tick"], ["--now", "2026-01-01", "tick"], ["tick", "tick"],
                 ["status"], [], ["tick", "--help"], ["--project"]):
        assert _plain_tick_project(argv)[0] is False, argv


def test_noop_tick_skips_typer_and_records_the_tick(tmp_path):
    root = make_project(tmp_path / "p", {"daily": DAILY})
    first = run_cli("--project", root, "--now", "2026-04-05T03:00:00Z", "tick", "--wait")
    assert first.returncode == 0, first.stderr
    # the real clock is long past 2026-04-05: make the cached next fire lie in the future
    con = sqlite3.connect(root / ".pipectl" / "state.db")
    con.execute("UPDATE pipelines SET next_due = 4e9")
    con.commit()
    lines = probe("--project", str(root), "tick")
    assert lines[-1] == "0 False False False"
    assert lines[0] == "nothing due"
    last = con.execute("SELECT value FROM meta WHERE key = 'last_tick'").fetchone()[0]
    r = run_cli("--project", root, "tick")
    assert (r.returncode, r.stdout, r.stderr) == (0, "nothing due\n", "")
    assert con.execute("SELECT value FROM meta WHERE key = 'last_tick'").fetchone()[0] != last
    con.close()


def test_hands_over_when_work_is_due_or_the_lock_is_held(tmp_path):
    root = make_project(tmp_path / "p", {"daily": DAILY})
    assert probe("--project", str(root), "tick") == ["None False False False"]  # no state file yet
    assert run_cli("--project", root, "--now", "2026-04-05T03:00:00Z", "tick", "--wait").returncode == 0
    # next_due (2026-04-06 02:00) has passed in real time: due work, so the full CLI takes over
    assert probe("--project", str(root), "tick") == ["None False False False"]
    con = sqlite3.connect(root / ".pipectl" / "state.db")
    con.execute("UPDATE pipelines SET next_due = 4e9")
    con.commit()
    con.close()
    fd = os.open(root / ".pipectl" / "tick.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        assert probe("--project", str(root), "tick") == ["None False False False"]
        r = run_cli("--project", root, "tick")
        assert r.returncode == 0
        assert "another tick is running" in r.stderr
    finally:
        os.close(fd)
    # a spec edit changes the fingerprint: the full tick re-reads the specs
    (root / "pipelines" / "daily.yaml").write_text((root / "pipelines" / "daily.yaml").read_text() + "\n# edited\n")
    assert probe("--project", str(root), "tick") == ["None False False False"]
