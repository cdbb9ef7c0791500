"""Sensors: tasks that wait for a condition without holding a process or a slot.

A sensor task instance stays ``pending`` while it waits. Whoever steps the engine
(tick, ``--wait`` supervisor, reaper) pokes it once its trigger rule is met, no
more often than ``poke_interval``: the poke is claimed in a transaction (columns
``sensor_started``/``sensor_next``) so two processes never poke the same sensor
at once, and each poke is bounded by ``POKE_TIMEOUT``. A sensor never makes a
try: ``tries`` stays empty, ``try_number`` stays 0.

Outcomes: ready -> ``success``; not yet -> pending until ``sensor_next``;
``timeout`` (since the first poke) -> ``failed`` with reason ``sensor_timeout``
(``skipped`` with ``soft_fail``), never retried; a command sensor exiting with
anything but 0 or 1 -> ``failed`` with reason ``sensor_error``.
"""
from __future__ import annotations

import glob as _glob
import os
import sqlite3
import subprocess
from datetime import datetime, timedelta

from pipectl.engine.context import StepContext
from pipectl.engine.hooks import task_environment
from pipectl.engine.runs import template_values
from pipectl.model.errors import PipectlError
from pipectl.model.pipeline import Pipeline, Task
from pipectl.model.states import FAILED, PENDING, SKIPPED, SUCCESS
from pipectl.timing.clock import epoch_iso

POKE_TIMEOUT = 10.0  # seconds one command or http poke may take; a slow check counts as "not yet"
# ``poke_interval: 0s`` pokes at every check, but never more often than this: whoever keeps the
# sensor's due time (a supervisor, the timer) would otherwise poke it in a busy loop
MIN_POKE_GAP = 1.0


class SensorError(Exception):
    pass


# -- checking ---------------------------------------------------------------
def target_of(task: Task, values: dict) -> str:
    """The sensor's target with its templates' values in place: the path or URL it checks, or, for a
    command, the command as a person reads it (it runs through :func:`command_of`, never this text)."""
    from pipectl.spec.templates import render
    s = task.sensor
    if s.kind in ("file", "http", "command"):
        return render(s.target, values, shell=False)
    return s.target


def command_of(task: Task, values: dict) -> tuple[str, dict[str, str]]:
    """A command sensor's shell command (values as environment references) and those variables."""
    from pipectl.spec.templates import runnable_command
    return runnable_command(task.sensor.target, values)


def _file_ready(path: str, min_size: int | None, is_glob: bool) -> bool:
    paths = _glob.glob(path) if is_glob else [path]
    for p in paths:
        try:
            st = os.stat(p)
        except OSError:
            continue
        if min_size is None or st.st_size >= min_size:
            return True
    return False


def poke(ctx: StepContext, run, pipeline: Pipeline, task: Task, ti) -> bool:
    """One check: True when ready, False when not yet; SensorError when the sensor is broken."""
    if ctx.executor.simulated:  # a rehearsal checks nothing outside: its stub answers
        return ctx.executor.poke(run, task, ti)
    values = template_values(run, ti, ti.try_number)
    s = task.sensor
    root = os.path.join(ctx.config.root, task.cwd) if task.cwd else ctx.config.root
    if s.kind == "command":
        command, refs = command_of(task, values)
        env = task_environment(pipeline, task, values)
        env.update(refs)
        try:
            rc = subprocess.run(["/bin/sh", "-c", command], cwd=root, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=POKE_TIMEOUT,
                                start_new_session=True).returncode
        except subprocess.TimeoutExpired:
            return False
        if rc in (0, 1):
            return rc == 0
        raise SensorError(f"sensor command exited {rc}")
    target = target_of(task, values)
    if s.kind == "file":
        return _file_ready(os.path.join(root, target), s.min_size, s.glob)
    if s.kind == "http":
        import http.client
        import urllib.error
        import urllib.request

        bad = next((c for c in target if c <= " " or c == "\x7f"), None)
        if bad is not None or not target.startswith(("http://", "https://")):
            # a param put a space or a control character in the URL: no poke can ever succeed
            raise SensorError(f"sensor URL {target[:200]!r} is not a valid URL"
                              + (f" (contains {bad!r})" if bad is not None else ""))
        try:
            with urllib.request.urlopen(target, timeout=POKE_TIMEOUT) as resp:
                return 200 <= resp.status < 300
        except http.client.InvalidURL as e:
            raise SensorError(f"sensor URL {target[:200]!r} is not a valid URL: {e}") from None
        except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError):
            return False  # HTTPError (non-2xx) included: the endpoint says "not yet"
    if s.kind == "task":
        return task_ready(ctx.store, run, pipeline, s.target, s.delta)
    raise SensorError(f"unknown sensor kind {s.kind!r}")


def target_ds(run, pipeline: Pipeline, delta: float | None) -> str:
    from pipectl.timing.clock import ds_of
    if not delta:
        return run.ds
    return ds_of(run.logical_date - timedelta(seconds=delta), pipeline.timezone)


