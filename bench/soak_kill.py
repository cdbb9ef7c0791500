#!/usr/bin/env python3
"""kill -9 at random instants, and the guarantees that must survive it (SPEC §8).

    .venv/bin/python bench/soak_kill.py [--kills 200] [--seed N] [--keep]

Each round starts one of `tick`, `tick --wait`, `run` (waits) or `backfill --wait`
against one project, waits a random instant, and kill -9s one process: the command
itself, or one of the task wrappers (the tasks' launchers) or wrappers' reapers alive
at that instant. Then it drains with `tick --wait` and checks:

- lost:     a recorded result changed (a try or task instance that had ended, or a
            success, reads differently later);
- doubles:  a (task instance, try) whose command started twice, a start no try row
            accounts for, or two processes of one task instance at once (flock);
- stuck:    the drain did not return, or left a run unfinished;
- orphans:  a process of the project (cwd in it) still alive after the drain;
- integrity: PRAGMA integrity_check and foreign_key_check at the end.

Every task marks its start (one file per run, task and try, created exclusively) and
holds an flock on a per-task-instance file while it runs; one task leaves a background
child behind that must die with its try. Prints ONE verdict line; exit 1 if any check
failed.
"""
from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import PYTHON, env  # noqa: E402

START = datetime(2026, 4, 6, 3, 0, tzinfo=timezone.utc)  # "now" of round 0; each round a day later
KEY = "$PIPECTL_RUN_ID.$PIPECTL_TASK"
# a start marker per (task instance, try), created exclusively: a second start is a double
PROBE = ("set -C; : > \"markers/" + KEY + ".$PIPECTL_TRY_NUMBER\" 2>/dev/null || echo \"" + KEY
         + " $PIPECTL_TRY_NUMBER\" >> doubles.txt; set +C; "
         "flock -n \"locks/" + KEY + "\" sh -c '{body}' || echo \"" + KEY + " $PIPECTL_TRY_NUMBER\" >> overlap.txt")
SPEC = """\
schedule: "0 2 * * *"
start_date: 2026-04-01
catchup: true
max_active_runs: 3
defaults:
  retries: 2
  retry_delay: 0
tasks:
  a:
    run: '{a}'
  b:
    run: '{a}'
    needs: [a]
  c:
    run: '{a}'
    needs: [a]
  d:
    run: '{d}'
    needs: [b, c]
"""
TERMINAL = ("success", "failed", "lost")


def _yaml_single(s: str) -> str:
    return s.replace("'", "''")


def make_project(root: Path, sleep: float) -> None:
    (root / "pipelines").mkdir(parents=True)
    (root / "markers").mkdir()
    (root / "locks").mkdir()
    (root / "pipectl.toml").write_text('[pipectl]\npipelines = ["pipelines/*.yaml"]\nstate_dir = ".pipectl"\n'
                                       'timezone = "UTC"\nmax_parallel = 8\n')
    a = PROBE.format(body=f"sleep {sleep:g}")
    # a background child that outlives the task's own process: it must die with the try
    d = PROBE.format(body=f"sleep 30 & sleep {sleep:g}")
    (root / "pipelines" / "d.yaml").write_text(SPEC.format(a=_yaml_single(a), d=_yaml_single(d)))


def _cmdline(pid: int) -> list[bytes]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().split(b"\0")
    except OSError:
        return []


def _running(pid: int) -> bool:
    from pipectl.exec.executor import process_start
    return process_start(pid) is not None  # None: gone, or a zombie that has finished


def _pids() -> list[int]:
    return [int(e) for e in os.listdir("/proc") if e.isdigit()]


def victims(root: Path) -> dict[str, list[int]]:
    """The project's wrappers and reapers alive now."""
    status = str(root / ".pipectl" / "status").encode()
    out: dict[str, list[int]] = {"wrapper": [], "reaper": []}
    for pid in _pids():
        argv = _cmdline(pid)
        if len(argv) > 2 and argv[1].endswith(b"wrapper.sh") and argv[2].startswith(status):
            out["wrapper"].append(pid)
        elif b"pipectl.exec.reap" in argv and str(root).encode() in argv:
            out["reaper"].append(pid)
    return out


