"""Forgetting old runs: ``pipectl prune --older-than 90d`` and ``retention = "90d"``.

A finished run (success or failed) whose end lies before the cutoff is deleted
with its task instances, tries, SLA misses (foreign-key CASCADE) and events,
and its log directory (task logs, hooks.log) is removed. Queued and running
runs are never touched, however old. Asset and file-trigger records stay: they
are what keeps a file from triggering twice.

With ``retention`` set, ticks prune by themselves at most once an hour (meta
``last_prune``), which costs a no-op tick one meta read.
"""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field

PRUNE_EVERY = 3600.0


@dataclass
class PruneResult:
    runs: list[str] = field(default_factory=list)  # run ids
    log_dirs: int = 0


def run_log_dir(config, run) -> str:
    """Where a run's logs live; the same layout as ``scheduler.log_path``."""
    safe = run["run_id"].replace(":", "").replace("+", "_")
    return os.path.join(config.state_dir, "logs", run["pipeline"], safe)


def prune(config, store, older_than: float, now: float, dry_run: bool = False) -> PruneResult:
    result = PruneResult()
    cutoff = now - older_than
    rows = store.runs_older_than(cutoff)
    result.runs = [r["run_id"] for r in rows]
    if dry_run or not rows:
        return result
    # state first: a crash between the two leaves orphan log directories (harmless, removed
    # below on the next prune), never a run whose logs are gone
    with store.tx():
        store.prune_runs([r["id"] for r in rows])
    logs_root = os.path.realpath(os.path.join(config.state_dir, "logs"))
    for r in rows:
        d = run_log_dir(config, r)
        if os.path.realpath(d).startswith(logs_root + os.sep) and os.path.isdir(d):
            shutil.rmtree(d, ignore_errors=True)
            result.log_dirs += 1
    return result


def maybe_prune(config, store, now: float) -> PruneResult | None:
    """The tick's automatic prune: only with ``retention`` set, at most once per hour."""
    if not config.retention:
        return None
    last = store.get_meta("last_prune")
    try:
        if last is not None and now - float(last) < PRUNE_EVERY:
            return None
    except ValueError:
        pass
    result = prune(config, store, config.retention, now)
    with store.tx():
        store.set_meta("last_prune", repr(now))
    return result
