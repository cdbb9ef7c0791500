"""SPEC §8: the state directory is 0700 and everything in it 0600, whatever the umask
pipectl runs under -- while the tasks keep that umask for their own outputs."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import cli_env
from harness import make_project, wait_for

SPEC = """
schedule: "0 2 * * *"
start_date: 2026-04-01
catchup: false
on_success: "echo hook ok"
on_retry: "echo hook retry"
on_failure: "echo hook failed"
tasks:
  flaky:
    run: "test -e ok || { touch ok; exit 3; }; touch task_output"
    retries: 1
    retry_delay: 0
  broken:
    run: "exit 1"
  after:
    run: "true"
    needs: [flaky]
"""
HOLD = """
tasks:
  hold:
    run: "while [ ! -e go ]; do sleep 0.02; done"
"""


def _pipectl(root: Path, *args: str, umask: int = 0o022, check_rc=(0, 1)) -> subprocess.CompletedProcess:
    r = subprocess.run([sys.executable, "-m", "pipectl", "--project", str(root), *args], cwd=root, env=cli_env({}),
                       capture_output=True, text=True, timeout=120, preexec_fn=lambda: os.umask(umask))
    assert r.returncode in check_rc, (args, r.returncode, r.stdout, r.stderr)
    return r


def modes(state_dir: Path) -> list[str]:
    """``find STATE_DIR -printf '%m %p\n'`` with each entry's type after its mode (``700 d .pipectl``),
    paths relative to the state dir's parent."""
    r = subprocess.run(["find", str(state_dir), "-printf", "%m %y %p\n"], capture_output=True, text=True)
    # live processes create and remove status and claim files meanwhile: one that vanishes
    # between find's readdir and its stat is no finding
    vanished = all("No such file or directory" in line for line in r.stderr.splitlines())
    assert r.returncode == 0 or vanished, r.stderr
    out = r.stdout
    return sorted(line.replace(str(state_dir.parent) + "/", "") for line in out.splitlines())


def _private(found: list[str]) -> list[str]:
    """The entries of ``modes`` that are not a 0700 directory or a 0600 file."""
    return [line for line in found if not line.startswith(("700 d ", "600 f "))]


def _names(found: list[str]) -> set[str]:
    return {Path(line.split(" ", 2)[2]).name for line in found}


def test_state_dir_is_private_under_umask_022(tmp_path):
    root = make_project(tmp_path, {"p": SPEC, "h": HOLD})
    state = root / ".pipectl"
    _pipectl(root, "--now", "2026-04-02T03:00:00Z", "tick")  # creates the state, the scheduled run starts
    _pipectl(root, "--now", "2026-04-02T03:00:00Z", "tick", "--wait")  # a supervisor, reaping, retrying, hooks
    _pipectl(root, "trigger", "p", "--date", "2026-03-01")  # no supervisor: the wrappers' own reapers
    assert wait_for(lambda: b"2026-03-01" in subprocess.run(
        [sys.executable, "-m", "pipectl", "--project", str(root), "runs", "p"], capture_output=True,
        env=cli_env({})).stdout and not list((state / "status").glob("*.?")), 20)
    _pipectl(root, "run", "p", "--date", "2026-03-02")
    _pipectl(root, "retry", "p", "--date", "2026-03-02", "--wait")
    _pipectl(root, "backfill", "p", "--start", "2026-02-01", "--end", "2026-02-02", "--wait")
    _pipectl(root, "metrics", "--output", str(state / "metrics.prom"))
    _pipectl(root, "--now", "2026-12-01T03:00:00Z", "prune", "--older-than", "30d")
    _pipectl(root, "--now", "2026-12-01T03:00:00Z", "tick")
    # a supervisor holding the state file open: its -wal and -shm files exist meanwhile
    sup = subprocess.Popen([sys.executable, "-m", "pipectl", "--project", str(root), "run", "h", "--date", "2026-04-01"],
                           cwd=root, env=cli_env({}), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           preexec_fn=lambda: os.umask(0o022))
    try:
        during = wait_for(lambda: (lambda m: m if "state.db-wal" in _names(m) else None)(modes(state)), 20)
    finally:
        (root / "go").touch()
        assert sup.wait(60) == 0
    assert {"state.db-wal", "state.db-shm"} <= _names(during), during
    assert _private(during) == []
    found = modes(state)
    if os.environ.get("PIPECTL_TEST_VERBOSE"):
        print("\n".join(["-- while a supervisor runs:", *during, "-- at the end:", *found]))
    # the run went through all of it: every kind of file exists
    names = _names(found)
    assert {"state.db", "tick.lock", "tick.log", "logs", "status", "supervisors", "metrics.prom"} <= names, names
    assert any(n.endswith(".log") and n.startswith("flaky.") for n in names), names
    assert "hooks.log" in names
    assert _private(found) == []
    # the tasks' own outputs follow the umask they were started with
    assert (root / "task_output").stat().st_mode & 0o777 == 0o644


def test_a_harsh_umask_cannot_lock_pipectl_out_of_its_own_state(tmp_path):
    """umask 0277 would create 0500 directories and 0400 files: pipectl sets its modes itself."""
    root = make_project(tmp_path, {"p": 'tasks:\n  t: {run: "true"}\n'})
    _pipectl(root, "run", "p", "--date", "2026-04-01", umask=0o277, check_rc=(0,))
    _pipectl(root, "run", "p", "--date", "2026-04-02", umask=0o277, check_rc=(0,))
    assert _private(modes(root / ".pipectl")) == []
