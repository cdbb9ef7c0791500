"""Starting tries as detached processes, and telling whether they still live.

A try is ``sh wrapper.sh ...`` in a session of its own, so it outlives the
tick or supervisor that started it and is immune to signals sent to that
process's group. The wrapper leaves the task's exit status in a small file;
``reap_status`` reads it. A process is identified by (pid, start time, boot id)
so that a reused pid or a reboot is never mistaken for the try still running.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

KILL_GRACE = 2.0  # seconds between TERM and KILL on timeout
WRAPPER = str(Path(__file__).with_name("wrapper.sh"))
_BOOT_ID_FILE = "/proc/sys/kernel/random/boot_id"


def boot_id() -> str:
    try:
        with open(_BOOT_ID_FILE) as f:
            return f.read().strip()
    except OSError:
        return "unknown"


def process_start(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (clock ticks since boot), or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    # comm may hold spaces and parentheses: split after the last ')'
    fields = data[data.rindex(b")") + 2:].split()
    if fields[0] == b"Z":  # a zombie has finished; it is not running
        return None
    return fields[19].decode()


def is_alive(pid: int | None, start: str | None, boot: str | None) -> bool:
    if not pid or boot != boot_id():
        return False
    now_start = process_start(pid)
    return now_start is not None and (start is None or now_start == start)


def session_members(sid: int) -> list[int]:
    """Every process in session ``sid``: the wrapper, timeout, the task and its children."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                data = f.read()
        except OSError:
            continue
        fields = data[data.rindex(b")") + 2:].split()
        if int(fields[3]) == sid:
            members.append(int(entry))
    return members


def kill_session(sid: int) -> None:
    for pid in session_members(sid):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def find_wrapper(status_path: str) -> int | None:
    """The pid of a wrapper started for ``status_path`` but never recorded (its launcher died)."""
    needle = status_path.encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if len(argv) > 2 and argv[1].endswith(b"wrapper.sh") and argv[2] == needle:
            return int(entry)
    return None


@dataclass(frozen=True)
class Launch:
    argv: list[str]  # exec'd directly; a string command arrives as ["/bin/sh", "-c", cmd]
    cwd: str
    env: dict[str, str]
    log_path: str
    status_path: str
    timeout: float | None
    supervisors_dir: str  # the wrapper reaps itself when no supervisor is alive
    project: str
    clock_offset: float = 0.0


def start(launch: Launch) -> subprocess.Popen:
    os.makedirs(os.path.dirname(launch.log_path), mode=0o700, exist_ok=True)
    os.makedirs(os.path.dirname(launch.status_path), mode=0o700, exist_ok=True)
    fd = os.open(launch.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        limit = f"{launch.timeout:g}" if launch.timeout else "0"
        argv = ["/bin/sh", WRAPPER, launch.status_path, limit, f"{KILL_GRACE:g}", launch.supervisors_dir,
                sys.executable, launch.project, repr(launch.clock_offset), "--", *launch.argv]
        return subprocess.Popen(argv, cwd=launch.cwd, env=launch.env, stdin=subprocess.DEVNULL, stdout=fd, stderr=fd,
                                start_new_session=True, close_fds=True)
    finally:
        os.close(fd)


def read_status(status_path: str) -> tuple[int, float] | None:
    """(exit code, end time) once the wrapper has written them, else None."""
    try:
        with open(status_path) as f:
            text = f.read()
            end = os.fstat(f.fileno()).st_mtime
    except OSError:
        return None
    if not text.endswith("\n"):
        return None  # not written yet, or the wrapper died mid-write
    try:
        return int(text), end
    except ValueError:
        return None


def discard_status(status_path: str) -> None:
    for p in (status_path, status_path + ".tmp"):
        try:
            os.unlink(p)
        except OSError:
            pass


def run_hook(command: str, *, cwd: str, env: dict[str, str], log_path: str, label: str) -> subprocess.Popen | None:
    """Start a hook detached; its output, and a line if it fails, go to ``log_path``."""
    os.makedirs(os.path.dirname(log_path), mode=0o700, exist_ok=True)
    script = '( %s ); rc=$?; [ "$rc" -eq 0 ] || echo "pipectl: hook %s exited $rc"' % (command, label)
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        return subprocess.Popen(["/bin/sh", "-c", script], cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=fd,
                                stderr=fd, start_new_session=True)
    except OSError:
        return None
    finally:
        os.close(fd)
