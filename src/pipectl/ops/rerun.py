"""Re-runs and manual overrides of single runs and pipelines: retry, mark, pause.

Each is a small set of conditional state transitions in one transaction, so a
command racing a tick (or another command) changes only what is still in the
state it read; every change is recorded as an event naming the acting user.
"""
from __future__ import annotations

import getpass
import os

from pipectl.model.errors import Param, PipectlError, UsageError
from pipectl.model.pipeline import Pipeline
from pipectl.model.states import FAILED, PENDING, RUNNING, SKIPPED, SUCCESS, TI_FINISHED, UP_FOR_RETRY, UPSTREAM_FAILED
from pipectl.timing.clock import epoch_iso

RERUNNABLE = (FAILED, UPSTREAM_FAILED)
MARK_STATES = (SUCCESS, FAILED, SKIPPED)


def actor() -> str:
    """Who did it, for the audit trail."""
    name = os.environ.get("USER") or os.environ.get("LOGNAME")
    if not name:
        try:
            name = getpass.getuser()
        except Exception:  # noqa: BLE001 - no passwd entry in a container
            name = f"uid {os.getuid()}"
    return name


def _match_tis(tis, task: str, run) -> list:
    """Task instances named ``task`` exactly, or every instance of a mapped task by its base name."""
    hit = [ti for ti in tis if ti.task == task] or [ti for ti in tis if ti.base == task]
    if not hit:
        names = sorted({ti.base for ti in tis})
        raise UsageError(f"unknown task {task!r} in run {run.run_id} (tasks: {', '.join(names)})")
    return hit


def retry_plan(engine, run, task: str | None = None, downstream: bool = False) -> tuple[list, list]:
    """(task instances to re-run, task instances left alone because they are still active)."""
    tis = engine.store.task_instances(run.id)
    if task is None:
        chosen = [ti for ti in tis if ti.state in RERUNNABLE]
        if downstream:
            raise UsageError(Param("downstream"), " needs ", Param("task"))
    else:
        chosen = _match_tis(tis, task, run)
        if downstream:
            from pipectl.model.dag import downstream_closure
            spec = engine.spec_of(run)
            below = downstream_closure({n: t.needs for n, t in spec.tasks.items()}, {ti.base for ti in chosen})
            ids = {ti.id for ti in chosen}
            chosen += [ti for ti in tis if ti.base in below and ti.id not in ids]
    busy = [ti for ti in chosen if ti.state in (PENDING, RUNNING, UP_FOR_RETRY)]
    return [ti for ti in chosen if ti.state in TI_FINISHED], busy


def retry(engine, run, tis: list) -> tuple[list[str], list[tuple[str, str]]]:
    """Reset ``tis`` to pending with a fresh retry budget and re-open the run (successes kept).

    ``tis`` were read before this transaction: each reset is a conditional transition, so one
    that has left its finished state since (another ``retry`` got there first and a tick
    started it) is skipped, never reset while it runs. Returns (task instances reset,
    (task instance, its state now) for those skipped).
    """
    store = engine.store
    now = engine.clock.now()
    done: list[str] = []
    skipped: list[tuple[str, str]] = []
    with store.tx():
        for ti in tis:
            if store.reset_task_instance(ti.id):
                done.append(ti.task)
            else:
                cur = store.task_instance(ti.id)
                skipped.append((ti.task, cur.state if cur is not None else "gone"))
        if done:
            store.reopen_run(run.id)
            store.add_event("retry", now=now, pipeline=run.pipeline, run=run.id,
                            message=f"retry by {actor()}: {len(done)} task instance{'s' if len(done) != 1 else ''} "
                                    f"back to pending: {', '.join(done)}")
    return done, skipped


# --------------------------------------------------------------------------- mark

def mark(engine, run, task: str, state: str) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Set task instance(s) of ``task`` to ``state`` by hand. Returns ((task instance, old state)
    changed, (task instance, its state) skipped).

    A running task instance is skipped: its try would overwrite the mark when it ends. A
    finished run's state follows its task instances; an active run is left to the engine,
    which sees the new state on its next step.
    """
    if state not in MARK_STATES:
        raise UsageError(f"bad state {state!r}: expected one of {', '.join(MARK_STATES)}")
    store = engine.store
    now = engine.clock.now()
    who = actor()
    changed: list[tuple[str, str]] = []
    skipped: list[tuple[str, str]] = []
    with store.tx():
        run = store.run(run.id)
        if run is None:
            raise PipectlError("the run is gone (pruned meanwhile); nothing marked")
        tis = _match_tis(store.task_instances(run.id), task, run)
        spec = engine.spec_of(run)
        for ti in tis:
            if ti.state == state:
                continue
            if not store.mark_task_instance(ti.id, state, expect=ti.state, now=now, reason=f"marked by {who}"):
                skipped.append((ti.task, ti.state))  # running, or a try of it still live
                continue
            store.add_event("mark", now=now, pipeline=run.pipeline, run=run.id, task=ti.task,
                            message=f"marked {state} by {who} (was {ti.state})")
            if state == SUCCESS and ti.base in spec.tasks:
                engine.on_task_success(run, store.task_instance(ti.id), spec.tasks[ti.base], now)
            changed.append((ti.task, ti.state))
        if changed:
            new = store.resettle_run(run.id, now)
            if new is not None:
                store.add_event(f"run_{new}", now=now, pipeline=run.pipeline, run=run.id,
                                message=f"run is {new} after a mark by {who}")
    return changed, skipped


# --------------------------------------------------------------------------- pause

def set_paused(store, pipeline: Pipeline, paused: bool, now: float) -> bool:
    """Pause or unpause; False when it already was. A pipeline no tick has seen gets its row here."""
    who = actor()
    with store.tx():
        row = store.pipeline_row(pipeline.name)
        if row is None:
            store.upsert_pipeline(pipeline.name, spec=pipeline.to_dict(), path=pipeline.path, valid=True, error=None,
                                  anchor=epoch_iso(now))
        if not store.set_paused(pipeline.name, paused):
            return False
        if paused:
            msg = f"paused by {who}: no new scheduled runs; work in progress finishes"
        else:
            from pipectl.engine.catchup import catchup_words
            catch = catchup_words(pipeline)
            msg = f"unpaused by {who}: scheduling resumes; {catch}"
        store.add_event("pause" if paused else "unpause", now=now, pipeline=pipeline.name, message=msg)
    return True
