"""Time from an upstream task's end to its downstream's start.

    .venv/bin/python bench/latency.py [--tasks 10]

A chain of N tasks; each appends `start I <epoch>` when it begins and `end I
<epoch>` (`date +%s.%N`) just before it exits, after sleeping 0.1 s. Latency =
start(i+1) - end(i): process exit, reaping, the SQLite transitions and the
downstream's launch, up to its first command. Two ways of driving it:

- supervised: `pipectl run P` (a --wait process is alive and sleeps on pidfds);
  target <= 50 ms;
- unsupervised: `pipectl trigger P` starts the first task and exits; each task's
  wrapper then starts `python -m pipectl.reap`, which records the result and
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

    print(f"upstream end -> downstream start, chain of {n} tasks (0.1 s each), {n - 1} hand-overs:")
    show("supervised (pipectl run, --wait)", supervised, 0.050)
    show("unsupervised (trigger; wrapper reaper)", unsupervised, 1.0)


if __name__ == "__main__":
    main()
