"""Rehearse a stretch of time: the real scheduler over a scratch copy of the state, on a
virtual clock, with every task stubbed.

Nothing outside the scratch directory changes: the state file is copied, no task,
hook, sensor command or foreach command runs (``SimulatedExecutor`` stands in for
``exec.executor``: a try "runs" for its stub's duration of virtual time and ends with
its stub's exit code), and no lock or timer is taken.

Virtual time moves as pipectl's real time does under cron: a tick each whole minute
(creating due runs, then one engine step), and between ticks a step whenever something
the timer or a wrapper would act on falls due (a stubbed try ending, a retry, a sensor
poke). So retries happen at their real delays, downstream tasks start when their
upstream ends, and a catch-up is created in the waves the tick's batch limit makes.
"""
from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from datetime import datetime, timedelta
from typing import Callable, NamedTuple

from pipectl.engine.context import Clock
from pipectl.model.errors import UsageError
from pipectl.model.pipeline import Pipeline, ProjectConfig
from pipectl.timing.clock import UTC, from_epoch, iso
from pipectl.timing.durations import DurationError, parse_duration

MAX_SPAN = 366 * 86400.0  # a year of minutely ticks is ~half a million steps: the cap of one rehearsal
MAX_STEPS = 2_000_000  # a guard against a stub world that keeps waking the loop at one instant
EXIT_TIMEOUT = 124  # what the wrapper's timeout(1) leaves when a try outlives its timeout


class Stub(NamedTuple):
    """What a stubbed task does: ends with ``exit_code`` after ``duration`` seconds; a sensor
    is satisfied at its first poke (``sensor`` "ok") or never ("never", so it times out); a
    foreach command prints ``items``."""
    exit_code: int = 0
    duration: float = 0.0
    sensor: str = "ok"
    items: int = 1


def parse_stub(text: str) -> tuple[str, Stub]:
    """``TASK=SPEC[,SPEC...]`` where TASK is ``task`` or ``pipeline.task`` and SPEC is
    ``exit:N``, ``duration:D``, ``sensor:ok|never`` or ``items:N``."""
    target, sep, specs = text.partition("=")
    if not sep or not target or not specs:
        raise UsageError(f"--stub {text!r}: expected TASK=exit:N, TASK=duration:D, TASK=sensor:ok|never or "
                         "TASK=items:N (several joined with ',')")
    stub = Stub()
    for spec in specs.split(","):
        key, sep, value = spec.partition(":")
        try:
            if key == "exit" and sep:
                code = int(value)
                if not 0 <= code <= 255:
                    raise ValueError
                stub = stub._replace(exit_code=code)
            elif key == "duration" and sep:
                stub = stub._replace(duration=parse_duration(value, maximum=MAX_SPAN))
            elif key == "sensor" and value in ("ok", "never"):
                stub = stub._replace(sensor=value)
            elif key == "items" and sep:
                n = int(value)
                if not 0 <= n <= 10_000:
                    raise ValueError
                stub = stub._replace(items=n)
            else:
                raise ValueError
        except (ValueError, DurationError):
            raise UsageError(f"--stub {text!r}: cannot read {spec!r} (exit:0..255, duration:30s|5m|2h, "
                             "sensor:ok|never, items:0..10000)") from None
    return target, stub


