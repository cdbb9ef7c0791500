"""Runs: creating one (with its first task instances), and what a try of it sees."""
from __future__ import annotations

from datetime import date, datetime, timedelta

from pipectl.engine.context import StepContext
from pipectl.model.pipeline import Pipeline
from pipectl.model.states import PENDING, SKIPPED
from pipectl.state.store import loads
from pipectl.timing.clock import iso, local_midnight

RUN_PRIORITY = {"backfill": 0}  # everything else 1: scheduled work starts before backfills


def task_instance_rows(pipeline: Pipeline) -> list[tuple[str, str, int | None, str | None, str]]:
    """The task instances a new run starts with; a static ``foreach`` is mapped at once."""
    rows = []
    for name, task in pipeline.tasks.items():
        if isinstance(task.foreach, tuple):
            if not task.foreach:
                rows.append((name, name, None, None, SKIPPED))
            for i, item in enumerate(task.foreach):
                rows.append((f"{name}[{i}]", name, i, item, PENDING))
        else:
            rows.append((name, name, None, None, PENDING))
    return rows


def create_run(ctx: StepContext, pipeline: Pipeline, logical_date: datetime, *, run_type: str,
               interval: tuple[datetime | None, datetime | None] = (None, None), params: dict | None = None,
               batch: str | None = None, max_active: int | None = None) -> int | None:
    """Queue a run; None if the pipeline already has one for that logical date."""
    from pipectl.timing.clock import ds_of
    ld = iso(logical_date)
    merged = {**pipeline.params, **(params or {})}
    now = ctx.clock.now()
    store = ctx.store
    with store.tx():
        pk = store.insert_run(
            run_id=f"{run_type}__{ld}", pipeline=pipeline.name, logical_date=ld,
            ds=ds_of(logical_date, pipeline.timezone),
            interval=(iso(interval[0]) if interval[0] else ld, iso(interval[1]) if interval[1] else ld),
            run_type=run_type, params=merged, spec=pipeline.to_dict(), now=now,
            priority=RUN_PRIORITY.get(run_type, 1), batch=batch, max_active=max_active)
        if pk is None:
            return None
        store.insert_task_instances(pk, task_instance_rows(pipeline))
        store.add_event("run_created", now=now, pipeline=pipeline.name, run=pk, message=f"{run_type} run for {ld}")
    ctx.log(f"created {pipeline.name} {run_type} run {ld}")
    return pk


def template_values(run, ti, try_number: int) -> dict:
    """What ``{{ ... }}`` and the PIPECTL_* variables of one try see (``ti`` None: a hook of the
    run itself, an SLA miss of the run)."""
    return {
        "ds": run.ds, "ds_nodash": run.ds.replace("-", ""), "logical_date": iso(run.logical_date),
        "data_interval_start": iso(run.data_interval_start), "data_interval_end": iso(run.data_interval_end),
        "run_id": run.run_id, "pipeline": run.pipeline, "task": ti.task if ti is not None else "", "try_number": str(try_number),
        "params": loads(run.params) or {}, "item": ti.item if ti is not None and ti.item is not None else "",
    }


def covers_day(run, store=None) -> bool:
    """Whether ``run`` (a runs row) stands for the whole of its ds: its data interval reaches the
    next midnight in its pipeline's timezone. A daily run always does, a 5-minute pipeline's only
    for its last interval of the day; manual, asset and file runs have no interval and do."""
    start, end = run.data_interval_start, run.data_interval_end
    if not end or not start or end <= start:
        return True
    spec = run.spec if run.spec is not None else store.run_spec(run.id)
    tz = (loads(spec) or {}).get("timezone") or "UTC"
    return end >= local_midnight(date.fromisoformat(run.ds) + timedelta(days=1), tz)
