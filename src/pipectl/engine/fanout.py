"""Fan-out over a command's output: the pre-launch handler of kind "foreach".

``foreach: {command: ...}`` is evaluated when the task becomes ready (its trigger
rule is met): the placeholder task instance (``task``, map_index NULL) is
replaced by ``task[0..n-1]``, one per non-empty stdout line, each with its own
``{{ item }}``, retries and log. No lines: the task is ``skipped``. A command that
fails or times out fails the task instance with reason ``foreach_failed``.
Static ``foreach`` lists are mapped when the run is created
(``runs.task_instance_rows``).
"""
from __future__ import annotations

import os
import subprocess

from pipectl.engine.context import StepContext
from pipectl.engine.hooks import task_environment
from pipectl.engine.runs import template_values
from pipectl.model.pipeline import ForeachCommand, Pipeline, Task
from pipectl.model.states import FAILED, PENDING, SKIPPED

FOREACH_TIMEOUT = 60.0  # seconds the item-listing command may take


def needs_expansion(task: Task, ti) -> bool:
    return isinstance(task.foreach, ForeachCommand) and ti.map_index is None


def expand(ctx: StepContext, run, pipeline: Pipeline, task: Task, ti, report) -> bool:
    """Returns True when the run's task instances changed."""
    store = ctx.store
    now = ctx.clock.now()
    with store.tx():
        claimed = store.claim_ti_check(ti.id, now, now + FOREACH_TIMEOUT + 5)
    if claimed is None:
        return False
    if ctx.executor.simulated:  # a rehearsal runs no command: its stub gives the items
        items, error = ctx.executor.expand(run, task, ti), None
    else:
        items, error = _run_command(ctx, pipeline, task, template_values(run, claimed, 0))
    now = ctx.clock.now()
    with store.tx():
        cur = store.task_instance(ti.id)
        if cur is None or cur.state != PENDING:
            return False
        if error is not None:
            store.set_ti_state(ti.id, FAILED, now=now, reason="foreach_failed")
            store.add_event("task_failed", now=now, pipeline=run.pipeline, run=run.id, task=ti.task, message=error)
        elif not items:
            store.set_ti_state(ti.id, SKIPPED, now=now, reason="foreach_empty")
            store.add_event("task_skipped", now=now, pipeline=run.pipeline, run=run.id, task=ti.task,
                            message="foreach command printed no items")
        else:
            store.replace_with_mapped(ti.id, run.id, task.name, items)
            store.add_event("task_mapped", now=now, pipeline=run.pipeline, run=run.id, task=ti.task,
                            message=f"{len(items)} items")
    ctx.log(f"foreach {run.pipeline} {run.ds} {ti.task}: " + (error or f"{len(items)} items"))
    return True


def _run_command(ctx: StepContext, pipeline: Pipeline, task: Task, values: dict) -> tuple[list[str], str | None]:
    """The items a foreach command prints, one per line; or why there are none."""
    from pipectl.spec.templates import runnable_command
    cwd = os.path.join(ctx.config.root, task.cwd) if task.cwd else ctx.config.root
    try:
        command, refs = runnable_command(task.foreach.command, values)
        env = task_environment(pipeline, task, values)
        env.update(refs)
        proc = subprocess.run(["/bin/sh", "-c", command], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=FOREACH_TIMEOUT, start_new_session=True)
        if proc.returncode != 0:
            return [], f"foreach command exited {proc.returncode}: {proc.stderr.strip()[-200:]}"
        return [line for line in proc.stdout.splitlines() if line.strip()], None
    except subprocess.TimeoutExpired:
        return [], f"foreach command timed out after {FOREACH_TIMEOUT:g}s"
    except OSError as e:
        return [], f"foreach command could not start: {e}"
    except (ValueError, TypeError, UnicodeError) as e:  # e.g. a NUL byte from a param: fail this instance only
        return [], f"foreach command cannot be evaluated: {type(e).__name__}: {e}"
