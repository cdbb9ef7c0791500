"""Spec fuzzing: mutated pipeline specs never crash validation, a tick, or an unrelated pipeline.

    .venv/bin/python bench/fuzz_spec.py [--cases 5000] [--seed 1] [--batch 10] [--workers 2]

Each case is a valid seed spec mutated at random: values swapped for hostile ones (huge and
negative numbers, inf/nan, unicode, control characters, empty and deeply nested values, bad crons,
timezones, durations and dates), keys dropped or invented, YAML tags (!!binary, !!python/...,
local tags), alias bombs, recursive aliases, truncation, byte flips, tabs and invalid UTF-8.

Every case is validated in-process (``spec.load_pipelines``, what `validate` and every command
call) next to a valid sentinel pipeline; then the cases are dropped, a batch at a time, into a
scratch project with the sentinel and ticked twice with the real CLI (`pipectl --now T tick`,
then T + 1 minute, which reaps and retries what the first started).

Problems counted: an exception escaping the loader, an "internal error" anywhere, a spec error
not shaped FILE:LINE:COL on one line, a validation slower than --case-timeout (a hang), a tick
that prints a traceback, exits non-zero or outlives its timeout, and a sentinel that was not
created and launched by the tick (an unrelated pipeline stopped). Prints ONE verdict line;
exits 1 on any problem.
"""
from __future__ import annotations

import argparse
import copy
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))

import yaml  # noqa: E402

SENTINEL = "zz_sentinel"
# Two runs may be active: tick 2 comes right after tick 1, and the sentinel's first try (a
# detached `true`) may still be unreaped on a loaded machine; with the default of one active run,
# tick 2 would rightly queue the second run behind it, which is no sign of a stopped pipeline.
SENTINEL_SPEC = f"""name: {SENTINEL}
schedule: "* * * * *"
max_active_runs: 2
tasks:
  ping:
    run: "true"
"""
TOML = """[pipectl]
pipelines = ["pipelines/*.yaml"]
state_dir = ".pipectl"
timezone = "UTC"
max_parallel = 10000
tick_budget = "20s"

[pools]
warehouse = 2
"""
NOW = "2026-06-01T00:00:30+00:00"
NOW2 = "2026-06-01T00:01:30+00:00"

SEEDS = [
    """
name: daily
schedule: "0 2 * * *"
timezone: America/Los_Angeles
start_date: 2026-05-30
catchup: true
max_active_runs: 2
params: {region: all, n: 3}
env: {WAREHOUSE: local}
defaults:
  retries: 2
  retry_delay: 2m
  retry_backoff: exponential
  max_retry_delay: 30m
  timeout: 1h
on_failure: "echo {{ pipeline }} {{ ds }} failed"
tasks:
  extract:
    run: "echo {{ ds }} {{ params.region }}"
    produces: [raw.orders]
    no_retry_exit_codes: [3]
  clean:
    run: [echo, "{{ ds_nodash }}"]
    pool: warehouse
  aggregate:
    run: "exit 1"
    timeout: 20m
    trigger_rule: all_done
    priority: 5
edges:
  - extract >> clean >> aggregate
""",
    """
name: sensors
schedule: {every: 15m}
start_date: 2026-05-31T23:00:00+00:00
tasks:
  wait_file:
    sensor: {file: "/nonexistent/{{ ds }}/data", min_size: 1}
    poke_interval: 1m
    timeout: 2m
  wait_cmd:
    sensor: {command: "test -e /nonexistent"}
    poke_interval: 30s
    timeout: 1m
    soft_fail: true
  wait_http:
    sensor: {http: "http://127.0.0.1:9/ready/{{ ds }}"}
    timeout: 1m
  after:
    run: "true"
    needs: [wait_file, wait_cmd, wait_http]
    trigger_rule: one_success
""",
    """
name: fan
schedule: "@hourly"
params: {items: [a, b]}
tasks:
  listing:
    foreach: [us-east-1, eu-west-1]
    run: "echo {{ item }}"
    retries: 1
    retry_delay: 1s
  dynamic:
    foreach: {command: "printf 'x\\\\ny\\\\n'"}
    run: [echo, "{{ item }}"]
  done:
    run: "true"
    needs: [listing, dynamic]
    sla: 1h
    on_success: "true"
""",
    """
name: consumer
schedule: [{assets: [raw.orders], mode: any}, "30 3 * * *"]
assets:
  raw.orders: {fresh_by: "04:00"}
tasks:
  use:
    run: "echo {{ params.file }}"
    retry_on_exit_codes: [1, 2]
    retries: 3
  check:
    sensor: {task: daily.extract, delta: 1d}
    timeout: 1m
""",
    """
name: files
schedule: {file: "incoming/*.csv"}
end_date: 2026-12-31
tasks:
  load:
    run: "echo {{ params.file }} {{ run_id }} {{ try_number }}"
    cwd: .
    env: {A: "1", B: "two"}
    on_retry: "true"
    retries: 1
""",
]

