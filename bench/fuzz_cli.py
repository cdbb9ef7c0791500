"""CLI fuzzing: hostile argument vectors for every command get one clear line, never a traceback.

    .venv/bin/python bench/fuzz_cli.py [--invocations 2000] [--seed 1] [--workers 2]

Builds a scratch project (a few small pipelines, a state file with finished runs) and runs the
real CLI (`python -m pipectl ...`) with random argv: every command, its options with valid and
hostile values (huge and negative counts, 2**63, 1e20, extreme and malformed dates and --now,
unicode, control characters, 10,000-character arguments), unknown options, missing arguments,
a missing project, a project under ~nouser, an empty directory.

Checked for each invocation: no traceback and no "internal error" on stderr, an exit code in
{0, 1, 2}, no hang (per-invocation timeout), and every failure (exit != 0) says exactly one
line on stderr. Prints ONE verdict line; exits 1 on any problem.

Never runs `uninstall`, `install` without --print, `top`, `status --watch` or `logs --follow`
(they change the machine's crontab or run until interrupted).
"""
from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

TOML = """[pipectl]
pipelines = ["pipelines/*.yaml"]
state_dir = ".pipectl"
timezone = "UTC"

[pools]
warehouse = 2
"""
SPECS = {
    "etl": """
schedule: "0 2 * * *"
start_date: 2026-04-01
params: {region: all}
tasks:
  extract: {run: "echo {{ ds }}", produces: [raw.orders]}
  load: {run: "true", needs: [extract], pool: warehouse}
""",
    "hourly": """
schedule: {every: 1h}
tasks:
  a: {run: "true"}
  b: {run: "exit 3", needs: [a], retries: 1, retry_delay: 1s}
""",
    "waits": """
tasks:
  s:
    sensor: {file: "/nonexistent/{{ ds }}"}
    poke_interval: 1s
    timeout: 1s
""",
}

HUGE = ["0", "-1", "1", "5", "10000", "10001", "1000000", str(2**31), str(2**63 - 1), str(2**63), str(2**64),
        "-" + str(2**63), "1e20", "1e400", "nan", "inf", "0x10", "1_000", "", " ", "9" * 5000, "٣", "1.5"]
DATES = ["2026-04-01", "2026-04-02", "2026-04-01T02:00:00+00:00", "2026-04-01T02:00:00", "2026-04-01T02:00:00Z",
         "0001-01-01", "9999-12-31", "9999-12-31T23:59:59-12:00", "1969-12-31", "1970-01-01", "9000-12-31",
         "9001-01-01", "2026-02-30", "2026-13-01", "yesterday", "", " ", "1" + "0" * 30, "2026-04-01T25:00",
         "2026-04-01T00:00:00+25:00", "２０２６-04-01", "2026-04-01\x7f", "-2026-04-01", "+002026-04-01", "20260401"]
WORDS = ["etl", "hourly", "waits", "nope", "", " ", "ETL", "etl.extract", "a" * 10000, "é", "日本", "\u202e", "\x01",
         "-", "--", "-x", "../etl", "etl\n", "$(touch /tmp/pwned)", "%s%n", "{{ ds }}", "*", "[", "\\"]
TASKS = ["extract", "load", "a", "b", "s", "nope", "", "extract[0]", "a" * 5000, "ü"]
REGEXES = ["extract", ".*", "(", "[", "*", "a{99999999999}", "(?P<x", "\\", "", "é+"]
DURATIONS = ["90d", "0s", "1s", "-1d", "1e20", "100000000d", "36600d", "36601d", "5 parsecs", "", "nan", "inf",
             "1" * 5000 + "d"]
CRONS = ["* * * * *", "0 2 * * *", "@daily", "@bogus", "61 * * * *", "* * * *", "", "*/0 * * * *", "0 0 30 2 *",
         "a" * 5000, "\x7f * * * *", "0 0 29 2 1"]
TZS = ["UTC", "Europe/Paris", "Mars/Olympus", "", "../../etc/passwd", "UTC+5", "\x7f", "a" * 3000]
PARAMS = ["k=v", "region=eu", "=v", "k", "k=", "k=" + "v" * 10000, "é=ü", "k=$(touch /tmp/pwned)", "", "=",
          "a b=c", "k=v\nx"]
GARBAGE = ["--bogus", "-z", "--json=yes", "--count", "--", "-", "---", "--help=1", "\x7f", "a" * 10000, "--now",
           "--project", "extra", "é", "--no-wait", "--wait"]


def _pick(rng: random.Random, pool: list[str]) -> str:
    return rng.choice(pool)


