"""The pre-launch phase, between advance and dispatch: launch candidates that are not
launched as processes (the rulebook's :class:`rules.Launchable` kinds: a sensor is poked,
a ``foreach`` command expanded) go to the extension registered for their kind."""
from __future__ import annotations

import time

from pipectl.engine.advance import advance
from pipectl.engine.context import StepContext, StepReport
from pipectl.engine.rules import Launchable
from pipectl.model.states import PENDING

SLOW_HANDLING = 10.0  # seconds a slow handler (a command or http sensor, a foreach command) may take


def prelaunch(ctx: StepContext, candidates: list[tuple], report: StepReport) -> list[tuple]:
    """Hand ready sensors and foreach placeholders to their handlers; returns the candidates
    that are launched as processes (with what the handlers made ready added)."""
    handlers = ctx.extensions.prelaunch
    keep, changed = [], set()
    # A tick must return within tick_budget: a poke or expansion that might outlast it
    # waits for the next step instead (a supervisor or reaper has no deadline).
    deadline = ctx.deadline
    for run, pipeline, ti in candidates:
        if deadline is not None and ctx.out_of_time():
            break
        task = pipeline.tasks[ti.base]
        slow = any(h.slow(task, ti) for h in handlers.values())
        if slow and deadline is not None and time.time() + SLOW_HANDLING > deadline:
            continue
        kind = Launchable.check(task, ti)
        if kind is None:
            keep.append((run, pipeline, ti))
            continue
        handler = handlers.get(kind)
        if handler is not None and ti.state == PENDING and handler.handle(ctx, run, pipeline, task, ti, report):
            changed.add(run.id)  # its downstream may be decided now, or mapped instances start
    if changed:
        # new mapped instances, or the downstream of a finished sensor, can start in this very step
        keep.extend(c for c in advance(ctx, changed, report) if _launched(c))
    return keep


def _launched(candidate) -> bool:
    run, pipeline, ti = candidate
    task = pipeline.tasks[ti.base]
    return Launchable.check(task, ti) is None and task.run is not None
