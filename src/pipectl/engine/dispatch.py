"""The dispatch phase: claim launch candidates in priority order as far as slots allow,
and start their tries.

The order and every condition come from the rulebook (``dispatch_key``, ``Slots``,
``Launchable``, ``PreviousTry``), the same rules ``explain`` replays.
"""
from __future__ import annotations

import os
import sqlite3

from pipectl.engine.context import StepContext, StepReport
from pipectl.engine.hooks import task_environment
from pipectl.engine.reaping import end_session
from pipectl.engine.rules import Launchable, Slots, dispatch_key
from pipectl.engine.runs import template_values
from pipectl.exec import executor, layout
from pipectl.model.errors import PipectlError
from pipectl.model.pipeline import Pipeline, Task
from pipectl.model.states import FAILED, TRY_LIVE
from pipectl.state.files import private_open, write_private

LAUNCH_CHUNK = 8  # a step with a deadline launches this many tries at a time, checking the clock between


def dispatch(ctx: StepContext, candidates: list[tuple], report: StepReport) -> None:
    if ctx.stop_launching or not candidates:
        return
    candidates.sort(key=dispatch_key)
    if ctx.deadline is not None and len(candidates) > LAUNCH_CHUNK:
        # starting a process takes milliseconds, far more under load: launch in chunks, each
        # recorded before the next, and stop when the deadline comes (never between a claim
        # and its launch)
        for i in range(0, len(candidates), LAUNCH_CHUNK):
            if ctx.out_of_time():
                return
            _dispatch(ctx, candidates[i:i + LAUNCH_CHUNK], report)
        return
    _dispatch(ctx, candidates, report)


def _dispatch(ctx: StepContext, candidates: list[tuple], report: StepReport) -> None:
    """Claim and launch ``candidates``, in their order, as far as slots allow."""
    store = ctx.store
    candidates = [c for c in candidates if previous_try_gone(ctx, c[2])]
    now = ctx.clock.now()
    launches = []
    with store.tx():
        # the rulebook's slot rule, the one `explain` replays
        slots = Slots(ctx.config, store.running_counts(), store.running_by_pool())
        for run, pipeline, ti in candidates:
            if slots.free <= 0:
                break
            task = pipeline.tasks[ti.base]
            if slots.blocked(task) or Launchable.check(task, ti) is not None:
                continue  # a full pool; a sensor is poked and a foreach command expanded, never launched
            try_number = store.claim_task_instance(ti.id, now)
            if try_number is None:
                continue
            try:
                launch = prepare(ctx, run, pipeline, task, ti, try_number)
            except Exception as e:  # e.g. a template that cannot render: this task instance fails alone
                if isinstance(e, (sqlite3.Error, PipectlError)):
                    raise
                store.finish_task_instance(ti.id, try_number, FAILED, now=now, reason="error", exit_code=None)
                store.add_event("task_failed", now=now, pipeline=run.pipeline, run=run.id,
                                task=ti.task, message=f"cannot start: {type(e).__name__}: {e}")
                continue
            try_pk = store.insert_try(ti.id, try_number, launcher_pid=ctx.me[0], launcher_start=ctx.me[1],
                                      boot_id=ctx.boot, status_path=launch.status_path,
                                      log_path=launch.log_path, timeout=task.timeout, pool=task.pool, now=now)
            store.add_event("try_started", now=now, pipeline=run.pipeline, run=run.id, task=ti.task,
                            message=f"try {try_number}")
            launches.append((try_pk, launch, f"{ctx.run_label(run)} {ti.task} try {try_number}"))
            slots.take(task)
    started = []
    for try_pk, launch, label in launches:
        try:
            proc = ctx.executor.start(launch)
        except OSError as e:
            # cannot even start: record a failed try with the reason instead of a stuck instance
            write_private(launch.status_path, "127\n")
            fd = private_open(launch.log_path)  # the try's log is where its user looks
            try:
                os.write(fd, f"pipectl: could not start the task: {e}\n".encode())
            finally:
                os.close(fd)
            ctx.log(f"could not start {label}: {e}")
            continue
        ctx.children[proc.pid] = proc
        started.append((try_pk, proc.pid))
        report.launched.append(label)
    if started:
        with store.tx():
            for try_pk, pid in started:
                store.mark_try_started(try_pk, pid, ctx.executor.process_start(pid))


def previous_try_gone(ctx: StepContext, ti) -> bool:
    """Whether nothing of the task instance's previous try runs any more (killing what is
    left of it): a retry never starts beside its predecessor's leftovers (the rulebook's
    PreviousTry, which ``explain`` can only read, not enforce)."""
    n = ti.try_number
    if not n or (ti.id, n) in ctx.gone:
        return True
    prev = [t for t in ctx.store.tries_for(ti.id) if t.try_number == n]
    if prev:
        if prev[-1].state in TRY_LIVE:
            return False  # still to be recorded
        if not end_session(ctx, prev[-1]):
            ctx.log(f"{ti.task}: a process of try {n} would not die; its next try waits")
            return False
    ctx.gone.add((ti.id, n))
    return True


def prepare(ctx: StepContext, run, pipeline: Pipeline, task: Task, ti, try_number: int) -> executor.Launch:
    """What starting one try takes: its argv (templates rendered, never as shell syntax), cwd,
    environment and the paths of its log and status file."""
    from pipectl.spec.templates import TemplateError, refusal, render, runnable_command
    config = ctx.config
    values = template_values(run, ti, try_number)
    env = task_environment(pipeline, task, values)
    if isinstance(task.run, str):
        command, refs = runnable_command(task.run, values)
        argv = ["/bin/sh", "-c", command]
        env.update(refs)
    else:
        try:
            argv = [render(a, values, shell=False) for a in task.run]
        except TemplateError as e:
            command, refs = refusal(e)
            argv = ["/bin/sh", "-c", command]
            env.update(refs)
    cwd = os.path.join(config.root, task.cwd) if task.cwd else config.root
    return executor.Launch(
        argv=argv, cwd=cwd, env=env,
        log_path=layout.log_path(config, run, ti.task, try_number),
        status_path=layout.status_path(config, ti.id, try_number),
        timeout=task.timeout, supervisors_dir=layout.supervisors_dir(config), project=config.root,
        clock_offset=ctx.clock.offset,
    )
