#!/usr/bin/env python3
"""tick_budget under load: many pipelines due at once, and a long catch-up.

    .venv/bin/python bench/soak_due.py [--pipelines 200] [--tasks 5] [--budget 20] [--days 7] [--catchup-budget 10]

1. Due at once: N pipelines of T independent `true` tasks, all due on the first
   tick. Plain `pipectl tick`s are started every --every seconds, as cron does
   (no --wait, no supervisor), until every run has finished. Each tick's wall
   time (process start to exit) must stay within tick_budget.
2. Catch-up: one minutely pipeline with `catchup: true` and a start_date --days
   ago (10,080 intervals for 7 days). Ticks continue the catch-up in bounded
   batches; every interval must get exactly one run, every tick within budget.

The clock is real time shifted to a fixed date (`--now`, advancing with real
time), so the logical dates are known in advance. Prints ONE verdict line.
"""
from __future__ import annotations

import argparse
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import PYTHON, env, write_toml  # noqa: E402

UTC = timezone.utc
BASE = datetime(2026, 6, 1, 12, 0, 30, tzinfo=UTC)  # the fake "now" of the first tick


class Ticker:
    """Starts plain ticks with a clock that runs at real speed from BASE."""

    def __init__(self, root: Path, base: datetime = BASE):
        self.root = root
        self.offset = base.timestamp() - time.time()
        self.durations: list[float] = []
        self.busy = 0

    def now(self) -> datetime:
        return datetime.fromtimestamp(time.time() + self.offset, UTC)

    def tick(self) -> datetime:
        """One plain tick; returns the "now" it was given."""
        now = self.now()
        argv = [PYTHON, "-m", "pipectl", "--project", str(self.root), "--now", now.isoformat(), "tick"]
        t0 = time.perf_counter()
        r = subprocess.run(argv, env=env(), capture_output=True, text=True)
        self.durations.append(time.perf_counter() - t0)
        if r.returncode != 0:
            raise SystemExit(f"tick exited {r.returncode}: {r.stderr.strip()[-500:]}")
        if "another tick is running" in r.stderr:
            self.busy += 1
        return now


def query(root: Path, sql: str, args=()) -> list[tuple]:
    con = sqlite3.connect(root / ".pipectl" / "state.db", timeout=30)
    try:
        return con.execute(sql, args).fetchall()
    finally:
        con.close()


def due_at_once(pipelines: int, tasks: int, budget: float, every: float, limit: float,
                max_parallel: int = 8) -> dict:
    """Scenario 1; returns the figures the verdict line reports."""
    root = Path(tempfile.mkdtemp(prefix="pipectl-soak-due-"))
    try:
        write_toml(root, f'tick_budget = "{budget:g}s"\nmax_parallel = {max_parallel}\n')
        body = "".join(f"  t{j}: {{run: \"true\"}}\n" for j in range(tasks))
        for i in range(pipelines):
            (root / "pipelines" / f"p{i:03d}.yaml").write_text(
                f"schedule: \"@daily\"\nstart_date: 2026-05-01\ncatchup: false\ntasks:\n{body}")
        ticker = Ticker(root)
        t0 = time.time()
        while True:
            started = time.time()
            ticker.tick()
            rows = query(root, "SELECT state, count(*) FROM runs GROUP BY state")
            states = dict(rows)
            if rows and set(states) <= {"success", "failed"}:
                break
            if time.time() - t0 > limit:
                break
            time.sleep(max(0.0, every - (time.time() - started)))
        runs = query(root, "SELECT pipeline, count(*) FROM runs GROUP BY pipeline")
        per = dict(runs)
        tries = query(root, "SELECT count(*), count(DISTINCT ti || '.' || try_number) FROM tries")[0]
        ok_tis = query(root, "SELECT count(*) FROM task_instances WHERE state = 'success'")[0][0]
        return {
            "pipelines": pipelines, "tasks": tasks, "budget": budget, "ticks": len(ticker.durations),
            "max_tick": max(ticker.durations), "durations": ticker.durations, "busy": ticker.busy,
            "missing": sum(1 for i in range(pipelines) if per.get(f"p{i:03d}", 0) == 0),
            "duplicate_runs": sum(n - 1 for n in per.values() if n > 1),
            "tries": tries[0], "duplicate_tries": tries[0] - tries[1], "success": ok_tis,
            "done": ok_tis == pipelines * tasks, "elapsed": time.time() - t0,
        }
    finally:
        shutil.rmtree(root, ignore_errors=True)


