"""Forgetting old runs: ``pipectl prune --older-than 90d`` and ``retention = "90d"``.

A finished run (success or failed) whose end lies before the cutoff is deleted
with its task instances, tries, SLA misses (foreign-key CASCADE) and events,
and its log directory (task logs, hooks.log) is removed. Queued and running
runs are never touched, however old. Asset and file-trigger records stay: they
are what keeps a file from triggering twice.

With ``retention`` set, ticks prune by themselves at most once an hour (meta
``last_prune``), which costs a no-op tick one meta read: that is why this lives
in the engine (the tick prunes) and ``ops.retention`` only re-exports it.
"""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field

from pipectl.exec import layout
from pipectl.exec.layout import run_log_dir

PRUNE_EVERY = 3600.0


@dataclass
class PruneResult:
    runs: list[str] = field(default_factory=list)  # run ids
    log_dirs: int = 0
    # (pipeline, run id) -> (task, try) deleted; a run id alone is no key: it is the run's type and
    # logical date, shared by two pipelines' runs for one moment
    tries: dict[tuple[str, str], list[tuple[str, int]]] = field(default_factory=dict)


def prune(config, store, older_than: float, now: float, dry_run: bool = False) -> PruneResult:
    """Delete the finished runs that ended before ``now - older_than``, and only their log
    directories; the result names exactly what was deleted."""
    result = PruneResult()
    cutoff = now - older_than
    # selected and deleted in one transaction, each by a conditional delete: a run re-opened
    # (retry, backfill) or still working since a look outside it keeps its events and logs
    moved: list[tuple[str, str]] = []
    try:
        with store.tx():
            gone = store.prune_runs_older_than(cutoff, dry_run=dry_run)
            rows = [r for r, _ in gone]
            result.tries = {(r.pipeline, r.run_id): tries for r, tries in gone}
            if not dry_run:
                # set the log directories aside under the same write lock: a run created for the
                # same date right after this commit (a backfill) logs into a fresh directory that
                # the removal below can never reach
                for i, r in enumerate(rows):
                    d = _log_dir_inside(config, r)
                    if d is not None:
                        aside = os.path.join(config.state_dir, f".pruning.{os.getpid()}.{i}")
                        os.rename(d, aside)
                        moved.append((d, aside))
    except BaseException:
        for d, aside in moved:  # nothing was deleted: every log goes back where it was
            os.rename(aside, d)
        raise
    result.runs = [r.run_id for r in rows]
    for _, aside in moved:
        shutil.rmtree(aside, ignore_errors=True)
    result.log_dirs = len(moved)
    return result


def _log_dir_inside(config, run) -> str | None:
    """The run's log directory if it exists and lies inside the state dir's logs/ (a run id
    never leads outside it)."""
    logs_root = os.path.realpath(layout.logs_root(config))
    d = run_log_dir(config, run)
    real = os.path.realpath(d)
    if real.startswith(logs_root + os.sep) and os.path.isdir(d) and not os.path.islink(d):
        return d
    return None


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
