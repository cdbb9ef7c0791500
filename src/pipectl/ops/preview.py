"""Previews: what a tick (or unpausing a pipeline) would create and start, touching nothing.

The scheduler's own code runs on a scratch copy of the state file in a temporary
directory: the same run creation a tick does (time schedules with their catch-up,
asset and file triggers), then the rulebook's replay of one engine step
(:func:`explain.plan`) says which task instances would start. Nothing is launched,
no sensor is checked, no foreach command runs, no lock or log is written, and the
real state file is only read.

Also here: the catch-up backlog that ``status`` and ``next`` warn about.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import datetime

from pipectl.model.pipeline import Pipeline, ProjectConfig
from pipectl.model.records import Run, TaskInstance
from pipectl.timing.clock import iso


@dataclass
class Preview:
    created: list[dict] = field(default_factory=list)  # {pipeline, logical_date, run_type}
    starts: list[dict] = field(default_factory=list)  # {pipeline, ds, logical_date, task, try}
    pokes: list[dict] = field(default_factory=list)  # sensors the step would check
    expands: list[dict] = field(default_factory=list)  # foreach commands the step would run
    promoted: int = 0
    ended_tries: int = 0  # tries whose status files wait to be reaped (their effect is not foreseen)
    invalid: dict[str, list[str]] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"created": self.created, "starts": self.starts, "pokes": self.pokes, "expands": self.expands,
                "promoted": self.promoted, "ended_tries": self.ended_tries, "invalid": self.invalid}


def preview(config: ProjectConfig, clock, *, unpause: str | None = None) -> Preview:
    """What ``pipectl tick`` at ``clock``'s now would do; with ``unpause``, what the first tick after
    unpausing that pipeline would create for it (and start)."""
    from pipectl.engine import explain
    from pipectl.engine.step import Engine, StepReport
    from pipectl.state.store import Store, copy_state
    from pipectl.engine.tick import create_due_runs, refresh_pipelines
    scratch = tempfile.mkdtemp(prefix="pipectl-preview-")
    try:
        path = os.path.join(scratch, "state.db")
        if os.path.exists(config.state_db) and os.path.getsize(config.state_db) > 0:
            copy_state(config.state_db, path)
        store = Store(path)
        try:
            out = Preview()
            before = {r.id for r in store.active_runs()}
            out.ended_tries = _ended_tries(store)
            engine = Engine(config, store, clock)
            pipelines, out.invalid = refresh_pipelines(config, store, clock.now())
            if unpause is not None:
                with store.tx():
                    store.set_paused(unpause, False)
                    store.set_next_due(unpause, clock.now())  # unpausing looks at its schedule at once
                pipelines = {unpause: pipelines[unpause]} if unpause in pipelines else {}
            report = StepReport()
            created = create_due_runs(engine, pipelines, store.pipeline_rows(), report)
            for r in sorted((store.run(pk) for pk in created), key=lambda r: (r.pipeline, r.logical_date)):
                out.created.append({"pipeline": r.pipeline, "logical_date": iso(r.logical_date), "ds": r.ds,
                                    "run_type": r.run_type})
            step = explain.plan(store, config, clock.now())
            out.promoted = len(step.promoted)
            for run, _p, ti in step.starts:
                if unpause is not None and run.id in before:
                    continue  # already going: not what unpausing adds
                out.starts.append(_ti(run, ti, ti.try_number + 1))
            out.pokes = [_ti(run, ti) for run, _p, ti in step.pokes]
            out.expands = [_ti(run, ti) for run, _p, ti in step.expands]
            return out
        finally:
            store.close()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _ti(run: Run, ti: TaskInstance, try_number: int | None = None) -> dict:
    d = {"pipeline": run.pipeline, "ds": run.ds, "logical_date": iso(run.logical_date), "task": ti.task}
    if try_number is not None:
        d["try"] = try_number
    return d


def _ended_tries(store) -> int:
    from pipectl.exec import executor
    n = 0
    for t in store.active_tries():
        try:
            if executor.read_status(t.status_path) is not None:
                n += 1
        except OSError:
            pass
    return n


# -- catch-up backlog -----------------------------------------------------------
BACKLOG_CAP = 10_000  # counting stops here: "10000+"


def backlog(store, pipeline: Pipeline, now: datetime) -> dict | None:
    """The scheduled runs a catch-up would create now (or on unpause), when more than one."""
    from pipectl.timing.timetable import due_intervals, timetable
    from pipectl.engine.tick import instant, is_time_scheduled
    if not pipeline.catchup or not is_time_scheduled(pipeline):
        return None
    row = store.pipeline_row(pipeline.name) if store is not None else None
    start = instant(pipeline.start_date, pipeline.timezone)
    end = instant(pipeline.end_date, pipeline.timezone, end_of_day=True)
    cursor = row.cursor if row else None
    anchor = start or (row.anchor if row else None)
    if anchor is None:
        return None  # never seen by a tick and no start_date: the first tick runs only the latest interval
    tt = timetable(pipeline.time_schedules, pipeline.timezone, anchor)
    skip, bound = None, "catchup: true"
    if pipeline.catchup_bounded:
        from pipectl.engine.catchup import catchup_bound
        from pipectl.timing.timetable import bounded_catchup
        lower = max((x for x in (cursor, start) if x is not None), default=None)
        skip = bounded_catchup(tt, lower, now, pipeline.catchup_window, pipeline.max_catchup_runs)
        bound = catchup_bound(pipeline)
        if skip is not None:
            cursor = skip.resume
    due = due_intervals(tt, cursor, start, end, now, True, limit=BACKLOG_CAP + 1)
    if len(due) <= 1 and skip is None:
        return None
    from pipectl.timing.clock import ds_of
    return {"pipeline": pipeline.name, "runs": min(len(due), BACKLOG_CAP), "more": len(due) > BACKLOG_CAP,
            "since": ds_of(due[0][0], pipeline.timezone) if due else None, "paused": bool(row and row.paused),
            "bound": bound, "skips": (skip.count if skip else 0), "skips_more": bool(skip and skip.capped)}


def backlog_words(b: dict) -> str:
    n = f"{b['runs']}{'+' if b['more'] else ''}"
    bound = b.get("bound", "catchup: true")
    if b.get("skips"):
        bound += f"; skips {b['skips']}{'+' if b.get('skips_more') else ''} older missed runs"
    if b["paused"]:
        return (f"catch-up: unpausing {b['pipeline']} creates {n} runs since {b['since']} ({bound}); "
                f"preview with `pipectl unpause {b['pipeline']} --dry-run`")
    return (f"catch-up: {n} runs of {b['pipeline']} pending since {b['since']} ({bound}); "
            "preview with `pipectl tick --dry-run`")