def catch_up(days: float, budget: float, every: float, limit: float) -> dict:
    """Scenario 2: a minutely pipeline `days` behind; ticks until every interval has its run."""
    root = Path(tempfile.mkdtemp(prefix="pipectl-soak-catchup-"))
    try:
        write_toml(root, f'tick_budget = "{budget:g}s"\n')
        start = BASE.replace(second=0) - timedelta(days=days)
        (root / "pipelines" / "minutely.yaml").write_text(
            f"schedule: \"* * * * *\"\nstart_date: \"{start.isoformat()}\"\ncatchup: true\n"
            "tasks:\n  t: {run: \"true\"}\n")
        ticker = Ticker(root)
        t0 = time.time()
        per_tick: list[int] = []
        expected: set[str] = set()
        while True:
            started = time.time()
            before = query(root, "SELECT count(*) FROM runs")[0][0] if (root / ".pipectl" / "state.db").exists() else 0
            now = ticker.tick()
            after = query(root, "SELECT count(*) FROM runs")[0][0]
            per_tick.append(after - before)
            # every interval [m, m+1min) with m+1min <= the tick's now is due
            last_end = now.replace(second=0, microsecond=0)
            n = int((last_end - start).total_seconds() // 60)
            expected = {(start + timedelta(minutes=k)).isoformat() for k in range(n)}
            have = {r[0] for r in query(root, "SELECT logical_date FROM runs")}
            if expected <= have or time.time() - t0 > limit:
                break
            time.sleep(max(0.0, every - (time.time() - started)))
        rows = query(root, "SELECT logical_date, count(*) FROM runs GROUP BY logical_date")
        have = {r[0] for r in rows}
        return {
            "days": days, "budget": budget, "ticks": len(ticker.durations), "max_tick": max(ticker.durations),
            "durations": ticker.durations, "per_tick": per_tick, "runs": len(have),
            "expected": len(expected), "missing": len(expected - have),
            "duplicate_runs": sum(n - 1 for _, n in rows if n > 1),
        }
    finally:
        shutil.rmtree(root, ignore_errors=True)


def verdict(a: dict, b: dict | None) -> str:
    ok = a["max_tick"] <= a["budget"] and a["missing"] == 0 and a["duplicate_runs"] == 0 \
        and a["duplicate_tries"] == 0 and a["done"]
    within = "every tick within budget" if a["max_tick"] <= a["budget"] else "TICK OVER BUDGET"
    line = (f"soak_due: {a['pipelines']} pipelines x {a['tasks']} tasks, {a['tries']} tries over {a['ticks']} ticks: "
            f"{within} (max {a['max_tick']:.1f}s / {a['budget']:g}s), {a['missing']} missing, "
            f"{a['duplicate_runs']} duplicate runs, {a['duplicate_tries']} duplicate tries, "
            f"{a['success']}/{a['pipelines'] * a['tasks']} succeeded")
    if b is not None:
        ok = ok and b["max_tick"] <= b["budget"] and b["missing"] == 0 and b["duplicate_runs"] == 0
        line += (f"; catch-up {b['runs']} runs over {b['ticks']} ticks (largest batch {max(b['per_tick'])}), "
                 f"{b['missing']} missing, {b['duplicate_runs']} duplicate, max tick {b['max_tick']:.1f}s / "
                 f"{b['budget']:g}s")
    return f"{line}: {'OK' if ok else 'FAILED'}"


def verdict_catch_up(b: dict) -> str:
    ok = b["max_tick"] <= b["budget"] and b["missing"] == 0 and b["duplicate_runs"] == 0
    return (f"soak_due: catch-up {b['runs']} runs over {b['ticks']} ticks (largest batch {max(b['per_tick'])}), "
            f"{b['missing']} missing, {b['duplicate_runs']} duplicate, max tick {b['max_tick']:.1f}s / "
            f"{b['budget']:g}s: {'OK' if ok else 'FAILED'}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pipelines", type=int, default=200)
    ap.add_argument("--tasks", type=int, default=5)
    ap.add_argument("--budget", type=float, default=20.0)
    ap.add_argument("--max-parallel", type=int, default=8)
    ap.add_argument("--every", type=float, default=60.0, help="seconds between tick starts (cron: 60)")
    ap.add_argument("--days", type=float, default=7.0, help="catch-up length; 0 skips the catch-up")
    ap.add_argument("--catchup-budget", type=float, default=10.0)
    ap.add_argument("--limit", type=float, default=1800.0, help="give up after this many seconds per scenario")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()
    a = due_at_once(args.pipelines, args.tasks, args.budget, args.every, args.limit, args.max_parallel) \
        if args.pipelines else None
    b = catch_up(args.days, args.catchup_budget, args.every, args.limit) if args.days else None
    if args.verbose:
        if a:
            print("due-at-once ticks:", " ".join(f"{d:.1f}" for d in a["durations"]), file=sys.stderr)
        if b:
            print("catch-up ticks:", " ".join(f"{d:.1f}" for d in b["durations"]), file=sys.stderr)
            print("catch-up runs per tick:", b["per_tick"], file=sys.stderr)
    line = verdict(a, b) if a else verdict_catch_up(b)
    print(line)
    return 0 if line.endswith("OK") else 1


if __name__ == "__main__":
    sys.exit(main())
