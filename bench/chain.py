"""A chain of N `true` tasks: `pipectl run P` against a plain sh loop, doit and luigi.

    .venv/bin/pip install -e '.[bench]'     # doit, luigi
    .venv/bin/python bench/chain.py [--sizes 100 1000] [--repeat 1] [--skip-luigi]

Every runner starts N processes one after the other, each waiting for the
previous one: the sh loop forks /bin/true N times (the floor), doit runs a dodo
file of N `true` actions chained by task_dep, luigi runs N tasks chained by
requires() that each `subprocess.run(["true"])` (local scheduler, 1 worker), and
pipectl runs a pipeline of N tasks `a0 >> a1 >> ...` with `pipectl run` (waits,
every transition committed to SQLite before the next task starts).
Targets: 1000-chain <= 0.5x luigi and <= 2x doit; per-task time flat from 100 to 1000.
"""
from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import tempfile
import textwrap
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import PIPECTL, PYTHON, timed, verdict, write_toml  # noqa: E402


def pipectl_project(root: Path, sizes: list[int]) -> None:
    write_toml(root)
    for n in sizes:
        tasks = "".join(f"  a{i}:\n    run: \"true\"\n" for i in range(n))
        chain = "\n".join(f"  - a{i} >> a{i + 1}" for i in range(n - 1))
        (root / "pipelines" / f"chain{n}.yaml").write_text(f"name: chain{n}\ntasks:\n{tasks}edges:\n{chain}\n")


def check_pipectl(root: Path, n: int) -> str:
    con = sqlite3.connect(root / ".pipectl" / "state.db")
    run = con.execute("SELECT id, state FROM runs WHERE pipeline = ? ORDER BY id DESC LIMIT 1", (f"chain{n}",)).fetchone()
    ok = con.execute("SELECT count(*) FROM task_instances WHERE run = ? AND state = 'success'", (run[0],)).fetchone()[0]
    tries = con.execute("""SELECT count(*) FROM tries JOIN task_instances ti ON ti.id = tries.ti
                           WHERE ti.run = ? AND tries.state = 'success' AND tries.end IS NOT NULL""", (run[0],)).fetchone()[0]
    # each task started only after its upstream's end was recorded
    order = con.execute("""SELECT count(*) FROM tries a JOIN task_instances ta ON ta.id = a.ti,
                                  tries b JOIN task_instances tb ON tb.id = b.ti
                           WHERE ta.run = ? AND tb.run = ta.run
                             AND CAST(substr(tb.task, 2) AS INTEGER) = CAST(substr(ta.task, 2) AS INTEGER) + 1
                             AND b.start < a.end""", (run[0],)).fetchone()[0]
    con.close()
    if run[1] != "success" or ok != n or tries != n or order:
        raise SystemExit(f"pipectl chain{n}: run {run[1]}, {ok} successes, {tries} tries, {order} out of order")
    return f"run success, {ok} task instances success, {tries} tries recorded"


DODO = '''
N = {n}


def task_chain():
    for i in range(N):
        yield {{"name": f"t{{i}}", "actions": ["true"], "task_dep": [f"chain:t{{i - 1}}"] if i else [],
                "verbosity": 0}}
'''

LUIGI = '''
import subprocess, sys
import luigi

N = int(sys.argv[1])
DONE = set()


class Step(luigi.Task):
    i = luigi.IntParameter()

    def requires(self):
        return [Step(i=self.i - 1)] if self.i else []

    def complete(self):
        return self.i in DONE

    def run(self):
        subprocess.run(["true"], check=True)
        DONE.add(self.i)


if __name__ == "__main__":
    sys.setrecursionlimit(10000)
    ok = luigi.build([Step(i=N - 1)], local_scheduler=True, workers=1, log_level="WARNING")
    assert ok and len(DONE) == N, len(DONE)
'''


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[100, 1000])
    ap.add_argument("--repeat", type=int, default=1, help="runs of each; the best is reported")
    ap.add_argument("--skip-luigi", action="store_true")
    ap.add_argument("--skip-doit", action="store_true")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="pipectl-bench-chain-"))
    root = work / "proj"
    pipectl_project(root, args.sizes)
    pipectl = [PIPECTL] if PIPECTL else [PYTHON, "-m", "pipectl"]

    results: dict[str, dict[int, float]] = {}
    notes: dict[int, str] = {}

    def best(argv, cwd=None):
        return min(timed(argv, cwd=cwd) for _ in range(args.repeat))

    for n in args.sizes:
        results.setdefault("sh loop (/bin/true)", {})[n] = best(
            ["sh", "-c", f"i=0; while [ $i -lt {n} ]; do /bin/true; i=$((i+1)); done"])
        if not args.skip_doit:
            d = work / f"doit{n}"
            d.mkdir()
            (d / "dodo.py").write_text(textwrap.dedent(DODO.format(n=n)))
            results.setdefault("doit", {})[n] = best([PYTHON, "-m", "doit", "-f", str(d / "dodo.py"),
                                                      "--db-file", str(d / ".doit.db"), "-n", "1"], cwd=str(d))
        if not args.skip_luigi:
            lf = work / "luigi_chain.py"
            lf.write_text(LUIGI)
            results.setdefault("luigi", {})[n] = best([PYTHON, str(lf), str(n)], cwd=str(work))
        times = []
        for _ in range(args.repeat):
            times.append(timed([*pipectl, "--project", str(root), "run", f"chain{n}"]))
            notes[n] = check_pipectl(root, n)
        results.setdefault("pipectl run", {})[n] = min(times)

    sizes = args.sizes
    print(f"chain of N `true` tasks, wall seconds (best of {args.repeat}); per-task ms in brackets")
    head = "".join(f"{'N=' + str(n):>22}" for n in sizes)
    print(f"  {'runner':<22}{head}")
    for name, by_n in results.items():
        cells = "".join(f"{by_n[n]:>12.2f}s [{by_n[n] / n * 1e3:5.2f}]" for n in sizes)
        print(f"  {name:<22}{cells}")
    for n in sizes:
        print(f"  pipectl chain{n}: {notes[n]}")
    big = max(sizes)
    p = results["pipectl run"][big]
    print("\nratios at N=%d:" % big)
    for name, by_n in results.items():
        if name != "pipectl run":
            print(f"  pipectl / {name}: {p / by_n[big]:.2f}x")
    print("\ntargets:")
    if "luigi" in results:
        r = p / results["luigi"][big]
        print(f"  N={big} <= 0.5x luigi: {r:.2f}x  {verdict(r <= 0.5)}")
    if "doit" in results:
        r = p / results["doit"][big]
        print(f"  N={big} <= 2x doit: {r:.2f}x  {verdict(r <= 2)}")
    if len(sizes) > 1:
        small = min(sizes)
        a = results["pipectl run"][small] / small
        b = p / big
        print(f"  linear: per task {a * 1e3:.2f} ms at N={small}, {b * 1e3:.2f} ms at N={big} "
              f"({b / a:.2f}x)  {verdict(b / a <= 1.5)}")


if __name__ == "__main__":
    main()
