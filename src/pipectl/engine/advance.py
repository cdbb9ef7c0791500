"""The advance phase: settle what trigger rules decide, finish complete runs, and name the
task instances that may start (the launch candidates for pre-launch and dispatch).

A supervisor steps once per finished try: re-reading every task instance of a
1000-task run each time made a chain O(n^2). So each running run's task-instance
states are kept in a :class:`RunView` between steps and only what changed is
re-decided (see :func:`refresh_views`).
"""
from __future__ import annotations

import sqlite3

from pipectl.engine.context import StepContext, StepReport
from pipectl.engine.rules import RetryTime, trigger_outcome
from pipectl.model.errors import PipectlError
from pipectl.model.pipeline import Pipeline
from pipectl.model.states import FAILED, PENDING, RUNNING, SKIPPED, TI_FINISHED, UP_FOR_RETRY, UPSTREAM_FAILED


def edges(pipeline: Pipeline) -> tuple[dict, dict]:
    """(needs, downstream) by task name."""
    needs = {name: task.needs for name, task in pipeline.tasks.items()}
    down: dict[str, list[str]] = {name: [] for name in needs}
    for name, ups in needs.items():
        for u in ups:
            down.setdefault(u, []).append(name)
    return needs, down


class RunView:
    """One running run's task instances as the engine last saw them, and what it decided.

    ``rows``: id -> (id, task, base, state, next_try_at). ``dirty``: bases whose trigger
    rule must be looked at again (one of their own task instances, or an upstream one,
    changed). ``ready``: pending task instances whose trigger rule is met, offered to
    dispatch on every step until they leave pending (a full pool or max_parallel may
    hold them back). A trigger rule depends only on upstream states, so a base not dirty
    keeps its outcome.
    """

    __slots__ = ("rows", "by_base", "unfinished", "dirty", "ready", "retry", "down")

    def __init__(self, tis: list[tuple], needs: dict, down: dict):
        self.rows: dict[int, tuple] = {}
        self.by_base: dict[str, list[int]] = {}
        self.unfinished = 0
        self.ready: dict[int, None] = {}  # an ordered set
        self.retry: set[int] = set()
        self.down = down
        finished_bases = set()
        for row in tis:
            self._add(row)
            if row[3] in TI_FINISHED:
                finished_bases.add(row[2])
        # With no upstream finished, no trigger rule can decide anything: only a task with
        # no upstream, or below a finished one, needs a look.
        self.dirty: set[str] = {b for b in self.by_base if not needs[b]}
        for b in finished_bases:
            self.dirty.update(down[b])

    def _add(self, row: tuple) -> None:
        self.rows[row[0]] = row
        self.by_base.setdefault(row[2], []).append(row[0])
        if row[3] not in TI_FINISHED:
            self.unfinished += 1
        if row[3] == UP_FOR_RETRY:
            self.retry.add(row[0])

    def _remove(self, ti_pk: int) -> None:
        row = self.rows.pop(ti_pk, None)
        if row is None:
            return
        self.by_base[row[2]].remove(ti_pk)
        if row[3] not in TI_FINISHED:
            self.unfinished -= 1
        self.retry.discard(ti_pk)
        self.ready.pop(ti_pk, None)
        self._touch(row[2])

    def _touch(self, base: str) -> None:
        self.dirty.add(base)
        self.dirty.update(self.down.get(base, ()))

    def apply(self, ti_pk: int, row: tuple | None) -> None:
        """A task instance changed: ``row`` is its current ti_states tuple, None if it is gone."""
        self._remove(ti_pk)
        if row is not None:
            self._add(row)
            self._touch(row[2])

    def evaluate(self, pipeline: Pipeline, needs: dict, down: dict) -> list[tuple[int, str, str]]:
        """Re-decide the dirty bases; returns (id, task, state) of instances settled by their
        trigger rule (already applied here; the caller writes them)."""
        rows, by_base, ready = self.rows, self.by_base, self.ready
        frontier, self.dirty = self.dirty, set()
        settled: list[tuple[int, str, str]] = []
        while frontier:
            base = frontier.pop()
            pending = [i for i in by_base.get(base, ()) if rows[i][3] == PENDING]
            if not pending:
                continue
            upstream = [rows[u][3] for name in needs[base] for u in by_base.get(name, ())]
            outcome = trigger_outcome(pipeline.tasks[base].trigger_rule, upstream)
            if outcome in (UPSTREAM_FAILED, SKIPPED):
                for i in pending:
                    row = rows[i]
                    rows[i] = (i, row[1], base, outcome, row[4])
                    self.unfinished -= 1
                    ready.pop(i, None)
                    settled.append((i, row[1], outcome))
                frontier.update(down[base])  # a settled task may settle the ones below it
            elif outcome == "ready":
                for i in pending:
                    ready[i] = None
            else:
                for i in pending:
                    ready.pop(i, None)
        return settled

    def launchable(self, now: float) -> list[int]:
        """The task instances that may start now: pending ones whose trigger rule is met, then
        retries whose time has come (the rulebook's TriggerRule and RetryTime)."""
        rows = self.rows
        return [*self.ready, *(i for i in self.retry if RetryTime.due(rows[i][4], now))]


