"""Backfills: a date range of a pipeline turned into runs, the operator's side of the engine.

A backfill does not run anything itself. It turns a date range into runs (new
ones, or existing ones re-opened with some task instances reset to pending)
inside one transaction, puts them into a *batch* that carries its own
``max_active`` so the engine's ``promote()`` enforces the backfill's limit apart
from the pipeline's, and gives them priority 0 so scheduled work is always
dispatched first. Who then executes the work (a waiting caller's supervisor, ticks,
or the reaper a finishing task starts) is the engine's business, which is why an
interrupted backfill resumes simply by being planned again: its unfinished runs
are found "in progress" and adopted, its failed ones re-opened.

``retry``, ``mark`` and ``pause`` (ops/rerun.py) are single-run and
single-pipeline versions of the same idea.
"""
from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from typing import Any, Iterable

from pipectl.model.errors import Param, UsageError
from pipectl.model.pipeline import Pipeline
from pipectl.model.states import FAILED, QUEUED, RUNNING, SUCCESS, TI_FINISHED, UPSTREAM_FAILED
from pipectl.ops.rerun import RERUNNABLE, actor
from pipectl.timing.clock import ds_of, iso, local_midnight

REPROCESS = ("missing", "failed", "all")
MAX_RUNS = 20_000  # one backfill; beyond this a typo in the range's start is far likelier than intent

# plan actions
CREATE, RERUN, RESUME, SKIP = "create", "rerun", "in progress", "skip"


# --------------------------------------------------------------------------- task selection

def select_tasks(pipeline: Pipeline, regex: str | None) -> set[str] | None:
    """Tasks matching ``regex`` (searched anywhere in the name) and everything downstream; None = all."""
    if regex is None:
        return None
    from pipectl.model.dag import downstream_closure
    try:
        pat = re.compile(regex)
    except re.error as e:
        raise UsageError("bad ", Param("tasks"), f" regex {regex!r}: {e}") from None
    hits = {name for name in pipeline.tasks if pat.search(name)}
    if not hits:
        raise UsageError(Param("tasks"), f" {regex!r} matches no task of {pipeline.name} (tasks: {', '.join(pipeline.tasks)})")
    needs = {name: t.needs for name, t in pipeline.tasks.items()}
    return hits | downstream_closure(needs, hits)


def subset(pipeline: Pipeline, selected: set[str]) -> Pipeline:
    """The pipeline cut down to ``selected`` tasks, edges to unselected upstreams dropped.

    A new run of a backfill of selected tasks is created from this, so its snapshot says
    truthfully what the run is: only those tasks, their upstreams outside the
    selection taken as already done (Airflow's partial DAG). Marking the others
    ``skipped`` instead would skip the selected ones too under ``all_success``.
    """
    tasks = {name: replace(t, needs=tuple(n for n in t.needs if n in selected))
             for name, t in pipeline.tasks.items() if name in selected}
    return replace(pipeline, tasks=tasks)


# --------------------------------------------------------------------------- dates

def timetable_for(pipeline: Pipeline, schedule: str | None, anchor: datetime | None):
    """The timetable a backfill walks: ``schedule`` (a cron expression) if given, else the pipeline's time schedules."""
    from pipectl.timing.cron import cron_error
    from pipectl.timing.timetable import timetable
    if schedule is not None:
        problem = cron_error(schedule)
        if problem:
            raise UsageError("bad ", Param("schedule"), f": {problem}")
        return timetable(schedule, pipeline.timezone)
    if not pipeline.time_schedules:
        raise UsageError(f"{pipeline.name} has no cron or interval schedule to derive logical dates from; "
                         "give one with ", Param("schedule"), ", e.g. ", Param("schedule"), " @daily")
    return timetable(pipeline.time_schedules, pipeline.timezone, anchor)


