"""`explain`: per task instance, in DAG order, the rule that holds it back (the rules dispatch
applies); for a run that does not exist, why not."""
from __future__ import annotations

import re

from harness import cli, jcli, make_project, ok, tis, wait_for

# a task that runs until the test opens the gate
GATE = "while [ ! -e go ]; do sleep 0.05; done"


def why(root, pipeline, *args, now=None) -> dict[str, dict]:
    d = jcli(root, "explain", pipeline, *args, now=now)
    return {t["task"]: t for t in d["tasks"]}


def test_upstream_failed_names_the_failed_upstreams_and_their_exit_codes(tmp_path):
    root = make_project(tmp_path, {"p": """
        tasks:
          report: {run: "true", needs: [transform]}
          transform: {run: "true", needs: [load_dims, load_facts]}
          load_dims: {run: "exit 3"}
          load_facts: {run: "exit 5"}
          audit: {run: "true", needs: [load_dims], trigger_rule: all_done}
    """})
    r = cli(root, "trigger", "p", "--date", "2026-04-01", "--wait")
    assert r.returncode == 1
    d = jcli(root, "explain", "p", "--date", "2026-04-01")
    # DAG order (upstreams first; declaration order among equals), not declaration order
    assert [t["task"] for t in d["tasks"]] == ["load_dims", "load_facts", "transform", "report", "audit"]
    w = {t["task"]: t for t in d["tasks"]}
    assert w["transform"]["state"] == "upstream_failed"
    assert w["transform"]["why"] == "upstream_failed because load_dims failed (exit 3), load_facts failed (exit 5)"
    assert w["report"]["why"] == "upstream_failed because transform upstream_failed"
    assert w["load_dims"]["why"] == "failed: exit 3 on try 1"
    assert w["audit"]["state"] == "success" and w["audit"]["why"] == "success on try 1"
    assert not any(t["ready"] for t in d["tasks"])
    text = ok(root, "explain", "p", "--date", "2026-04-01").stdout
    assert "upstream_failed because load_dims failed (exit 3)" in text


def test_dag_order(tmp_path):
    root = make_project(tmp_path, {"p": """
        tasks:
          z_last: {run: "true", needs: [m_mid]}
          m_mid: {run: "true", needs: [a_first]}
          a_first: {run: "true"}
    """})
    ok(root, "trigger", "p", "--date", "2026-04-01", "--wait")
    d = jcli(root, "explain", "p", "--date", "2026-04-01")
    assert [t["task"] for t in d["tasks"]] == ["a_first", "m_mid", "z_last"]


def test_pool_full_names_its_holders_and_max_parallel_the_running(tmp_path):
    root = make_project(tmp_path, {"p": f"""
        tasks:
          extract: {{run: '{GATE}', pool: warehouse, priority: 9}}
          clean: {{run: "true", pool: warehouse}}
          side: {{run: '{GATE}'}}
          later: {{run: "true", needs: [side]}}
    """, "q": """
        tasks:
          other: {run: "true"}
    """}, "max_parallel = 2\n[pools]\nwarehouse = 1\n")
    try:
        ok(root, "trigger", "p", "--date", "2026-04-03")
        w = why(root, "p", "--date", "2026-04-03")
        assert w["extract"]["state"] == "running" and w["extract"]["why"].startswith("running try 1 since ")
        assert w["clean"]["rule"] == "slots"
        assert w["clean"]["why"].startswith("max_parallel 2 reached: 2 tries running")
        assert w["later"]["why"] == "waiting on upstream (all_success): side (running)"
        # a run of another pipeline waits for max_parallel too
        ok(root, "trigger", "q", "--date", "2026-04-03")
        assert why(root, "q")["other"]["why"] == "max_parallel 2 reached: 2 tries running"
    finally:
        (root / "go").touch()
    ok(root, "tick", "--wait")
    assert {t["state"] for t in why(root, "p").values()} == {"success"}


def test_pool_holders(tmp_path):
    root = make_project(tmp_path, {"p": f"""
        tasks:
          extract: {{run: '{GATE}', pool: warehouse, priority: 9}}
          clean: {{run: "true", pool: warehouse}}
    """}, "[pools]\nwarehouse = 1\n")
    try:
        ok(root, "trigger", "p", "--date", "2026-04-03")
        w = why(root, "p")
        assert w["clean"]["why"] == "pool warehouse full: 1/1 held by extract (p 2026-04-03)"
        assert w["clean"]["ready"] is False and w["extract"]["ready"] is False
    finally:
        (root / "go").touch()
    ok(root, "tick", "--wait")