def refresh_views(ctx: StepContext, runs) -> None:
    """Bring ``ctx.views`` up to date with the state file before runs are advanced: the store's
    change detection (Store.ti_changes) names the task instances changed since this context
    last asked, or says that anything may have changed (another process committed: a tick, a
    wrapper's reaper, `retry`, `mark`), which drops every view for a full re-read."""
    store = ctx.store
    changes = store.ti_changes(ctx)
    if changes is None:
        ctx.views.clear()
        changes = []
    live = {r.id for r in runs}
    for pk in [pk for pk in ctx.views if pk not in live]:
        del ctx.views[pk]
    mine = [ti for ti, run in changes if run in ctx.views]
    if mine:
        fresh = {row[0]: row for row in store.ti_states_of(mine)}
        for ti, run in changes:
            view = ctx.views.get(run)
            if view is not None:
                view.apply(ti, fresh.get(ti))


def _edges(ctx: StepContext, run, pipeline: Pipeline) -> tuple[dict, dict]:
    """A run's edges, once per run: a snapshot never changes."""
    e = ctx.edges.get(run.id)
    if e is None:
        e = ctx.edges[run.id] = edges(pipeline)
    return e


def advance(ctx: StepContext, run_pks: set[int] | None, report: StepReport) -> list[tuple]:
    """Settle what trigger rules decide and finish complete runs; returns launch candidates
    (run, pipeline, task instance) of the runs in ``run_pks`` (None: every running run)."""
    store = ctx.store
    active = [r for r in store.active_runs() if r.state == RUNNING]
    refresh_views(ctx, active)
    runs = [r for r in active if run_pks is None or r.id in run_pks]
    candidates: list[tuple] = []
    now = ctx.clock.now()
    for run in runs:
        if ctx.out_of_time():
            break
        try:
            pipeline = ctx.spec_of(run)
            needs, down = _edges(ctx, run, pipeline)
            view = ctx.views.get(run.id)
            if view is None:
                view = ctx.views[run.id] = RunView(store.ti_states(run.id), needs, down)
            settled = view.evaluate(pipeline, needs, down)
        except BaseException as e:
            ctx.views.pop(run.id, None)
            if isinstance(e, (sqlite3.Error, PipectlError)) or not isinstance(e, Exception):
                raise
            fail_run(ctx, run, e, report)  # one run that cannot be evaluated stops only itself
            continue
        ready_pks = view.launchable(now)
        finished = view.unfinished == 0
        if settled or finished:
            try:
                stale = False
                with store.tx():
                    for ti_pk, name, state in settled:
                        if store.set_ti_state(ti_pk, state, now=now, reason="trigger_rule"):
                            store.add_event(f"task_{state}", now=now, pipeline=run.pipeline,
                                            run=run.id, task=name)
                        else:
                            stale = True  # it left pending meanwhile (another process)
                    if finished:
                        # the store decides from the task instances as they are, not as this view saw them
                        state = store.finish_run(run.id, now)
                        if state is not None:
                            store.add_event(f"run_{state}", now=now, pipeline=run.pipeline, run=run.id)
                            report.finished_runs.append(f"{ctx.run_label(run)} {state}")
                        else:
                            stale = True
                if stale:
                    ctx.views.pop(run.id, None)  # re-read next step
            except BaseException:
                ctx.views.pop(run.id, None)  # it holds states that were never written
                raise
        if not finished:
            ready = [row for row in map(store.task_instance, ready_pks) if row is not None]
            candidates.extend((run, pipeline, ti) for ti in ready)
    return candidates


def fail_run(ctx: StepContext, run, error: Exception, report: StepReport) -> None:
    """A run whose snapshot cannot be evaluated: what waits in it fails with reason ``error``
    (tries still running are failed the same way when reaped), and the run finishes."""
    store = ctx.store
    now = ctx.clock.now()
    message = f"cannot evaluate: {type(error).__name__}: {error}"
    with store.tx():
        for ti in store.task_instances(run.id):
            if ti.state == PENDING:
                store.set_ti_state(ti.id, FAILED, now=now, reason="error")
            elif ti.state == UP_FOR_RETRY:
                store.mark_task_instance(ti.id, FAILED, expect=UP_FOR_RETRY, now=now, reason="error")
        if run.id not in ctx.unevaluable:
            store.add_event("run_error", now=now, pipeline=run.pipeline, run=run.id, message=message)
        state = store.finish_run(run.id, now)
    ctx.unevaluable.add(run.id)
    if state is not None:
        report.finished_runs.append(f"{run.pipeline} {run.ds} {state}")
    ctx.log(f"{run.pipeline} {run.ds}: {message}")
