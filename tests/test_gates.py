"""Conditional tasks and gates: an exit code listed in skip_exit_codes skips a task instance
(no retry), and its downstream follows its trigger rule, as Airflow's skip_on_exit_code does;
none_failed_min_one_success and none_skipped complete Airflow's rule table."""
from __future__ import annotations

import pytest

from harness import Project
from pipectl.engine.rules import READY, trigger_outcome
from pipectl.model.states import FAILED, PENDING, RUNNING, SKIPPED, SUCCESS, UPSTREAM_FAILED

GATE = """\
schedule: "0 3 * * *"
start_date: 2026-04-01
tasks:
  check:
    run: "exit {{ params.code }}"
    retries: 3
    retry_delay: 1s
    skip_exit_codes: [99]
  publish: {run: "touch published", needs: [check]}
  either: {run: "true", needs: [check, other], trigger_rule: none_failed_min_one_success}
  other: {run: "true"}
  strict: {run: "true", needs: [check], trigger_rule: none_skipped}
  always: {run: "true", needs: [check], trigger_rule: all_done}
params: {code: "0"}
"""


def test_a_skip_exit_code_skips_without_retry_and_downstream_follows_its_rule(tmp_path):
    project = Project(tmp_path, {"g": GATE.replace('code: "0"', 'code: "99"')})
    project.ok("tick", "--wait", now="2026-04-02T03:00:00Z")
    states = project.states("g", "2026-04-01")
    assert states == {"check": "skipped", "publish": "skipped", "either": "success", "other": "success",
                      "strict": "skipped", "always": "success"}
    tries = [(t.task, t.try_number, str(t.state), t.exit_code, t.reason) for t in project.tries("g")
             if t.task == "check"]
    assert tries == [("check", 1, "skipped", 99, "skip_exit_code")]
    assert str(project.runs("g")[0].state) == "success"  # skipped is not failed
    assert not project.path("published").exists()
    why = " ".join(project.ok("explain", "g", "-d", "2026-04-01", now="2026-04-02T03:01:00Z").stdout.split())
    assert "check skipped skipped: skip_exit_code (exit 99) on try 1" in why
    assert "publish skipped skipped because check skipped" in why
    assert "strict skipped skipped because an upstream was skipped (none_skipped): check skipped" in why
    events = [r[0] for r in project.q("SELECT message FROM events WHERE kind = 'task_skipped' AND task = 'check'")]
    assert events == ["exit 99, listed in skip_exit_codes"]


def test_an_exit_code_not_listed_still_fails_and_retries(tmp_path):
    project = Project(tmp_path, {"g": GATE.replace('code: "0"', 'code: "3"')})
    r = project.cli("tick", "--wait", now="2026-04-02T03:00:00Z")
    assert r.returncode == 1
    states = project.states("g", "2026-04-01")
    assert (states["check"], states["publish"], states["either"], states["strict"], states["always"]) == (
        "failed", "upstream_failed", "upstream_failed", "success", "success")  # none_skipped runs after a failure
    assert [t.try_number for t in project.tries("g") if t.task == "check"] == [1, 2, 3, 4]


S, F, K, U, P, R = SUCCESS, FAILED, SKIPPED, UPSTREAM_FAILED, PENDING, RUNNING
RULES = [
    # none_failed_min_one_success: no upstream failed, and at least one succeeded
    ("none_failed_min_one_success", [S, K], READY),
    ("none_failed_min_one_success", [K, K], SKIPPED),
    ("none_failed_min_one_success", [S, F], UPSTREAM_FAILED),
    ("none_failed_min_one_success", [S, U], UPSTREAM_FAILED),
    ("none_failed_min_one_success", [S, R], None),
    ("none_failed_min_one_success", [F, R], UPSTREAM_FAILED),
    # none_skipped: every upstream done, none skipped (failed ones allowed)
    ("none_skipped", [S, F], READY),
    ("none_skipped", [S, U], READY),
    ("none_skipped", [S, K], SKIPPED),
    ("none_skipped", [K, R], SKIPPED),
    ("none_skipped", [S, P], None),
    # the rules that were there, with a skipped upstream
    ("all_success", [S, K], SKIPPED),
    ("none_failed", [K, K], READY),
    ("all_done", [K, F], READY),
    ("one_success", [K, K], UPSTREAM_FAILED),
]


@pytest.mark.parametrize("rule, upstream, outcome", RULES, ids=[f"{r}-{'-'.join(u)}" for r, u, _ in RULES])
def test_trigger_rule_table(rule, upstream, outcome):
    assert trigger_outcome(rule, list(upstream)) == outcome


def test_validate_refuses_a_bad_skip_exit_code(tmp_path):
    project = Project(tmp_path, {"g": GATE.replace("skip_exit_codes: [99]", "skip_exit_codes: [300]")})
    r = project.cli("validate")
    assert r.returncode == 1
    assert "skip_exit_codes" in r.stderr and "pipelines/g.yaml:8:" in r.stderr


OWNED = """\
schedule: "0 3 * * *"
start_date: 2026-04-01
owner: data-team
on_failure: 'echo "$PIPECTL_TASK $PIPECTL_OWNER" >> owners.log'
tasks:
  extract: {run: "exit 1", owner: alice}
  load: {run: "true", needs: [extract], trigger_rule: all_done}
"""


def test_owner_is_shown_and_reaches_hooks_and_metrics(tmp_path):
    project = Project(tmp_path, {"owned": OWNED})
    assert project.cli("tick", "--wait", now="2026-04-02T03:00:00Z").returncode == 1
    from harness import wait_for
    assert wait_for(lambda: project.path("owners.log").exists() and
                    project.path("owners.log").read_text() == "extract alice\n", 10)
    status = project.ok("status", now="2026-04-02T03:01:00Z").stdout
    assert "owned (data-team)" in status
    assert project.jcli("status", now="2026-04-02T03:01:00Z")[0]["owner"] == "data-team"
    show = project.ok("show", "owned", "-d", "2026-04-01", now="2026-04-02T03:01:00Z").stdout
    assert "  owner data-team · extract: alice" in show
    detail = project.jcli("show", "owned", "-d", "2026-04-01", now="2026-04-02T03:01:00Z")
    assert detail["owner"] == "data-team"
    assert {t["task"]: t["owner"] for t in detail["task_instances"]} == {"extract": "alice", "load": "data-team"}
    metrics = project.ok("metrics", now="2026-04-02T03:01:00Z").stdout
    assert 'pipectl_pipeline_info{project="' in metrics and 'pipeline="owned",owner="data-team"} 1' in metrics