CRONS = ["* * * * *", "0 2 * * *", "61 * * * *", "* * * *", "* * * * * *", "@bogus", "@daily", "*/0 * * * *",
         "0 0 30 2 *", "0 0 31 4 *", "0 0 * * 8", "1-0 * * * *", "*/7,61 * * * *", "0 0 29 2 1", "a b c d e",
         "0 0 1 1 *", "", "   ", "*/15 9-17 * * 1-5", "0 0 L * *", "@reboot", "0 24 * * *", "-1 * * * *",
         "9999999999999999999 * * * *", "0 0 * JAN-FEB MON", "0 0 ? * *"]
TIMEZONES = ["UTC", "Europe/Paris", "America/Los_Angeles", "Mars/Olympus", "", "UTC+5", "../../etc/passwd",
             "Etc/GMT+14", "Asia/Kathmandu", "EST5EDT", "utc", "Australia/Lord_Howe", "\x00", "/etc/localtime"]
DURATIONS = ["5m", "30s", "1d", "0s", "0", "-5m", "1e20", "1.0e+20", "100000000d", "366d", "367d", 0.5, 1e308,
             float("inf"), float("nan"), -1, 10**30, "5 parsecs", "", "1ms", "2w", "  5m  ", "5M", True, None, [],
             {"m": 5}, "99999999999999999999999s", 2**63]
DATES = ["2026-05-30", "2026-05-31T23:00:00+00:00", "2026-06-01", "2026-13-01", "0001-01-01", "9999-12-31",
         "9999-12-31T23:59:59-12:00", "1969-12-31", "2026-02-30", "yesterday", "", 20260601, "2026-05-31T25:00",
         "2026-05-31T12:00:00+25:00", "2026-06-02", "3000-01-01"]
COUNTS = [0, 1, -1, 3, 1000, 1001, 10**6, 2**31, 2**63, -2**63, 10**30, 1.5, "3", "many", True, None, [], float("nan")]
STRINGS = ["true", "false", "exit 3", "echo {{ ds }}", "echo {{ params.nope }}", "{{ item }}", "{{", "}}", "{{ }}",
           "${HOME}", "${PIPECTL_FUZZ_UNSET}", "é", "日本語", "\u202e\u200b", "\t", " ", "", "x" * 5000,
           "line1\nline2", "a\x07b", "'", '"', "\\", "{{ ds }}{{ ds }}{{ ds }}", "http://a b", "http://[::1",
           "ftp://x/{{ ds }}", "http://127.0.0.1:9/{{ params.region }}", "/nonexistent/{{ ds }}"]
HOSTILE = [*COUNTS, *STRINGS, 1e308, -0.0, float("-inf"), {}, [[[[["deep"]]]]], {"a": {"b": {"c": None}}},
           ["a", 1, None, True], {1: 2}, {"": ""}]
TASK_KEYS = ["run", "needs", "sensor", "foreach", "produces", "retries", "retry_delay", "retry_backoff",
             "max_retry_delay", "retry_on_exit_codes", "no_retry_exit_codes", "timeout", "trigger_rule", "env", "cwd",
             "pool", "priority", "sla", "on_failure", "on_retry", "on_success", "on_sla_miss", "poke_interval",
             "soft_fail", "bogus_key"]
TOP_KEYS = ["name", "description", "schedule", "timezone", "start_date", "end_date", "catchup", "max_active_runs",
            "params", "env", "env_file", "defaults", "tasks", "edges", "sla", "on_failure", "assets", "shedule"]