def command_args(rng: random.Random, cmd: str) -> list[str]:
    """Arguments for one command: mostly well-formed shapes with hostile values."""
    pipe = _pick(rng, WORDS if rng.random() < 0.4 else ["etl", "hourly", "waits"])
    date = ["--date", _pick(rng, DATES)] if rng.random() < 0.6 else []
    if cmd == "validate" or cmd == "doctor" or cmd == "assets" or cmd == "metrics":
        args = []
        if cmd == "metrics" and rng.random() < 0.5:
            args = ["--output", rng.choice(["/nonexistent/x.prom", "/", "/proc/x", "", "out.prom", "/dev/full",
                                            "a" * 5000, "pipelines"])]
        return args
    if cmd == "init":
        return [rng.choice(["newdir", "", "pipelines", "/proc/x", "a" * 300, "~nouser/x", "é"])]
    if cmd == "cron":
        return [_pick(rng, CRONS), "--tz", _pick(rng, TZS), "--count", _pick(rng, HUGE)][: rng.choice((1, 3, 5))]
    if cmd == "next":
        return [pipe, "--count", _pick(rng, HUGE)][: rng.choice((1, 3))]
    if cmd == "tick":
        return ["--wait"] if rng.random() < 0.2 else []
    if cmd in ("trigger", "run"):
        out = [pipe, *date]
        for _ in range(rng.randint(0, 2)):
            out += ["--param", _pick(rng, PARAMS)]
        return out + (["--no-wait"] if cmd == "run" and rng.random() < 0.7 else [])
    if cmd == "status":
        return ([pipe] if rng.random() < 0.5 else []) + (["--once", "--interval", _pick(rng, HUGE)]
                                                         if rng.random() < 0.2 else [])
    if cmd == "runs":
        return [pipe, "--limit", _pick(rng, HUGE)][: rng.choice((1, 3))]
    if cmd in ("show", "explain", "graph"):
        extra = []
        if cmd != "graph" and rng.random() < 0.3:
            extra = rng.choice([["--at", _pick(rng, DATES)], ["--run-id", _pick(rng, WORDS)]])
        return [pipe, *date, *extra]
    if cmd == "logs":
        if rng.random() < 0.15:
            return ["--tick"]
        out = [pipe, _pick(rng, TASKS), *date]
        if rng.random() < 0.4:
            out += ["--try", _pick(rng, HUGE)]
        if rng.random() < 0.1:
            out = [pipe, "--hooks", *date]
        return out
    if cmd == "install":
        return [rng.choice(["cron", "systemd", "launchd", ""]), "--print"] + (["--user"] if rng.random() < 0.3 else [])
    if cmd == "prune":
        return ["--older-than", _pick(rng, DURATIONS), "--dry-run"] if rng.random() < 0.7 else \
            ["--older-than", _pick(rng, DURATIONS)]
    if cmd == "backfill":
        out = [pipe, "--start", _pick(rng, DATES), "--end", _pick(rng, DATES)]
        if rng.random() < 0.3:
            out += ["--reprocess", rng.choice(["missing", "failed", "all", "bogus"]), "--yes"]
        if rng.random() < 0.3:
            out += ["--tasks", _pick(rng, REGEXES)]
        if rng.random() < 0.3:
            out += ["--max-active-runs", _pick(rng, HUGE)]
        if rng.random() < 0.2:
            out += ["--schedule", _pick(rng, CRONS)]
        return out + (["--dry-run"] if rng.random() < 0.6 else ["--no-wait"])
    if cmd == "retry":
        return [pipe, *date] + (["--task", _pick(rng, TASKS)] if rng.random() < 0.5 else []) + \
            (["--downstream"] if rng.random() < 0.3 else []) + ["--no-wait"]
    if cmd == "mark":
        return [pipe, *date, "--task", _pick(rng, TASKS), rng.choice(["success", "failed", "skipped", "running", ""])]
    if cmd in ("pause", "unpause"):
        return [pipe]
    if cmd == "grid":
        out = [pipe]
        if rng.random() < 0.5:
            out += ["--start", _pick(rng, DATES), "--end", _pick(rng, DATES)]
        if rng.random() < 0.3:
            out += ["--limit", _pick(rng, HUGE)]
        return out
    return []


COMMANDS = ["validate", "graph", "cron", "tick", "trigger", "run", "status", "runs", "show", "logs", "explain", "next",
            "install", "doctor", "prune", "metrics", "backfill", "retry", "mark", "pause", "unpause", "grid", "assets",
            "init"]


def make_argv(rng: random.Random, projects: dict[str, str]) -> list[str]:
    cmd = rng.choice(COMMANDS)
    args = command_args(rng, cmd)
    glob: list[str] = []
    where = rng.random()
    if where < 0.75:
        glob += ["--project", projects["main"]]
    elif where < 0.85:
        glob += ["--project", rng.choice([projects["empty"], projects["missing"], projects["nostate"], "~nouser",
                                          "", "\x01", "a" * 5000, "/proc/self", "/dev/null"])]
    if rng.random() < 0.3:
        glob += ["--now", _pick(rng, DATES)]
    if rng.random() < 0.3:
        glob.append("--json")
    if rng.random() < 0.1:
        glob.append("--no-color")
    argv = [*glob, cmd, *args]
    r = rng.random()
    if r < 0.15:
        argv.insert(rng.randrange(len(argv) + 1), _pick(rng, GARBAGE))
    elif r < 0.22 and len(argv) > 1:
        del argv[rng.randrange(len(argv))]
    elif r < 0.27:
        argv = [*glob, *args]  # no command: an argument where the command should be
    if any(a in ("-f", "--follow", "-w", "--watch", "top", "uninstall") for a in argv):
        argv = [a for a in argv if a not in ("-f", "--follow", "-w", "--watch", "top", "uninstall")]
    if "install" in argv and "--print" not in argv:
        argv.append("--print")
    return argv


