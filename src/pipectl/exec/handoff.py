"""Handing due work to the timer (see :mod:`pipectl.exec.timer`).

Whichever process leaves work due within the coming minute (a retry's delay, a
sensor's next poke, ready work a tick's budget cut off) calls :func:`hand_off`.
Kept apart from the timer itself, which steps the engine: the engine hands off
here without importing the process that drives it.
"""
from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import time

from pipectl.state import files as _fs
HORIZON = 60.0  # seconds ahead a timer looks; nothing due that soon: it exits (cron's next tick is nearer)
POLL = 0.5  # seconds between looks at the state file for work handed to a sleeping timer
WANTED_TICK_BUDGET = 5.0
LOCK_NAME = "timer.lock"


def lock_path(config) -> str:
    return os.path.join(config.state_dir, LOCK_NAME)


def _try_lock(path: str) -> int | None:
    """An fd holding the timer lock, or None when a live timer holds it."""
    try:
        fd = _fs.private_open(path, os.O_RDWR)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def running(config) -> bool:
    """True while a timer holds the project's timer lock."""
    fd = _try_lock(lock_path(config))
    if fd is None:
        return os.path.exists(lock_path(config))
    os.close(fd)
    return False


def wanted(store, key: str) -> float:
    try:
        return float(store.get_meta(key) or 0)
    except ValueError:
        return 0.0


def hand_off(engine, since: float | None = None, *, step_now: bool = False, tick: bool = False) -> bool:
    """Make sure someone acts on what the caller leaves due within the coming minute.

    ``since``: when the caller's last step began (the engine's clock): due times before it
    that the step did not act on wait on a slot or an upstream, not on time, and are left to
    whoever frees those. ``step_now``: the caller left ready work undone (a tick at its
    budget). ``tick``: a scheduling pass is wanted (``unpause`` found a tick running).
    Returns True when it started a timer.
    """
    store, clock, config = engine.store, engine.clock, engine.config
    if step_now or tick:
        with store.tx():
            store.set_meta("tick_wanted" if tick else "step_wanted", repr(time.time()))
    else:
        wake = store.earliest_wakeup(after=since)
        if wake is None or wake - clock.now() > HORIZON:
            return False
    if running(config):
        return False  # it sees this caller's commit while it sleeps
    start(config, clock.offset)
    return True


def act_now(engine, report=None) -> None:
    """One step now (the work a command made ready starts at once), and a hand-off for what is
    due later."""
    began = engine.clock.now()
    engine.step(report)
    hand_off(engine, began)


def start(config, offset: float) -> None:
    """Start a timer, detached in a session of its own. Through sh with ``&``: the timer is
    adopted by init at once and never lingers as the zombie child of a long-lived caller."""
    env = {k: v for k, v in os.environ.items() if k != "PIPECTL_NOW"}
    try:
        subprocess.run(["/bin/sh", "-c", 'exec "$0" -m pipectl.exec.timer "$1" "$2" </dev/null >/dev/null 2>&1 &',
                        sys.executable, str(config.root), repr(offset)],
                       env=env, cwd=str(config.root), start_new_session=True, close_fds=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        pass  # the next tick hands off again
