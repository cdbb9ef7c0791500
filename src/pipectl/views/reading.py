"""Plain data for the reading commands (runs, status, show, explain, next), built
from the store: the JSON output is exactly these dicts, and the rich tables are
drawn from them, so both always agree."""
from __future__ import annotations

from datetime import datetime

from pipectl.model.pipeline import Pipeline, ProjectConfig
from pipectl.model.records import Run
from pipectl.model.states import QUEUED, RUNNING
from pipectl.state.store import Store, loads
from pipectl.timing.clock import epoch_iso, iso


def run_object(store: Store, run: Run, tis=None) -> dict:
    """A run as SPEC §7 prints it; ``tasks`` maps task instance id to its outcome."""
    tis = store.task_instances(run.id) if tis is None else tis
    return {
        "run_id": run.run_id,
        "pipeline": run.pipeline,
        "logical_date": iso(run.logical_date),
        "ds": run.ds,
        "data_interval_start": iso(run.data_interval_start),
        "data_interval_end": iso(run.data_interval_end),
        "run_type": run.run_type,
        "state": run.state,
        "params": loads(run.params) or {},
        "start": epoch_iso(run.start),
        "end": epoch_iso(run.end),
        "duration": (run.end - run.start) if run.end and run.start else None,
        "tasks": {ti.task: {"state": ti.state, "tries": ti.try_number, "exit_code": ti.exit_code,
                            "reason": ti.reason} for ti in tis},
    }


def topo_order(pipeline: Pipeline) -> list[str]:
    """The pipeline's tasks in a stable topological order: file order, except that a task
    never comes before its upstreams (a file already in order reads unchanged)."""
    tasks = pipeline.tasks
    placed: list[str] = []
    done: set[str] = set()
    todo = list(tasks)
    while todo:
        for name in todo:
            if all(u in done or u not in tasks for u in tasks[name].needs):
                break
        else:  # a cycle (never in a validated spec): keep file order rather than loop
            name = todo[0]
        todo.remove(name)
        placed.append(name)
        done.add(name)
    return placed


def dag_order(pipeline: Pipeline | None, names: list[str]) -> list[str]:
    """Task instance names in DAG order (:func:`topo_order`); a mapped task's instances
    ``t[0]``, ``t[1]`` stay together in index order; names the pipeline does not know
    keep their place at the end."""
    if pipeline is None:
        return list(names)
    rank = {name: i for i, name in enumerate(topo_order(pipeline))}

    def key(item):
        pos, name = item
        base, _, rest = name.partition("[")
        idx = int(rest.rstrip("]")) if rest.rstrip("]").isdigit() else -1
        return (rank.get(base, len(rank)), pos if base not in rank else 0, idx)

    return [name for _, name in sorted(enumerate(names), key=key)]


def run_detail(store: Store, run: Run, pipeline: Pipeline | None = None) -> dict:
    """``show``: the run object plus every try and the run's events; task instances in the
    DAG order of ``pipeline`` (the run's own snapshot) when given."""
    obj = run_object(store, run)
    tries_by_ti: dict[int, list] = {}
    for t in store.tries_for_run(run.id):
        tries_by_ti.setdefault(t.ti, []).append({
            "try": t.try_number, "state": t.state, "start": epoch_iso(t.start), "end": epoch_iso(t.end),
            "duration": (t.end - t.start) if t.end and t.start else None,
            "exit_code": t.exit_code, "reason": t.reason, "log": t.log_path,
        })
    tis = {ti.task: ti for ti in store.task_instances(run.id)}
    obj["owner"] = pipeline.owner if pipeline is not None else None
    task_owner = {name: t.owner for name, t in pipeline.tasks.items() if t.owner} if pipeline is not None else {}
    obj["task_instances"] = [{
        "task": ti.task, "owner": task_owner.get(ti.base, obj["owner"]), "state": ti.state, "tries": ti.try_number, "exit_code": ti.exit_code,
        "reason": ti.reason, "start": epoch_iso(ti.start), "end": epoch_iso(ti.end),
        "next_try_at": epoch_iso(ti.next_try_at), "try_log": tries_by_ti.get(ti.id, []),
    } for ti in (tis[name] for name in dag_order(pipeline, list(tis)))]
    obj["events"] = [{"ts": epoch_iso(e.ts), "kind": e.kind, "task": e.task, "message": e.message}
                     for e in store.events_for_run(run.id)]
    return obj


def next_runs(pipeline: Pipeline, now: datetime, count: int, anchor: datetime | None = None) -> list[dict]:
    """Upcoming schedule times after ``now``: the run created at ``fire_time`` carries ``logical_date``."""
    from pipectl.timing.clock import ds_of
    from pipectl.timing.timetable import timetable
    from pipectl.engine.tick import instant
    if not pipeline.time_schedules:
        return []
    start = instant(pipeline.start_date, pipeline.timezone)
    tt = timetable(pipeline.time_schedules, pipeline.timezone, start or anchor)
    out = []
    t = now
    prev = tt.latest_at_or_before(now)
    while len(out) < count:
        try:
            fire = tt.next_after(t)
        except (OverflowError, ValueError):  # past year 9999: the calendar ends
            break
        if fire is None:
            break
        if prev is not None and (start is None or prev >= start):
            out.append({"fire_time": fire.isoformat(), "logical_date": prev.isoformat(), "ds": ds_of(prev, pipeline.timezone)})
        prev, t = fire, fire
    return out


def explain_run(store: Store, config: ProjectConfig, run, pipeline: Pipeline, now: float) -> list[dict]:
    """Why each task instance of ``run`` is or is not running, in DAG order: the rulebook's
    verdicts (the rules dispatch applies), as ``{task, state, ready, rule, why}``."""
    from pipectl.engine.explain import explain_run as verdicts
    return [v.as_dict() for v in verdicts(store, config, run, pipeline, now)]


def explain_view(store: Store | None, config: ProjectConfig, pipeline: Pipeline, run, when, now: datetime) -> dict:
    """``explain``: the run's own wait (queued behind max_active_runs) and each task instance's
    verdict in DAG order; without a run, why there is none (``when``: the --date asked about)."""
    from pipectl.engine import explain, rules
    row = store.pipeline_row(pipeline.name) if store is not None else None
    notes = [rules.Paused.note(pipeline.name)] if row and row.paused else []
    if run is None:
        if when is None:  # no runs at all: explain the next one the schedule makes
            nxt = next_runs(pipeline, now, 1, row.anchor if row else None)
            when = datetime.fromisoformat(nxt[0]["logical_date"]) if nxt else now.date()
        return {"pipeline": pipeline.name, "run_id": None, "state": None, "notes": notes,
                "why": explain.why_no_run(store, pipeline, when, now), "tasks": []}
    step = explain.plan(store, config, now.timestamp()) if run.state in (QUEUED, RUNNING) else None
    if step is not None and run.id in step.run_notes:
        notes.append(step.run_notes[run.id])
    tasks = [v.as_dict() for v in explain.explain_run(store, config, run, pipeline, now.timestamp(), step)]
    return {"pipeline": pipeline.name, "run_id": run.run_id, "state": run.state, "notes": notes,
            "why": None, "tasks": tasks}

