"""``pipectl doctor``: is this project set up so that ticks arrive and work gets done?

Each check is independent and returns (ok, detail); one failing check never
hides the others. Nothing here writes to the state file.
"""
from __future__ import annotations

import os
import shutil
import stat
import time
from dataclasses import dataclass

# cron fires every minute; a tick may run up to tick_budget; allow one missed minute more
TICK_SLACK = 60.0
MIN_FREE_BYTES = 100 * 1024 * 1024


@dataclass
class Check:
    name: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"{'✔' if self.ok else '✘'} {self.name}: {self.detail}"

    def to_dict(self) -> dict:
        return {"name": self.name, "ok": self.ok, "detail": self.detail}


def _mode(path: str) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def check_specs(config) -> Check:
    from pipectl.spec.loader import load_pipelines
    try:
        res = load_pipelines(config)
    except Exception as e:  # a loader crash is itself a finding, not a reason to stop checking
        return Check("specs", False, f"cannot load specs: {e}")
    n = len(res.pipelines)
    if res.errors:
        first = str(res.errors[0])
        more = f" (and {len(res.errors) - 1} more; run `pipectl validate`)" if len(res.errors) > 1 else ""
        return Check("specs", False, f"{len(res.errors)} problem(s): {first}{more}")
    if not n:
        return Check("specs", False, f"no pipelines found (globs: {', '.join(config.pipelines)})")
    return Check("specs", True, f"{n} pipeline{'s' if n != 1 else ''} valid")


def check_state_dir(config) -> Check:
    d = config.state_dir
    if not os.path.isdir(d):
        return Check("state dir", False, f"{d} does not exist; run `pipectl tick` once")
    problems = []
    if not os.access(d, os.W_OK | os.X_OK):
        problems.append("not writable")
    m = _mode(d)
    if m & 0o077:
        problems.append(f"mode {m:04o}, want 0700 (chmod 700 {d})")
    db = config.state_db
    if os.path.exists(db):
        fm = _mode(db)
        if fm & 0o077:
            problems.append(f"state file mode {fm:04o}, want 0600 (chmod 600 {db})")
        if not os.access(db, os.W_OK):
            problems.append("state file not writable")
    if problems:
        return Check("state dir", False, f"{d}: " + "; ".join(problems))
    return Check("state dir", True, f"{d} writable, 0700" + (", state file 0600" if os.path.exists(db) else ""))


def check_integrity(config) -> Check:
    from pipectl.state.store import Store
    if not os.path.exists(config.state_db):
        return Check("state file", False, f"no state file at {config.state_db}; run `pipectl tick` once")
    try:
        store = Store(config.state_db, create=False)
        try:
            res = store.integrity_check()
        finally:
            store.close()
    except Exception as e:
        return Check("state file", False, str(e))
    if res != "ok":
        return Check("state file", False, f"integrity_check: {res}")
    return Check("state file", True, "integrity_check ok")


def last_tick(config) -> float | None:
    from pipectl.state.store import existing_store
    try:
        store = existing_store(config)
        if store is None:
            return None
        try:
            value = store.get_meta("last_tick")
        finally:
            store.close()
        return float(value) if value else None
    except Exception:
        return None


def check_ticks(config, now: float) -> Check:
    t = last_tick(config)
    limit = 60.0 + config.tick_budget + TICK_SLACK
    if t is None:
        return Check("ticks", False, "no tick has run yet")
    age = now - t
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))
    if age > limit:
        return Check("ticks", False, f"last tick {when}, {_ago(age)} ago (expected every minute; is cron or the timer running?)")
    return Check("ticks", True, f"last tick {when}, {_ago(max(age, 0))} ago")


def _ago(s: float) -> str:
    s = int(s)
    if s < 120:
        return f"{s}s"
    if s < 7200:
        return f"{s // 60}m"
    if s < 172800:
        return f"{s // 3600}h"
    return f"{s // 86400}d"


def check_scheduler(config) -> Check:
    from pipectl.ops import install
    found = []
    cron_problem = None
    try:
        line = install.installed_cron_line(config)
        if line:
            found.append("crontab line")
    except Exception as e:
        cron_problem = str(e)
    timer = install.installed_timer(config)
    if timer is not None:
        found.append(f"systemd timer {timer.name}")
    if found:
        return Check("scheduler", True, " and ".join(found) + " installed")
    hint = "run `pipectl install cron` or `pipectl install systemd`"
    return Check("scheduler", False, f"no crontab line or systemd timer for {config.root}; {hint}"
                 + (f" ({cron_problem})" if cron_problem else ""))


def check_tzdata() -> Check:
    from zoneinfo import ZoneInfo

    try:
        ZoneInfo("America/New_York")
    except Exception as e:
        return Check("tzdata", False, f"cannot load America/New_York ({e}); install tzdata (apt-get install tzdata, or pip install tzdata)")
    return Check("tzdata", True, "time zones load")


def check_disk(config) -> Check:
    d = config.state_dir if os.path.isdir(config.state_dir) else config.root
    try:
        usage = shutil.disk_usage(d)
    except OSError as e:
        return Check("disk", False, f"cannot stat {d}: {e.strerror}")
    free = usage.free
    text = f"{free / 2**30:.1f} GiB free under {d}"
    if free < MIN_FREE_BYTES:
        return Check("disk", False, f"only {free / 2**20:.0f} MiB free under {d} (want >= {MIN_FREE_BYTES // 2**20} MiB)")
    return Check("disk", True, text)


def run_checks(config, now: float | None = None) -> list[Check]:
    now = time.time() if now is None else now
    return [
        check_specs(config),
        check_state_dir(config),
        check_integrity(config),
        check_ticks(config, now),
        check_scheduler(config),
        check_tzdata(),
        check_disk(config),
    ]
