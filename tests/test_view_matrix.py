"""Every reading command in every state: commands x world states x output modes x widths.

Each world is built once per module (real ticks with a frozen clock; the 100k-task-
instance history through the store API in one transaction). The commands run
in-process through ``pipectl.cli.main.main`` (a subprocess per cell would cost minutes);
a spot check per world runs the real CLI in a subprocess to keep the two honest.

A cell passes when the command exits 0 (doctor: 0 or 1, its verdict), prints no
traceback, truncates nothing ("…"), and shows the facts an on-call engineer needs:
the state, the logical time of day in the pipeline's zone, which task failed, and a
log path that opens as printed.
"""
from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from harness import call_cli, cli, make_project, ok, q, run_cli

NOW = "2026-04-05T03:00:00Z"  # 05:00 in Paris; the daily run for ds 2026-04-04 fired at 02:00 Paris
WIDTHS = (60, 100, 200)
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")

ETL = """
schedule: "0 2 * * *"
timezone: Europe/Paris
start_date: {start}
catchup: {catchup}
max_active_runs: 1
tasks:
  extract: {{run: "{extract}"}}
  load: {{run: "{load}", needs: [extract]{load_extra}}}
  report: {{run: "true", needs: [load]}}
"""


def etl(start="2026-04-01", catchup="false", extract="echo extracting {{ ds }}", load="echo loading; exit 3",
        load_extra=""):
    return ETL.format(start=start, catchup=catchup, extract=extract, load=load, load_extra=load_extra)


SENSOR = """
schedule: "0 2 * * *"
timezone: Europe/Paris
start_date: 2026-04-01
catchup: false
tasks:
  extract: {run: "echo extracting"}
  wait_export:
    sensor: {file: "incoming/{{ ds }}.csv"}
    poke_interval: 10m
    timeout: 6h
    needs: [extract]
  load: {run: "true", needs: [wait_export]}
"""

HOURLY = """
schedule: "0 * * * *"
timezone: Europe/Paris
start_date: 2026-04-04T00:00
catchup: true
max_active_runs: 30
tasks:
  a: {run: "echo hour {{ logical_date }}"}
  b: {run: "true", needs: [a]}
"""


def _tick_until(root, cond, now=NOW, timeout=20.0):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "world never reached its state"
        ok(root, "tick", now=now)
        time.sleep(0.1)


def _ti(root, task):
    if not (root / ".pipectl" / "state.db").exists():
        return None
    rows = q(root, "SELECT state FROM task_instances WHERE task = ? ORDER BY id DESC", (task,))
    return rows[0]["state"] if rows else None


def _kill_running(root):
    from pipectl.exec.executor import kill_session
    if not (root / ".pipectl" / "state.db").exists():
        return
    for r in q(root, "SELECT pid FROM tries WHERE state IN ('starting', 'running') AND pid IS NOT NULL"):
        kill_session(r["pid"])


# --------------------------------------------------------------------------- worlds

def w_new(root):
    make_project(root, {"etl": etl()})
    return {"state": None, "time": "02:00", "log_task": "extract"}


def w_queued(root):
    make_project(root, {"etl": etl(start="2026-04-03", catchup="true", extract="sleep 600")})
    ok(root, "tick", now=NOW)
    states = [r["state"] for r in q(root, "SELECT state FROM runs ORDER BY logical_date")]
    assert states == ["running", "queued"], states
    # the newest run is the queued one: nothing of it has run, so no log yet
    return {"state": "queued", "also": ["running"], "time": "02:00", "log_task": "extract", "no_logs": True}


def w_running(root):
    make_project(root, {"etl": etl(load="sleep 600")})
    _tick_until(root, lambda: _ti(root, "load") == "running")
    return {"state": "running", "time": "02:00", "log_task": "extract"}


def w_retry(root):
    make_project(root, {"etl": etl(load="echo flaky; exit 1", load_extra=", retries: 2, retry_delay: 1h")})
    _tick_until(root, lambda: _ti(root, "load") == "up_for_retry")
    return {"state": "running", "task_state": "up_for_retry", "failed_task": "load", "time": "02:00",
            "log_task": "load"}


