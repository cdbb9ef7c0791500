"""pipectl doctor on a healthy and on a broken project."""
from __future__ import annotations

import json
import os
import re

import pytest

from conftest import call_cli, make_project
from harness import fake_crontab
from test_install import SPEC

T0 = "2026-04-05T03:00:30Z"


@pytest.fixture
def env(tmp_path):
    env, _ = fake_crontab(tmp_path)
    return {**env, "PIPECTL_SYSTEMD_DIR": str(tmp_path / "no-units")}


def _names(out: str) -> list[str]:
    return [l.split(":", 1)[0] for l in out.splitlines()]


def test_healthy_project(tmp_path, env):
    proj = make_project(tmp_path / "proj", {"every_minute": SPEC})
    assert call_cli("--project", proj, "install", "cron", env=env).returncode == 0
    r = call_cli("--project", proj, "--now", T0, "tick", "--wait", env=env)
    assert r.returncode == 0, r.stderr
    d = call_cli("--project", proj, "--now", "2026-04-05T03:01:10Z", "doctor", env=env)
    print(d.stdout)
    assert d.returncode == 0, d.stdout + d.stderr
    assert _names(d.stdout) == ["✔ specs", "✔ state dir", "✔ state file", "✔ ticks", "✔ scheduler", "✔ tzdata", "✔ disk"]
    lines = d.stdout.splitlines()
    assert lines[0] == "✔ specs: 1 pipeline valid"
    assert lines[1] == f"✔ state dir: {proj}/.pipectl writable, 0700, state file 0600"
    assert lines[2] == "✔ state file: integrity_check ok"
    # the fake clock moves on in real time while the tick runs: a second either way
    assert re.fullmatch(r"✔ ticks: last tick 2026-04-05T03:00:3[01]Z, (39|40)s ago", lines[3]), lines[3]
    assert lines[4] == "✔ scheduler: crontab line installed"

    j = call_cli("--project", proj, "--now", "2026-04-05T03:01:10Z", "doctor", "--json", env=env)
    data = json.loads(j.stdout)
    assert j.returncode == 0 and data["ok"] is True
    assert [c["name"] for c in data["checks"]] == ["specs", "state dir", "state file", "ticks", "scheduler", "tzdata", "disk"]


def test_broken_project(tmp_path, env):
    proj = make_project(tmp_path / "proj", {"every_minute": SPEC})
    assert call_cli("--project", proj, "--now", T0, "tick", "--wait", env=env).returncode == 0
    (proj / "pipelines" / "bad.yaml").write_text("schedule: '61 * * * *'\ntasks:\n  a:\n    run: echo hi\n")
    os.chmod(proj / ".pipectl", 0o755)
    os.chmod(proj / ".pipectl" / "state.db", 0o644)
    d = call_cli("--project", proj, "--now", "2026-04-05T04:00:00Z", "doctor", env=env)
    print(d.stdout)
    assert d.returncode == 1
    assert _names(d.stdout) == ["✘ specs", "✘ state dir", "✔ state file", "✘ ticks", "✘ scheduler", "✔ tzdata", "✔ disk"]
    lines = d.stdout.splitlines()
    assert lines[0].startswith("✘ specs: 1 problem(s): ") and "bad.yaml:1:" in lines[0] and "minute" in lines[0]
    assert lines[1] == (f"✘ state dir: {proj}/.pipectl: mode 0755, want 0700 (chmod 700 {proj}/.pipectl); "
                        f"state file mode 0644, want 0600 (chmod 600 {proj}/.pipectl/state.db)")
    assert re.fullmatch(r"✘ ticks: last tick 2026-04-05T03:00:3[01]Z, 59m ago "
                        r"\(expected every minute; is cron or the timer running\?\)", lines[3]), lines[3]
    assert lines[4].startswith(f"✘ scheduler: no crontab line or systemd timer for {proj}; run `pipectl install cron`")
    data = json.loads(call_cli("--project", proj, "--now", "2026-04-05T04:00:00Z", "doctor", "--json", env=env).stdout)
    assert data["ok"] is False and [c["ok"] for c in data["checks"]] == [False, False, True, False, False, True, True]


def test_no_state_and_foreign_state_file(tmp_path, env):
    proj = make_project(tmp_path / "proj", {"every_minute": SPEC})
    d = call_cli("--project", proj, "doctor", env=env)
    assert d.returncode == 1
    assert "✘ state file: no state file at" in d.stdout and "✘ ticks: no tick has run yet" in d.stdout
    (proj / ".pipectl").mkdir(mode=0o700)
    (proj / ".pipectl" / "state.db").write_bytes(b"not sqlite at all" * 10)
    os.chmod(proj / ".pipectl" / "state.db", 0o600)
    d = call_cli("--project", proj, "doctor", env=env)
    assert d.returncode == 1 and "Traceback" not in d.stderr
    line = next(l for l in d.stdout.splitlines() if l.startswith("✘ state file"))
    assert "not a pipectl state file" in line


def test_systemd_timer_counts_as_scheduler(tmp_path, env):
    proj = make_project(tmp_path / "proj", {"every_minute": SPEC})
    units = tmp_path / "units"
    env = {**env, "PIPECTL_SYSTEMD_DIR": str(units), "PIPECTL_SYSTEMCTL": "/bin/true"}
    assert call_cli("--project", proj, "install", "systemd", "--user", env=env).returncode == 0
    d = call_cli("--project", proj, "doctor", env=env)
    line = next(l for l in d.stdout.splitlines() if "scheduler" in l)
    assert line.startswith("✔ scheduler: systemd timer pipectl-tick-proj-") and line.endswith(".timer installed")
