"""No-op `pipectl tick` against a big history, side by side with `python -c "import typer"`.

    .venv/bin/python bench/tick_noop.py [-n 30] [--dir DIR]

Builds a project of 20 daily pipelines (5 tasks each) whose state holds 100k
finished task instances (20k runs, each task instance with its try), runs one
`tick --wait` so the spec cache and `next_due` are filled, then times ticks that
have nothing to do. Targets: median <= 1.3x `import typer`, peak RSS <= 60 MB.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from _common import PIPECTL, PYTHON, env, interleaved, peak_rss_kb, verdict, write_toml

PIPELINES = 20
TASKS = 5
TI_ROWS = 100_000

SPEC = """\
name: {name}
schedule: "0 2 * * *"
start_date: 2020-01-01
tasks:
{tasks}
edges:
  - {chain}
"""


def build(root: Path) -> None:
    write_toml(root)
    for i in range(PIPELINES):
        names = [f"t{j}" for j in range(TASKS)]
        tasks = "".join(f"  {n}:\n    run: \"true\"\n" for n in names)
        (root / "pipelines" / f"p{i:02d}.yaml").write_text(
            SPEC.format(name=f"p{i:02d}", tasks=tasks, chain=" >> ".join(names)))
    from pipectl.spec.config import load_config
    from pipectl.engine.tick import open_store
    config = load_config(root)
    store = open_store(config)
    runs_per_pipeline = TI_ROWS // (PIPELINES * TASKS)
    now = datetime.now(timezone.utc)
    last_fire = now.replace(hour=2, minute=0, second=0, microsecond=0)
    if last_fire > now:
        last_fire -= timedelta(days=1)
    t0 = time.time()
    with store.tx():
        for i in range(PIPELINES):
            name = f"p{i:02d}"
            for d in range(1, runs_per_pipeline + 1):  # up to the latest closed interval: nothing is due
                ld = last_fire - timedelta(days=d)
                ldi = ld.isoformat()
                end = (ld + timedelta(days=1)).isoformat()
                created = (ld + timedelta(days=1)).timestamp()
                pk = store.insert_run(run_id=f"{name}__scheduled__{ldi}", pipeline=name, logical_date=ldi, ds=ld.date().isoformat(),
                                      interval=(ldi, end), run_type="scheduled", params={}, spec={}, now=created)
                store.set_run_state(pk, "running", created)
                store.insert_task_instances(pk, [(f"t{j}", f"t{j}", None, None, "success") for j in range(TASKS)])
                for ti in store.task_instances(pk):
                    tp = store.insert_try(ti.id, 1, launcher_pid=1, launcher_start=None, boot_id="bench",
                                          status_path="", log_path="", timeout=None, pool=None, now=created)
                    store.finish_try(tp, "success", now=created + 1, exit_code=0, reason=None)
                store.set_run_state(pk, "success", created + TASKS)
    store.close()
    print(f"history: {PIPELINES * runs_per_pipeline} runs, {TI_ROWS} task instances, {TI_ROWS} tries "
          f"inserted in {time.time() - t0:.1f}s")
    # the first tick fills the spec cache and next_due
    p = subprocess.run([PYTHON, "-m", "pipectl", "--project", str(root), "tick", "--wait"], env=env(),
                       capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"setup tick failed: {p.stdout}{p.stderr}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=30, help="timed runs of each command")
    ap.add_argument("--dir", help="project directory (default: a fresh temporary one)")
    args = ap.parse_args()
    root = Path(args.dir or tempfile.mkdtemp(prefix="pipectl-bench-tick-"))
    if not (root / ".pipectl" / "state.db").exists() and not (root / "pipectl.toml").exists():
        build(root)
    proj = ["--project", str(root)]
    check = subprocess.run([PYTHON, "-m", "pipectl", *proj, "--json", "tick"], env=env(), capture_output=True, text=True)
    out = json.loads(check.stdout)
    if not out.get("fast") or out["launched"] or out["created"]:
        raise SystemExit(f"the tick is not a no-op: {check.stdout}{check.stderr}")
    db = root / ".pipectl" / "state.db"
    print(f"project: {root} ({PIPELINES} pipelines, state file {db.stat().st_size / 1e6:.1f} MB); tick is a no-op (fast path)")

    commands = {
        "python -c pass": [PYTHON, "-c", "pass"],
        'python -c "import typer"': [PYTHON, "-c", "import typer"],
        "pipectl tick": [PIPECTL or PYTHON, *([] if PIPECTL else ["-m", "pipectl"]), *proj, "tick"],
        "python -m pipectl tick": [PYTHON, "-m", "pipectl", *proj, "tick"],
    }
    times = interleaved(commands, args.n)
    base = statistics.median(times['python -c "import typer"'])
    print(f"\nwall time, {args.n} runs each (interleaved), milliseconds:")
    print(f"  {'command':<28} {'median':>8} {'min':>8} {'max':>8} {'x typer':>8}")
    for k, xs in times.items():
        m = statistics.median(xs)
        print(f"  {k:<28} {m * 1e3:8.1f} {min(xs) * 1e3:8.1f} {max(xs) * 1e3:8.1f} {m / base:8.2f}")
    ratio = statistics.median(times["pipectl tick"]) / base
    ratio_m = statistics.median(times["python -m pipectl tick"]) / base
    print(f"\npeak RSS (GNU time %M), KiB:")
    rss = {}
    for k in ('python -c "import typer"', "pipectl tick"):
        rss[k] = max(peak_rss_kb(commands[k]) for _ in range(3))
        print(f"  {k:<28} {rss[k]:8d}  ({rss[k] / 1024:.1f} MiB)")
    tick_mb = rss["pipectl tick"] / 1024
    print("\ntargets:")
    print(f"  median pipectl tick <= 1.3x import typer: {ratio:.2f}x (python -m: {ratio_m:.2f}x)  {verdict(ratio <= 1.3)}")
    print(f"  peak RSS of a tick <= 60 MB: {tick_mb:.1f} MiB  {verdict(tick_mb <= 60)}")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    main()
