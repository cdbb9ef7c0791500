"""install/uninstall cron and systemd, against a fake crontab and unit directory.

The real crontab is never touched here: PIPECTL_CRONTAB points at a script that
keeps "the crontab" in a file. test_cron_e2e.py runs the real cron daemon.
"""
from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, call_cli, make_project
from harness import fake_crontab

SPEC = """
schedule: "* * * * *"
tasks:
  hello:
    run: echo ok
"""

@pytest.fixture
def cron_env(tmp_path):
    return fake_crontab(tmp_path)


def _project(tmp_path, name="proj"):
    return make_project(tmp_path / name, {"every_minute": SPEC})


def test_install_cron_adds_one_marked_line_and_keeps_others(tmp_path, cron_env):
    env, table = cron_env
    table.write_text("MAILTO=ops@example.com\n0 3 * * * /usr/bin/backup --all % 2>&1\n")
    proj = _project(tmp_path)
    r = call_cli("--project", proj, "install", "cron", env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0] == "crontab: installed"
    lines = table.read_text().splitlines()
    assert lines[:2] == ["MAILTO=ops@example.com", "0 3 * * * /usr/bin/backup --all % 2>&1"]
    assert len(lines) == 3
    line = lines[2]
    assert r.stdout.splitlines()[1] == line
    exe = str(Path(sys.executable).parent / "pipectl")
    state = proj / ".pipectl"
    assert line == (f"* * * * * PATH={Path(sys.executable).parent}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "
                    f"{exe} --project {proj} tick >/dev/null 2>>{state}/tick.log # pipectl:{proj}")
    assert os.path.isabs(exe) and os.access(exe, os.X_OK)
    # the log exists before cron's shell could create it with cron's umask
    assert stat.S_IMODE(os.stat(state).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(state / "tick.log").st_mode) == 0o600

    before = table.read_bytes()
    r2 = call_cli("--project", proj, "install", "cron", env=env)
    assert r2.returncode == 0, r2.stderr
    assert r2.stdout.splitlines()[0] == "crontab: unchanged"
    assert table.read_bytes() == before


def test_print_changes_nothing_and_uninstall_removes_only_ours(tmp_path, cron_env):
    env, table = cron_env
    a = _project(tmp_path, "proj")
    b = _project(tmp_path, "proj2")  # its path starts with a's: markers must not be confused
    r = call_cli("--project", a, "install", "cron", "--print", env=env)
    assert r.returncode == 0 and r.stdout.startswith("* * * * * PATH=")
    assert not table.exists()
    table.write_text("# my jobs\n*/5 * * * * true\n")
    assert call_cli("--project", a, "install", "cron", env=env).returncode == 0
    assert call_cli("--project", b, "install", "cron", env=env).returncode == 0
    lines = table.read_text().splitlines()
    assert len(lines) == 4
    assert lines[2].endswith(f"# pipectl:{a}") and lines[3].endswith(f"# pipectl:{b}")

    r = call_cli("--project", a, "uninstall", "cron", env=env)
    assert r.returncode == 0 and r.stdout.strip() == "crontab: line removed"
    assert table.read_text().splitlines() == ["# my jobs", "*/5 * * * * true", lines[3]]
    r = call_cli("--project", a, "uninstall", "cron", env=env)
    assert r.stdout.strip() == "crontab: no line for this project; nothing changed"
    assert table.read_text().splitlines() == ["# my jobs", "*/5 * * * * true", lines[3]]


def test_install_cron_replaces_a_stale_line(tmp_path, cron_env):
    env, table = cron_env
    proj = _project(tmp_path)
    table.write_text(f"* * * * * /old/venv/bin/pipectl --project {proj} tick # pipectl:{proj}\n@daily true\n"
                     f"* * * * * /old/again tick # pipectl:{proj}\n")
    r = call_cli("--project", proj, "install", "cron", env=env)
    assert r.stdout.splitlines()[0] == "crontab: updated"
    lines = table.read_text().splitlines()
    assert len(lines) == 2 and lines[1] == "@daily true"
    assert "/old/" not in lines[0] and lines[0].endswith(f"# pipectl:{proj}")


