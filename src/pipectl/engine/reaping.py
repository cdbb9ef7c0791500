"""The reap phase: record every try that ended (or vanished) and move its task instance on.

A try ends when its wrapper writes the status file; it vanishes when its wrapper
(or, for a try still ``starting``, its launcher) is gone without one. Either way
what is left of its session is killed before anything else of it happens, so a
retry never runs beside its predecessor.
"""
from __future__ import annotations

import sqlite3

from pipectl.engine.context import StepContext, StepReport
from pipectl.engine.hooks import run_try_hook
from pipectl.exec import executor
from pipectl.model.errors import PipectlError
from pipectl.model.pipeline import Task
from pipectl.model.states import FAILED, LOST, RUNNING, SKIPPED, STARTING, SUCCESS, UP_FOR_RETRY
from pipectl.timing.clock import epoch_iso


def reap(ctx: StepContext, report: StepReport) -> set[int]:
    """Record every finished or vanished try; returns the runs that changed."""
    dirty: set[int] = set()
    for t in ctx.store.active_tries():
        if ctx.out_of_time():
            break
        status = ctx.executor.read_status(t.status_path)
        if status is not None:
            _record(ctx, t, status, report)
            dirty.add(t.run)
            continue
        if t.state == STARTING:
            if ctx.executor.is_alive(t.launcher_pid, t.launcher_start, t.boot_id):
                continue
            t = _unrecorded(ctx, t)
            if t is None:
                continue
        elif ctx.executor.is_alive(t.pid, t.pid_start, t.boot_id):
            continue
        # the wrapper may have written its status between our two looks
        _record(ctx, t, ctx.executor.read_status(t.status_path), report)
        dirty.add(t.run)
    return dirty


def _record(ctx: StepContext, t, status: tuple | None, report: StepReport) -> None:
    """Record an ended try (``status`` None: it vanished). A try whose outcome cannot be
    evaluated (a snapshot whose retry time is out of range, ...) fails its own task instance
    with reason ``error``; it must never stop the reaping of every other try."""
    try:
        if status is not None:
            _finish(ctx, t, status[0], status[1] + ctx.clock.offset, report)
        else:
            _lose(ctx, t, report)
    except (sqlite3.Error, PipectlError):
        raise  # the state file itself is in trouble: nothing here can be recorded
    except Exception as e:
        store = ctx.store
        exit_code = status[0] if status is not None else None
        message = f"cannot evaluate: {type(e).__name__}: {e}"
        now = ctx.clock.now()
        run = store.run(t.run)
        pipe = run.pipeline if run is not None else None
        with store.tx():
            ended = store.finish_try(t.id, FAILED, now=now, exit_code=exit_code, reason="error")
            if ended:
                store.finish_task_instance(t.ti, t.try_number, FAILED, now=now, reason="error",
                                           exit_code=exit_code)
            # not ended: the try was recorded and only its hook failed
            store.add_event("task_failed" if ended else "hook_failed", now=now, pipeline=pipe,
                            run=t.run, task=t.task, message=message)
        if ended:
            ctx.executor.discard_status(t.status_path)
            report.reaped.append(f"{pipe} {t.task} try {t.try_number} {message}")
        ctx.log(f"{pipe} {t.task} try {t.try_number}: {message}")


def _unrecorded(ctx: StepContext, t):
    """A starting try whose launcher died before recording its wrapper: adopt a live
    wrapper (None: nothing more to do now), or return the try as it is to be lost --
    still ``starting`` if nothing of it ever ran, ``running`` with its session if it did."""
    outcome, pid = ctx.executor.unrecorded_try(t.status_path)
    if outcome == "wait":
        return None
    if outcome == "never":
        return t
    alive = ctx.executor.is_wrapper(pid, t.status_path)
    start = ctx.executor.process_start(pid) if alive else None
    # "-" matches no start time: the session is named, and its leader is known to be gone
    start = start if start is not None else "-"
    with ctx.store.tx():
        if not ctx.store.mark_try_started(t.id, pid, start):
            return None  # someone else recorded it meanwhile
    if start != "-":
        return None  # adopted: its wrapper runs on
    return t._replace(state=RUNNING, pid=pid, pid_start=start)


def end_session(ctx: StepContext, t) -> bool:
    """Kill what is left of a try's session; True once nothing of it runs."""
    sid, start = t.pid, t.pid_start
    if not sid:
        claim = ctx.executor.read_claim(t.status_path)
        if not claim:
            return True  # it never ran
        sid, start = claim, None
    return ctx.executor.end_session(sid, start, t.boot_id, t.status_path)