POOLS = {
    "schedule": [*CRONS, {"every": "15m"}, {"every": 1e20}, {"every": "1ms"}, {"every": -5}, {"cron": "0 2 * * *",
                 "timezone": "Mars/Olympus"}, {"cron": "61 * * * *"}, {"assets": []}, {"file": ""}, {"nope": 1},
                 [], ["@daily", {"every": "1h"}], None, {"every": "5m", "cron": "* * * * *"}],
    "timezone": TIMEZONES, "start_date": DATES, "end_date": DATES,
    "retry_delay": DURATIONS, "max_retry_delay": DURATIONS, "timeout": DURATIONS, "sla": DURATIONS,
    "poke_interval": DURATIONS, "every": DURATIONS, "delta": DURATIONS,
    "retries": COUNTS, "max_active_runs": COUNTS, "priority": COUNTS, "min_size": COUNTS,
    "retry_backoff": ["fixed", "exponential", "linear", "", None, 1],
    "trigger_rule": ["all_success", "all_done", "one_failed", "none_failed", "always", "", None],
    "pool": ["warehouse", "nope", "", None, 3],
    "needs": [[], ["nope"], ["extract"], "extract", [["x"]], None, ["clean", "clean"]],
    "edges": [[], ["a >> b"], ["[extract, clean] >> aggregate"], ["extract >> extract"], ["clean >> extract"],
              "extract >> clean", [">>"], ["[a,,b] >> c"], None],
    "run": ["true", "false", "echo {{ ds }}", ["true"], [], "", None, "{{ nope }}", ["echo", "{{ params.region }}"],
            "exit 3", {"cmd": "true"}],
    "foreach": [[], ["a"], {"command": "printf 'a\\nb\\n'"}, {"command": "exit 3"}, {"cmd": 1}, "a", None,
                [1, 2, None]],
    "catchup": [True, False, "yes", "no", 1, None, "maybe"],
    "params": [{}, {"x": "a b"}, {"x": float("inf")}, {"x": [1, [2, [3]]]}, {"": 1}, None, [], "str",
               {"region": "${PIPECTL_FUZZ_UNSET}"}],
    "name": ["daily", "fan", "a b", "", "x" * 300, "ünïcode", "a.b", "-x", None, 5, "files"],
}
TAGS = ["!!binary aGVsbG8= ", "!!python/object:os.system ", "!!python/name:os.system ", "!local ", "!!set ",
        "!!omap ", "!!str ", "!!int ", "!!float ", "!!timestamp ", "!!null ", "!!bool ", "! ", "!<tag:x,2000:y> "]
BOMB = """params:
  la: &a ["l","l","l","l","l","l","l","l","l"]
  lb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
  lc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
  ld: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
  le: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
  lf: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
  lg: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
"""
ERROR_RE = re.compile(r"^[^\n]+:\d+:\d+: [^\n]+$")


class CaseTimeout(BaseException):
    """A BaseException, so the loader's own safety net cannot swallow it."""


# -- mutation ------------------------------------------------------------------------------------------
def _paths(node, prefix=()):
    yield prefix, node
    if len(prefix) > 12:  # deep values were made deep on purpose: mutate near the top
        return
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, prefix + (i,))


def _value_for(rng: random.Random, key) -> object:
    if isinstance(key, str) and key in POOLS and rng.random() < 0.75:
        return copy.deepcopy(rng.choice(POOLS[key]))
    return copy.deepcopy(rng.choice(HOSTILE))


def mutate_tree(rng: random.Random, tree: dict) -> dict:
    for _ in range(rng.choice((1, 1, 2, 3))):
        paths = [(p, v) for p, v in _paths(tree) if p]
        if not paths:
            break
        path, _ = rng.choice(paths)
        parent = tree
        for k in path[:-1]:
            parent = parent[k]
        key = path[-1]
        op = rng.random()
        if op < 0.55:
            parent[key] = _value_for(rng, key)
        elif op < 0.65 and isinstance(parent, dict):
            del parent[key]
        elif op < 0.75 and isinstance(parent, dict):
            pool = TASK_KEYS if "run" in parent or "sensor" in parent else TOP_KEYS
            new = rng.choice(pool)
            parent[new] = _value_for(rng, new)
        elif op < 0.82:
            parent[key] = [parent[key]] if rng.random() < 0.5 else {"nested": parent[key]}
        elif op < 0.88 and isinstance(parent, dict) and isinstance(key, str):
            parent[rng.choice(["", "日本", "a b", "x" * 200, "task[0]", "a.b", key.upper(), key + "_"])] = parent.pop(key)
        elif op < 0.93:
            deep: object = "bottom"
            for _ in range(rng.choice((50, 200, 2000))):
                deep = [deep] if rng.random() < 0.5 else {"d": deep}
            parent[key] = deep
        else:
            parent[key] = rng.choice(["x" * rng.choice((1000, 100000)), list(range(rng.choice((5, 500))))])
    return tree


def dump(rng: random.Random, tree: dict) -> str:
    try:
        return yaml.safe_dump(tree, allow_unicode=rng.random() < 0.5, sort_keys=False,
                              default_flow_style=rng.choice((False, None, True)), width=rng.choice((80, 10**6)))
    except (yaml.YAMLError, RecursionError, ValueError):
        return yaml.safe_dump({"tasks": {"a": {"run": "true"}}})


