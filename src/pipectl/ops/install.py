"""Making ticks arrive: one crontab line, or a systemd service + timer.

The crontab line (one per project, recognised by its trailing marker
``# pipectl:<project dir>``)::

    * * * * * PATH=... '/venv/bin/pipectl' --project '/proj' tick >/dev/null 2>>'/proj/.pipectl/tick.log' # pipectl:/proj

- Absolute paths throughout: cron's environment is bare and its cwd is $HOME.
- ``PATH`` is set for the tick and so for the tasks it starts: the venv's bin
  directory first, then the usual system directories. Tasks needing more set
  ``env: {PATH: ...}`` in their pipeline.
- The tick command writes its own timestamped report to ``tick.log`` (see
  ticklog.py); its stdout repeats that report without timestamps, so it is
  dropped, while stderr (warnings, and errors of a tick that never reached the
  engine) is appended to the same file. One log, no duplicates, no cron mail.

The executables are found from the running interpreter: the ``pipectl``
script beside ``sys.executable`` (a virtualenv's), else
``sys.executable -m pipectl``. Paths are made absolute but symlinks are not
resolved, or a venv's python would turn into the system one.

Test seams: ``PIPECTL_CRONTAB`` names the crontab program, ``PIPECTL_SYSTEMD_DIR``
the unit directory and ``PIPECTL_SYSTEMCTL`` the systemctl program.
"""
from __future__ import annotations

import getpass
import hashlib
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from pipectl.model.errors import PipectlError, UsageError
MARKER = "# pipectl:"
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


# --------------------------------------------------------------------------- what to run

def pipectl_command() -> list[str]:
    """Absolute argv that starts this pipectl, for cron or systemd."""
    exe = os.path.abspath(sys.executable)
    script = os.path.join(os.path.dirname(exe), "pipectl")
    if os.path.isfile(script) and os.access(script, os.X_OK):
        return [script]
    return [exe, "-m", "pipectl"]


def task_path() -> str:
    """The PATH a tick (and so every task) gets: the venv's bin first, then the system's."""
    bindir = os.path.dirname(os.path.abspath(sys.executable))
    parts = [bindir] + [p for p in SYSTEM_PATH.split(":") if p != bindir]
    return ":".join(parts)


def _check_path(path: str) -> None:
    if "\n" in path or "\r" in path:
        raise UsageError(f"project path {path!r} contains a newline; cron cannot run it")


# --------------------------------------------------------------------------- cron

def cron_line(config) -> str:
    root = str(config.root)
    _check_path(root)
    _check_path(config.state_dir)
    argv = [*pipectl_command(), "--project", root, "tick"]
    log = os.path.join(config.state_dir, "tick.log")
    cmd = (f"PATH={shlex.quote(task_path())} {shlex.join(argv)} "
           f">/dev/null 2>>{shlex.quote(log)}")
    # cron turns an unescaped % into a newline; the backslash is removed before sh sees it
    cmd = cmd.replace("%", "\\%")
    return f"* * * * * {cmd} {_marker(root)}"


def _marker(root: str) -> str:
    return f"{MARKER}{root}".replace("%", "\\%")  # the comment is part of the command for cron


def _is_ours(line: str, root: str) -> bool:
    return line.rstrip().endswith(" " + _marker(root))


def _crontab_program() -> str:
    prog = os.environ.get("PIPECTL_CRONTAB") or shutil.which("crontab")
    if not prog or not os.access(prog, os.X_OK):
        raise PipectlError("crontab not found: install cron (Debian: apt-get install cron), or use `pipectl install systemd`")
    return prog


def read_crontab() -> list[str]:
    """The invoking user's crontab lines ([] when there is none)."""
    prog = _crontab_program()
    p = subprocess.run([prog, "-l"], capture_output=True, text=True)
    if p.returncode != 0:
        if "no crontab" in (p.stderr or "").lower():
            return []
        raise PipectlError(f"`crontab -l` failed: {(p.stderr or '').strip() or f'exit {p.returncode}'}")
    return p.stdout.splitlines()


def write_crontab(lines: list[str]) -> None:
    prog = _crontab_program()
    text = "".join(line + "\n" for line in lines)  # cron ignores a last line without newline
    p = subprocess.run([prog, "-"], input=text, capture_output=True, text=True)
    if p.returncode != 0:
        raise PipectlError(f"`crontab -` failed: {(p.stderr or '').strip() or f'exit {p.returncode}'}")


def installed_cron_line(config) -> str | None:
    """This project's line in the crontab, or None. Raises when crontab itself is missing."""
    for line in read_crontab():
        if _is_ours(line, str(config.root)):
            return line
    return None


def install_cron(config) -> str:
    """Add (or update) this project's line; returns 'installed', 'updated' or 'unchanged'."""
    from pipectl.state import ticklog
    line = cron_line(config)
    lines = read_crontab()
    ours = [i for i, l in enumerate(lines) if _is_ours(l, str(config.root))]
    # a private tick.log and state dir before cron's shell (umask 022) creates them
    ticklog.ensure(config)
    if len(ours) == 1 and lines[ours[0]] == line:
        return "unchanged"
    if ours:
        first = ours[0]
        lines = [l for i, l in enumerate(lines) if i not in ours[1:]]
        lines[first] = line
        write_crontab(lines)
        return "updated"
    write_crontab([*lines, line])
    return "installed"


