#!/usr/bin/env python3
"""Mixed-concurrency soak: rounds of ticks racing `backfill --wait`, `retry`, `mark`, `pause`,
`unpause`, `prune` and `run --wait`, all real CLI processes in parallel on one project; then
it drains the work and audits every process against the state file.

    python bench/soak_mixed.py [--rounds 300] [--seed 1] [--keep]

Every task is `tasks/work.sh`: it takes a non-blocking flock named after its task instance
(a second live process of one task instance fails to get it and says so), appends a start
and an end line with its pid, run id, task and try number to soak/marks, sleeps 0-70 ms and
fails one time in five (retries: 1). The audit, after the drain:

- doubles: processes beyond the try rows (plus the tries prune reported deleting) of their
  (run, task, try), and flock collisions;
- lost: tries recorded `lost`, tries whose recorded exit code differs from what their process
  exited with, and try rows with no process at all;
- orphan processes: task processes still alive after the drain;
- stuck: runs still queued/running, tries still live, commands that hung;
- unreported deletions: processes whose try row is gone without prune reporting it, runs
  without their events, tries whose log file is gone;
- integrity: PRAGMA integrity_check and foreign_key_check.

Prints ONE verdict line.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from datetime import date, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

WORK = """\
#!/bin/sh
# one line per process start and end; a second live process of this task instance
# cannot take the lock and records a collision
k="$PIPECTL_PIPELINE $PIPECTL_RUN_ID $PIPECTL_TASK $PIPECTL_TRY_NUMBER"
exec 9>>"soak/locks/$PIPECTL_PIPELINE.$PIPECTL_RUN_ID.$PIPECTL_TASK"
flock -n 9 || echo "C $$ $k" >> soak/marks
echo "S $$ $k" >> soak/marks
sleep 0.0$(( $$ % 8 ))
rc=0
[ $(( $$ % 5 )) -eq 0 ] && rc=1
echo "E $$ $k $rc" >> soak/marks
exit $rc
"""


def spec(start: date, schedule: str) -> str:
    return f"""\
schedule: "{schedule}"
start_date: {start.isoformat()}
catchup: true
max_active_runs: 3
tasks:
  a:
    run: sh tasks/work.sh
    retries: 1
    retry_delay: 0
  b:
    run: sh tasks/work.sh
    needs: [a]
    retries: 1
    retry_delay: 0
  c:
    run: sh tasks/work.sh
    needs: [a]