def mutate_text(rng: random.Random, text: str) -> bytes:
    op = rng.random()
    lines = text.splitlines(keepends=True) or ["\n"]
    if op < 0.25:
        spots = [m.end() for m in re.finditer(r": ", text)] or [0]
        at = rng.choice(spots)
        text = text[:at] + rng.choice(TAGS) + text[at:]
    elif op < 0.32:
        text = BOMB + "".join(ln for ln in lines if not ln.startswith("params:"))
    elif op < 0.37:
        text = "params:\n  r: &r [1, *r]\n  m: &m {a: *m}\n" + text
    elif op < 0.42:
        text = "base: &base {run: 'true', retries: 1}\n" + text.replace("run: ", "<<: *base\n    run: ", 1)
    elif op < 0.50:
        text = text[: rng.randrange(len(text) + 1)]
    elif op < 0.58:
        i = rng.randrange(len(lines))
        lines.insert(i, lines[i])  # a duplicate key, mostly
        text = "".join(lines)
    elif op < 0.65:
        at = rng.randrange(len(text) + 1)
        text = text[:at] + rng.choice(["\t", "\x00", "\ufeff", "\u2028", "\x1b[31m", "{", "[", "*", "&", "%", "@",
                                       ": ", "- ", "'", '"', "\\", "\r"]) + text[at:]
    elif op < 0.70:
        i = rng.randrange(len(lines))
        lines[i] = lines[i].replace("  ", "\t", 1)
        text = "".join(lines)
    elif op < 0.75:
        text = text + "params:\n  deep: " + "[" * rng.choice((100, 5000)) + "]" * rng.choice((100, 5000)) + "\n"
    elif op < 0.80:
        raw = bytearray(text.encode("utf-8", "surrogatepass"))
        for _ in range(rng.randint(1, 5)):
            if raw:
                raw[rng.randrange(len(raw))] = rng.randrange(256)
        return bytes(raw)
    elif op < 0.83:
        return text.encode("utf-16") if rng.random() < 0.5 else b"\xff\xfe\x00bad" + text.encode()
    return text.encode("utf-8", "surrogatepass")


def make_case(rng: random.Random) -> bytes:
    seed = yaml.safe_load(rng.choice(SEEDS))
    tree = mutate_tree(rng, seed) if rng.random() < 0.85 else seed
    text = dump(rng, tree)
    return mutate_text(rng, text) if rng.random() < 0.5 else text.encode("utf-8", "surrogatepass")


# -- checking --------------------------------------------------------------------------------------------
def _alarm(signum, frame):
    raise CaseTimeout()


def validate_case(root: Path, data: bytes, timeout: float) -> tuple[list[str], bool]:
    """(problems found validating one case in-process next to the sentinel, whether it is valid)."""
    from pipectl.spec.config import load_config
    from pipectl.spec.loader import load_pipelines
    (root / "pipelines" / "case.yaml").write_bytes(data)
    config = load_config(root)
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        result = load_pipelines(config)
    except CaseTimeout:
        return [f"hang: validation took over {timeout:g}s"], False
    except Exception as e:  # noqa: BLE001 - this is what we look for
        return [f"traceback: {type(e).__name__}: {e}"], False
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    problems = []
    for err in result.errors:
        text = str(err)
        if "internal error" in text:
            problems.append(f"internal error: {text[:300]}")
        elif not ERROR_RE.match(text):
            problems.append(f"not one FILE:LINE:COL line: {text[:300]!r}")
    if SENTINEL not in result.pipelines:
        problems.append("sentinel pipeline not valid next to the case")
    return problems, len(result.pipelines) > 1