def _finish(ctx: StepContext, t, exit_code: int, end: float, report: StepReport) -> None:
    store = ctx.store
    run = store.run(t.run)
    pipeline = ctx.spec_of(run)
    task = pipeline.tasks[t.base]
    # the status file's mtime comes from the kernel's coarse clock, a few ms behind
    # time.time(): a fast try would otherwise end before it started
    end = max(end, t.start or end)
    timed_out = bool(t.timeout) and exit_code in (124, 137) and end - t.start >= t.timeout - 0.05
    skipped = exit_code in task.skip_exit_codes and not timed_out
    reason = None if exit_code == 0 else ("timeout" if timed_out else "skip_exit_code" if skipped else "exit_code")
    if timed_out:
        # it ran its whole limit, after the wrapper and timeout(1) took over a millisecond to
        # start; only the mtime's coarse clock (up to a jiffy behind) says less
        end = max(end, t.start + t.timeout + 0.001)
    # the try has ended: nothing of it outlives it (a retry waits if something would not die)
    end_session(ctx, t)
    with store.tx():
        ti = store.task_instance(t.ti)
        if not store.finish_try(t.id, SUCCESS if exit_code == 0 else SKIPPED if skipped else FAILED, now=end,
                                exit_code=exit_code, reason=reason):
            return
        hook = settle(ctx, run, ti, task, t.try_number, exit_code, reason, end, report)
    ctx.executor.discard_status(t.status_path)
    if t.pid in ctx.children:
        ctx.recorded.add(t.pid)
    report.reaped.append(f"{ctx.run_label(run)} {t.task} try {t.try_number} exit {exit_code}")
    if hook:
        run_try_hook(ctx, hook, run, pipeline, ti, t, exit_code)


def _lose(ctx: StepContext, t, report: StepReport) -> None:
    store = ctx.store
    run = store.run(t.run)
    pipeline = ctx.spec_of(run)
    task = pipeline.tasks[t.base]
    # the wrapper is gone, but the task it started may not be: never let it run beside a retry.
    # (A live process at that pid with another start time reused it: a stranger, not ours.)
    if end_session(ctx, t) and t.pid:
        ctx.executor.discard_status(t.status_path)  # its claim: that wrapper cannot come back
    now = ctx.clock.now()
    with store.tx():
        ti = store.task_instance(t.ti)
        if not store.finish_try(t.id, LOST, now=now, exit_code=None, reason="lost"):
            return
        if t.state == STARTING:
            # its launcher was killed between claiming it and starting it: nothing ran,
            # so it costs no retry (kill -9 at any instant must not fail a task)
            store.requeue_unstarted(ti.id, t.try_number)
            hook = None
        else:
            hook = settle(ctx, run, ti, task, t.try_number, None, "lost", now, report)
    report.lost.append(f"{ctx.run_label(run)} {t.task} try {t.try_number}")
    if hook:
        run_try_hook(ctx, hook, run, pipeline, ti, t, None)


def settle(ctx: StepContext, run, ti, task: Task, try_number: int, exit_code: int | None, reason: str | None,
           now: float, report: StepReport) -> str | None:
    """Move a task instance on after its try ``try_number`` ended; returns the hook to run (None
    when the task instance is no longer at that try: nothing of it is changed)."""
    store = ctx.store
    pipe = run.pipeline
    if ti is None or ti.state != RUNNING or ti.try_number != try_number:
        return None
    if reason is None:
        store.finish_task_instance(ti.id, try_number, SUCCESS, now=now, reason=None, exit_code=exit_code)
        store.add_event("task_success", now=now, pipeline=pipe, run=run.id, task=ti.task)
        ctx.on_task_success(run, ti, task, now)
        return "on_success"
    if reason == "skip_exit_code":
        store.finish_task_instance(ti.id, try_number, SKIPPED, now=now, reason="skip_exit_code", exit_code=exit_code)
        store.add_event("task_skipped", now=now, pipeline=pipe, run=run.id, task=ti.task,
                        message=f"exit {exit_code}, listed in skip_exit_codes")
        return None
    tries_in_budget = ti.try_number - ti.budget_base
    if task.retry.may_retry(tries_in_budget, exit_code):
        at = now + task.retry.delay(tries_in_budget)
        store.finish_task_instance(ti.id, try_number, UP_FOR_RETRY, now=now, reason=reason,
                                   exit_code=exit_code, next_try_at=at)
        store.add_event("task_retry", now=now, pipeline=pipe, run=run.id, task=ti.task,
                        message=f"{reason} (exit {exit_code}); retry at {epoch_iso(at)}")
        report.retried.append(f"{ctx.run_label(run)} {ti.task}")
        return "on_retry"
    store.finish_task_instance(ti.id, try_number, FAILED, now=now, reason=reason, exit_code=exit_code)
    store.add_event("task_failed", now=now, pipeline=pipe, run=run.id, task=ti.task,
                    message=f"{reason} (exit {exit_code})")
    return "on_failure"
