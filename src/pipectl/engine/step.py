"""The engine step: ordered phases over a :class:`StepContext`, and the drive loop.

One step is ``reap -> sources -> promote -> advance -> prelaunch -> dispatch ->
sla`` (with one more promote..dispatch round when a run finished in it, to fill
the max_active_runs slot it freed). It is safe to run from any number of
processes at once: ticks, ``--wait`` supervisors, the short-lived reaper a task
wrapper starts when nobody else is watching, the timer. Correctness comes from
the store's conditional transitions, not from who calls.

The extensions (sensors, fan-out, assets, SLAs) are registered here, in
:data:`EXTENSIONS`; they see the engine only through the context. File and asset
triggers of a full tick are registered in ``tick.SOURCES``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime
from typing import Callable

from pipectl.engine import assets, fanout, sensors, sla
from pipectl.engine.advance import advance as _advance
from pipectl.engine.context import Clock, Extensions, PrelaunchHandler, StepContext, StepReport
from pipectl.engine.dispatch import dispatch as _dispatch
from pipectl.engine.prelaunch import prelaunch as _prelaunch
from pipectl.engine.promote import promote as _promote
from pipectl.engine.reaping import reap as _reap
from pipectl.engine.rules import trigger_outcome  # noqa: F401  (tests read it from here)
from pipectl.engine.runs import create_run
from pipectl.exec.supervisors import register_supervisor, unregister_supervisor
from pipectl.model.pipeline import Pipeline, ProjectConfig
from pipectl.model.states import FAILED, SUCCESS
from pipectl.state.store import Store

EXTENSIONS = Extensions(
    on_success=(assets.record,),
    sources=(assets.step_source,),
    prelaunch={"sensor": PrelaunchHandler(sensors.slow, sensors.handle),
               "foreach": PrelaunchHandler(fanout.needs_expansion, fanout.expand)},
    checks=(sla.check,),
)


# -- the phases ----------------------------------------------------------------
class Step:
    """One step's working state: the report, the launch candidates handed from advance
    through prelaunch to dispatch, and how many runs had finished when it began."""

    __slots__ = ("report", "candidates", "finished_before")

    def __init__(self, report: StepReport):
        self.report = report
        self.candidates: list[tuple] = []
        self.finished_before = len(report.finished_runs)


@dataclass(frozen=True)
class Phase:
    name: str
    run: Callable[[StepContext, Step], None]
    # each of these reads every active run first (thousands in a catch-up): past the deadline
    # the step ends before it
    ends_late_step: bool = False


def _reap_phase(ctx: StepContext, st: Step) -> None:
    _reap(ctx, st.report)


def _sources_phase(ctx: StepContext, st: Step) -> None:
    for source in ctx.extensions.sources:
        source(ctx, st.report)


def _promote_phase(ctx: StepContext, st: Step) -> None:
    _promote(ctx, st.report)


def _advance_phase(ctx: StepContext, st: Step) -> None:
    st.candidates = _advance(ctx, None, st.report)


def _prelaunch_phase(ctx: StepContext, st: Step) -> None:
    st.candidates = _prelaunch(ctx, st.candidates, st.report)


def _dispatch_phase(ctx: StepContext, st: Step) -> None:
    candidates, st.candidates = st.candidates, []
    _dispatch(ctx, candidates, st.report)


ROUND = (
    Phase("promote", _promote_phase, ends_late_step=True),
    Phase("advance", _advance_phase, ends_late_step=True),
    Phase("prelaunch", _prelaunch_phase),
    Phase("dispatch", _dispatch_phase),
)


def _refill_phase(ctx: StepContext, st: Step) -> None:
    """A run that finished in this step freed a max_active_runs slot: fill it now (from a
    wrapper's reaper too), not a cron tick later."""
    if len(st.report.finished_runs) > st.finished_before:
        for phase in ROUND:
            phase.run(ctx, st)


def _checks_phase(ctx: StepContext, st: Step) -> None:
    for check in ctx.extensions.checks:
        check(ctx, st.report)


PHASES = (
    Phase("reap", _reap_phase),
    Phase("sources", _sources_phase),
    *ROUND,
    Phase("refill", _refill_phase, ends_late_step=True),
    Phase("sla", _checks_phase, ends_late_step=True),
)


def step(ctx: StepContext, report: StepReport | None = None) -> StepReport:
    report = report if report is not None else StepReport()
    st = Step(report)
    for phase in PHASES:
        if phase.ends_late_step and ctx.out_of_time():
            break
        phase.run(ctx, st)
    return report


# -- the facade ------------------------------------------------------------------
class Engine(StepContext):
    """A context built with :data:`EXTENSIONS`, and what its callers (tick, CLI, reaper,
    timer, backfill) do with it: step, drive, create runs."""

    def __init__(self, config: ProjectConfig, store: Store, clock: Clock, log: Callable[[str], None] | None = None,
                 *, deadline: float | None = None):
        super().__init__(config, store, clock, log, extensions=EXTENSIONS, deadline=deadline)

    def step(self, report: StepReport | None = None) -> StepReport:
        return step(self, report)

    def create_run(self, pipeline: Pipeline, logical_date: datetime, **kw) -> int | None:
        return create_run(self, pipeline, logical_date, **kw)

    def promote(self) -> None:
        _promote(self)

    def collect_children(self) -> int:
        return collect_children(self)

    def drive(self, run_pks: set[int] | None, report: StepReport, poll: float = 0.2,
              on_progress: Callable[[], None] | None = None) -> StepReport:
        return drive(self, run_pks, report, poll, on_progress)


# -- the drive loop ----------------------------------------------------------------
def collect_children(ctx: StepContext) -> int:
    """Forget the children that have exited; returns how many did whose try is not recorded yet
    (a wrapper reaped in this very step needs no second step)."""
    ended = 0
    for pid, proc in list(ctx.children.items()):
        if proc.poll() is not None:  # type: ignore[attr-defined]
            del ctx.children[pid]
            if pid in ctx.recorded:
                ctx.recorded.discard(pid)
            else:
                ended += 1
    return ended


def drive(ctx: StepContext, run_pks: set[int] | None, report: StepReport, poll: float = 0.2,
          on_progress: Callable[[], None] | None = None) -> StepReport:
    """Step until every run in ``run_pks`` (all active runs if None) has finished.

    Registers as a supervisor so wrappers leave reaping to us, and
    sleeps on the wrappers' pidfds so a downstream task starts within
    milliseconds of its upstream's end.
    """
    import select

    from pipectl.exec.handoff import hand_off

    me = register_supervisor(ctx.config)
    try:
        while True:
            step(ctx, report)
            ended = collect_children(ctx)
            if on_progress is not None:  # e.g. backfill's progress bar; called between steps
                on_progress()
            if _done(ctx, run_pks):
                break
            if ended:
                continue  # a try ended after this step's reap: record it now, not a poll later
            fds = {}
            for pid in list(ctx.children):
                try:
                    fds[os.pidfd_open(pid)] = pid
                except OSError:
                    pass
            # the earliest retry or sensor poke waiting on time: one indexed query
            wake = ctx.store.earliest_wakeup()
            timeout = poll if wake is None else max(0.0, min(poll, wake - ctx.clock.now()))
            try:
                select.select(list(fds), [], [], timeout)
            finally:
                for fd in fds:
                    os.close(fd)
    finally:
        unregister_supervisor(me)
        # a wrapper that finished while we were registered left its status for us
        began = ctx.clock.now()
        step(ctx, report)
        if not ctx.stop_launching:  # interrupted: start nothing new; the next tick decides
            hand_off(ctx, began)  # other runs' retries and pokes we were keeping
    for proc in list(ctx.children.values()):
        proc.wait()  # type: ignore[attr-defined]  # hooks: their output is part of the run
    ctx.children.clear()
    return report


def _done(ctx: StepContext, run_pks: set[int] | None) -> bool:
    store = ctx.store
    if ctx.stop_launching:
        # interrupted: finished once nothing we watch is still in flight
        return not any(run_pks is None or t.run in run_pks for t in store.active_tries())
    if run_pks is None:
        return not store.active_runs()
    states = store.run_states(list(run_pks))  # one query: a backfill watches hundreds of runs
    return all(states.get(pk, SUCCESS) in (SUCCESS, FAILED) for pk in run_pks)  # a pruned run is done