def w_sensor(root):
    make_project(root, {"etl": SENSOR})
    _tick_until(root, lambda: _ti(root, "extract") == "success"
                and q(root, "SELECT count(*) FROM events WHERE kind LIKE 'sensor%' OR kind = 'task_success'")[0][0])
    ok(root, "tick", now=NOW)
    assert _ti(root, "wait_export") == "pending"
    return {"state": "running", "task_state": "pending", "sensor": "incoming/2026-04-04.csv", "time": "02:00",
            "log_task": "extract"}


def _failed(root):
    make_project(root, {"etl": etl()})
    assert cli(root, "tick", "--wait", now=NOW).returncode == 1
    assert _ti(root, "report") == "upstream_failed"


def w_failed(root):
    _failed(root)
    return {"state": "failed", "task_state": "upstream_failed", "failed_task": "load", "time": "02:00",
            "log_task": "load"}


def w_paused(root):
    _failed(root)
    ok(root, "pause", "etl")
    return {"state": "failed", "paused": True, "failed_task": "load", "time": "02:00", "log_task": "load"}


def w_invalid(root):
    _failed(root)
    (root / "pipelines" / "etl.yaml").write_text(etl() + "  oops: [\n")
    return {"state": "failed", "invalid": True, "failed_task": "load", "time": "02:00", "log_task": "load"}


def w_subdaily(root):
    make_project(root, {"etl": HOURLY})
    ok(root, "tick", "--wait", now="2026-04-04T22:30:00Z")  # 00:30 on the 5th in Paris: 24 runs for ds 04-04
    n = q(root, "SELECT count(*) FROM runs WHERE ds = '2026-04-04'")[0][0]
    assert n == 24, n
    return {"state": "success", "time": "23:00", "next_time": "06:00", "log_task": "a", "subdaily": True}


def w_big(root):
    """1000 runs x 100 tasks = 100k task instances, written through the store API in one transaction."""
    from datetime import datetime, timedelta, timezone

    from pipectl.spec.config import load_config
    from pipectl.spec.loader import load_pipelines
    from pipectl.state.store import Store
    names = [f"t{i:03d}" for i in range(100)]
    tasks = "\n".join(f"  {n}: {{run: \"true\"{', needs: [' + names[i - 1] + ']' if i else ''}}}"
                      for i, n in enumerate(names))
    make_project(root, {"etl": f'schedule: "0 2 * * *"\ntimezone: Europe/Paris\nstart_date: 2023-01-01\n'
                               f"catchup: false\ntasks:\n{tasks}\n"})
    config = load_config(str(root))
    p = load_pipelines(config).pipelines["etl"]
    spec = p.to_dict()
    store = Store(config.state_db)
    start = datetime(2023, 7, 10, 0, 0, tzinfo=timezone.utc)  # 02:00 Paris (summer time)
    try:
        with store.tx():
            store.upsert_pipeline("etl", spec=spec, path=p.path, valid=True, error=None, anchor=start.isoformat())
            for i in range(1000):
                ld = start + timedelta(days=i)
                iso = ld.isoformat()
                pk = store.insert_run(run_id=f"scheduled__{iso}", pipeline="etl", logical_date=iso,
                                      ds=(ld + timedelta(hours=2)).date().isoformat(),
                                      interval=(iso, (ld + timedelta(days=1)).isoformat()), run_type="scheduled",
                                      params={}, spec=spec, now=ld.timestamp() + 86400)
                last = i == 999
                store.insert_task_instances(pk, [(n, n, None, None, "failed" if last and n == "t050" else
                                                  "upstream_failed" if last and n > "t050" else "success")
                                                 for n in names])
                store.set_run_state(pk, "running", ld.timestamp() + 86400)
                store.set_run_state(pk, "failed" if last else "success", ld.timestamp() + 86400 + 600)
            ti = store.task_instances(pk)[50]
            log = root / ".pipectl" / "logs" / "etl" / "last" / "t050.1.log"
            log.parent.mkdir(parents=True, exist_ok=True)
            log.write_text("t050 broke\n")
            t = store.insert_try(ti.id, 1, launcher_pid=1, launcher_start=None, boot_id="x", status_path="",
                                 log_path=str(log), timeout=None, pool=None, now=ld.timestamp() + 86400)
            store.finish_try(t, "failed", now=ld.timestamp() + 86460, exit_code=2, reason="exit_code")
    finally:
        store.close()
    assert q(root, "SELECT count(*) FROM task_instances")[0][0] == 100_000
    return {"state": "failed", "failed_task": "t050", "time": "02:00", "log_task": "t050", "big": True}


