"""Time from an upstream task's end to its downstream's start.

    .venv/bin/python bench/latency.py [--tasks 10]

A chain of N tasks; each appends `start I <epoch>` when it begins and `end I
<epoch>` (`date +%s.%N`) just before it exits, after sleeping 0.1 s. Latency =
start(i+1) - end(i): process exit, reaping, the SQLite transitions and the
downstream's launch, up to its first command. Two ways of driving it:

- supervised: `pipectl run P` (a --wait process is alive and sleeps on pidfds);
  target <= 50 ms;
- unsupervised: `pipectl trigger P` starts the first task and exits; each task's
  wrapper then starts `python -m pipectl.exec.reap`, which records the result and
  starts the next task; target <= 1 s.
"""
from __future__ import annotations

import argparse
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import PIPECTL, PYTHON, env, verdict, write_toml  # noqa: E402


def project(root: Path, n: int) -> Path:
    write_toml(root)
    marks = root / "marks.txt"
    tasks = "".join(
        f"  t{i}:\n    run: 'echo \"start {i} $(date +%s.%N)\" >> {marks}; sleep 0.1; "
        f"echo \"end {i} $(date +%s.%N)\" >> {marks}'\n" for i in range(n))
    edges = " >> ".join(f"t{i}" for i in range(n))
    (root / "pipelines" / "lat.yaml").write_text(f"name: lat\ntasks:\n{tasks}edges:\n  - {edges}\n")
    return marks


def latencies(marks: Path, n: int) -> list[float]:
    start, end = {}, {}
    for line in marks.read_text().splitlines():
        kind, i, t = line.split()
        (start if kind == "start" else end)[int(i)] = float(t)
    if len(start) != n or len(end) != n:
        raise SystemExit(f"only {len(start)} of {n} tasks started")
    return [start[i + 1] - end[i] for i in range(n - 1)]


def run_state(root: Path) -> str | None:
    con = sqlite3.connect(root / ".pipectl" / "state.db")
    try:
        row = con.execute("SELECT state FROM runs ORDER BY id DESC LIMIT 1").fetchone()
        return row[0] if row else None
    finally:
        con.close()


def show(name: str, xs: list[float], target: float) -> None:
    ms = [x * 1e3 for x in xs]
    worst = max(ms)
    print(f"  {name:<38} median {statistics.median(ms):7.1f} ms  max {worst:7.1f} ms  "
          f"(n={len(ms)})  target <= {target * 1e3:.0f} ms: {verdict(worst <= target * 1e3)}")


def retry_project(root: Path, n: int) -> Path:
    write_toml(root)
    marks = root / "marks.txt"
    tasks = "".join(
        f"  t{i}:\n    run: 'echo \"start {i} $(date +%s.%N)\" >> {marks}; sleep {0.3 * i:.1f}; "
        f"test -e done{i} || {{ touch done{i}; exit 1; }}'\n    retries: 1\n    retry_delay: 2s\n" for i in range(n))
    (root / "pipelines" / "rt.yaml").write_text(
        f"schedule: '@daily'\nstart_date: 2026-01-01\ncatchup: false\ntasks:\n{tasks}")
    return marks


def retry_latencies(root: Path, marks: Path, n: int) -> list[float]:
    starts: dict[int, list[float]] = {}
    for line in marks.read_text().splitlines():
        _, i, t = line.split()
        starts.setdefault(int(i), []).append(float(t))
    con = sqlite3.connect(root / ".pipectl" / "state.db")
    try:
        ends = {int(task[1:]): end for task, end in con.execute(
            "SELECT task_instances.task, tries.end FROM tries JOIN task_instances ON task_instances.id = tries.ti "
            "WHERE tries.try_number = 1")}
    finally:
        con.close()
    if any(len(starts.get(i, ())) != 2 for i in range(n)):
        raise SystemExit(f"retries missing: {starts}")
    return [starts[i][1] - (ends[i] + 2.0) for i in range(n)]


