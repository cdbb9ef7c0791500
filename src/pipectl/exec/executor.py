"""Starting tries as detached processes, and telling whether they still live.

A try is ``sh wrapper.sh ...`` in a session of its own, so it outlives the
tick or supervisor that started it and is immune to signals sent to that
process's group. The wrapper leaves the task's exit status in a small file;
``read_status`` reads it. A process is identified by (pid, start time, boot id)
so that a reused pid or a reboot is never mistaken for the try still running.

A try's session is its unit of cleanup: when the try ends, for whatever reason,
``end_session`` kills whatever is left in it (a background job, a grandchild whose
parent died, a process that left the task's group), and the next try of the same
task instance starts only once it is empty.

Before it runs anything the wrapper claims its try in ``STATUS.pid`` (its own pid:
the session id). A launcher killed before it could record the wrapper's pid leaves
that claim as the only trace of the session; a reaper that finds no claim writes
one of its own first (``abandon``), and a wrapper that comes up later sees it and
runs nothing. So a try either ran with a known session, or never ran at all.
"""
from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from pipectl.state.files import current_umask, private_dir, private_open
KILL_GRACE = 2.0  # seconds between TERM and KILL on timeout
# the engine reaches this module as ``ctx.executor``; a rehearsal (ops.simulate) puts a virtual
# stand-in there, which says so here and pokes sensors and expands foreach commands itself
simulated = False
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


def _members(sid: int) -> list[int]:
    """Processes of session ``sid`` that still run (zombies have finished), this one excepted."""
    me, members = os.getpid(), []
    # getsid(2) is one system call per process where reading /proc/PID/stat is three and a
    # parse: this runs once for every try that ends
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        try:
            if os.getsid(pid) != sid or pid == me:
                continue
        except OSError:
            continue
        if process_start(pid) is not None:  # None: gone meanwhile, or a zombie
            members.append(pid)
    return members


def session_members(sid: int) -> list[int]:
    """Every running process in session ``sid``: the wrapper, timeout, the task and its children."""
    return _members(sid)


def kill_session(sid: int) -> None:
    for pid in _members(sid):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def end_session(sid: int | None, start: str | None, boot: str | None, status_path: str | None = None,
                wait: float = 0.5) -> bool:
    """Kill whatever is left of the session a try's wrapper ``sid`` leads; True once nothing
    of it runs (False: something would not die within ``wait`` seconds, e.g. stuck in the kernel).

    A session id stays taken while any process of the session lives, so a pid that now belongs
    to another process (another start time, or not our wrapper) means the session is empty."""
    if not sid or boot != boot_id():
        return True  # nothing survives a reboot
    now_start = process_start(sid)
    if now_start is not None:
        if start is not None and now_start != start:
            return True
        if start is None and not (status_path and is_wrapper(sid, status_path)):
            return True
    deadline = time.monotonic() + wait
    while True:
        members = _members(sid)
        if not members:
            return True
        for pid in members:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        if time.monotonic() > deadline:
            return not _members(sid)
        time.sleep(0.002)


def _wrapper_status(pid: int) -> bytes | None:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
    except OSError:
        return None
    if len(argv) > 2 and argv[1].endswith(b"wrapper.sh"):
        return argv[2]
    return None


def is_wrapper(pid: int, status_path: str) -> bool:
    """Whether ``pid`` is the wrapper of the try whose status goes to ``status_path``."""
    return _wrapper_status(pid) == status_path.encode()


def find_wrapper(status_path: str) -> int | None:
    """The pid of a wrapper started for ``status_path`` but never recorded (its launcher died)."""
    needle = status_path.encode()
    for entry in os.listdir("/proc"):
        if entry.isdigit() and _wrapper_status(int(entry)) == needle:
            return int(entry)
    return None


ABANDONED = 0  # a claim written by a reaper: the try never ran and never will


def claim_path(status_path: str) -> str:
    return status_path + ".pid"