class SimulatedExecutor:
    """``exec.executor``'s interface over virtual time: tries are records, not processes."""

    simulated = True

    class _Try(NamedTuple):
        pid: int
        end: float
        exit_code: int

    class _Proc:
        def __init__(self, pid: int):
            self.pid = pid

        def poll(self) -> int:
            return 0

    def __init__(self, stub_for: Callable[[str, str], Stub]):
        self.stub_for = stub_for
        self.now = 0.0
        self.tries: dict[str, SimulatedExecutor._Try] = {}
        self.hooks: list[str] = []
        self._pid = 1 << 22  # above any real pid (pid_max), so none is mistaken for ours

    # -- tries ----------------------------------------------------------------------
    def start(self, launch):
        stub = self.stub_for(launch.env.get("PIPECTL_PIPELINE", ""), launch.env.get("PIPECTL_TASK", ""))
        duration, code = stub.duration, stub.exit_code
        if launch.timeout and duration > launch.timeout:
            duration, code = launch.timeout, EXIT_TIMEOUT
        self._pid += 1
        self.tries[launch.status_path] = self._Try(self._pid, self.now + duration, code)
        return self._Proc(self._pid)

    def read_status(self, status_path: str):
        t = self.tries.get(status_path)
        return (t.exit_code, t.end) if t is not None and t.end <= self.now else None

    def is_alive(self, pid, start, boot) -> bool:
        if pid == os.getpid():
            return True  # the launcher of every simulated try is this process
        return any(t.pid == pid and t.end > self.now for t in self.tries.values())

    def discard_status(self, status_path: str) -> None:
        self.tries.pop(status_path, None)

    def ended_unrecorded(self) -> bool:
        return any(t.end <= self.now for t in self.tries.values())

    def next_end(self) -> float | None:
        ends = [t.end for t in self.tries.values() if t.end > self.now]
        return min(ends) if ends else None

    def process_start(self, pid):
        return "simulated"

    def unrecorded_try(self, status_path):
        return "never", None

    def is_wrapper(self, pid, status_path) -> bool:
        return False

    def read_claim(self, status_path):
        return None

    def end_session(self, sid, start, boot, status_path=None) -> bool:
        return True

    def run_hook(self, command, *, cwd, env, log_path, label):
        self.hooks.append(label)
        return None

    # -- sensors and fan-out ------------------------------------------------------------
    def poke(self, run, task, ti) -> bool:
        return self.stub_for(run.pipeline, task.name).sensor == "ok"

    def expand(self, run, task, ti) -> list[str]:
        return [str(i) for i in range(self.stub_for(run.pipeline, task.name).items)]


class _VirtualClock(Clock):
    """A clock that stands still until the rehearsal moves it (``offset`` stays 0, so the
    simulated executor's end times are virtual times)."""

    def __init__(self, t: float):
        super().__init__(0.0)
        self.t = t

    def now(self) -> float:
        return self.t

    def dt(self) -> datetime:
        return from_epoch(self.t)


class Happening(NamedTuple):
    """One thing the rehearsal saw, at virtual time ``at``."""
    at: float
    kind: str  # the event's: run_created, try_started, task_success, task_retry, run_failed, sla_miss, ...
    pipeline: str | None
    run_id: str | None
    logical_date: str | None  # ISO, UTC
    task: str | None
    message: str


class Simulation(NamedTuple):
    start: datetime
    end: datetime
    ticks: int
    steps: int
    happenings: list[Happening]
    dst: list[str]  # the zones' offset changes in the span, and what they do to cron schedules
    runs: dict[str, dict]  # pipeline -> {"states": {state: runs created in the span}, "first", "last" (ISO)}
    invalid: dict[str, list[str]]
    hooks: int  # hooks that would have run


