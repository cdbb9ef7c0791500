#!/usr/bin/env python3
"""Backfill overhead: 365 days x a 5-task DAG of `true` at --max-active-runs 16,
against the same 1825 commands run by `xargs -P8` (pipectl's max_parallel is 8 too).

    python bench/backfill.py [--days N]

Prints both wall times and their ratio. The difference is pipectl's price for a
recorded, resumable, dependency-ordered run: a state transition per try, a
wrapper and a log file per try, and the DAG's ordering (a task waits for its
upstream), which xargs ignores.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

SPEC = """\
schedule: "0 2 * * *"
tasks:
  extract: {run: "true"}
  clean_a: {run: "true", needs: [extract]}
  clean_b: {run: "true", needs: [extract]}
  join: {run: "true", needs: [clean_a, clean_b]}
  publish: {run: "true", needs: [join]}
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=int, default=365)
    ap.add_argument("--max-active-runs", type=int, default=16)
    ap.add_argument("--parallel", type=int, default=8)
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="pipectl-bench-"))
    try:
        (tmp / "pipelines").mkdir()
        (tmp / "pipectl.toml").write_text('[pipectl]\npipelines = ["pipelines/*.yaml"]\nstate_dir = ".pipectl"\n'
                                          f'timezone = "UTC"\nmax_parallel = {args.parallel}\n')
        (tmp / "pipelines" / "bench.yaml").write_text(SPEC)
        start = date(2025, 1, 1)
        end = start + timedelta(days=args.days - 1)
        env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
        env.pop("PIPECTL_NOW", None)
        cmd = [sys.executable, "-m", "pipectl", "--project", str(tmp), "backfill", "bench",
               "--start", start.isoformat(), "--end", end.isoformat(),
               "--max-active-runs", str(args.max_active_runs), "--wait", "--yes"]
        t0 = time.perf_counter()
        r = subprocess.run(cmd, env=env, capture_output=True, text=True)
        t_pipectl = time.perf_counter() - t0
        if r.returncode != 0:
            print(r.stdout, r.stderr, file=sys.stderr)
            return 1
        tries = args.days * 5
        done = r.stdout.strip().splitlines()[-1]

        t0 = time.perf_counter()
        subprocess.run(["xargs", f"-P{args.parallel}", "-n1", "sh", "-c", "true"],
                       input="x\n" * tries, text=True, check=True)
        t_xargs = time.perf_counter() - t0

        print(f"pipectl backfill: {args.days} days x 5 tasks = {tries} tries, --max-active-runs "
              f"{args.max_active_runs}, max_parallel {args.parallel}: {t_pipectl:.2f} s ({done})")
        print(f"xargs -P{args.parallel}: {tries} x sh -c true: {t_xargs:.2f} s")
        print(f"ratio: {t_pipectl / t_xargs:.1f}x  ({1000 * (t_pipectl - t_xargs) / tries:.2f} ms overhead per try)")
        return 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