def task_ready(store, run, pipeline: Pipeline, target: str, delta: float | None) -> bool:
    """``pipeline.task`` succeeded for the ds, in a run that covers the whole day (see runs.covers_day):
    for a 5-minute producer that is its last run of the day, for a daily one its only run."""
    from pipectl.engine.runs import covers_day
    other, _, name = target.rpartition(".")
    ds = target_ds(run, pipeline, delta)
    for r in reversed(store.runs_by_ds(other, ds)):
        if not covers_day(r, store):
            continue
        tis = [t for t in store.task_instances(r.id) if t.base == name]
        if tis and all(t.state == SUCCESS for t in tis):
            return True
    return False


# -- the engine side: the pre-launch handler of kind "sensor" ---------------------
def slow(task: Task, ti) -> bool:
    """A command or http poke may take up to POKE_TIMEOUT."""
    return task.sensor is not None and task.sensor.kind in ("command", "http")


def handle(ctx: StepContext, run, pipeline: Pipeline, task: Task, ti, report) -> bool:
    """Poke a ready sensor task instance if its time has come, and settle it; True when it finished."""
    store = ctx.store
    now = ctx.clock.now()
    with store.tx():
        claimed = store.claim_ti_check(ti.id, now, now + POKE_TIMEOUT + 5)
    if claimed is None:
        return False
    started = claimed.sensor_started or now
    s = task.sensor
    if claimed.sensor_started is None:
        with store.tx():
            store.add_event("sensor_started", now=now, pipeline=run.pipeline, run=run.id, task=ti.task,
                            message=f"waiting for {s.kind} {s.target}")
    error = None
    try:
        ready = poke(ctx, run, pipeline, task, claimed)
    except SensorError as e:
        ready, error = False, str(e)
    except (sqlite3.Error, PipectlError):
        raise
    except Exception as e:  # a target that cannot be evaluated fails this sensor at once, and only it
        ready, error = False, f"cannot evaluate the sensor: {type(e).__name__}: {e}"
    now = ctx.clock.now()
    deadline = started + s.timeout if s.timeout else None
    label = f"{run.pipeline} {run.ds} {ti.task}"
    with store.tx():
        cur = store.task_instance(ti.id)
        if cur is None or cur.state != PENDING:
            return False
        if ready:
            store.set_ti_state(ti.id, SUCCESS, now=now, reason=None)
            store.add_event("task_success", now=now, pipeline=run.pipeline, run=run.id, task=ti.task,
                            message="sensor ready")
            ctx.on_task_success(run, cur, task, now)
            ctx.log(f"sensor ready: {label}")
        elif error is not None:
            store.set_ti_state(ti.id, FAILED, now=now, reason="sensor_error")
            store.add_event("task_failed", now=now, pipeline=run.pipeline, run=run.id, task=ti.task,
                            message=error)
            ctx.log(f"sensor failed: {label}: {error}")
        elif deadline is not None and now >= deadline:
            state = SKIPPED if s.soft_fail else FAILED
            store.set_ti_state(ti.id, state, now=now, reason="sensor_timeout")
            store.add_event(f"task_{state}", now=now, pipeline=run.pipeline, run=run.id, task=ti.task,
                            message="sensor_timeout")
            ctx.log(f"sensor timed out: {label}")
        else:
            nxt = now + max(s.poke_interval, MIN_POKE_GAP)
            if deadline is not None:
                nxt = min(nxt, deadline)
            store.set_sensor_times(ti.id, started, nxt)
            return False
    return True


# -- explaining -------------------------------------------------------------
def _when(t: float | None) -> str:
    return "now" if t is None else epoch_iso(t)


def describe_wait(task: Task, ti, values: dict, now) -> str:
    """One line for `explain`: what the sensor waits for, and when it checks next and gives up.

    ``values``: the run's template values (``runs.template_values``);
    ``now``: epoch seconds or an aware datetime."""
    if isinstance(now, datetime):
        now = now.timestamp()
    s = task.sensor
    if s is None:
        return ""
    try:
        target = target_of(task, values)
    except Exception:  # an unrenderable target is still worth naming
        target = s.target
    if s.kind == "file":
        what = f"file {'matching ' if s.glob else ''}{target}" + (f" of at least {s.min_size} bytes" if s.min_size else "")
    elif s.kind == "command":
        what = f"command `{target}` to exit 0"
    elif s.kind == "http":
        what = f"{target} to answer 2xx"
    else:
        from pipectl.timing.durations import format_duration
        shift = f" (ds shifted back by {format_duration(s.delta)})" if s.delta else ""
        what = f"task {target} to succeed for the same ds{shift}"
    started = ti.sensor_started if ti is not None else None
    nxt = ti.sensor_next if ti is not None else None
    parts = [f"sensor waits for {what}"]
    if started is None:
        parts.append("first check at the next step")
    else:
        parts.append("next check " + ("now" if nxt is None or nxt <= now else f"at {_when(nxt)} (in {int(nxt - now)}s)"))
    if s.timeout:
        if started is None:
            from pipectl.timing.durations import format_duration
            parts.append(f"times out {format_duration(s.timeout)} after the first check")
        else:
            parts.append(f"times out at {_when(started + s.timeout)}" + (" (skipped then)" if s.soft_fail else ""))
    return "; ".join(parts)
