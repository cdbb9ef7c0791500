"""The no-op tick, answered before typer is imported.

cron starts ``pipectl tick`` 1440 times a day and nearly every one of them has
nothing to do. Importing typer and building the command tree costs more than
the whole no-op decision, so ``pipectl`` (console script and ``python -m``)
first offers plain ``pipectl [--project DIR] [--no-color] tick`` to
:func:`main` here. It answers only when it can prove the tick is a no-op:
anything else (other arguments, ``--now``, a tick that is busy, due work, an
error of any kind) returns None and the full CLI handles the invocation from
scratch, so its behaviour and messages stay the single source of truth.

Imports: stdlib, the store and the config only (no yaml, croniter, rich,
filelock, typer, the engine).
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

from pipectl.state.files import private_open
def spec_fingerprint(config) -> str:
    """Changes whenever a spec file or pipectl.toml is added, removed or edited."""
    h = hashlib.sha1()
    root = Path(config.root)
    paths = {root / "pipectl.toml"}
    for pattern in config.pipelines:
        paths.update(root.glob(pattern))
    for p in sorted(paths):
        try:
            st = p.stat()
        except OSError:
            continue
        h.update(f"{p}\0{st.st_mtime_ns}\0{st.st_size}\n".encode())
    return h.hexdigest()


def nothing_to_do(config, store, now: float) -> bool:
    """True when a tick at ``now`` would create, reap and start nothing."""
    if store.get_meta("spec_fingerprint") != spec_fingerprint(config):
        return False
    if store.count_active() != (0, 0):
        return False
    for valid, paused, next_due, spec_text in store.schedule_rows():
        if not valid or paused:
            continue
        if next_due is None:
            spec = json.loads(spec_text) if spec_text else {}
            if any(s.get("kind") in ("cron", "every") for s in spec.get("schedules", ())):
                return False
            if spec.get("schedules") or spec.get("secret_env"):
                return False  # event-driven or env-dependent pipelines are looked at every tick
            continue
        if next_due <= now:
            return False
    return True


def _plain_tick_project(argv: list[str]) -> tuple[bool, str | None]:
    """(is a plain ``tick`` invocation, its --project) for the argument forms cron uses."""
    project = None
    seen_tick = False
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "tick" and not seen_tick:
            seen_tick = True
        elif a == "--no-color":
            pass
        elif a == "--project" and i + 1 < len(argv):
            project = argv[i + 1]
            i += 1
        elif a.startswith("--project="):
            project = a.split("=", 1)[1]
        else:
            return False, None
        i += 1
    return seen_tick, project


def main(argv: list[str]) -> int | None:
    """Exit status when this was a no-op tick that has been done; None to hand over to the full CLI."""
    ok, project = _plain_tick_project(argv)
    if not ok or os.environ.get("PIPECTL_NOW"):
        return None
    try:
        return _noop_tick(project)
    except Exception:  # any surprise: the full CLI will redo the work and word the error
        return None


def _noop_tick(project: str | None) -> int | None:
    import fcntl
    import time

    from pipectl.spec.config import find_project, load_config
    from pipectl.state.store import Store
    config = load_config(find_project(project, os.getcwd(), os.environ))
    if not os.path.exists(config.state_db):
        return None
    # the same flock filelock takes in tick.tick(), so a full tick and this one exclude each other
    fd = private_open(os.path.join(config.state_dir, "tick.lock"), os.O_RDWR)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return None  # busy: the full CLI says so
        store = Store(config.state_db, create=False)
        try:
            now = time.time()
            if not nothing_to_do(config, store, now):
                return None
            if config.retention and _prune_due(store, now):
                return None
            with store.tx():
                store.set_meta("last_tick", repr(now))
        finally:
            store.close()
    finally:
        os.close(fd)  # closing releases the flock
    print("nothing due")
    sys.stdout.flush()
    return 0


def _prune_due(store, now: float) -> bool:
    from pipectl.engine.retention import PRUNE_EVERY
    last = store.get_meta("last_prune")
    try:
        return last is None or now - float(last) >= PRUNE_EVERY
    except ValueError:
        return True
