"""Fan-out over a command's output, and the engine's pre-launch pass.

``foreach: {command: ...}`` is evaluated when the task becomes ready (its trigger
rule is met): the placeholder task instance (``task``, map_index NULL) is
replaced by ``task[0..n-1]``, one per non-empty stdout line, each with its own
``{{ item }}``, retries and log. No lines: the task is ``skipped``. A command that
fails or times out fails the task instance with reason ``foreach_failed``.
Static ``foreach`` lists are mapped when the run is created
(``scheduler.task_instance_rows``).
"""
from __future__ import annotations

import os
import subprocess
import time

from pipectl.model.states import FAILED, SKIPPED

from pipectl.model.pipeline import ForeachCommand, Pipeline, Task
FOREACH_TIMEOUT = 60.0  # seconds the item-listing command may take


def needs_expansion(task: Task, ti) -> bool:
    return isinstance(task.foreach, ForeachCommand) and ti["map_index"] is None


def expand(engine, run, pipeline: Pipeline, task: Task, ti, report) -> bool:
    """Returns True when the run's task instances changed."""
    from pipectl.spec.templates import runnable_command
    store = engine.store
    now = engine.clock.now()
    with store.tx():
        claimed = store.claim_ti_check(ti["id"], now, now + FOREACH_TIMEOUT + 5)
    if claimed is None:
        return False
    values = engine.template_values(run, pipeline, claimed, 0)
    cwd = os.path.join(engine.config.root, task.cwd) if task.cwd else engine.config.root
    error = None
    items: list[str] = []
    try:
        command, refs = runnable_command(task.foreach.command, values)
        env = engine.task_environment(pipeline, task, values)
        env.update(refs)
        proc = subprocess.run(["/bin/sh", "-c", command], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=FOREACH_TIMEOUT, start_new_session=True)
        if proc.returncode != 0:
            error = f"foreach command exited {proc.returncode}: {proc.stderr.strip()[-200:]}"
        else:
            items = [line for line in proc.stdout.splitlines() if line.strip()]
    except subprocess.TimeoutExpired:
        error = f"foreach command timed out after {FOREACH_TIMEOUT:g}s"
    except OSError as e:
        error = f"foreach command could not start: {e}"
    except (ValueError, TypeError, UnicodeError) as e:  # e.g. a NUL byte from a param: fail this instance only
        error = f"foreach command cannot be evaluated: {type(e).__name__}: {e}"
    now = engine.clock.now()
    with store.tx():
        cur = store.task_instance(ti["id"])
        if cur is None or cur["state"] != "pending":
            return False
        if error is not None:
            store.set_ti_state(ti["id"], FAILED, now=now, reason="foreach_failed")
            store.add_event("task_failed", now=now, pipeline=run["pipeline"], run=run["id"], task=ti["task"], message=error)
        elif not items:
            store.set_ti_state(ti["id"], SKIPPED, now=now, reason="foreach_empty")
            store.add_event("task_skipped", now=now, pipeline=run["pipeline"], run=run["id"], task=ti["task"],
                            message="foreach command printed no items")
        else:
            store.replace_with_mapped(ti["id"], run["id"], task.name, items)
            store.add_event("task_mapped", now=now, pipeline=run["pipeline"], run=run["id"], task=ti["task"],
                            message=f"{len(items)} items")
    engine.log(f"foreach {run['pipeline']} {run['ds']} {ti['task']}: " + (error or f"{len(items)} items"))
    return True


def prelaunch(engine, candidates: list[tuple], report) -> list[tuple]:
    """Between ``advance`` and ``dispatch``: poke ready sensors and expand ready ``foreach`` commands;
    returns the candidates that are launched as processes (with new mapped instances added)."""
    from pipectl.engine import sensors
    keep, expanded = [], set()
    # A tick must return within tick_budget: a poke or expansion that might outlast it
    # waits for the next step instead (a supervisor or reaper has no deadline).
    deadline = getattr(engine, "deadline", None)
    for run, pipeline, ti in candidates:
        if deadline is not None and engine.out_of_time():
            break
        task = pipeline.tasks[ti["base"]]
        slow = (task.sensor is not None and task.sensor.kind in ("command", "http")) or needs_expansion(task, ti)
        if slow and deadline is not None and time.time() + sensors.POKE_TIMEOUT > deadline:
            continue
        if task.sensor is not None and task.run is None:
            if ti["state"] == "pending" and sensors.handle(engine, run, pipeline, task, ti, report):
                expanded.add(run["id"])  # its downstream may be decided now
            continue
        if needs_expansion(task, ti):
            if ti["state"] == "pending" and expand(engine, run, pipeline, task, ti, report):
                expanded.add(run["id"])
            continue
        keep.append((run, pipeline, ti))
    if expanded:
        # new mapped instances, or the downstream of a finished sensor, can start in this very step
        keep.extend(c for c in engine.advance(expanded, report)
                     if not needs_expansion(c[1].tasks[c[2]["base"]], c[2]) and c[1].tasks[c[2]["base"]].run is not None)
    return keep