def tick_batch(pipectl: list[str], cases: list[tuple[int, bytes]], workdir: Path, timeout: float) -> list[str]:
    """Two real ticks of a project holding the cases and the sentinel; problems found."""
    root = Path(tempfile.mkdtemp(prefix="batch.", dir=workdir))
    try:
        (root / "pipelines").mkdir()
        (root / "incoming").mkdir()
        (root / "incoming" / "a.csv").write_text("x\n")
        (root / "pipectl.toml").write_text(TOML)
        (root / "pipelines" / f"{SENTINEL}.yaml").write_text(SENTINEL_SPEC)
        for i, data in cases:
            (root / "pipelines" / f"c{i}.yaml").write_bytes(data)
        env = {k: v for k, v in os.environ.items() if not k.startswith("PIPECTL_")}
        problems = []
        ids = ",".join(str(i) for i, _ in cases)
        for n, now in enumerate((NOW, NOW2)):
            try:
                p = subprocess.run([*pipectl, "--project", str(root), "--now", now, "tick"], capture_output=True,
                                   text=True, env=env, timeout=timeout, cwd=root, errors="replace")
            except subprocess.TimeoutExpired:
                problems.append(f"hang: tick {n + 1} of cases {ids} ran over {timeout:g}s")
                break
            err = p.stderr
            if "Traceback" in err or "internal error" in err:
                bad = next(ln for ln in err.splitlines() if "Traceback" in ln or "internal error" in ln)
                problems.append(f"tick {n + 1} of cases {ids}: {bad[:300]}")
            if p.returncode != 0:
                problems.append(f"tick {n + 1} of cases {ids} exited {p.returncode}: {err.strip()[-300:]}")
            if f"created: {SENTINEL}" not in p.stdout or f"launched: {SENTINEL}" not in p.stdout:
                problems.append(f"sentinel not created and launched by tick {n + 1} of cases {ids}")
        return problems
    finally:
        shutil.rmtree(root, ignore_errors=True)


def run(cases: int, seed: int, batch: int, workers: int, case_timeout: float, tick_timeout: float,
        keep: Path | None = None) -> tuple[str, bool, list[str]]:
    rng = random.Random(seed)
    pipectl = [sys.executable, "-m", "pipectl"]
    workdir = Path(tempfile.mkdtemp(prefix="fuzz_spec."))
    scratch = workdir / "validate"
    (scratch / "pipelines").mkdir(parents=True)
    (scratch / "pipectl.toml").write_text(TOML)
    (scratch / "pipelines" / f"{SENTINEL}.yaml").write_text(SENTINEL_SPEC)
    (scratch / "incoming").mkdir()
    problems: list[str] = []
    counts = {"hang": 0, "traceback": 0, "internal": 0, "format": 0, "sentinel": 0, "tick": 0}
    valid = 0
    t0 = time.time()
    try:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            futures = []
            pending: list[tuple[int, bytes]] = []
            for i in range(cases):
                data = make_case(rng)
                found, is_valid = validate_case(scratch, data, case_timeout)
                valid += is_valid
                for prob in found:
                    problems.append(f"case {i}: {prob}")
                    kind = prob.split(":", 1)[0]
                    counts["hang" if kind == "hang" else "traceback" if kind == "traceback" else
                           "internal" if kind == "internal error" else
                           "sentinel" if kind.startswith("sentinel") else "format"] += 1
                    if keep is not None:
                        keep.mkdir(parents=True, exist_ok=True)
                        (keep / f"case{i}.yaml").write_bytes(data)
                pending.append((i, data))
                if len(pending) == batch or i == cases - 1:
                    futures.append(pool.submit(tick_batch, pipectl, pending, workdir, tick_timeout))
                    pending = []
            for f in futures:
                for prob in f.result():
                    problems.append(prob)
                    counts["hang" if prob.startswith("hang") else
                           "sentinel" if prob.startswith("sentinel") else
                           "internal" if "internal error" in prob else
                           "traceback" if "Traceback" in prob else "tick"] += 1
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    ticks = 2 * len(futures)
    ok = not problems
    line = (f"fuzz_spec: {'OK' if ok else 'PROBLEMS'}: {cases} cases ({valid} still valid), {ticks} real ticks; "
            f"{counts['traceback']} tracebacks, {counts['internal']} internal errors, {counts['format']} malformed "
            f"errors, {counts['sentinel']} unrelated pipelines stopped, {counts['hang']} hangs, {counts['tick']} "
            f"bad tick exits; {time.time() - t0:.0f}s")
    return line, ok, problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=5000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--batch", type=int, default=10, help="cases per scratch project (per pair of ticks)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--case-timeout", type=float, default=10.0, help="seconds one validation may take")
    ap.add_argument("--tick-timeout", type=float, default=60.0, help="seconds one tick may take")
    ap.add_argument("--keep", type=Path, help="write the failing cases here")
    ap.add_argument("-v", "--verbose", action="store_true", help="list every problem")
    a = ap.parse_args(argv)
    line, ok, problems = run(a.cases, a.seed, a.batch, a.workers, a.case_timeout, a.tick_timeout, a.keep)
    if a.verbose:
        for p in problems:
            print(p, file=sys.stderr)
    elif problems:
        for p in problems[:10]:
            print(p, file=sys.stderr)
    print(line)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