def test_queued_runs_say_their_place_in_line_and_who_holds_max_active_runs(tmp_path):
    root = make_project(tmp_path, {"p": f"""
        max_active_runs: 1
        tasks:
          a: {{run: '{GATE}'}}
    """})
    try:
        for day in ("2026-04-01", "2026-04-02", "2026-04-03"):
            ok(root, "trigger", "p", "--date", day)
        d1 = jcli(root, "explain", "p", "--date", "2026-04-02")
        d2 = jcli(root, "explain", "p", "--date", "2026-04-03")
        assert d1["state"] == "queued"
        assert d1["notes"] == ["run queued: 1st in line; max_active_runs 1 of p in use by 2026-04-01"]
        assert d2["notes"] == ["run queued: 2nd in line; max_active_runs 1 of p in use by 2026-04-01"]
        assert d2["tasks"][0]["rule"] == "max_active_runs"
    finally:
        (root / "go").touch()
    ok(root, "tick", "--wait")


def test_retry_time_in_words(tmp_path):
    root = make_project(tmp_path, {"r": """
        tasks:
          flaky: {run: "exit 4", retries: 3, retry_delay: 10m}
    """})
    ok(root, "trigger", "r", "--date", "2026-04-01", now="2026-04-02T14:00:00Z")
    assert wait_for(lambda: tis(root, "r")[("2026-04-01", "flaky")]["state"] == "up_for_retry", 10)
    w = why(root, "r", now="2026-04-02T14:01:00Z")["flaky"]
    assert w["rule"] == "retry_time"
    assert re.fullmatch(r"retry 1 of 3 \(try 2\) at 14:10:0\d UTC, in (8m5\ds|9m|9m0\ds); after exit 4", w["why"]), w
    w = why(root, "r", now="2026-04-02T14:30:00Z")["flaky"]
    assert w["ready"] is True and w["why"] == "ready: retry 1 (try 2) starts on the next step"


def test_a_run_that_does_not_exist_says_why(tmp_path):
    root = make_project(tmp_path, {"d": """
        schedule: "0 2 * * *"
        start_date: 2026-04-01
        end_date: 2026-04-20
        catchup: false
        tasks:
          a: {run: "true"}
    """, "c": """
        schedule: {assets: [raw.orders, raw.items]}
        tasks:
          a: {run: "true"}
    """, "m": """
        tasks:
          a: {run: "true"}
    """})
    now = "2026-04-10T12:00:00Z"
    ok(root, "tick", now=now)  # catchup: false: only 2026-04-09 is created

    def reasons(p, date):
        d = jcli(root, "explain", p, "--date", date, now=now)
        assert d["run_id"] is None and d["tasks"] == []
        return d["why"]

    assert reasons("d", "2026-04-10") == [
        "the run for 2026-04-10T02:00:00+00:00 does not exist yet: its interval closes at "
        "2026-04-11 02:00:00 UTC, in 14h; the first tick after that creates it"]
    assert reasons("d", "2026-04-05") == [
        "the run for 2026-04-05T02:00:00+00:00 was skipped by `catchup: false`: after a gap only the latest "
        "missed interval runs; `pipectl backfill d --start 2026-04-05 --end 2026-04-05` runs it"]
    assert reasons("d", "2026-03-30")[0].startswith("the run for 2026-03-30T02:00:00+00:00 is before start_date 2026-04-01")
    assert reasons("d", "2026-04-25")[0].startswith("the run for 2026-04-25T02:00:00+00:00 is beyond end_date 2026-04-20")
    assert reasons("c", "2026-04-09") == [
        "waiting on asset raw.orders, raw.items for ds 2026-04-09 (needs every one of raw.orders, raw.items)"]
    assert reasons("m", "2026-04-09") == ["m has no schedule: runs come only from `pipectl trigger` or `pipectl backfill`"]
    ok(root, "pause", "d", now=now)
    d = jcli(root, "explain", "d", "--date", "2026-04-10", now="2026-04-12T00:00:00Z")
    assert d["notes"][0].startswith("d is paused: no new scheduled runs")
    assert d["why"] == ["the run for 2026-04-10T02:00:00+00:00: d is paused, so no scheduled run is created; "
                        "unpausing creates it (`pipectl unpause d --dry-run` previews)"]
    # text: exit 0, the reason on its own line
    r = ok(root, "explain", "d", "--date", "2026-04-05", now=now)
    assert r.stdout.splitlines()[0] == "d: no run for 2026-04-05"
    assert "skipped by `catchup: false`" in r.stdout
    # a pipeline with no run at all explains its next one
    d = jcli(root, "explain", "m", now=now)
    assert d["run_id"] is None and "no schedule" in d["why"][0]