WORLDS = {"new": w_new, "queued": w_queued, "running": w_running, "up_for_retry": w_retry, "sensor": w_sensor,
          "upstream_failed": w_failed, "paused": w_paused, "invalid": w_invalid, "subdaily": w_subdaily,
          "100k": w_big}


@pytest.fixture(scope="module")
def worlds(tmp_path_factory):
    built: dict[str, tuple[Path, dict]] = {}

    def get(name):
        if name not in built:
            built[name] = _build(tmp_path_factory, name)
        return built[name]

    yield get
    for root, _ in built.values():
        _kill_running(root)


def _build(factory, name):
    root = factory.mktemp(f"world_{name}")
    facts = WORLDS[name](root)
    return root, facts


# --------------------------------------------------------------------------- running a cell

def run_inproc(root: Path, args: list[str], env: dict[str, str], now: str = NOW):
    """``pipectl --project ROOT --now NOW ARGS`` inside this process, from ROOT: (exit code, stdout, stderr)."""
    r = call_cli("--project", root, "--now", now, *args, env=env, cwd=root)
    return r.returncode, r.stdout, r.stderr


def commands(facts: dict) -> dict[str, list[str]]:
    graph_date = "2026-04-04T02:00" if not facts.get("subdaily") else "2026-04-04T13:00"
    if facts.get("big"):
        graph_date = "2026-04-04"
    return {
        "status": ["status"],
        "status P": ["status", "etl"],
        "runs": ["runs", "etl"],
        "show": ["show", "etl"],
        "grid": ["grid", "etl"],
        "graph --date": ["graph", "etl", "--date", graph_date],
        "explain": ["explain", "etl"],
        "logs": ["logs", "etl", facts["log_task"]],
        "next": ["next", "etl"],
        "assets": ["assets"],
        "metrics": ["metrics"],
        "doctor": ["doctor"],
    }


def expected(world: str, cmd: str, facts: dict) -> list[str]:
    """What must be on the screen (stdout + stderr) for this cell."""
    state, t, failed = facts["state"], facts["time"], facts.get("failed_task")
    if world == "new":
        return {"status": ["etl", t], "status P": ["etl", t], "runs": ["no runs yet"], "show": ["no runs yet"],
                "grid": ["no runs"], "explain": ["no run yet"], "logs": ["no runs yet"], "next": [t],
                "graph --date": ["etl has no runs yet"], "metrics": ["pipectl_runs"], "doctor": ["state"],
                "assets": ["no assets"]}[cmd]
    need = {
        "status": [state, t], "status P": [state, t], "runs": [state, t], "grid": [state],
        "show": [state, t], "explain": [state], "next": [facts.get("next_time", t)], "metrics": ["pipectl_runs"], "doctor": ["state"],
        "graph --date": ["extract" if not facts.get("subdaily") and not facts.get("big") else "t000"
                         if facts.get("big") else "a"],
        "assets": ["no assets"], "logs": ["has not run yet" if facts.get("no_logs") else "==> etl"],
    }[cmd]
    if facts.get("also") and cmd == "runs":
        need = need + facts["also"]
    if failed and cmd in ("show", "explain"):
        need = need + [failed]
    if facts.get("task_state") and cmd in ("show", "explain"):
        need = need + [facts["task_state"]]
    if facts.get("sensor") and cmd == "explain":
        need = need + [facts["sensor"]]
    if facts.get("paused") and cmd in ("status", "status P", "explain"):
        need = need + ["paused"]
    if facts.get("invalid") and cmd in ("status", "status P"):
        need = need + ["invalid", "pipelines/etl.yaml:"]
    if facts.get("invalid") and cmd not in ("status", "status P", "assets", "metrics", "doctor"):
        need = need + ["etl is invalid"]  # the warning: history shown from the runs' own snapshots
    return need


