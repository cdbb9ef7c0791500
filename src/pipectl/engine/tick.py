"""One scheduler pass, as cron runs it every minute.

The pass holds the tick lock, refreshes the pipelines, creates the runs whose
data interval has closed, and then steps the engine. A tick with nothing due
and nothing in flight must be cheap: it reads the cached specs' fingerprint and
the earliest ``next_due`` from the state file and stops before importing yaml
or croniter.
"""
from __future__ import annotations

import os
import sqlite3
import time
from dataclasses import dataclass, field
from datetime import datetime

from pipectl.engine import assets, filetrigger
from pipectl.model.errors import PipectlError
from pipectl.model.pipeline import AssetSchedule, CronSchedule, EverySchedule, FileSchedule, Pipeline, ProjectConfig
from pipectl.state.files import private_dir
from pipectl.engine.dates import instant  # noqa: F401  (read from here by ops and views)
from pipectl.engine.rules import Paused
from pipectl.engine.step import Clock, Engine, StepReport
from pipectl.exec.handoff import hand_off
from pipectl.exec.supervisors import forget_dead_supervisors
from pipectl.state.store import Store, loads, open_store
from pipectl.timing.clock import from_epoch, iso
NEVER = 1e18  # next_due of a schedule that has ended: the no-op tick skips it
# A catch-up creates at most this many runs per pipeline per tick, oldest first; the pipeline stays
# due and the next tick continues from its cursor. Thousands of queued runs at once would also slow
# every step that follows.
CATCHUP_BATCH = 1000


@dataclass
class TickResult:
    busy: bool = False
    report: StepReport = field(default_factory=StepReport)
    invalid: dict[str, list[str]] = field(default_factory=dict)
    fast: bool = False
    metrics_error: str | None = None  # set by ops.ticking when the metrics_file could not be written


# The no-op decision lives in quicktick, which `pipectl tick` consults before importing typer.
from pipectl.engine.quicktick import nothing_to_do as _nothing_to_do, spec_fingerprint  # noqa: E402,F401


def refresh_pipelines(config: ProjectConfig, store: Store, now: float) -> tuple[dict[str, Pipeline], dict[str, list[str]]]:
    """The valid pipelines, from the cache when no spec changed; invalid ones with their errors."""
    fp = spec_fingerprint(config)
    rows = store.pipeline_rows()
    if store.get_meta("spec_fingerprint") == fp:
        pipelines = {n: Pipeline.from_dict(loads(r.spec)) for n, r in rows.items() if r.valid and r.spec}
        # ${VAR} values come from this tick's environment: those specs are re-read every time
        if not any(p.secret_env for p in pipelines.values()):
            invalid = {n: (r.error or "").split("\n") for n, r in rows.items() if not r.valid}
            return pipelines, invalid
    from pipectl.spec.loader import load_pipelines
    result = load_pipelines(config)
    # whole minutes, as cron ticks: an anchor of 10:05:00.018 would give odd logical dates, and the
    # tick at 11:05 could start a few ms before the interval it should close
    anchor = iso(from_epoch(now).replace(second=0, microsecond=0))
    invalid = {name: [str(e) for e in errs] for name, errs in result.invalid.items()}
    valid = dict(result.pipelines)
    with store.tx():
        for name, p in result.pipelines.items():
            try:
                store.upsert_pipeline(name, spec=p.to_dict(), path=p.path, valid=True, error=None, anchor=anchor)
            except (TypeError, ValueError) as e:  # a value no snapshot can hold costs its own pipeline only
                del valid[name]
                invalid[name] = [f"{p.path}: cannot snapshot the spec: {e}"]
                continue
            old = rows.get(name)
            if old is None or old.spec != store.pipeline_row(name).spec:
                store.set_next_due(name, now)  # a changed schedule is re-evaluated on this tick
        for name, errs in invalid.items():
            if name in rows or not name.endswith((".yaml", ".yml")):
                store.upsert_pipeline(name, spec=None, path=name, valid=False, error="\n".join(errs), anchor=anchor)
        store.forget_missing_pipelines([*result.pipelines, *invalid])
        store.set_meta("spec_fingerprint", fp)
    return valid, invalid