def mark_project(root: Path, n: int) -> Path:
    write_toml(root)
    marks = root / "marks.txt"
    tasks = "".join(
        f"  gate{i}:\n    sensor: {{file: never-there}}\n    poke_interval: 1h\n"
        f"  t{i}:\n    run: 'echo \"start {i} $(date +%s.%N)\" >> {marks}'\n    needs: [gate{i}]\n" for i in range(n))
    (root / "pipelines" / "mk.yaml").write_text(
        f"schedule: '@daily'\nstart_date: 2026-01-01\ncatchup: false\ntasks:\n{tasks}")
    return marks


def wait_run(root: Path, limit: float = 120) -> str | None:
    deadline = time.time() + limit
    while run_state(root) not in ("success", "failed") and time.time() < deadline:
        time.sleep(0.05)
    return run_state(root)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=10)
    args = ap.parse_args()
    n = args.tasks
    pipectl = [PIPECTL] if PIPECTL else [PYTHON, "-m", "pipectl"]

    root = Path(tempfile.mkdtemp(prefix="pipectl-bench-lat-"))
    marks = project(root, n)
    subprocess.run([*pipectl, "--project", str(root), "run", "lat"], env=env(), check=True, capture_output=True)
    supervised = latencies(marks, n)

    root2 = Path(tempfile.mkdtemp(prefix="pipectl-bench-lat-"))
    marks2 = project(root2, n)
    subprocess.run([*pipectl, "--project", str(root2), "trigger", "lat"], env=env(), check=True, capture_output=True)
    deadline = time.time() + 60
    while run_state(root2) not in ("success", "failed") and time.time() < deadline:
        time.sleep(0.05)
    if run_state(root2) != "success":
        raise SystemExit(f"unsupervised run ended {run_state(root2)}")
    unsupervised = latencies(marks2, n)

    # retry due -> retry start: one plain tick, then nothing but pipectl's own hand-offs
    root3 = Path(tempfile.mkdtemp(prefix="pipectl-bench-lat-"))
    marks3 = retry_project(root3, n)
    subprocess.run([*pipectl, "--project", str(root3), "tick"], env=env(), check=True, capture_output=True)
    if wait_run(root3) != "success":
        raise SystemExit(f"retry run ended {run_state(root3)}")
    retries = retry_latencies(root3, marks3, n)

    # mark -> downstream start
    root4 = Path(tempfile.mkdtemp(prefix="pipectl-bench-lat-"))
    marks4 = mark_project(root4, n)
    subprocess.run([*pipectl, "--project", str(root4), "tick"], env=env(), check=True, capture_output=True)
    con = sqlite3.connect(root4 / ".pipectl" / "state.db")
    ds = con.execute("SELECT ds FROM runs").fetchone()[0]
    con.close()
    marked = []
    for i in range(n):
        subprocess.run([*pipectl, "--project", str(root4), "mark", "mk", "--date", ds, "--task", f"gate{i}", "success"],
                       env=env(), check=True, capture_output=True)
        con = sqlite3.connect(root4 / ".pipectl" / "state.db")
        marked.append(con.execute("SELECT max(ts) FROM events WHERE kind = 'mark'").fetchone()[0])
        con.close()
    if wait_run(root4) != "success":
        raise SystemExit(f"mark run ended {run_state(root4)}")
    started = {int(i): float(t) for _, i, t in (line.split() for line in marks4.read_text().splitlines())}
    marks_lat = [started[i] - marked[i] for i in range(n)]

    print(f"upstream end -> downstream start, chain of {n} tasks (0.1 s each), {n - 1} hand-overs:")
    show("supervised (pipectl run, --wait)", supervised, 0.050)
    show("unsupervised (trigger; wrapper reaper)", unsupervised, 1.0)
    print(f"due times with no supervisor (one plain tick, then only pipectl's hand-offs), {n} samples each:")
    show("retry due -> retry start (2s delay)", retries, 1.0)
    show("mark -> downstream start", marks_lat, 1.0)


if __name__ == "__main__":
    main()
