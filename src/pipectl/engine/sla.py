"""SLAs: ``sla: 2h`` on a pipeline (the run) or a task (each of its task instances).

The clock starts when the schedule fired: a scheduled (or backfill) run's
``data_interval_end``; any other run's creation time. A run, or task instance,
not finished ``sla`` after that gets one row in ``sla_misses`` and its
``on_sla_miss`` hook runs once (the task's, else the pipeline's). Checked on every
engine step (tick, supervisor, reaper); the insert is conditional, so however
many processes step at once the hook runs once.
"""
from __future__ import annotations


from pipectl.engine.context import StepContext
from pipectl.engine.hooks import owner_of, spawn, task_environment
from pipectl.engine.runs import template_values
from pipectl.exec import layout
from pipectl.model.pipeline import Pipeline
from pipectl.model.states import TI_FINISHED
from pipectl.state.store import loads
from pipectl.timing.clock import epoch_iso, iso


def anchor(run) -> float:
    if run.run_type in ("scheduled", "backfill") and run.data_interval_end:
        return run.data_interval_end.timestamp()
    return run.created


def check(ctx: StepContext, report=None) -> int:
    """The step's last phase: record new misses and start their hooks; returns how many were recorded."""
    store = ctx.store
    now = ctx.clock.now()
    found = 0
    # a run's spec snapshot never changes: its SLAs are read once per run, not per engine step
    cache = ctx.memo("sla by run")  # run id -> (run sla, {task: sla})
    for run in store.active_runs():
        if ctx.out_of_time():  # a tick's deadline: the next step looks again
            break
        slas = cache.get(run.id)
        if slas is None:
            slas = cache[run.id] = _slas(ctx, run)
        run_sla, task_slas = slas
        if not run_sla and not task_slas:
            continue
        start = anchor(run)
        due: list[tuple[str, float, object]] = []
        if run_sla and now > start + run_sla:
            due.append(("", start + run_sla, None))
        if task_slas:
            for ti in store.task_instances(run.id):
                sla = task_slas.get(ti.base)
                if sla and now > start + sla and ti.state not in TI_FINISHED:
                    due.append((ti.task, start + sla, ti))
        for task, deadline, ti in due:
            with store.tx():
                if not store.add_sla_miss(run.pipeline, run.id, task, deadline, now):
                    continue
                what = f"task {task}" if task else "run"
                store.add_event("sla_miss", now=now, pipeline=run.pipeline, run=run.id, task=task or None,
                                message=f"{what} not finished by {epoch_iso(deadline)}")
            found += 1
            ctx.log(f"SLA missed: {run.pipeline} {run.ds} {task or 'run'}")
            _hook(ctx, run, ctx.spec_of(run), ti, task)
    return found


def _slas(ctx: StepContext, run) -> tuple:
    """(run sla, {task: sla}) of a run's snapshot. A catch-up queues thousands of runs with one
    and the same snapshot, and every step (each reaper's too) looks at all of them: the snapshot
    text is parsed once per distinct text, not once per run."""
    p = ctx.cached_spec(run)
    if p is not None:
        return p.sla, {n: t.sla for n, t in p.tasks.items() if t.sla}
    text = run.spec if run.spec is not None else ctx.store.run_spec(run.id)
    if text is None:  # pruned since the list was read
        return None, {}
    by_text = ctx.memo("sla by snapshot")
    slas = by_text.get(text)
    if slas is None:
        p = Pipeline.from_dict(loads(text))
        slas = by_text[text] = (p.sla, {n: t.sla for n, t in p.tasks.items() if t.sla})
    return slas


def _hook(ctx: StepContext, run, pipeline, ti, task: str) -> None:
    from pipectl.spec.templates import runnable_command
    t = pipeline.tasks.get(ti.base) if ti is not None else None
    command = (t.on_sla_miss if t is not None else None) or pipeline.on_sla_miss
    if not command:
        return
    values = template_values(run, ti, ti.try_number if ti is not None else 0)
    base = t or next(iter(pipeline.tasks.values()))
    env = task_environment(pipeline, base, values)
    env.update(PIPECTL_STATE="sla_miss", PIPECTL_EXIT_CODE="", PIPECTL_LOG="", PIPECTL_SLA_TASK=task,
               PIPECTL_OWNER=owner_of(pipeline, t))
    command, refs = runnable_command(command, values)
    env.update(refs)
    spawn(ctx, command, env, layout.hooks_log(ctx.config, run), "on_sla_miss")


def misses_for(store, pipeline: str | None = None, run: int | None = None) -> list[dict]:
    """SLA misses for `status` / `show`: ``{pipeline, run_id, ds, logical_date, task, deadline, recorded}``
    (``task`` None for the run's own SLA; times ISO 8601). ``run`` is the run's row id."""
    return [{"pipeline": r.pipeline, "run_id": r.run_id, "ds": r.ds, "logical_date": iso(r.logical_date),
             "task": r.task or None, "deadline": epoch_iso(r.deadline), "recorded": epoch_iso(r.ts)}
            for r in store.sla_misses(pipeline, run)]