def test_percent_in_path_is_escaped_for_cron(tmp_path):
    from pipectl.spec.config import load_config
    from pipectl.ops.install import cron_line
    proj = make_project(tmp_path / "50% off", {"every_minute": SPEC})
    line = cron_line(load_config(proj))
    assert "%" not in line.replace("\\%", "")
    assert f"--project '{str(proj).replace('%', chr(92) + '%')}' tick" in line  # shell-quoted, % escaped


def test_missing_crontab_is_one_clear_error(tmp_path):
    proj = _project(tmp_path)
    r = call_cli("--project", proj, "install", "cron", env={"PIPECTL_CRONTAB": str(tmp_path / "nope")})
    assert r.returncode == 1
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_bad_target_is_usage_error(tmp_path):
    proj = _project(tmp_path)
    r = call_cli("--project", proj, "install", "launchd")
    assert r.returncode == 2
    assert "expected cron or systemd" in r.stderr


# --------------------------------------------------------------------------- systemd

SYSTEMD_ANALYZE = shutil.which("systemd-analyze") or "/usr/bin/systemd-analyze"


def _verify(*paths) -> subprocess.CompletedProcess:
    # verify exits 0 on "ignoring" warnings; a clean unit produces no output at all
    return subprocess.run([SYSTEMD_ANALYZE, "verify", *map(str, paths)], capture_output=True, text=True,
                          env={**os.environ, "SYSTEMD_LOG_COLOR": "0"})


needs_analyze = pytest.mark.skipif(not os.path.exists(SYSTEMD_ANALYZE) and not os.environ.get("CI"),
                                   reason="systemd-analyze not installed (local run only; CI must have it)")


@pytest.fixture
def systemd_env(tmp_path):
    units = tmp_path / "units"
    calls = tmp_path / "systemctl.calls"
    prog = tmp_path / "bin" / "systemctl"
    prog.parent.mkdir(exist_ok=True)
    prog.write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    prog.chmod(0o755)
    return {"PIPECTL_SYSTEMD_DIR": str(units), "PIPECTL_SYSTEMCTL": str(prog)}, units, calls


@needs_analyze
@pytest.mark.parametrize("user", [False, True])
def test_systemd_units_are_written_enabled_and_verify(tmp_path, systemd_env, user):
    env, units, calls = systemd_env
    proj = _project(tmp_path)
    args = ["--project", proj, "install", "systemd"] + (["--user"] if user else [])
    r = call_cli(*args, env=env)
    assert r.returncode == 0, r.stderr
    service = sorted(units.glob("*.service"))
    timer = sorted(units.glob("*.timer"))
    assert len(service) == 1 and len(timer) == 1
    name = service[0].stem
    assert name.startswith("pipectl-tick-proj-") and timer[0].stem == name
    svc, tmr = service[0].read_text(), timer[0].read_text()
    assert "Type=oneshot" in svc.splitlines()
    assert "KillMode=process" in svc.splitlines()
    assert f"ExecStart={Path(sys.executable).parent / 'pipectl'} --project {proj} tick" in svc.splitlines()
    assert ("User=" in svc) is (not user)
    assert "OnCalendar=minutely" in tmr.splitlines() and "Persistent=true" in tmr.splitlines()
    assert f"Unit={name}.service" in tmr.splitlines()
    flag = "--user " if user else ""
    assert calls.read_text().splitlines() == [f"{flag}daemon-reload", f"{flag}enable --now {name}.timer"]
    v = _verify(service[0], timer[0])
    assert v.returncode == 0 and v.stdout + v.stderr == "", v.stdout + v.stderr

    r = call_cli("--project", proj, "uninstall", "systemd", *(["--user"] if user else []), env=env)
    assert r.returncode == 0
    assert not list(units.iterdir())
    assert calls.read_text().splitlines()[-2:] == [f"{flag}disable --now {name}.timer", f"{flag}daemon-reload"]


@needs_analyze
def test_verify_catches_a_broken_unit(tmp_path, systemd_env):
    """Negative control: the verify assertion above would see a mistake."""
    env, units, _ = systemd_env
    proj = _project(tmp_path)
    assert call_cli("--project", proj, "install", "systemd", env=env).returncode == 0
    service = next(units.glob("*.service"))
    service.write_text(service.read_text().replace("KillMode=process", "KillMode=bogus"))
    v = _verify(service)
    assert "KillMode" in v.stdout + v.stderr or "kill mode" in v.stdout + v.stderr
    text = service.read_text().replace(str(Path(sys.executable).parent / "pipectl"), "/nonexistent/pipectl")
    service.write_text(text.replace("KillMode=bogus", "KillMode=process"))
    assert _verify(service).returncode != 0


