"""Concurrency limits: max_parallel across the project, pools, and priority when slots are scarce."""
from __future__ import annotations

from harness import make_project, ok, q

# Each task appends "start NAME" and "end NAME" lines: the log shows how many ran at once.
TRACE = 'echo "start {{ task }}" >> trace.log; sleep 0.3; echo "end {{ task }}" >> trace.log'


def peak(root) -> int:
    now = most = 0
    for line in (root / "trace.log").read_text().splitlines():
        now += 1 if line.startswith("start") else -1
        most = max(most, now)
    return most


def starts(root) -> list[str]:
    return [line.split()[1] for line in (root / "trace.log").read_text().splitlines() if line.startswith("start")]


def test_max_parallel_bounds_task_processes_across_pipelines(tmp_path):
    spec = "tasks:\n" + "".join(f"  t{i}: {{run: '{TRACE}'}}\n" for i in range(3))
    root = make_project(tmp_path, {"a": spec, "b": spec}, "max_parallel = 2\n")
    ok(root, "trigger", "a", "--date", "2026-04-01")
    ok(root, "trigger", "b", "--date", "2026-04-01")
    ok(root, "tick", "--wait")
    assert len(starts(root)) == 6
    assert peak(root) == 2
    states = {r["state"] for r in q(root, "SELECT state FROM task_instances")}
    assert states == {"success"}


def test_a_pool_bounds_its_tasks_while_others_run(tmp_path):
    spec = ("tasks:\n" + "".join(f"  w{i}: {{run: '{TRACE}', pool: warehouse}}\n" for i in range(3))
            + f"  free: {{run: '{TRACE}'}}\n")
    root = make_project(tmp_path, {"p": spec}, "\n[pools]\nwarehouse = 1\n")
    ok(root, "trigger", "p", "--date", "2026-04-01", "--wait")
    lines = (root / "trace.log").read_text().splitlines()
    running: set[str] = set()
    for line in lines:
        kind, name = line.split()
        if kind == "start":
            running.add(name)
            assert len([n for n in running if n.startswith("w")]) <= 1, lines
        else:
            running.discard(name)
    # the pool-free task did not wait for the pool: it ran beside the first warehouse task
    assert lines.index("start free") < lines.index("end w0") or lines.index("start free") < lines.index("end w1")


def test_higher_priority_starts_first_when_slots_are_scarce(tmp_path):
    spec = ("tasks:\n"
            f"  low: {{run: '{TRACE}', priority: 1}}\n"
            f"  high: {{run: '{TRACE}', priority: 10}}\n"
            f"  mid: {{run: '{TRACE}', priority: 5}}\n")
    root = make_project(tmp_path, {"p": spec}, "max_parallel = 1\n")
    ok(root, "trigger", "p", "--date", "2026-04-01", "--wait")
    assert starts(root) == ["high", "mid", "low"]
    assert peak(root) == 1
