"""Read models on literal records: the grid view from Run and TaskInstance values, no state file."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from harness import make_project
from pipectl.model.records import Run, TaskInstance
from pipectl.model.states import State
from pipectl.spec.config import load_config
from pipectl.spec.loader import load_pipelines
from pipectl.views.history import grid_data

SPEC = """\
schedule: "0 */12 * * *"
timezone: Europe/Paris
tasks:
  load: {run: "true", needs: [extract]}
  extract: {run: "true"}
  report: {run: "true", needs: [load]}
"""
T0 = datetime(2026, 4, 1, 22, 0, tzinfo=timezone.utc)  # 00:00 Paris on 04-02


def pipeline(tmp_path):
    root = make_project(tmp_path, {"etl": SPEC})
    return load_pipelines(load_config(root)).pipelines["etl"]


def run(pk: int, hours: int, state: str, duration: float | None) -> Run:
    ld = T0 + timedelta(hours=hours)
    start = ld.timestamp() + 60
    return Run(id=pk, run_id=f"scheduled__{ld.isoformat()}", pipeline="etl", logical_date=ld,
               ds=(ld + timedelta(hours=2)).date().isoformat(), data_interval_start=ld,
               data_interval_end=ld + timedelta(hours=12), run_type="scheduled", state=State(state), params="{}",
               priority=0, batch=None, max_active=None, created=start, start=start,
               end=None if duration is None else start + duration, seq=pk)


def ti(pk: int, run_pk: int, task: str, state: str, map_index: int | None = None) -> TaskInstance:
    base = task.split("[")[0]
    return TaskInstance(id=pk, run=run_pk, task=task, base=base, map_index=map_index, item=None, state=State(state),
                        try_number=1, budget_base=0, next_try_at=None, exit_code=None, reason=None, start=None,
                        end=None, sensor_started=None, sensor_next=None)


def test_grid_from_literal_records(tmp_path):
    p = pipeline(tmp_path)
    # newest first, as the store lists them
    runs = [run(5, 48, "running", None), run(4, 36, "success", 100.0), run(3, 24, "success", 11.0),
            run(2, 12, "success", 12.0), run(1, 0, "success", 10.0)]
    tis = [ti(1, 1, "extract", "success"), ti(2, 1, "legacy", "failed"),  # a task the spec has dropped since
           ti(3, 2, "extract", "success"), ti(4, 2, "load", "success"),
           ti(5, 4, "extract", "success"), ti(6, 4, "load[0]", "success", 0), ti(7, 4, "load[1]", "up_for_retry", 1),
           ti(8, 5, "extract", "running")]
    g = grid_data(p, runs, tis, now=runs[0].start + 5)
    assert g["pipeline"] == "etl"
    assert g["tasks"] == ["extract", "load", "report", "legacy"]  # DAG order, then what only older runs had
    assert [r["run_id"] for r in g["runs"]] == [r.run_id for r in reversed(runs)]  # oldest first
    assert g["runs"][0]["logical_date"] == "2026-04-01T22:00:00+00:00"
    # two runs on one ds are told apart by their local time; a ds's only run by its ds
    assert [r["label"] for r in g["runs"]] == [
        "2026-04-02 00:00", "2026-04-02 12:00", "2026-04-03 00:00", "2026-04-03 12:00", "2026-04-04"]
    assert [r["tasks"] for r in g["runs"]] == [
        {"extract": "success", "load": None, "report": None, "legacy": "failed"},
        {"extract": "success", "load": "success", "report": None, "legacy": None},
        {"extract": None, "load": None, "report": None, "legacy": None},
        {"extract": "success", "load": "up_for_retry", "report": None, "legacy": None},  # mapped: the worst
        {"extract": "running", "load": None, "report": None, "legacy": None},
    ]
    # 100 s against 10-12 s before it: the creeping run is flagged, nothing else
    assert [r["slow"] for r in g["runs"]] == [False, False, False, True, False]