def uninstall_cron(config) -> bool:
    lines = read_crontab()
    keep = [l for l in lines if not _is_ours(l, str(config.root))]
    if len(keep) == len(lines):
        return False
    write_crontab(keep)
    return True


# --------------------------------------------------------------------------- systemd

@dataclass
class Units:
    name: str  # without suffix
    service: str
    timer: str


def unit_name(config) -> str:
    """``pipectl-tick-<dir name>-<hash>``: readable, and unique per project path."""
    root = str(config.root)
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", os.path.basename(root.rstrip("/")) or "root").strip("-")[:40] or "project"
    return f"pipectl-tick-{slug}-{hashlib.sha1(root.encode()).hexdigest()[:8]}"


def _systemd_quote(arg: str) -> str:
    """One ExecStart= word: double-quoted with C escapes; % doubled (specifier), $ doubled."""
    if re.fullmatch(r"[A-Za-z0-9_./:=@+-]+", arg):
        return arg.replace("%", "%%")
    esc = arg.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%").replace("$", "$$")
    return f'"{esc}"'


def systemd_units(config, user: bool) -> Units:
    root = str(config.root)
    _check_path(root)
    name = unit_name(config)
    argv = [*pipectl_command(), "--project", root, "tick"]
    exec_start = " ".join(_systemd_quote(a) for a in argv)
    lines = [
        "[Unit]",
        f"Description=pipectl tick for {root.replace('%', '%%')}",
        "",
        "[Service]",
        "Type=oneshot",
        f"ExecStart={exec_start}",
        f"WorkingDirectory={_systemd_quote(root)}",
        f"Environment={_systemd_quote('PATH=' + task_path())}",
        "# Tasks started by a tick run in sessions of their own and must outlive it (their",
        "# exit status is picked up by whoever is alive next). The default",
        "# KillMode=control-group would kill every task still in this oneshot's cgroup the",
        "# moment the tick exits; KillMode=process stops only the tick's own process. The",
        "# cost: systemd logs \"left-over process\" when the next tick starts while a task",
        "# still runs. Task timeouts are enforced by pipectl itself.",
        "KillMode=process",
        "# the tick bounds itself (tick_budget); this is a safety net",
        "TimeoutStartSec=15min",
    ]
    if not user:
        lines.append(f"User={getpass.getuser()}")
    # no [Install] section: the timer starts the service; enabling it alone means nothing
    service = "\n".join(lines) + "\n"
    timer = "\n".join([
        "[Unit]",
        f"Description=pipectl tick every minute for {root.replace('%', '%%')}",
        "",
        "[Timer]",
        "OnCalendar=minutely",
        "# a tick missed while the machine was off runs at boot; pipectl's catchup rules decide the rest",
        "Persistent=true",
        "AccuracySec=1s",
        f"Unit={name}.service",
        "",
        "[Install]",
        "WantedBy=timers.target",
        "",
    ])
    return Units(name=name, service=service, timer=timer)


def unit_dir(user: bool) -> Path:
    override = os.environ.get("PIPECTL_SYSTEMD_DIR")
    if override:
        return Path(override)
    if user:
        base = os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config")
        return Path(base) / "systemd" / "user"
    return Path("/etc/systemd/system")


def _systemctl(user: bool, *args: str) -> subprocess.CompletedProcess | None:
    prog = os.environ.get("PIPECTL_SYSTEMCTL") or shutil.which("systemctl")
    if not prog:
        return None
    try:
        return subprocess.run([prog, *(["--user"] if user else []), *args], capture_output=True, text=True)
    except OSError:
        return None


def install_systemd(config, user: bool) -> tuple[list[Path], str | None]:
    """Write the units and enable the timer; returns (files written, problem enabling or None)."""
    units = systemd_units(config, user)
    d = unit_dir(user)
    d.mkdir(parents=True, exist_ok=True)
    written = []
    for suffix, text in ((".service", units.service), (".timer", units.timer)):
        p = d / f"{units.name}{suffix}"
        tmp = p.with_name(p.name + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, p)
        written.append(p)
    from pipectl.state import ticklog
    ticklog.ensure(config)
    problem = None
    for args in (("daemon-reload",), ("enable", "--now", f"{units.name}.timer")):
        r = _systemctl(user, *args)
        if r is None:
            problem = "systemctl not found"
            break
        if r.returncode != 0:
            problem = f"`systemctl {'--user ' if user else ''}{' '.join(args)}` failed: {(r.stderr or r.stdout).strip()}"
            break
    return written, problem


def uninstall_systemd(config, user: bool) -> list[Path]:
    name = unit_name(config)
    _systemctl(user, "disable", "--now", f"{name}.timer")
    removed = []
    for suffix in (".timer", ".service"):
        p = unit_dir(user) / f"{name}{suffix}"
        if p.exists():
            p.unlink()
            removed.append(p)
    if removed:
        _systemctl(user, "daemon-reload")
    return removed


def installed_timer(config) -> Path | None:
    """This project's timer unit file, user or system, if written."""
    name = unit_name(config)
    for user in (True, False):
        p = unit_dir(user) / f"{name}.timer"
        if p.exists():
            return p
    return None
