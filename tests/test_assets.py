"""Asset events and asset-scheduled pipelines: exactly one consumer run per ds, never before
its producers covered that ds; a cron fallback never duplicates it."""
from __future__ import annotations

import json

from harness import jcli, make_project, ok, qd as q, run_rows, wait_for

A = """
schedule: "0 1 * * *"
start_date: 2026-04-01
tasks:
  fetch: {run: "true", produces: [raw.a]}
"""
B = """
schedule: {every: 1h}
start_date: 2026-04-01
tasks:
  batch: {run: "true", produces: [raw.b]}
"""
C = """
schedule:
  - {assets: [raw.a, raw.b]}
  - "0 5 * * *"
start_date: 2026-04-01
assets:
  raw.a: {fresh_by: "03:00"}
tasks:
  mart: {run: "echo {{ ds }} $PIPECTL_LOGICAL_DATE >> mart.txt"}
"""


def consumer_runs(root, ds="2026-04-09"):
    """c's runs for ds (the 05:00 fallback's first tick also creates its run for the day before)."""
    return [(r["ds"], r["run_type"], r["logical_date"], r["state"]) for r in run_rows(root, "c") if r["ds"] == ds]


def test_consumer_runs_once_per_ds_after_every_producer_covered_it(tmp_path):
    root = make_project(tmp_path, {"a": A, "b": B, "c": C})
    ok(root, "tick", "--wait", now="2026-04-09T12:00:00Z")  # b: 11:00 batch of ds 04-09 (partial day); a: ds 04-08
    ok(root, "tick", "--wait", now="2026-04-09T12:00:30Z")
    assert consumer_runs(root) == []  # raw.b for 04-09 is partial
    assert [r["run_type"] for r in run_rows(root, "c")] == ["scheduled"]  # the fallback's own run for 04-08
    # a and b run at once: either may finish first
    assert q(root, "SELECT asset, ds, complete FROM asset_events ORDER BY asset, ds") == [
        {"asset": "raw.a", "ds": "2026-04-08", "complete": 1}, {"asset": "raw.b", "ds": "2026-04-09", "complete": 0}]
    ok(root, "tick", "--wait", now="2026-04-10T00:00:00Z")  # b's last batch of 04-09: raw.b complete for 04-09
    ok(root, "tick", "--wait", now="2026-04-10T00:00:30Z")
    assert consumer_runs(root) == []  # raw.a not there yet for 04-09
    ok(root, "tick", "--wait", now="2026-04-10T01:00:00Z")  # a's run for 04-09
    assert wait_for(lambda: [r[3] for r in consumer_runs(root)] == ["success"])
    assert consumer_runs(root) == [("2026-04-09", "asset", "2026-04-09T00:00:00+00:00", "success")]
    # later ticks, the 05:00 cron fallback and a re-run of one producer: still exactly one run for 04-09
    for now in ("2026-04-10T02:00:00Z", "2026-04-10T05:00:00Z", "2026-04-10T05:01:00Z"):
        ok(root, "tick", "--wait", now=now)
    ok(root, "trigger", "a", "--date", "2026-04-09", "--wait", now="2026-04-10T06:00:00Z")
    ok(root, "tick", "--wait", now="2026-04-10T06:01:00Z")
    assert consumer_runs(root) == [("2026-04-09", "asset", "2026-04-09T00:00:00+00:00", "success")]
    assert (root / "mart.txt").read_text().splitlines()[1:] == ["2026-04-09 2026-04-09T00:00:00+00:00"]
    out = {a["asset"]: a for a in jcli(root, "assets", now="2026-04-10T06:02:00Z")}
    assert out["raw.a"]["producers"] == ["a.fetch"] and out["raw.a"]["consumers"] == ["c"]
    assert out["raw.a"]["updates"][0]["ds"] == "2026-04-09" and out["raw.a"]["late"] is None
    assert [u["ds"] for u in out["raw.b"]["updates"]][:2] == ["2026-04-10", "2026-04-09"]


def test_cron_fallback_first_then_assets_do_not_duplicate(tmp_path):
    root = make_project(tmp_path, {"a": A.replace('"0 1 * * *"', '"0 7 * * *"'), "b": B, "c": C})
    ok(root, "tick", "--wait", now="2026-04-10T00:00:00Z")
    ok(root, "tick", "--wait", now="2026-04-10T05:00:00Z")  # fallback fires first for 04-09
    assert consumer_runs(root) == [("2026-04-09", "scheduled", "2026-04-09T05:00:00+00:00", "success")]
    ok(root, "tick", "--wait", now="2026-04-10T07:00:00Z")  # raw.a for 04-09 arrives late
    ok(root, "tick", "--wait", now="2026-04-10T07:01:00Z")
    assert consumer_runs(root) == [("2026-04-09", "scheduled", "2026-04-09T05:00:00+00:00", "success")]
    consumed = q(root, "SELECT asset, ds FROM asset_consumers WHERE consumer = 'c' ORDER BY asset")
    assert consumed == [{"asset": "raw.a", "ds": "2026-04-09"}, {"asset": "raw.b", "ds": "2026-04-09"}]


def test_late_assets(tmp_path):
    from pipectl.engine.assets import late_assets
    from pipectl.spec.config import load_config
    from pipectl.spec.loader import load_pipelines
    from pipectl.engine.tick import open_store
    root = make_project(tmp_path, {"a": A, "b": B, "c": C})
    ok(root, "tick", "--wait", now="2026-04-10T01:00:00Z")
    config = load_config(str(root))
    pipelines = load_pipelines(config).pipelines
    store = open_store(config)
    try:
        from datetime import datetime

        assert late_assets(store, pipelines, datetime.fromisoformat("2026-04-10T03:30:00+00:00")) == []
        assert late_assets(store, pipelines, datetime.fromisoformat("2026-04-11T02:59:00+00:00")) == []
        late = late_assets(store, pipelines, datetime.fromisoformat("2026-04-11T03:00:00+00:00"))
    finally:
        store.close()
    assert [(x["asset"], x["ds"], x["due"]) for x in late] == [("raw.a", "2026-04-10", "2026-04-11T03:00:00+00:00")]
    assert json.dumps(late)  # JSON-able for status --json