def intervals(pipeline: Pipeline, start: date | datetime, end: date | datetime, *, schedule: str | None = None,
              anchor: datetime | None = None) -> list[tuple[datetime, datetime]]:
    """Data intervals ``[fire_k, fire_k+1)`` whose logical date lies in ``[start, end]``, oldest first.

    A ``date`` bound compares with the run's ``ds`` (pipeline timezone), a
    ``datetime`` bound with the logical date itself.
    """
    tz = pipeline.timezone
    tt = timetable_for(pipeline, schedule, anchor)
    # scan from a day early: local midnight can be skipped or doubled by DST, ds decides membership
    lo = start if isinstance(start, datetime) else local_midnight(start, tz) - timedelta(days=1)
    hi = end if isinstance(end, datetime) else local_midnight(end, tz) + timedelta(days=2)

    def inside(s: datetime) -> bool:
        ok_lo = s >= start if isinstance(start, datetime) else ds_of(s, tz) >= start.isoformat()
        ok_hi = s <= end if isinstance(end, datetime) else ds_of(s, tz) <= end.isoformat()
        return ok_lo and ok_hi

    out: list[tuple[datetime, datetime]] = []
    s = lo if tt.fires_at(lo) else tt.next_after(lo)
    while s is not None and s <= hi:
        e = tt.next_after(s)
        if e is None:
            break  # the schedule's last fire time opens no interval
        if inside(s):
            out.append((s, e))
            if len(out) > MAX_RUNS:
                raise UsageError(f"the range holds more than {MAX_RUNS} logical dates; backfill it in parts")
        s = e
    return out


# --------------------------------------------------------------------------- planning

@dataclass
class Planned:
    """What a backfill does for one logical date."""

    logical_date: datetime
    interval_end: datetime
    ds: str
    action: str                      # create | rerun | in progress | skip
    note: str = ""
    run: Any = None                  # the existing run row, if any
    tasks: list[str] = field(default_factory=list)   # task instances to start (create) or re-run
    ti_pks: list[int] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "logical_date": iso(self.logical_date), "ds": self.ds, "action": self.action,
            "run_id": self.run.run_id if self.run is not None else None,
            "run_state": self.run.state if self.run is not None else None,
            "tasks": list(self.tasks), "note": self.note,
        }

    @property
    def words(self) -> str:
        if self.action == CREATE:
            return f"create ({len(self.tasks)} tasks)"
        if self.action == RERUN:
            n = len(self.tasks)
            return f"re-run {n} task{'s' if n != 1 else ''}: {', '.join(self.tasks)}"
        return f"{self.action}: {self.note}" if self.note else self.action


def plan(pipeline: Pipeline, store, start: date | datetime, end: date | datetime, *, reprocess: str = "failed",
         tasks: str | None = None, schedule: str | None = None, backwards: bool = False) -> list[Planned]:
    """What ``backfill`` would do, date by date, in the order it would promote them. Reads only."""
    if reprocess not in REPROCESS:
        raise UsageError("bad ", Param("reprocess"), f" {reprocess!r}: expected one of {', '.join(REPROCESS)}")
    selected = select_tasks(pipeline, tasks)
    anchor = None
    if pipeline.start_date:
        from pipectl.engine.tick import instant
        anchor = instant(pipeline.start_date, pipeline.timezone)
    elif store is not None:
        row = store.pipeline_row(pipeline.name)
        anchor = row.anchor if row is not None else None
    if anchor is None:
        anchor = start if isinstance(start, datetime) else local_midnight(start, pipeline.timezone)
    items: list[Planned] = []
    for lo, hi in intervals(pipeline, start, end, schedule=schedule, anchor=anchor):
        it = Planned(lo, hi, ds_of(lo, pipeline.timezone), CREATE)
        run = store.run_by_date(pipeline.name, iso(lo)) if store is not None else None
        if run is None:
            it.tasks = [n for n in pipeline.tasks if selected is None or n in selected]
        else:
            it.run = run
            _plan_existing(it, store, reprocess, selected)
        items.append(it)
    if backwards:
        items.reverse()
    return items


def _plan_existing(it: Planned, store, reprocess: str, selected: set[str] | None) -> None:
    run = it.run
    if run.state in (QUEUED, RUNNING):
        it.action = RESUME
        it.note = (f"{run.state}, joins this backfill" if run.run_type == "backfill"
                   else f"{run.run_type} run {run.state}, left as it is")
        return
    if reprocess == "missing":
        it.action, it.note = SKIP, f"exists ({run.state})"
        return
    tis = [ti for ti in store.task_instances(run.id) if selected is None or ti.base in selected]
    if reprocess == "failed":
        tis = [ti for ti in tis if ti.state in RERUNNABLE]
    if not tis:
        it.action = SKIP
        it.note = "succeeded" if run.state == SUCCESS else f"{run.state}, no selected task to re-run"
        return
    it.action = RERUN
    it.tasks = [ti.task for ti in tis]
    it.ti_pks = [ti.id for ti in tis]


def counts(items: Iterable[Planned]) -> dict[str, int]:
    out = {CREATE: 0, RERUN: 0, RESUME: 0, SKIP: 0, "task_instances": 0}
    for it in items:
        out[it.action] += 1
        if it.action == RERUN:
            out["task_instances"] += len(it.tasks)
    return out


