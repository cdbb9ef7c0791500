"""`retry`, `mark`, `pause`/`unpause`, `grid`, `graph --date` with real runs, and the duration-creep flag."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

import harness
from harness import counts, make_project, q, tis_by_task, wait_for  # noqa: F401

SPEC = """\
schedule: "0 2 * * *"
tasks:
  extract:
    run: echo {{ ds }} >> counts/extract
  transform:
    run: echo {{ ds }} >> counts/transform; test ! -e fail_{{ ds }}
  load:
    run: echo {{ ds }} >> counts/load
  report:
    run: echo {{ ds }} >> counts/report
edges:
  - extract >> transform >> load
  - extract >> report
"""
DS = "2026-03-02"
ENV = {"USER": "alice"}


def project(tmp_path: Path, spec: str = SPEC) -> Path:
    root = make_project(tmp_path / "proj", {"etl": spec})
    (root / "counts").mkdir()
    return root


def cli(root, *args, **kw):
    kw.setdefault("env", ENV)
    return harness.cli(root, *args, **kw)


def ok(root, *args, **kw):
    return harness.assert_ok(cli(root, *args, **kw))


def tis(root, ds=DS) -> dict[str, dict]:
    return tis_by_task(root, ds=ds)


def run_state(root, ds=DS) -> str:
    return q(root, "SELECT state FROM runs WHERE ds = ?", (ds,))[0]["state"]


def failed_run(tmp_path) -> Path:
    """One finished run for DS: transform failed, load upstream_failed, extract and report succeeded."""
    root = project(tmp_path)
    (root / f"fail_{DS}").touch()
    r = cli(root, "backfill", "etl", "--start", DS, "--end", DS, "--wait")
    assert r.returncode == 1, r.stderr
    assert {t: ti["state"] for t, ti in tis(root).items()} == {
        "extract": "success", "transform": "failed", "load": "upstream_failed", "report": "success"}
    return root


# --------------------------------------------------------------------------- retry

def test_retry_reruns_failed_and_upstream_failed_only(tmp_path):
    root = failed_run(tmp_path)
    (root / f"fail_{DS}").unlink()
    r = ok(root, "retry", "etl", "--date", DS)
    assert "2 task instances back to pending (transform, load)" in r.stdout
    # they start within a second (the project's timer), not at the next tick
    assert wait_for(lambda: tis(root)["transform"]["state"] in ("running", "success"), timeout=10)
    assert run_state(root) in ("running", "success")
    r = ok(root, "retry", "etl", "--date", DS, "--wait")  # already retried: nothing more to reset
    assert "nothing to retry" in r.stdout and "no failed task instances" in r.stdout
    # paused: the tick schedules nothing new, but work in progress still runs to the end
    ok(root, "pause", "etl")
    ok(root, "tick", "--wait")
    assert run_state(root) == "success"
    t = tis(root)
    assert {k: v["try_number"] for k, v in t.items()} == {"extract": 1, "transform": 2, "load": 1, "report": 1}
    assert counts(root, "extract") == [DS] and counts(root, "report") == [DS]
    assert counts(root, "transform") == [DS, DS] and counts(root, "load") == [DS]
    logs = [row["log_path"] for row in q(root, "SELECT log_path FROM tries WHERE ti = ?", (t["transform"]["id"],))]
    assert [Path(p).name for p in logs] == ["transform.1.log", "transform.2.log"]
    assert all(Path(p).exists() for p in logs)
    ev = q(root, "SELECT * FROM events WHERE kind = 'retry'")
    assert len(ev) == 1 and ev[0]["message"] == "retry by alice: 2 task instances back to pending: transform, load"


def test_retry_task_with_downstream_and_wait(tmp_path):
    root = failed_run(tmp_path)
    (root / f"fail_{DS}").unlink()
    r = ok(root, "retry", "etl", "--date", DS, "--task", "extract", "--downstream", "--wait")
    assert "success" in r.stdout
    t = tis(root)
    assert {k: v["try_number"] for k, v in t.items()} == {"extract": 2, "transform": 2, "load": 1, "report": 2}
    assert run_state(root) == "success"
    # without --downstream only the task itself
    ok(root, "retry", "etl", "--date", DS, "--task", "report", "--wait")
    assert {k: v["try_number"] for k, v in tis(root).items()} == {"extract": 2, "transform": 2, "load": 1, "report": 3}


def test_retry_gives_a_fresh_retry_budget(tmp_path):
    spec = SPEC.replace("test ! -e fail_{{ ds }}", "test ! -e fail_{{ ds }}\n    retries: 1\n    retry_delay: 0")
    root = project(tmp_path, spec)
    (root / f"fail_{DS}").touch()
    assert cli(root, "backfill", "etl", "--start", DS, "--end", DS, "--wait").returncode == 1
    assert tis(root)["transform"]["try_number"] == 2  # try 1 + 1 retry
    r = cli(root, "retry", "etl", "--date", DS, "--wait")
    assert r.returncode == 1
    t = tis(root)["transform"]
    assert (t["state"], t["try_number"], t["budget_base"]) == ("failed", 4, 2)  # two more tries, numbers go on
    assert "transform failed" in r.stderr and "transform.4.log" in r.stderr
    assert len(counts(root, "transform")) == 4


def test_retry_bad_input(tmp_path):
    root = failed_run(tmp_path)
    before = q(root, "SELECT count(*) FROM events")[0][0]
    for args, needle in [
        (["--date", DS, "--task", "nope"], "unknown task 'nope'"),
        (["--date", "2026-03-09"], "no run of etl for 2026-03-09"),
        (["--date", "03/02/2026"], "bad --date"),
        ([], "needs --date"),
        (["--date", DS, "--downstream"], "--downstream needs --task"),
    ]:
        r = cli(root, "retry", "etl", *args)
        assert r.returncode == 2, (args, r.stderr)
        assert needle in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert cli(root, "retry", "nope", "--date", DS).returncode == 2
    assert q(root, "SELECT count(*) FROM events")[0][0] == before
    assert run_state(root) == "failed"


# --------------------------------------------------------------------------- mark

def test_mark_sets_state_records_event_and_settles_the_run(tmp_path):
    root = failed_run(tmp_path)
    r = ok(root, "mark", "etl", "--date", DS, "--task", "transform", "success")
    assert "transform failed -> success" in r.stdout and "run is failed" in r.stdout  # load still upstream_failed
    ok(root, "mark", "etl", "--date", DS, "--task", "load", "skipped")
    assert run_state(root) == "success"
    t = tis(root)
    assert (t["transform"]["state"], t["transform"]["reason"]) == ("success", "marked by alice")
    assert t["load"]["state"] == "skipped"
    ev = q(root, "SELECT task, kind, message FROM events WHERE kind IN ('mark', 'run_success') ORDER BY id")
    assert [tuple(e) for e in ev] == [
        ("transform", "mark", "marked success by alice (was failed)"),
        ("load", "mark", "marked skipped by alice (was upstream_failed)"),
        (None, "run_success", "run is success after a mark by alice"),
    ]
    d = json.loads(ok(root, "--json", "mark", "etl", "--date", DS, "--task", "report", "failed").stdout)
    assert d == {"run_id": d["run_id"], "state": "failed", "run_state": "failed",
                 "changed": [{"task": "report", "was": "success"}], "skipped": []}
    r = ok(root, "mark", "etl", "--date", DS, "--task", "report", "failed")
    assert "nothing changed" in r.stdout
    # a mark shows in `show`'s event list
    assert "marked failed by alice (was success)" in ok(root, "show", "etl", "--date", DS).stdout


def test_mark_pending_task_lets_the_run_go_on(tmp_path):
    root = project(tmp_path)
    ok(root, "backfill", "etl", "--start", DS, "--end", DS)  # queued, not run
    ok(root, "mark", "etl", "--date", DS, "--task", "transform", "success")
    ok(root, "backfill", "etl", "--start", DS, "--end", DS, "--wait")  # finds it in progress and drives it
    assert run_state(root) == "success"
    assert counts(root, "transform") == [] and counts(root, "load") == [DS]


@pytest.mark.parametrize("args, needle", [
    (["--task", "transform", "done"], "bad state 'done'"),
    (["--task", "nope", "success"], "unknown task 'nope'"),
    (["success"], "needs --date D and --task T"),
])
def test_mark_bad_input(tmp_path, args, needle):
    root = failed_run(tmp_path)
    r = cli(root, "mark", "etl", "--date", DS, *args)
    assert r.returncode == 2 and needle in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert q(root, "SELECT count(*) FROM events WHERE kind = 'mark'")[0][0] == 0


# --------------------------------------------------------------------------- pause

def test_pause_unpause_and_tick_honours_it(tmp_path):
    root = project(tmp_path)
    r = ok(root, "pause", "etl")  # no tick has seen it yet: the row is created
    assert "etl paused" in r.stdout
    assert q(root, "SELECT paused FROM pipelines WHERE name = 'etl'")[0]["paused"] == 1
    assert "already paused" in ok(root, "pause", "etl").stdout
    ok(root, "--now", "2026-03-03T03:00:00Z", "tick")
    assert q(root, "SELECT count(*) FROM runs")[0][0] == 0
    ok(root, "--now", "2026-03-03T03:01:00Z", "unpause", "etl")  # schedules at once: the run is created
    assert [tuple(r) for r in q(root, "SELECT ds, run_type FROM runs")] == [("2026-03-02", "scheduled")]
    ok(root, "--now", "2026-03-03T03:01:00Z", "tick", "--wait")
    runs = q(root, "SELECT ds, run_type, state FROM runs")
    assert [tuple(r) for r in runs] == [("2026-03-02", "scheduled", "success")]
    ev = q(root, "SELECT kind, message FROM events WHERE kind IN ('pause', 'unpause') ORDER BY id")
    assert [e["kind"] for e in ev] == ["pause", "unpause"]
    assert ev[0]["message"].startswith("paused by alice")
    assert ev[1]["message"].startswith("unpaused by alice")
    assert json.loads(ok(root, "--json", "unpause", "etl").stdout) == {"pipeline": "etl", "paused": False,
                                                                          "changed": False}
    assert cli(root, "pause", "nope").returncode == 2


# --------------------------------------------------------------------------- grid, graph

def test_grid_json_and_text(tmp_path):
    root = failed_run(tmp_path)
    ok(root, "backfill", "etl", "--start", "2026-03-01", "--end", "2026-03-01", "--wait")
    d = json.loads(ok(root, "--json", "grid", "etl").stdout)
    assert d["tasks"] == ["extract", "transform", "load", "report"]
    assert [r["ds"] for r in d["runs"]] == ["2026-03-01", DS]
    assert d["runs"][1]["tasks"] == {"extract": "success", "transform": "failed", "load": "upstream_failed",
                                     "report": "success"}
    assert d["runs"][1]["state"] == "failed"
    d = json.loads(ok(root, "--json", "grid", "etl", "--start", DS, "--end", DS).stdout)
    assert [r["ds"] for r in d["runs"]] == [DS]
    out = ok(root, "grid", "etl").stdout
    assert "extract" in out and "✘" in out and "⊘" in out and "upstream_failed" in out
    assert cli(root, "grid", "etl", "--start", "2026-03-05", "--end", "2026-03-01").returncode == 2


def test_grid_fits_60_days_by_10_tasks_in_80_columns(tmp_path):
    names = [f"task_number_{i}" for i in range(10)]
    spec = 'schedule: "@daily"\ntasks:\n' + "".join(f"  {n}:\n    run: \"true\"\n" for n in names)
    root = make_project(tmp_path / "wide", {"wide": spec})
    ok(root, "backfill", "wide", "--start", "2026-01-01", "--end", "2026-03-01", "--wait", "--max-active-runs", "16")
    r = harness.cli(root, "grid", "wide", "--limit", "60", env={"COLUMNS": "80"})
    assert r.returncode == 0, r.stderr
    lines = r.stdout.rstrip("\n").splitlines()
    assert max(len(line) for line in lines) <= 80
    rows = [line for line in lines if line.startswith("2026-")]
    assert len(rows) == 60 and rows[0].startswith("2026-01-01") and rows[-1].startswith("2026-03-01")
    assert all(row.count("✔") == 11 for row in rows)  # the run plus ten tasks
    assert "1=task_number_0" in r.stdout and "10=task_number_9" in r.stdout  # numbered headers, with a key


def test_graph_date_colours_by_state_of_a_real_run(tmp_path):
    root = failed_run(tmp_path)
    d = json.loads(ok(root, "--json", "graph", "etl", "--date", DS).stdout)
    assert {k: v["state"] for k, v in d["tasks"].items()} == {
        "extract": "success", "transform": "failed", "load": "upstream_failed", "report": "success"}
    r = harness.cli(root, "graph", "etl", "--date", DS, env={"FORCE_COLOR": "1", "COLUMNS": "120"})
    assert r.returncode == 0, r.stderr
    line = [x for x in r.stdout.splitlines() if "transform" in x and "←" in x][0]
    assert "✘" in line and "\x1b[" in line  # glyph and colour
    plain = ok(root, "--no-color", "graph", "etl", "--date", DS).stdout
    assert "\x1b[" not in plain and "✘ transform" in plain and "⊘ load" in plain


# --------------------------------------------------------------------------- duration creep

def test_flag_creep():
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
    from pipectl.views.history import flag_creep
    def run(i, dur, state="success", end=True):
        return {"run_id": f"r{i}", "logical_date": f"2026-03-{i:02d}T00:00:00+00:00", "state": state,
                "start": 1000.0 * i, "end": 1000.0 * i + dur if end else None}

    runs = [run(1, 10), run(2, 12), run(3, 11), run(4, 25), run(5, 21), run(6, 40, "failed")]
    assert flag_creep(runs) == {"r4", "r6"}  # 25 > 2 x 11; 21 is not > 2 x 11.5; failed runs count too
    assert flag_creep(list(reversed(runs))) == {"r4", "r6"}  # newest-first input is fine
    assert flag_creep(runs[:3] + [run(4, 100)][:0]) == set()
    assert flag_creep([run(1, 10), run(2, 50)]) == set()  # too little history to judge
    # a run still going is flagged once it has run too long
    going = run(7, 0, "running", end=False)
    assert "r7" in flag_creep(runs + [going], now=7000.0 + 30)
    assert "r7" not in flag_creep(runs + [going], now=7000.0 + 5)
    # ISO strings work as well as epochs (the `runs --json` shape)
    from datetime import datetime, timezone

    def isoize(r):
        f = lambda t: None if t is None else datetime.fromtimestamp(t, timezone.utc).isoformat()  # noqa: E731
        return {**r, "start": f(r["start"]), "end": f(r["end"])}

    assert flag_creep([isoize(r) for r in runs]) == {"r4", "r6"}
