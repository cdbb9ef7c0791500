"""`pipectl validate` on the quickstart and on a project of N pipelines: median wall and CPU time.

    .venv/bin/python bench/validate.py [-n 15] [--pipelines 200] [--against SRC_DIR]

With ``--against``, the same runs are made with another source tree first on PYTHONPATH (e.g. a
`git archive` of an older commit's ``src``), interleaved with this one's, and both outputs must
be identical: a before/after comparison of the spec loader. CPU is the child's user+sys time,
steadier than wall time on a shared machine.
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import REPO, env, write_toml

PIPELINE = """name: p{i:03d}
description: pipeline number {i}
schedule: "{m} {h} * * *"
timezone: Europe/Paris
start_date: 2026-01-01
max_active_runs: 2
params: {{region: eu, batch: {i}}}
env: {{WAREHOUSE: local, LEVEL: "{i}"}}
defaults: {{retries: 2, retry_delay: 2m, retry_backoff: exponential, timeout: 1h,
           on_failure: "echo {{{{ pipeline }}}} {{{{ ds }}}} failed"}}
assets:
  out.p{i}: {{fresh_by: "06:00"}}
tasks:
  extract: {{run: "python scripts/extract.py --ds {{{{ ds }}}} --region {{{{ params.region }}}}", pool: warehouse}}
  clean: {{run: [python, scripts/clean.py, "{{{{ ds_nodash }}}}"]}}
  part: {{foreach: [a, b, c], run: "echo {{{{ item }}}} {{{{ params.batch }}}}"}}
  load: {{run: "python scripts/load.py {{{{ ds }}}}", produces: [out.p{i}], priority: 3, sla: 2h}}
  wait_file: {{sensor: {{file: "incoming/{{{{ ds }}}}/p{i}.csv", min_size: 1}}, soft_fail: true, timeout: 1h}}
  report: {{run: "echo done", needs: [load, wait_file], env: {{MODE: report}}}}
edges:
  - extract >> clean >> [part, load]
"""


def build(root: Path, n: int) -> None:
    write_toml(root, "\n[pools]\nwarehouse = 2\n")
    for i in range(n):
        (root / "pipelines" / f"p{i:03d}.yaml").write_text(PIPELINE.format(i=i, m=i % 60, h=i % 24))


def run(src: str | None, project: Path) -> tuple[float, float, bytes]:
    environ = env(**({"PYTHONPATH": src} if src else {}))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "pipectl", "--project", str(project), "validate"], env=environ,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode != 0:
        raise SystemExit(f"validate exited {p.returncode}: {p.stderr.decode()[-500:]}")
    return wall, after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime, p.stdout


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=15)
    ap.add_argument("--pipelines", type=int, default=200)
    ap.add_argument("--against", help="another source tree (a src directory) to compare with")
    args = ap.parse_args()
    trees = {"this": str(REPO / "src")}
    if args.against:
        trees = {"against": str(Path(args.against).resolve()), **trees}
    same = True
    with tempfile.TemporaryDirectory(prefix="bench_validate.") as tmp:
        big = Path(tmp) / "project"
        build(big, args.pipelines)
        for label, project in (("quickstart", REPO / "examples" / "quickstart"), (f"{args.pipelines} pipelines", big)):
            outputs = {t: run(src, project)[2] for t, src in trees.items()}  # warm-up
            same = same and len(set(outputs.values())) == 1
            wall: dict[str, list[float]] = {t: [] for t in trees}
            cpu: dict[str, list[float]] = {t: [] for t in trees}
            for _ in range(args.n):
                for t, src in trees.items():
                    w, c, _ = run(src, project)
                    wall[t].append(w)
                    cpu[t].append(c)
            for t in trees:
                print(f"{label:16s} {t:8s} wall median {statistics.median(wall[t]) * 1000:7.1f} ms"
                      f"  cpu median {statistics.median(cpu[t]) * 1000:7.1f} ms  (min {min(cpu[t]) * 1000:.1f}, n={args.n})")
    if args.against:
        print("outputs identical" if same else "OUTPUTS DIFFER")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