def schedule_pipeline(engine: Engine, pipeline: Pipeline, row, now: datetime, limit: int = CATCHUP_BATCH,
                      report: StepReport | None = None) -> list[int]:
    """Create the scheduled runs whose data interval has closed, at most ``limit`` and only while the
    engine's deadline allows; returns their row ids. The cursor moves past exactly the intervals
    handled, and a pipeline with intervals left stays due, so the next tick goes on from there."""
    from pipectl.engine.catchup import record_skip
    from pipectl.timing.timetable import bounded_catchup, due_intervals, timetable
    start = instant(pipeline.start_date, pipeline.timezone)
    end = instant(pipeline.end_date, pipeline.timezone, end_of_day=True)
    cursor = row.cursor
    anchor = start or row.anchor
    created: list[int] = []
    new_cursor = cursor
    next_due: float | None = None
    # several time schedules act as one timetable, so their intervals never overlap
    tt = timetable(pipeline.time_schedules, pipeline.timezone, anchor)
    skip = None
    if pipeline.catchup_bounded:
        lower = max((x for x in (cursor, start) if x is not None), default=None)
        skip = bounded_catchup(tt, lower, now, pipeline.catchup_window, pipeline.max_catchup_runs)
        if skip is not None:
            # the cursor moves past the skipped intervals with this tick's write, so no later tick
            # creates them or reports them again
            cursor = new_cursor = skip.resume
    intervals = due_intervals(tt, cursor, start, end, now, pipeline.catchup, limit=limit)
    more = len(intervals) >= limit  # the list was cut short: there may be further intervals
    for lo, hi in intervals:
        if engine.out_of_time():
            more = True
            break
        # the cron fallback of an asset schedule stands down when its ds already has a run
        if len(pipeline.schedules) > len(pipeline.time_schedules) and assets.fallback_covered(engine.store, pipeline, lo):
            pk = None
        else:
            pk = engine.create_run(pipeline, lo, run_type="scheduled", interval=(lo, hi))
        if pk is not None:
            created.append(pk)
        new_cursor = hi if new_cursor is None or hi > new_cursor else new_cursor
    nxt = tt.next_after(now)
    last = tt.latest_at_or_before(now)
    if nxt is not None and (end is None or last is None or last <= end):
        next_due = nxt.timestamp()
    if next_due is None:
        next_due = NEVER
    if more:
        # still behind: due since the last interval created closed (at or before now), so any later
        # tick takes it up, even one whose "now" is a hair earlier than this one's
        next_due = new_cursor.timestamp() if new_cursor else 0.0
    with engine.store.tx():
        if skip is not None:
            line = record_skip(engine, pipeline, skip)
            if report is not None:
                report.skipped.append(line)
        engine.store.set_cursor(pipeline.name, iso(new_cursor) if new_cursor else None, next_due)
    return created


def _unschedulable(engine: Engine, name: str, error: Exception, now: float) -> None:
    """Record why a pipeline's schedule could not be evaluated and stop looking at it until its
    spec changes (refresh_pipelines then makes it due again)."""
    message = f"cannot evaluate the schedule: {type(error).__name__}: {error}"
    with engine.store.tx():
        engine.store.add_event("schedule_failed", now=now, pipeline=name, message=message)
        engine.store.set_next_due(name, NEVER)
    engine.log(f"{name}: {message}")


def is_time_scheduled(p: Pipeline) -> bool:
    return any(isinstance(s, (CronSchedule, EverySchedule)) for s in p.schedules)


