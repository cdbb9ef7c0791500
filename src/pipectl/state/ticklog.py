"""The tick log: what each tick did, one timestamped line per action.

``state_dir/tick.log`` is the single place to look when "cron did nothing":
the ``tick`` command appends its report here (created, launched, reaped, lost,
retried, finished runs, skipped pipelines), and the installed crontab line
appends the process's own stdout/stderr to the same file, so a tick that dies
before reaching the engine (bad venv, broken pipectl.toml) leaves its error
beside the others. A no-op tick writes nothing, or 1440 empty ticks a day would
bury the useful lines.

Rotation: past ``MAX_BYTES`` the file becomes ``tick.log.1`` (one generation
kept) and a fresh 0600 ``tick.log`` is created at once, so the shell redirect
of the next cron tick appends to a private file instead of creating one with
cron's umask. A cron shell that opened the file before the rename finishes
writing into ``tick.log.1``; nothing is lost.
"""
from __future__ import annotations

import os
from datetime import datetime

from pipectl.state.files import private_open
from pipectl.timing.clock import UTC
MAX_BYTES = 1_000_000
NAME = "tick.log"


def path(config) -> str:
    return os.path.join(config.state_dir, NAME)


def _stamp(now) -> str:
    if isinstance(now, datetime):
        dt = now.astimezone(UTC)
    else:
        dt = datetime.fromtimestamp(float(now), UTC)
    return dt.replace(microsecond=0).isoformat()


def ensure(config) -> str:
    """Create the (empty) tick log with mode 0600 if missing; returns its path."""
    p = path(config)
    os.close(private_open(p))
    return p


def append(config, now, lines, max_bytes: int = MAX_BYTES) -> None:
    """Append ``lines`` stamped with ``now`` (epoch seconds or aware datetime); rotate when big."""
    lines = [line for line in lines if line]
    if not lines:
        return
    p = path(config)
    try:
        if os.path.getsize(p) > max_bytes:
            os.replace(p, p + ".1")
    except FileNotFoundError:
        pass
    stamp = _stamp(now)
    data = "".join(f"{stamp} {line}\n" for line in lines).encode("utf-8", "replace")
    # private_open also mends a file the cron shell created with its own umask before we got here
    fd = private_open(p)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def read(config, tail: int | None = 200) -> str:
    """The last ``tail`` lines of the tick log (all with ``tail=None``), the rotated file included."""
    p = path(config)
    chunks = []
    for name in (p + ".1", p):
        try:
            with open(name, "rb") as f:
                chunks.append(f.read().decode("utf-8", "replace"))
        except FileNotFoundError:
            continue
    text = "".join(c if c.endswith("\n") or not c else c + "\n" for c in chunks)
    if tail is None:
        return text
    lines = text.splitlines(keepends=True)
    return "".join(lines[-tail:]) if tail > 0 else ""