def expected_code(world: str, cmd: str) -> tuple[int, ...]:
    if cmd == "doctor":
        return (0, 1)  # its verdict on the setup (no cron in a test sandbox), not a failure to read
    if world == "new" and cmd == "graph --date":
        return (2,)  # a named run that does not exist is a usage error, said in one line
    return (0,)


CELLS = [(w, c) for w in WORLDS for c in commands({"log_task": "x"})]


@pytest.mark.parametrize("world, cmd", CELLS, ids=[f"{w}-{c.replace(' ', '_')}" for w, c in CELLS])
def test_view_matrix(worlds, world, cmd):
    root, facts = worlds(world)
    args = commands(facts)[cmd]
    want_codes = expected_code(world, cmd)
    modes = [("plain", w, {"COLUMNS": str(w), "FORCE_COLOR": "1"}) for w in WIDTHS] + \
            [("NO_COLOR", w, {"COLUMNS": str(w), "NO_COLOR": "1"}) for w in WIDTHS]
    for mode, width, env in modes:
        code, out, err = run_inproc(root, args, env)
        where = f"{world} / {cmd} / {mode} / {width} cols\n--- stdout\n{out}\n--- stderr\n{err}"
        assert code in want_codes, where
        assert "Traceback" not in out + err and "internal error" not in err, where
        if mode == "NO_COLOR":
            assert "\x1b[" not in out + err, where
        text = ANSI.sub("", out + err)
        assert "…" not in text, f"truncated: {where}"
        for fact in expected(world, cmd, facts):
            assert fact in text, f"missing {fact!r}: {where}"
        _log_paths_open(root, world, cmd, facts, text, where)
    # --json: parseable, whatever the width; errors stay on stderr
    code, out, err = run_inproc(root, ["--json", *args], {"COLUMNS": "60"})
    assert code in want_codes and "Traceback" not in out + err, (world, cmd, out, err)
    if cmd not in ("logs", "metrics") and code == 0:
        json.loads(out)


def _log_paths_open(root: Path, world: str, cmd: str, facts: dict, text: str, where: str) -> None:
    """A log path printed by show or the logs header opens as printed, from the project directory."""
    if world == "new" or facts.get("no_logs") or cmd not in ("show", "logs"):
        return
    if cmd == "show":
        paths = re.findall(r"^\s+log (\S+)$", text, re.M)
        assert paths, f"no log path: {where}"
    else:
        m = re.search(r"^==> .* -- (\S+)$", text, re.M)
        assert m, f"no log header: {where}"
        paths = [m.group(1)]
    for p in paths:
        assert (root / p).exists() or Path(p).exists(), f"log path {p!r} does not open: {where}"
    if facts.get("failed_task") and cmd == "show":
        assert any(f"/{facts['failed_task']}." in p for p in paths), where


@pytest.mark.parametrize("world", list(WORLDS))
def test_real_cli_agrees(worlds, world):
    """The same views through a real process (the matrix runs in-process)."""
    root, facts = worlds(world)
    for args in (["status"], ["show", "etl"], ["runs", "etl"]):
        r = run_cli("--project", root, "--now", NOW, *args, env={"COLUMNS": "100"})
        assert r.returncode == 0, (args, r.stdout, r.stderr)
        assert "Traceback" not in r.stderr and "…" not in r.stdout
        if facts["state"] and args[0] != "status":
            assert facts["state"] in r.stdout, (args, r.stdout)
