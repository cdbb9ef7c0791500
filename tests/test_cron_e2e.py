"""End to end with the real cron daemon: `pipectl install cron`, cron runs the tick, the
run succeeds, `pipectl uninstall cron` removes the line.

CI installs Debian's cron (.ci/run) and runs as root; there this test must run and
fails if cron is missing. Locally (CI unset) it is skipped when cron is not
installed. The user's real crontab is backed up first and restored afterwards,
whatever happens; a cron daemon is started only if none is running, and only the
one started here is stopped, by its pid.
"""
from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import time
from pathlib import Path

import pytest

from conftest import make_project, run_cli

CRON = "/usr/sbin/cron"
WAIT = 150.0

SPEC = """
schedule: "* * * * *"
catchup: false
tasks:
  hello:
    run: echo ok
"""


def _require_cron() -> str:
    crontab = shutil.which("crontab")
    if os.path.exists(CRON) and crontab:
        return crontab
    why = f"cron is not installed ({CRON} or crontab missing)"
    if os.environ.get("CI"):
        pytest.fail(f"{why}: .ci/run must install Debian's cron package")
    pytest.skip(f"{why}; skipped only because CI is unset: `apt-get install cron` to run it locally")


def _cron_running() -> bool:
    try:
        pid = int(Path("/run/crond.pid").read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return False
    return Path(f"/proc/{pid}/exe").exists()


@pytest.fixture
def real_crontab():
    crontab = _require_cron()
    saved = subprocess.run([crontab, "-l"], capture_output=True, text=True)
    had = saved.returncode == 0
    try:
        yield crontab
    finally:
        if had:
            subprocess.run([crontab, "-"], input=saved.stdout, text=True, check=True)
        else:
            subprocess.run([crontab, "-r"], capture_output=True)
        after = subprocess.run([crontab, "-l"], capture_output=True, text=True)
        assert (after.stdout if after.returncode == 0 else None) == (saved.stdout if had else None)


def _successful_runs(db: Path) -> list[tuple]:
    from pipectl.state.store import Store
    if not db.exists():
        return []
    try:
        store = Store(str(db), create=False)
    except Exception:
        return []
    try:
        return [(r.pipeline, r.run_type, r.state) for r in store.runs_for("every_minute") if r.state == "success"]
    finally:
        store.close()


def test_real_cron_runs_the_tick(tmp_path, real_crontab):
    proj = make_project(tmp_path / "cronproj", {"every_minute": SPEC})
    r = run_cli("--project", proj, "install", "cron")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0] == "crontab: installed"
    line = r.stdout.splitlines()[1]
    print(f"installed: {line}")
    listed = subprocess.run([real_crontab, "-l"], capture_output=True, text=True, check=True).stdout.splitlines()
    assert listed.count(line) == 1

    daemon = None
    if not _cron_running():
        # -f: stay in the foreground, so the pid we hold is the daemon's own
        daemon = subprocess.Popen([CRON, "-f"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        db = proj / ".pipectl" / "state.db"
        deadline = time.monotonic() + WAIT
        found: list[tuple] = []
        while time.monotonic() < deadline:
            found = _successful_runs(db)
            if found:
                break
            if daemon is not None and daemon.poll() is not None:
                pytest.fail(f"cron exited with {daemon.returncode}")
            time.sleep(2)
        tick_log = proj / ".pipectl" / "tick.log"
        log_text = tick_log.read_text() if tick_log.exists() else "<no tick.log>"
        assert found, f"no successful run within {WAIT:.0f}s; tick.log:\n{log_text}"
        assert found[0] == ("every_minute", "scheduled", "success")
        # the tick log: timestamped lines written by the tick that cron started, private
        assert stat.S_IMODE(os.stat(tick_log).st_mode) == 0o600
        assert any(l.split(" ", 1)[1].startswith("created: every_minute ") for l in log_text.splitlines() if " " in l), log_text
        logs = list((proj / ".pipectl" / "logs" / "every_minute").glob("*/hello.1.log"))
        assert logs and logs[0].read_text() == "ok\n"
    finally:
        r = run_cli("--project", proj, "uninstall", "cron")
        if daemon is not None:
            daemon.send_signal(signal.SIGTERM)
            try:
                daemon.wait(10)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait()
    assert r.returncode == 0 and r.stdout.strip() == "crontab: line removed"
    listed = subprocess.run([real_crontab, "-l"], capture_output=True, text=True).stdout.splitlines()
    assert line not in listed