def _read_small(path: str) -> tuple[bytes | None, float]:
    """The first bytes of a regular file at ``path`` and its mtime, or (None, 0) for
    anything else. Opened non-blocking and without following links: a FIFO or a link
    planted at a status path must neither hang a reader nor redirect it."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
    except OSError:
        return None, 0.0
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return None, 0.0
        return os.read(fd, 64), st.st_mtime
    except OSError:
        return None, 0.0
    finally:
        os.close(fd)


def read_claim(status_path: str) -> int | None:
    """The pid of the wrapper that claimed this try, ABANDONED, or None (no claim, or one
    being written)."""
    text = _read_small(claim_path(status_path))[0]
    if text is None:
        return None
    if text == b"-\n":
        return ABANDONED
    try:
        return int(text) if text.endswith(b"\n") else None
    except ValueError:
        return None


def abandon(status_path: str) -> bool:
    """Claim a try whose launcher died before recording its wrapper, so that no wrapper
    will ever run it; False if a wrapper (or another reaper) claimed it first."""
    try:
        fd = private_open(claim_path(status_path), os.O_WRONLY | os.O_EXCL)
    except FileExistsError:
        return False
    try:
        os.write(fd, b"-\n")
    finally:
        os.close(fd)
    return True


def unrecorded_try(status_path: str) -> tuple[str, int | None]:
    """What became of a try whose launcher died before recording its wrapper's pid:
    ("ran", wrapper pid), ("never", None) -- nothing of it ran or ever will -- or
    ("wait", None) while its wrapper is between starting and claiming."""
    pid = read_claim(status_path)
    if pid is None:
        # a live wrapper whose claim is not there (not written yet, or deleted with the
        # status directory) is adopted, never given up under it
        live = find_wrapper(status_path)
        if live is not None:
            return "ran", live
        if abandon(status_path):
            return "never", None
        pid = read_claim(status_path)
    if pid is None:
        # a claim being written, or one a full disk left empty (its wrapper then exits)
        if find_wrapper(status_path) is not None:
            return "wait", None
        pid = read_claim(status_path)
        if pid is None:
            return "never", None
    if pid == ABANDONED:
        return "never", None
    return "ran", pid


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
    private_dir(os.path.dirname(launch.status_path))
    # what a try of a pruned task instance with the same id left there is not this try's
    discard_status(launch.status_path)
    fd = private_open(launch.log_path)
    try:
        limit = f"{launch.timeout:g}" if launch.timeout else "0"
        # the task runs with our umask; the wrapper's own files are private whatever it is
        argv = ["/bin/sh", WRAPPER, launch.status_path, limit, f"{KILL_GRACE:g}", launch.supervisors_dir,
                sys.executable, launch.project, repr(launch.clock_offset), f"{current_umask():04o}", "--",
                *launch.argv]
        return subprocess.Popen(argv, cwd=launch.cwd, env=launch.env, stdin=subprocess.DEVNULL, stdout=fd, stderr=fd,
                                start_new_session=True, close_fds=True)
    finally:
        os.close(fd)


def read_status(status_path: str) -> tuple[int, float] | None:
    """(exit code, end time) once the wrapper has written them, else None.

    Never blocks: whatever else sits at the path (a FIFO would block an ordinary open
    until someone writes to it) is no status; the wrapper replaces it when it writes."""
    text, mtime = _read_small(status_path)
    if text is None or not text.endswith(b"\n"):
        return None  # not written yet, or the wrapper died mid-write
    try:
        return int(text), mtime
    except ValueError:
        return None


def discard_status(status_path: str) -> None:
    for p in (status_path, status_path + ".tmp", claim_path(status_path)):
        try:
            os.unlink(p)
        except OSError:
            pass


def run_hook(command: str, *, cwd: str, env: dict[str, str], log_path: str, label: str) -> subprocess.Popen | None:
    """Start a hook detached; its output, and a line if it fails, go to ``log_path``.

    The hook's command reaches its own ``/bin/sh -c`` as an argument, never pasted
    into the outer script: a trailing comment, a heredoc or an unbalanced quote in
    it cannot change what the outer script does.
    """
    script = '/bin/sh -c "$1"; rc=$?; [ "$rc" -eq 0 ] || echo "pipectl: hook $2 exited $rc"'
    fd = private_open(log_path)
    try:
        return subprocess.Popen(["/bin/sh", "-c", script, "pipectl-hook", command, label], cwd=cwd, env=env,
                                stdin=subprocess.DEVNULL, stdout=fd,
                                stderr=fd, start_new_session=True)
    except OSError:
        return None
    finally:
        os.close(fd)
