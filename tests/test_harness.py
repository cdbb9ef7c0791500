"""The harness itself: the in-process CLI says what the real process says, and leaves nothing behind."""
from __future__ import annotations

import os
import sys

import pytest

from harness import Project, call_cli, run_cli

SPEC = """\
schedule: "0 2 * * *"
start_date: 2026-04-01
catchup: false
tasks:
  extract:
    run: echo {{ ds }} >> counts
  load:
    run: test ! -e fail_{{ ds }}
edges:
  - extract >> load
"""
NOW = "2026-04-05T03:00:00Z"


@pytest.fixture
def project(tmp_path):
    return Project(tmp_path / "proj", {"etl": SPEC})


CASES = [
    ("validate",),
    ("--json", "validate"),
    ("next", "etl"),
    ("runs", "etl"),
    ("status",),
    ("graph", "etl", "--no-color"),
    ("runs", "nope"),  # a usage error: one line, exit 2
    ("cron", "61 * * * *"),
    ("--now", "soon", "status"),
    ("tick", "--dry-run"),
]


@pytest.mark.parametrize("args", CASES, ids=[" ".join(a) for a in CASES])
def test_in_process_and_subprocess_agree(project, args):
    real = run_cli("--project", project.root, "--now", NOW, *args)
    mine = call_cli("--project", project.root, "--now", NOW, *args)
    assert (mine.returncode, mine.stdout, mine.stderr) == (real.returncode, real.stdout, real.stderr)


def test_a_tick_and_its_reads_agree(project):
    real_dir = Project(project.root.parent / "real", {"etl": SPEC})
    (project.root / "fail_2026-04-04").touch()
    (real_dir.root / "fail_2026-04-04").touch()
    mine = project.cli("tick", "--wait", now=NOW)
    real = real_dir.run_cli("tick", "--wait", now=NOW)
    assert (mine.returncode, mine.stdout, mine.stderr) == (real.returncode, real.stdout, real.stderr)
    assert mine.returncode == 1 and mine.stderr == "pipectl: error: 1 run failed: etl 2026-04-04\n"
    for p in (project, real_dir):
        assert p.states("etl") == {("2026-04-04", "extract"): "success", ("2026-04-04", "load"): "failed"}
        assert [r.state for r in p.runs("etl")] == ["failed"]


def test_a_call_restores_the_process(project):
    from pipectl.spec import secrets

    env, cwd, argv = dict(os.environ), os.getcwd(), list(sys.argv)
    streams = sys.stdin, sys.stdout, sys.stderr
    masking = secrets._source, secrets._known, secrets.reporting_error
    r = project.cli("runs", "etl", env={"PIPECTL_DEBUG": "1", "NO_COLOR": "1"})
    assert r.returncode == 0 and "no runs yet" in r.stdout
    assert dict(os.environ) == env and os.getcwd() == cwd and sys.argv == argv
    assert (sys.stdin, sys.stdout, sys.stderr) == streams
    assert (secrets._source, secrets._known, secrets.reporting_error) == masking


def test_library_tick_step_and_reads(project):
    result = project.tick(NOW, wait=True)
    assert not result.busy and result.report.created
    assert project.states("etl", ds="2026-04-04") == {"extract": "success", "load": "success"}
    assert (project.root / "counts").read_text() == "2026-04-04\n"
    report = project.step(NOW)  # nothing left to do: a step changes nothing
    assert not report.launched and not report.created
    assert [r.ds for r in project.runs()] == ["2026-04-04"]
    assert [(t.task, t.state, t.exit_code) for t in project.tries("etl")] == [("extract", "success", 0), ("load", "success", 0)]
