"""Run history read models: duration creep and the partition grid.

Pure functions over the store's records (or dicts with the same keys); no SQL
here and nothing drawn: the commands render what these return.
"""
from __future__ import annotations

from datetime import datetime
from statistics import median
from typing import Any, Iterable, Mapping

from pipectl.model.records import Run, TaskInstance
from pipectl.model.states import FAILED, PENDING, QUEUED, RUNNING, SKIPPED, SUCCESS, UPSTREAM_FAILED, UP_FOR_RETRY
from pipectl.timing.clock import iso

CREEP_FACTOR = 2.0   # slower than this many times the recent median is flagged
CREEP_WINDOW = 10    # recent successful runs the median is taken over
CREEP_MIN_HISTORY = 3  # fewer runs than this say nothing about what is normal

# worst first: one cell stands for all instances of a mapped task
_SEVERITY = (FAILED, UPSTREAM_FAILED, RUNNING, UP_FOR_RETRY, PENDING, QUEUED, SKIPPED, SUCCESS)


def _epoch(v: Any) -> float | None:
    if v is None or v == "":
        return None
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, datetime):
        return v.timestamp()
    return datetime.fromisoformat(str(v)).timestamp()


def _get(row: Any, key: str, default: Any = None) -> Any:
    if isinstance(row, Mapping):
        return row.get(key, default)
    return getattr(row, key, default)


def duration(run: Any, now: float | None = None) -> float | None:
    """Seconds a run took, or has been running so far (with ``now``); None if it never started."""
    start = _epoch(_get(run, "start"))
    if start is None:
        return None
    end = _epoch(_get(run, "end"))
    if end is None:
        if now is None or _get(run, "state") != RUNNING:
            return None
        end = now
    return max(0.0, end - start)


def flag_creep(runs: Iterable[Any], now: float | None = None, *, factor: float = CREEP_FACTOR,
               window: int = CREEP_WINDOW, min_history: int = CREEP_MIN_HISTORY) -> set[str]:
    """``run_id``s of runs slower than ``factor`` x the median of the successful runs before them.

    ``runs``: Run records or dicts with ``run_id``, ``logical_date``, ``state``,
    ``start``, ``end`` (epoch floats or ISO strings), in any order. "Before" is by
    logical date; the median is over the last ``window`` successful runs and needs
    ``min_history`` of them. With ``now``, a run still going is flagged as soon as
    it has taken too long, before it ends.
    """
    ordered = sorted(runs, key=lambda r: _epoch(_get(r, "logical_date")) or 0.0)
    history: list[float] = []
    flagged: set[str] = set()
    for r in ordered:
        d = duration(r, now)
        if d is not None and len(history) >= min_history:
            base = median(history[-window:])
            if d > factor * base and d - base >= 1.0:  # sub-second jitter on tiny runs is not creep
                flagged.add(_get(r, "run_id"))
        if d is not None and _get(r, "state") == SUCCESS and _get(r, "end") is not None:
            history.append(d)
    return flagged


def _local(logical_date: datetime, tz: str) -> str:
    from pipectl.timing.clock import to_local
    return to_local(logical_date, tz).strftime("%Y-%m-%d %H:%M")


def worst(states: Iterable[str]) -> str | None:
    states = list(states)
    for s in _SEVERITY:
        if s in states:
            return s
    return states[0] if states else None


def grid_data(pipeline: Any, runs: list[Run], tis: list[TaskInstance], now: float | None = None) -> dict:
    """Dates x tasks: one entry per run (oldest first) with each task's state.

    Columns are the pipeline's tasks in DAG order, then any task only older runs
    had; a mapped task's instances fold into their worst state.
    """
    by_run: dict[int, dict[str, list[str]]] = {}
    extra: list[str] = []
    for ti in tis:
        by_run.setdefault(ti.run, {}).setdefault(ti.base, []).append(ti.state)
        if ti.base not in pipeline.tasks and ti.base not in extra:
            extra.append(ti.base)
    from pipectl.views.reading import dag_order
    columns = [*dag_order(pipeline, list(pipeline.tasks)), *extra]
    ordered = sorted(runs, key=lambda r: r.logical_date)
    slow = flag_creep(ordered, now)
    per_ds: dict[str, int] = {}
    for r in ordered:
        per_ds[r.ds] = per_ds.get(r.ds, 0) + 1
    rows = []
    for r in ordered:
        cells = by_run.get(r.id, {})
        rows.append({
            "run_id": r.run_id, "logical_date": iso(r.logical_date), "ds": r.ds, "run_type": r.run_type,
            "state": r.state, "slow": r.run_id in slow,
            "label": r.ds if per_ds[r.ds] == 1 else _local(r.logical_date, pipeline.timezone),
            "tasks": {name: worst(cells[name]) if name in cells else None for name in columns},
        })
    return {"pipeline": pipeline.name, "tasks": columns, "runs": rows}
