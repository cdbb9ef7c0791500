"""examples/check: the data-quality gate and the conditional deploy, run for real."""
from __future__ import annotations

import shutil

from conftest import REPO, call_cli
from harness import Project


def test_the_gate_never_publishes_short_days_and_the_deploy_happens_only_when_better(tmp_path):
    root = tmp_path / "check"
    shutil.copytree(REPO / "examples" / "check", root)
    now = "2026-04-05T08:00:00Z"
    gate = call_cli("--project", root, "--now", now, "backfill", "orders_gate", "--start", "2026-04-01",
                    "--end", "2026-04-04", "--wait")
    assert gate.returncode == 1  # two days fail the gate
    deploy = call_cli("--project", root, "--now", now, "backfill", "deploy_if_better", "--start", "2026-04-01",
                      "--end", "2026-04-04", "--wait")
    assert deploy.returncode == 0, deploy.stderr
    project = Project.existing(root)
    gate_states = {ds: project.states("orders_gate", ds) for ds in ("2026-04-01", "2026-04-02", "2026-04-03",
                                                                     "2026-04-04")}
    short = {"extract": "success", "check_rows": "failed", "publish": "upstream_failed"}
    full = {"extract": "success", "check_rows": "success", "publish": "success"}
    assert gate_states == {"2026-04-01": short, "2026-04-02": short, "2026-04-03": full, "2026-04-04": full}
    # bad data is not retried: one try each, although check_rows has retries: 2
    assert [(t.task, t.try_number) for t in project.tries("orders_gate", "2026-04-01")
            if t.task == "check_rows"] == [("check_rows", 1)]
    assert sorted(p.name for p in (root / "published").iterdir()) == ["orders_2026-04-03.csv",
                                                                     "orders_2026-04-04.csv"]
    better = {"train": "success", "compare": "success", "deploy": "success", "report": "success"}
    worse = {"train": "success", "compare": "skipped", "deploy": "skipped", "report": "success"}
    assert {ds: project.states("deploy_if_better", ds) for ds in ("2026-04-01", "2026-04-02", "2026-04-03",
                                                                  "2026-04-04")} == {
        "2026-04-01": better, "2026-04-02": worse, "2026-04-03": worse, "2026-04-04": better}
    assert [str(r.state) for r in project.runs("deploy_if_better")] == ["success"] * 4
    assert (root / "models" / "deployments.log").read_text() == "2026-04-01\n2026-04-04\n"