"""


def build(root: Path, today: date) -> None:
    (root / "pipelines").mkdir(parents=True)
    (root / "tasks").mkdir()
    (root / "soak" / "locks").mkdir(parents=True)
    (root / "pipectl.toml").write_text('[pipectl]\npipelines = ["pipelines/*.yaml"]\nstate_dir = ".pipectl"\n'
                                       'timezone = "UTC"\nmax_parallel = 8\n')
    (root / "pipelines" / "mix.yaml").write_text(spec(today - timedelta(days=4), "0 2 * * *"))
    (root / "pipelines" / "side.yaml").write_text(spec(today - timedelta(days=2), "30 3 * * *"))
    (root / "tasks" / "work.sh").write_text(WORK)


class Soak:
    def __init__(self, root: Path, rng: random.Random, today: date):
        self.root = root
        self.rng = rng
        self.today = today
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("PIPECTL_")}
        self.env["USER"] = "soak"
        self.tracebacks = 0
        self.hung = 0
        self.commands = 0
        self.pruned: list[dict] = []  # prune --json outputs
        self.focus = 0

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "pipectl", "--project", str(self.root), *args]

    def start(self, *args: str) -> tuple[subprocess.Popen, tuple]:
        self.commands += 1
        return subprocess.Popen(self.argv(*args), env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, stdin=subprocess.DEVNULL), args

    def finish(self, proc: subprocess.Popen, args: tuple, timeout: float = 120) -> None:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.hung += 1
            proc.kill()
            out, err = proc.communicate()
        if "Traceback" in err or "internal error" in err:
            self.tracebacks += 1
            print(f"traceback from {' '.join(args)}:\n{err}", file=sys.stderr)
        if args[:2] == ("--json", "prune"):
            if proc.returncode == 0:
                self.pruned.append(json.loads(out))
            else:
                print(f"prune exited {proc.returncode}: {err.strip()}", file=sys.stderr)

    def day(self) -> str:
        # most commands of a round aim at one date: that is where they race each other
        n = self.focus if self.rng.random() < 0.7 else self.rng.randint(0, 5)
        return (self.today - timedelta(days=n)).isoformat()

    def op(self) -> tuple[str, ...]:
        r = self.rng
        pipe = r.choice(["mix", "mix", "side"])
        kind = r.choice(["backfill", "backfill", "retry", "retry", "mark", "pause", "unpause", "prune", "run"])
        if kind == "backfill":
            d1 = self.day()
            d2 = min(d1, self.day())
            return ("backfill", pipe, "--start", d2, "--end", d1, "--reprocess", r.choice(["failed", "all"]),
                    "--yes", "--max-active-runs", "2", *(["--wait"] if r.random() < 0.6 else []))
        if kind == "retry":
            extra = r.choice([[], ["--task", "a", "--downstream"], ["--task", "b"]])
            return ("retry", pipe, "--date", self.day(), *extra)
        if kind == "mark":
            return ("mark", pipe, r.choice(["success", "failed", "skipped"]), "--date", self.day(),
                    "--task", r.choice("abc"))
        if kind in ("pause", "unpause"):
            return (kind, pipe)
        if kind == "prune":
            return ("--json", "prune", "--older-than", r.choice(["1s", "3s", "10s"]))
        return ("run", pipe, "--date", f"{self.day()}T{r.randint(4, 23):02d}:00:00", "--wait")

    def round(self) -> None:
        self.focus = self.rng.randint(0, 5)
        procs = [self.start("tick") for _ in range(2)]
        procs += [self.start(*self.op()) for _ in range(self.rng.randint(2, 4))]
        if self.rng.random() < 0.5:
            procs.append(self.start("tick", "--wait"))
        for p, args in procs:
            self.finish(p, args)

    def drain(self) -> None:
        for name in ("mix", "side"):
            self.finish(*self.start("unpause", name))
        for _ in range(30):
            self.finish(*self.start("tick", "--wait"), timeout=300)
            if not self.active():
                break

    def db(self) -> sqlite3.Connection:
        conn = sqlite3.connect(str(self.root / ".pipectl" / "state.db"), timeout=30)
        conn.row_factory = sqlite3.Row
        return conn

    def active(self) -> int:
        conn = self.db()
        try:
            return (conn.execute("SELECT count(*) FROM runs WHERE state IN ('queued', 'running')").fetchone()[0]
                    + conn.execute("SELECT count(*) FROM tries WHERE state IN ('starting', 'running')").fetchone()[0])
        finally:
            conn.close()


def _runs_in(pid: int, root: Path) -> bool:
    """A live process working in the project (a reused pid elsewhere is not ours)."""
    try:
        return os.readlink(f"/proc/{pid}/cwd").startswith(str(root))
    except OSError:
        return False


def audit(root: Path, pruned_reports: list[dict], hung: int = 0) -> dict:
    """Match every task process (soak/marks) to a try row or to a try prune reported deleting;
    see the module docstring for what each count means."""
    starts: dict[tuple, list[int]] = defaultdict(list)
    ends: dict[tuple, list[int]] = defaultdict(list)
    collisions = 0
    pids = set()
    for line in (root / "soak" / "marks").read_text().splitlines() if (root / "soak" / "marks").exists() else []:
        f = line.split()
        if f[0] == "C":
            collisions += 1
            continue
        key = (f[2], f[3], f[4], int(f[5]))
        pids.add(int(f[1]))
        if f[0] == "S":
            starts[key].append(int(f[1]))
        else:
            ends[key].append(int(f[6]))
    time.sleep(0.5)
    orphans = sum(1 for pid in pids if _runs_in(pid, root))
    pruned: Counter = Counter()
    pruned_runs = set()
    vague = set()  # runs a prune reported without its tries (an older pipectl): their processes all count as accounted
    for out in pruned_reports:
        if "tries" not in out:
            vague.update(out.get("runs", ()))
        for pipeline, runs in out.get("tries", {}).items():  # pipeline -> run id -> [[task, try], ...]
            for run_id, ts in runs.items():
                pruned_runs.add((pipeline, run_id))
                for task, n in ts:
                    pruned[(pipeline, run_id, task, n)] += 1
    conn = sqlite3.connect(str(root / ".pipectl" / "state.db"), timeout=30)
    conn.row_factory = sqlite3.Row
    try:
        rows = conn.execute("""SELECT runs.pipeline, runs.run_id, ti.task, tries.try_number, tries.state,
                                      tries.exit_code, tries.log_path
                               FROM tries JOIN task_instances ti ON ti.id = tries.ti JOIN runs ON runs.id = ti.run"""
                            ).fetchall()
        recorded: Counter = Counter()
        lost = 0
        missing_logs = 0
        for r in rows:
            key = (r["pipeline"], r["run_id"], r["task"], r["try_number"])
            recorded[key] += 1
            if r["state"] == "lost":
                lost += 1
            elif r["state"] in ("success", "failed") and ends.get(key) and ends[key][-1] != r["exit_code"]:
                lost += 1  # the process's result is not the one recorded
            if not os.path.exists(r["log_path"]):
                missing_logs += 1
                print(f"missing log: {r['log_path']} ({r['state']})", file=sys.stderr)
        doubles = collisions
        unreported = missing_logs
        for key in set(starts) | set(recorded):
            procs = len(starts.get(key, ()))
            expected = recorded[key] + pruned[key]
            if key[1] in vague:
                expected = max(expected, procs)
            if procs > expected:
                if recorded[key] == 0 and pruned[key] == 0:
                    unreported += procs  # its try row vanished and no prune said so
                    print(f"no try row, no prune report: {key}", file=sys.stderr)
                else:
                    doubles += procs - expected
            elif procs < expected and recorded[key]:
                lost += expected - procs  # a try row no process belongs to
        bare = conn.execute("""SELECT run_id FROM runs WHERE NOT EXISTS
                               (SELECT 1 FROM events WHERE events.run = runs.id)""").fetchall()
        for r in bare:
            print(f"run without events: {r[0]}", file=sys.stderr)
        unreported += len(bare)
        stuck = hung + conn.execute("SELECT count(*) FROM runs WHERE state IN ('queued', 'running')").fetchone()[0]
        stuck += conn.execute("SELECT count(*) FROM tries WHERE state IN ('starting', 'running')").fetchone()[0]
        integrity = conn.execute("PRAGMA integrity_check").fetchone()[0]
        fk = conn.execute("PRAGMA foreign_key_check").fetchall()
        tries_now = len(rows)
    finally:
        conn.close()
    return {"tries": sum(len(v) for v in starts.values()), "rows": tries_now, "doubles": doubles, "lost": lost,
            "orphans": orphans, "stuck": stuck, "unreported": unreported,
            "integrity": "ok" if integrity == "ok" and not fk else f"{integrity}; {len(fk)} fk problems",
            "pruned_runs": len(pruned_runs)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=300)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--keep", action="store_true", help="keep the project directory and print its path")
    a = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="soak_mixed."))
    root = tmp / "proj"
    today = date.today()
    build(root, today)
    s = Soak(root, random.Random(a.seed), today)
    t0 = time.time()
    try:
        for _ in range(a.rounds):
            s.round()
        s.drain()
        r = audit(root, s.pruned, s.hung)
    finally:
        if a.keep:
            print(f"project kept at {root}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    ok = not (r["doubles"] or r["lost"] or r["orphans"] or r["stuck"] or r["unreported"] or s.tracebacks) \
        and r["integrity"] == "ok"
    print(f"soak_mixed: {a.rounds} rounds, {s.commands} commands, {r['tries']} tries ({r['pruned_runs']} runs pruned), "
          f"{time.time() - t0:.0f}s: {r['doubles']} doubles, {r['lost']} lost, {r['orphans']} orphan processes, "
          f"{r['stuck']} stuck, {r['unreported']} unreported deletions, {s.tracebacks} tracebacks, "
          f"integrity {r['integrity']}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