def simulate(config: ProjectConfig, start: datetime, end: datetime, *, stubs: dict[str, Stub] | None = None,
             pipelines: list[str] | None = None, unpause: bool = False,
             progress: Callable[[float], None] | None = None) -> Simulation:
    """Run the scheduler from ``start`` to ``end`` over a scratch copy of the state.

    ``stubs``: ``task`` or ``pipeline.task`` -> Stub (default: success at once). ``pipelines``:
    only these are scheduled (the others are paused in the copy). ``unpause``: the named
    pipelines start unpaused ("what will unpausing do?"). ``progress`` gets the fraction done."""
    from pipectl.engine.step import Engine, StepReport
    from pipectl.engine.tick import create_due_runs, refresh_pipelines
    from pipectl.state.store import Store, copy_state
    from pipectl.timing.dstlint import dst_warnings

    start, end = start.astimezone(UTC), end.astimezone(UTC)
    if end <= start:
        raise UsageError(f"--to {iso(end)} is not after --from {iso(start)}")
    if (end - start).total_seconds() > MAX_SPAN:
        raise UsageError("a rehearsal spans at most 366 days")
    stubs = dict(stubs or {})

    def stub_for(pipeline: str, task: str) -> Stub:
        return stubs.get(f"{pipeline}.{task}") or stubs.get(task) or Stub()

    scratch = tempfile.mkdtemp(prefix="pipectl-simulate-")
    try:
        sim_config = dataclasses.replace(config, state_dir=os.path.join(scratch, "state"), retention=None)
        os.makedirs(sim_config.state_dir, mode=0o700)
        if os.path.exists(config.state_db) and os.path.getsize(config.state_db) > 0:
            copy_state(config.state_db, sim_config.state_db)
        store = Store(sim_config.state_db)
        try:
            clock = _VirtualClock(start.timestamp())
            executor = SimulatedExecutor(stub_for)
            executor.now = clock.t
            engine = Engine(sim_config, store, clock)
            engine.executor = executor
            specs, invalid = refresh_pipelines(sim_config, store, clock.now())
            unknown = [p for p in pipelines or () if p not in specs]
            if unknown:
                raise UsageError(f"no pipeline named {unknown[0]!r}" + (f" (it is invalid: {invalid[unknown[0]][0]})"
                                                                      if unknown[0] in invalid else ""))
            for target in stubs:
                pipe, _, task = target.rpartition(".")
                if not any(task in p.tasks and (not pipe or p.name == pipe) for p in specs.values()):
                    raise UsageError(f"--stub {target}: no task {task!r}" + (f" in pipeline {pipe!r}" if pipe else ""))
            with store.tx():
                for name in specs:
                    if pipelines and name not in pipelines:
                        store.set_paused(name, True)
                    elif unpause and pipelines:
                        store.set_paused(name, False)
                        store.set_next_due(name, clock.now())
            if pipelines:
                specs = {n: p for n, p in specs.items() if n in pipelines}
            return _rehearse(engine, store, clock, executor, specs, invalid, start, end, progress,
                             StepReport, create_due_runs, dst_warnings)
        finally:
            store.close()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _rehearse(engine, store, clock, executor, specs: dict[str, Pipeline], invalid, start: datetime, end: datetime,
              progress, StepReport, create_due_runs, dst_warnings) -> Simulation:
    t0, t1 = start.timestamp(), end.timestamp()
    last_event = store.max_event_id()
    created: dict[int, str] = {}
    happenings: list[Happening] = []
    next_tick = t0 - (t0 % 60.0)
    if next_tick < t0:
        next_tick += 60.0
    ticks = steps = 0
    while True:
        now = clock.t
        report = StepReport()
        if now >= next_tick:
            create_due_runs(engine, specs, store.pipeline_rows(), report)
            ticks += 1
            next_tick += 60.0
        engine.step(report)
        steps += 1
        # a try that ended at this instant is recorded, and its downstream started, at once (as
        # its wrapper does for real); a stub of duration 0 can chain a whole DAG in one instant
        for _ in range(1000):
            if not executor.ended_unrecorded():
                break
            engine.step(report)
            steps += 1
        last_event = _collect(store, last_event, happenings, created)
        if progress is not None:
            progress(min(1.0, (now - t0) / (t1 - t0)))
        wake = [next_tick, executor.next_end(), store.earliest_wakeup(after=now + 1e-6)]
        nxt = min(w for w in wake if w is not None)
        if nxt > t1 or steps >= MAX_STEPS:
            break
        clock.t = executor.now = max(nxt, now)
    runs: dict[str, dict] = {}
    for pk in created:
        run = store.run(pk)
        if run is not None:
            r = runs.setdefault(run.pipeline, {"states": {}, "first": run.logical_date, "last": run.logical_date})
            r["states"][str(run.state)] = r["states"].get(str(run.state), 0) + 1
            r["first"], r["last"] = min(r["first"], run.logical_date), max(r["last"], run.logical_date)
    for r in runs.values():
        r["first"], r["last"] = iso(r["first"]), iso(r["last"])
    from pipectl.timing.dstlint import offset_changes
    days = max(1, int((t1 - t0) // 86400) + 1)
    dst = [change for tz in sorted({p.timezone for p in specs.values()}) for change in offset_changes(tz, start, end)]
    dst += [w for p in specs.values() for w in dst_warnings(p, start, days=days) if _within(w, start, end)]
    return Simulation(start, end, ticks, steps, happenings, dst, runs, {k: [str(e) for e in v] for k, v in invalid.items()},
                      len(executor.hooks))


def _within(note: str, start: datetime, end: datetime) -> bool:
    """A DST note names its day (``on YYYY-MM-DD``): keep those inside the rehearsal's days."""
    import re
    m = re.search(r" on (\d{4}-\d{2}-\d{2}) ", note)
    if not m:
        return True
    day = m.group(1)
    return (start - timedelta(days=1)).date().isoformat() <= day <= (end + timedelta(days=1)).date().isoformat()


def _collect(store, after: int, out: list[Happening], created: dict[int, str]) -> int:
    runs: dict[int, object] = {}
    last = after
    for e in store.events_after(after):
        last = e.id
        run = None
        if e.run is not None:
            run = runs.get(e.run) or store.run(e.run)
            runs[e.run] = run
            if e.kind == "run_created":
                created[e.run] = e.pipeline or ""
        out.append(Happening(e.ts, e.kind, e.pipeline, run.run_id if run else None,
                             iso(run.logical_date) if run else None, e.task, e.message or ""))
    return last