def check(argv: list[str], cwd: str, env: dict, timeout: float) -> tuple[int | None, list[str]]:
    try:
        p = subprocess.run([sys.executable, "-m", "pipectl", *argv], capture_output=True, cwd=cwd, env=env,
                           timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return None, [f"hang (over {timeout:g}s)"]
    err = p.stderr.decode("utf-8", "replace")
    problems = []
    if "Traceback" in err:
        problems.append("traceback: " + err.strip().splitlines()[-1][:200])
    if "internal error" in err:
        problems.append("internal error: " + next(ln for ln in err.splitlines() if "internal error" in ln)[:200])
    if p.returncode not in (0, 1, 2):
        problems.append(f"exit code {p.returncode}")
    if p.returncode != 0:
        lines = [ln for ln in err.splitlines() if ln.strip()]
        # `validate` lists every spec problem, one per line, and says how many: that is its output
        if len(lines) != 1 and not (argv and "validate" in argv and p.returncode == 1):
            problems.append(f"{len(lines)} stderr lines on exit {p.returncode}: {err.strip()[:200]!r}")
    return p.returncode, problems


def setup(base: Path) -> dict[str, str]:
    main = base / "main"
    (main / "pipelines").mkdir(parents=True)
    (main / "pipectl.toml").write_text(TOML)
    for name, text in SPECS.items():
        (main / "pipelines" / f"{name}.yaml").write_text(text.lstrip())
    nostate = base / "nostate"
    (nostate / "pipelines").mkdir(parents=True)
    (nostate / "pipectl.toml").write_text(TOML)
    (nostate / "pipelines" / "etl.yaml").write_text(SPECS["etl"].lstrip())
    (base / "empty").mkdir()
    env = _env()
    for argv in (["--now", "2026-04-03T03:00:00Z", "tick", "--wait"], ["trigger", "etl", "--date", "2026-04-01", "--wait"],
                 ["trigger", "hourly", "--wait"]):
        subprocess.run([sys.executable, "-m", "pipectl", "--project", str(main), *argv], capture_output=True, env=env,
                       timeout=120)
    return {"main": str(main), "empty": str(base / "empty"), "missing": str(base / "missing"),
            "nostate": str(nostate)}


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIPECTL_") and k not in ("NO_COLOR", "COLUMNS")}
    env["COLUMNS"] = "120"
    return env


def run(invocations: int, seed: int, workers: int, timeout: float) -> tuple[str, bool, list[str]]:
    rng = random.Random(seed)
    base = Path(tempfile.mkdtemp(prefix="fuzz_cli."))
    t0 = time.time()
    try:
        projects = setup(base)
        cwd = base / "cwd"
        cwd.mkdir()
        env = _env()
        argvs = [make_argv(rng, projects) for _ in range(invocations)]
        with ThreadPoolExecutor(max_workers=workers) as pool:
            results = list(pool.map(lambda a: check(a, str(cwd), env, timeout), argvs))
    finally:
        shutil.rmtree(base, ignore_errors=True)
    problems = []
    codes: dict[int, int] = {}
    tracebacks = internal = hangs = bad_codes = multi = 0
    for argv, (code, probs) in zip(argvs, results):
        if code is not None:
            codes[code] = codes.get(code, 0) + 1
        for prob in probs:
            shown = " ".join(repr(a) if (not a or any(c.isspace() or not c.isprintable() for c in a)) else a
                             for a in (x if len(x) <= 60 else x[:57] + "..." for x in argv))
            problems.append(f"pipectl {shown}: {prob}")
            tracebacks += prob.startswith("traceback")
            internal += prob.startswith("internal error")
            hangs += prob.startswith("hang")
            bad_codes += prob.startswith("exit code")
            multi += "stderr lines" in prob
    ok = not problems
    spread = ", ".join(f"exit {k}: {v}" for k, v in sorted(codes.items()))
    line = (f"fuzz_cli: {'OK' if ok else 'PROBLEMS'}: {invocations} invocations ({spread}); {tracebacks} tracebacks, "
            f"{internal} internal errors, {bad_codes} exit codes outside {{0,1,2}}, {multi} failures without exactly "
            f"one stderr line, {hangs} hangs; {time.time() - t0:.0f}s")
    return line, ok, problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--invocations", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds one invocation may take")
    ap.add_argument("-v", "--verbose", action="store_true", help="list every problem")
    a = ap.parse_args(argv)
    line, ok, problems = run(a.invocations, a.seed, a.workers, a.timeout)
    for p in problems if a.verbose else problems[:10]:
        print(p, file=sys.stderr)
    print(line)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