# --------------------------------------------------------------------------- applying

def new_batch() -> str:
    return "backfill-" + uuid.uuid4().hex[:10]


def apply(engine, pipeline: Pipeline, start, end, *, reprocess: str = "failed", tasks: str | None = None,
          schedule: str | None = None, backwards: bool = False, max_active: int | None = None,
          batch: str | None = None) -> tuple[str, list[Planned], list[int]]:
    """Plan and carry out a backfill in one transaction. Returns (batch, plan, run ids to watch).

    Planning again under the write lock means a tick that created a run in the
    meantime is seen, never duplicated.
    """
    store = engine.store
    batch = batch or new_batch()
    limit = max_active or pipeline.max_active_runs
    selected = select_tasks(pipeline, tasks)
    run_pipeline = subset(pipeline, selected) if selected is not None else pipeline
    now = engine.clock.now()
    who = actor()
    watch: list[int] = []
    with store.tx():
        items = plan(pipeline, store, start, end, reprocess=reprocess, tasks=tasks, schedule=schedule,
                     backwards=backwards)
        for seq, it in enumerate(items):
            if it.action == CREATE:
                pk = engine.create_run(run_pipeline, it.logical_date, run_type="backfill",
                                       interval=(it.logical_date, it.interval_end), batch=batch, max_active=limit)
                if pk is None:  # unreachable under the write lock; never guess at someone else's run
                    continue
                store.rebatch_run(pk, batch=batch, max_active=limit, seq=seq)
                if selected is not None:
                    store.add_event("backfill", now=now, pipeline=pipeline.name, run=pk,
                                    message=f"created for selected tasks only: {', '.join(it.tasks)}")
                it.run = store.run(pk)
                watch.append(pk)
            elif it.action == RERUN:
                for ti_pk in it.ti_pks:
                    # planned under this same write lock, so each is finished; the transition
                    # checks it anyway (and that no try of it is live)
                    store.reset_task_instance(ti_pk)
                store.rebatch_run(it.run.id, batch=batch, max_active=limit, priority=0, seq=seq, requeue=True)
                store.add_event("rerun", now=now, pipeline=pipeline.name, run=it.run.id,
                                message=f"backfill ({reprocess}) by {who} re-runs {len(it.tasks)} task "
                                        f"instance{'s' if len(it.tasks) != 1 else ''}: {', '.join(it.tasks)}")
                watch.append(it.run.id)
            elif it.action == RESUME:
                if it.run.run_type == "backfill":
                    store.rebatch_run(it.run.id, batch=batch, max_active=limit, seq=seq)
                watch.append(it.run.id)
        c = counts(items)
        dss = sorted(it.ds for it in items)
        span = f"{dss[0]}..{dss[-1]}" if dss else "no dates"
        store.add_event("backfill", now=now, pipeline=pipeline.name,
                        message=f"backfill {span} by {who} (reprocess {reprocess}"
                                f"{', tasks ' + tasks if tasks else ''}, at most {limit} runs at once, batch {batch}): "
                                f"{c[CREATE]} created, {c[RERUN]} re-opened ({c['task_instances']} task instances), "
                                f"{c[RESUME]} in progress, {c[SKIP]} skipped")
    return batch, items, watch


# --------------------------------------------------------------------------- outcome

def outcome(store, run_pks: Iterable[int]) -> dict:
    """Per watched run: done or not, and for failed ones the failed task instances with their logs."""
    runs = [store.run(pk) for pk in run_pks]
    result = {"total": len(runs), "success": 0, "failed": [], "unfinished": []}
    for r in sorted(runs, key=lambda r: r.logical_date):
        if r.state == SUCCESS:
            result["success"] += 1
            continue
        entry = {"run_id": r.run_id, "logical_date": iso(r.logical_date), "ds": r.ds, "state": r.state,
                 "tasks": []}
        for ti in store.task_instances(r.id):
            if ti.state in (FAILED, UPSTREAM_FAILED) or (r.state not in (SUCCESS, FAILED)
                                                             and ti.state not in TI_FINISHED):
                tries = store.tries_for(ti.id)
                entry["tasks"].append({"task": ti.task, "state": ti.state, "tries": ti.try_number,
                                       "exit_code": ti.exit_code, "reason": ti.reason,
                                       "log": tries[-1].log_path if tries else None})
        (result["failed"] if r.state == FAILED else result["unfinished"]).append(entry)
    return result