def project_processes(root: Path) -> list[int]:
    """Processes still running whose working directory is the project (tasks, wrappers, reapers)."""
    me, found = os.getpid(), []
    for pid in _pids():
        if pid == me:
            continue
        try:
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            continue
        if (cwd == str(root) or cwd.startswith(str(root) + "/")) and _running(pid):
            found.append(pid)
    return found


def spawn(root: Path, argv: list[str]) -> subprocess.Popen:
    return subprocess.Popen([PYTHON, "-m", "pipectl", "--project", str(root), *argv], cwd=root, env=env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def snapshot(db: Path) -> dict[tuple, str]:
    if not db.exists():
        return {}
    conn = sqlite3.connect(db, timeout=60)
    try:
        rows = [(("ti", k), s) for k, s in conn.execute("SELECT id, state FROM task_instances")]
        rows += [(("try", k), s) for k, s in conn.execute("SELECT id, state FROM tries")]
    except sqlite3.OperationalError:  # killed while creating the schema: nothing recorded yet
        return {}
    finally:
        conn.close()
    return dict(rows)


def _lines(p: Path) -> list[str]:
    return p.read_text().splitlines() if p.exists() else []


def soak(kills: int = 200, seed: int = 1, sleep: float = 0.1, window: float = 0.8, workdir: str | None = None,
         log=None) -> dict:
    rng = random.Random(seed)
    base = Path(tempfile.mkdtemp(prefix="soak_kill.", dir=workdir))
    root = base / "project"
    make_project(root, sleep)
    db = root / ".pipectl" / "state.db"
    final: dict[tuple, str] = {}
    lost: list[str] = []
    stuck: list[str] = []
    orphans: list[int] = []
    killed = {"cli": 0, "wrapper": 0, "reaper": 0}

    def check_lost(where: str) -> None:
        for key, st in snapshot(db).items():
            if key in final and st != final[key]:
                lost.append(f"{where}: {key} {final[key]} -> {st}")
            if st in TERMINAL and (key[0] == "try" or st == "success"):
                final[key] = st

    i = -1
    while sum(killed.values()) < kills:
        i += 1
        # a day later each round: every tick has a scheduled run to create and start
        now = (START + timedelta(days=i)).isoformat()
        kind = rng.choice(["tick", "tick --wait", "run", "backfill --wait"])
        argv = {"tick": ["--now", now, "tick"], "tick --wait": ["--now", now, "tick", "--wait"],
                "run": ["run", "d", "--date", str(date(2027, 1, 1) + timedelta(days=i))],
                "backfill --wait": ["backfill", "d", "--start", str(date(2020, 1, 1) + timedelta(days=2 * i)),
                                    "--end", str(date(2020, 1, 2) + timedelta(days=2 * i)), "--wait"]}[kind]
        p = spawn(root, argv)
        instant = time.monotonic() + rng.uniform(0, window)
        target = rng.choice(["cli", "cli", "wrapper", "reaper"])
        if target == "reaper" and kind != "tick" and rng.random() < 0.5:
            # reapers run only while no supervisor does: kill this supervisor first
            time.sleep(max(0.0, instant - time.monotonic()))
            p.kill()
            killed["cli"] += 1
            instant = time.monotonic() + rng.uniform(0, window)
        time.sleep(max(0.0, instant - time.monotonic()))
        if target != "cli":
            # the first wrapper (or reaper) alive from that instant on, if one comes within a second
            hit = None
            while hit is None and time.monotonic() < instant + 1.0:
                found = victims(root)[target]
                if found:
                    hit = rng.choice(found)
                    try:
                        os.kill(hit, signal.SIGKILL)
                        killed[target] += 1
                    except OSError:
                        hit = None
                else:
                    time.sleep(0.005)
            if hit is None:
                target = "cli"
        if target == "cli" and p.poll() is None:
            p.kill()
            killed["cli"] += 1
        try:
            p.wait(timeout=120)
        except subprocess.TimeoutExpired:
            stuck.append(f"round {i}: {kind} did not return after its wrapper/reaper was killed")
            p.kill()
            p.wait()
        check_lost(f"round {i} after kill")
        r = subprocess.run([PYTHON, "-m", "pipectl", "--project", str(root), "--now", now, "tick", "--wait"], cwd=root,
                           env=env(), capture_output=True, text=True, timeout=300)
        if r.returncode not in (0, 1):
            stuck.append(f"round {i}: drain exited {r.returncode}: {r.stderr.strip()[-300:]}")
        check_lost(f"round {i} after drain")
        conn = sqlite3.connect(db, timeout=60)
        try:
            open_runs = conn.execute("SELECT run_id, state FROM runs WHERE state NOT IN ('success', 'failed')").fetchall()
        finally:
            conn.close()
        if open_runs:
            stuck.append(f"round {i}: unfinished after the drain: {open_runs}")
        # what the drain's reaping ended may take a moment to be gone from /proc
        deadline = time.monotonic() + 3
        left = project_processes(root)
        while left and time.monotonic() < deadline:
            time.sleep(0.05)
            left = project_processes(root)
        if left:
            orphans.extend(left)
            if log:
                log(f"round {i}: orphans {[(x, _cmdline(x)) for x in left]}")
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
        if log:
            log(f"round {i}: {kind}, killed {target}")

    # starts: every start marked once, by a recorded try; never two processes at once
    conn = sqlite3.connect(db, timeout=60)
    try:
        recorded = {f"{run_id}.{task}.{n}" for run_id, task, n in conn.execute(
            """SELECT runs.run_id, task_instances.task, tries.try_number FROM tries
               JOIN task_instances ON task_instances.id = tries.ti JOIN runs ON runs.id = task_instances.run""")}
        integrity = conn.execute("PRAGMA integrity_check").fetchone()[0]
        fk = conn.execute("PRAGMA foreign_key_check").fetchall()
        n_runs = conn.execute("SELECT count(*) FROM runs").fetchone()[0]
        n_tries = conn.execute("SELECT count(*) FROM tries").fetchone()[0]
        by_state = dict(conn.execute("SELECT state, count(*) FROM tries GROUP BY state").fetchall())
    finally:
        conn.close()
    markers = {m.name for m in (root / "markers").iterdir()}
    doubles = _lines(root / "doubles.txt") + _lines(root / "overlap.txt") + sorted(markers - recorded)
    result = {"kills": sum(killed.values()), "rounds": i + 1, "killed": killed, "lost": lost, "doubles": doubles, "stuck": stuck, "orphans": orphans,
              "integrity": "ok" if integrity == "ok" and not fk else f"{integrity} {fk}", "runs": n_runs,
              "tries": n_tries, "tries_by_state": by_state, "starts": len(markers), "dir": str(base)}
    return result


def verdict(r: dict) -> str:
    k = r["killed"]
    return (f"soak_kill: {r['kills']} kills (cli {k['cli']}, wrapper {k['wrapper']}, reaper {k['reaper']}; "
            f"{r['rounds']} rounds, {r['runs']} runs, {r['tries']} tries): {len(r['lost'])} lost, {len(r['doubles'])} doubles, "
            f"{len(r['stuck'])} stuck, {len(r['orphans'])} orphans, integrity {r['integrity']}")


def ok(r: dict) -> bool:
    return not (r["lost"] or r["doubles"] or r["stuck"] or r["orphans"]) and r["integrity"] == "ok"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kills", type=int, default=200)
    ap.add_argument("--seed", type=int, default=int(time.time()))
    ap.add_argument("--keep", action="store_true", help="keep the project directory")
    ap.add_argument("-v", "--verbose", action="store_true")
    a = ap.parse_args()
    r = soak(a.kills, a.seed, log=(lambda s: print(s, file=sys.stderr)) if a.verbose else None)
    good = ok(r)
    if not good:
        for what in ("lost", "doubles", "stuck"):
            for line in r[what][:10]:
                print(f"  {what}: {line}", file=sys.stderr)
    if good and not a.keep:
        shutil.rmtree(r["dir"], ignore_errors=True)
    else:
        print(f"  project kept in {r['dir']} (seed {a.seed})", file=sys.stderr)
    print(verdict(r))
    return 0 if good else 1


if __name__ == "__main__":
    sys.exit(main())