@needs_analyze
def test_shipped_unit_templates_verify(tmp_path):
    d = tmp_path / "units"
    d.mkdir()
    svc = (REPO / "install" / "pipectl-tick@.service").read_text()
    assert "KillMode=process" in svc
    (d / "pipectl-tick@.service").write_text(svc.replace("/usr/local/bin/pipectl", str(Path(sys.executable).parent / "pipectl")))
    shutil.copy(REPO / "install" / "pipectl-tick@.timer", d / "pipectl-tick@.timer")
    for suffix in (".service", ".timer"):
        os.symlink(d / f"pipectl-tick@{suffix}", d / f"pipectl-tick@srv-etl{suffix}")
    v = _verify(d / "pipectl-tick@srv-etl.service", d / "pipectl-tick@srv-etl.timer")
    assert v.returncode == 0 and v.stdout + v.stderr == "", v.stdout + v.stderr


def test_systemd_print_changes_nothing(tmp_path, systemd_env):
    env, units, calls = systemd_env
    proj = _project(tmp_path)
    r = call_cli("--project", proj, "install", "systemd", "--user", "--print", env=env)
    assert r.returncode == 0
    assert "KillMode=process" in r.stdout and "OnCalendar=minutely" in r.stdout
    assert not units.exists() and not calls.exists()


def test_systemd_without_systemctl_writes_units_and_says_how_to_enable(tmp_path, systemd_env):
    env, units, _ = systemd_env
    env = {**env, "PIPECTL_SYSTEMCTL": str(tmp_path / "no-such-systemctl")}
    proj = _project(tmp_path)
    r = call_cli("--project", proj, "install", "systemd", "--user", env=env)
    # a missing program: subprocess fails to start it; reported as one line, exit 1
    assert r.returncode == 1, r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    assert "systemctl --user enable --now pipectl-tick-proj-" in r.stderr
    assert len(list(units.glob("*.timer"))) == 1


def test_crontab_example_matches_generated_shape(tmp_path):
    example = [l for l in (REPO / "install" / "crontab.example").read_text().splitlines() if l and not l.startswith("#")]
    assert len(example) == 1
    assert example[0].startswith("* * * * * PATH=") and " tick >/dev/null 2>>" in example[0]
    assert example[0].rsplit(" # pipectl:", 1)[1] == "/home/me/etl"


def test_install_sh_is_valid_shell():
    r = subprocess.run(["sh", "-n", str(REPO / "install" / "install.sh")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert os.access(REPO / "install" / "install.sh", os.X_OK)


def test_install_sh_puts_pipectl_in_its_own_venv_and_installs_the_line(tmp_path, cron_env):
    """The real script, end to end: a fresh virtualenv from this checkout, the link, the crontab line."""
    env, table = cron_env
    proj = _project(tmp_path)
    prefix, bindir = tmp_path / "prefix", tmp_path / "bin-dir"
    full_env = {**os.environ, **env, "PYTHON": sys.executable}
    r = subprocess.run(["sh", str(REPO / "install" / "install.sh"), "--prefix", str(prefix), "--bin-dir", str(bindir),
                        str(proj)], capture_output=True, text=True, env=full_env, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    venv_pipectl = prefix / "venv" / "bin" / "pipectl"
    assert os.path.realpath(bindir / "pipectl") == str(venv_pipectl)
    lines = table.read_text().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("* * * * * PATH=" + str(prefix / "venv" / "bin") + ":")
    assert f"{venv_pipectl} --project {proj} tick" in lines[0] and lines[0].endswith(f"# pipectl:{proj}")
    # the linked executable works on its own
    r = subprocess.run([str(bindir / "pipectl"), "--project", str(proj), "validate"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.startswith("ok  every_minute"), r.stdout + r.stderr
    # running the installer again adds nothing
    r = subprocess.run(["sh", str(REPO / "install" / "install.sh"), "--prefix", str(prefix), "--bin-dir", str(bindir),
                        str(proj)], capture_output=True, text=True, env=full_env, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert table.read_text().splitlines() == lines