def tick(config: ProjectConfig, clock: Clock, *, wait: bool = False, log=None) -> TickResult:
    """One pass. Returns at once (busy) when another tick holds the lock."""
    from filelock import FileLock, Timeout

    private_dir(config.state_dir)
    lock = FileLock(os.path.join(config.state_dir, "tick.lock"), mode=0o600)
    started = process_started()
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return TickResult(busy=True)
    try:
        store = open_store(config)
        result = TickResult()
        now = clock.now()
        try:
            forget_dead_supervisors(config)
            if _nothing_to_do(config, store, now):
                result.fast = True
                with store.tx():
                    store.set_meta("last_tick", repr(now))
                _retention(config, store, now, result.report)
                return result
            # real time: a tick returns within its budget, keeping a reserve for closing down
            deadline = None if wait else started + config.tick_budget - budget_reserve(config.tick_budget)
            engine = Engine(config, store, clock, log=log, deadline=deadline)
            _mark_began(store)
            pipelines, result.invalid = refresh_pipelines(config, store, now)
            touched = create_due_runs(engine, pipelines, store.pipeline_rows(), result.report)
            with store.tx():
                store.set_meta("last_tick", repr(now))
            step_began = clock.now()
            if not engine.out_of_time():
                engine.step(result.report)
            if not engine.out_of_time():
                _retention(config, store, now, result.report)
            if not wait:
                # retries, sensor pokes and what the budget left undone are due before cron's next tick
                hand_off(engine, step_began, step_now=engine.truncated)
            if wait:
                active = {r.id for r in store.active_runs()}
                engine.drive(active | touched, result.report)
            return result
        finally:
            store.close()
    finally:
        lock.release()


def create_due_runs(engine: Engine, pipelines: dict[str, Pipeline], rows, report: StepReport) -> set[int]:
    """The runs a tick creates: closed intervals of time schedules, then asset and file triggers.
    (``tick --dry-run`` calls this on a scratch copy of the state file.)"""
    store, now, now_dt = engine.store, engine.clock.now(), engine.clock.dt()
    touched: set[int] = set()
    # the longest-waiting first, so that pipelines a short tick did not reach go first next time
    for name in sorted(pipelines, key=lambda n: (rows[n].next_due or 0, n)):
        if engine.out_of_time():
            break
        p = pipelines[name]
        row = rows[name]
        if Paused.holds(row) or not is_time_scheduled(p):
            continue
        if row.next_due is not None and row.next_due > now:
            continue
        try:
            created = schedule_pipeline(engine, p, row, now_dt, report=report)
        except (sqlite3.Error, PipectlError):
            raise
        except Exception as e:  # one pipeline's schedule must never stop the others
            _unschedulable(engine, name, e, now)
            continue
        for pk in created:
            touched.add(pk)
            report.created.append(f"{name} {iso(store.run(pk).logical_date)}")
    for source in SOURCES:
        if engine.out_of_time():
            break
        touched |= set(source(engine, pipelines, rows, now_dt, report))
    return touched


def _mark_began(store: Store) -> None:
    """A scheduling pass wanted since (``unpause`` found a tick running) is this one."""
    from pipectl.exec.handoff import wanted
    if wanted(store, "tick_wanted") > wanted(store, "tick_began"):
        with store.tx():
            store.set_meta("tick_began", repr(time.time()))


def process_started() -> float:
    """When this process began, in time.time() terms: the budget counts interpreter start-up too."""
    try:
        with open("/proc/self/stat", "rb") as f:
            data = f.read()
        ticks = int(data[data.rindex(b")") + 2:].split()[19])
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        now = time.time()
        return min(now, now - uptime + ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return time.time()


def budget_reserve(budget: float) -> float:
    """Seconds of a tick's budget kept for what follows the last deadline check: finishing the
    chunk of launches under way, closing the state file, the tick log, exiting."""
    return min(5.0, max(0.3, budget * 0.2))


def _retention(config: ProjectConfig, store: Store, now: float, report: StepReport) -> None:
    """``retention`` in pipectl.toml: prune old runs at most hourly (one meta read otherwise)."""
    if not config.retention:
        return
    from pipectl.engine.retention import maybe_prune
    pruned = maybe_prune(config, store, now)
    if pruned is not None and pruned.runs:
        report.pruned.append(f"{len(pruned.runs)} run(s) older than {config.retention:g}s")


def _asset_source(engine, pipelines, rows, now_dt, report) -> list[int]:
    if not any(isinstance(s, AssetSchedule) for p in pipelines.values() for s in p.schedules):
        return []
    return assets.trigger(engine, pipelines, rows, now_dt, report)


def _file_source(engine, pipelines, rows, now_dt, report) -> list[int]:
    if not any(isinstance(s, FileSchedule) for p in pipelines.values() for s in p.schedules):
        return []
    return filetrigger.trigger(engine, pipelines, rows, now_dt, report)


# The sources a full tick runs after the time schedules, (ctx, pipelines, rows, now, report) -> run ids.
SOURCES: tuple = (_asset_source, _file_source)
