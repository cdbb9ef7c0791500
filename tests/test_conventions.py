"""Conventions users expect of a command-line tool: --version, and graph in formats other tools read."""
from __future__ import annotations

from importlib.metadata import version

import pytest

from harness import Project

FAN_IN = """\
schedule: "0 2 * * *"
start_date: 2026-04-01
tasks:
  extract_a: {run: "true"}
  extract_b: {run: "exit 3"}
  join: {run: "true", needs: [extract_a, extract_b]}
"""


def test_version_prints_the_installed_version_and_exits_0(tmp_path):
    project = Project(tmp_path, {})
    r = project.cli("--version")
    assert (r.returncode, r.stdout, r.stderr) == (0, f"pipectl {version('pipectl')}\n", "")


def test_graph_as_dot_and_mermaid(tmp_path):
    project = Project(tmp_path, {"fan": FAN_IN})
    assert project.ok("graph", "fan", "--format", "dot").stdout == (
        'digraph "fan" {\n'
        "  rankdir=LR;\n"
        '  "extract_a" [label="extract_a"];\n'
        '  "extract_b" [label="extract_b"];\n'
        '  "join" [label="join"];\n'
        '  "extract_a" -> "join";\n'
        '  "extract_b" -> "join";\n'
        "}\n")
    assert project.ok("graph", "fan", "--format", "mermaid").stdout == (
        "flowchart LR\n"
        '  t0["extract_a"]\n'
        '  t1["extract_b"]\n'
        '  t2["join"]\n'
        "  t0 --> t2\n"
        "  t1 --> t2\n")


def test_graph_of_a_run_labels_each_task_with_its_state(tmp_path):
    project = Project(tmp_path, {"fan": FAN_IN})
    assert project.cli("tick", "--wait", now="2026-04-02T03:00:00Z").returncode == 1  # extract_b fails
    out = project.ok("graph", "fan", "--date", "2026-04-01", "--format", "mermaid", now="2026-04-02T03:01:00Z").stdout
    assert out.splitlines()[1:4] == ['  t0["extract_a (success)"]', '  t1["extract_b (failed)"]',
                                     '  t2["join (upstream_failed)"]']


def test_an_unknown_graph_format_gets_one_line_and_exit_2(tmp_path):
    project = Project(tmp_path, {"fan": FAN_IN})
    r = project.cli("graph", "fan", "--format", "svg")
    assert r.returncode == 2
    assert r.stderr == "pipectl: error: --format must be text, dot or mermaid; got 'svg'\n"


def test_graph_assets_draws_the_lineage_across_pipelines():
    from conftest import REPO, call_cli
    project = REPO / "examples" / "three_cadences"
    text = call_cli("--project", project, "graph", "--assets")
    assert text.returncode == 0, text.stderr
    assert text.stdout.splitlines()[3:6] == ["raw.accounts", "  produced by salesforce_to_raw.fetch_accounts_full",
                                             "  consumed by daily_revenue_by_account"]
    data = __import__("json").loads(call_cli("--project", project, "--json", "graph", "--assets").stdout)
    assert data["assets"]["raw.events"] == {"producers": ["kafka_events_to_raw.register_partition"],
                                            "consumers": ["daily_revenue_by_account"]}
    assert data["assets"]["mart.daily_revenue_by_account"]["consumers"] == []
    dot = call_cli("--project", project, "graph", "--assets", "--format", "dot").stdout
    assert '  "raw.payments" [shape=ellipse];' in dot
    assert '  "stripe_payments_to_raw.fetch_stripe_pages" -> "raw.payments";' in dot
    assert '  "raw.payments" -> "daily_revenue_by_account";' in dot


@pytest.mark.parametrize("args, message", [
    (["graph", "--assets", "x"], "--assets draws the whole project: give no PIPELINE, --date, --at or --run-id"),
    (["graph"], "missing PIPELINE (or --assets for the project's asset lineage)"),
])
def test_graph_misuse_gets_one_line_and_exit_2(args, message):
    from conftest import REPO, call_cli
    r = call_cli("--project", REPO / "examples" / "three_cadences", *args)
    assert (r.returncode, r.stderr) == (2, f"pipectl: error: {message}\n")


def _complete(project, words: str, cword: int) -> list[str]:
    """What bash offers: the script from `pipectl completion bash`, run by a real bash."""
    import subprocess
    import sys
    from pathlib import Path
    bindir = Path(sys.executable).parent
    script = f'''
        eval "$(pipectl completion bash)"
        COMP_WORDS=({words})
        COMP_CWORD={cword}
        _pipectl_completion pipectl
        printf '%s\\n' "${{COMPREPLY[@]}}"
    '''
    r = subprocess.run(["bash", "-c", script], capture_output=True, text=True, cwd=project, timeout=60,
                       env={"PATH": f"{bindir}:/usr/bin:/bin", "HOME": str(project)})
    assert r.returncode == 0, r.stderr
    return [line for line in r.stdout.splitlines() if line]


def test_bash_completes_commands_pipelines_tasks_and_run_ids(tmp_path):
    project = Project(tmp_path, {"fan": FAN_IN, "other": FAN_IN})
    assert _complete(project.root, "pipectl ru", 1) == ["run", "runs"]
    assert _complete(project.root, 'pipectl runs ""', 2) == ["fan", "other"]
    assert _complete(project.root, "pipectl retry fan --task extract_", 4) == ["extract_a", "extract_b"]
    assert project.cli("tick", "--wait", now="2026-04-02T03:00:00Z").returncode == 1
    assert _complete(project.root, "pipectl show fan --run-id sched", 4) == ["scheduled__2026-04-01T02:00:00+00:00"]


def test_completion_refuses_an_unknown_shell(tmp_path):
    r = Project(tmp_path, {}).cli("completion", "tcsh")
    assert (r.returncode, r.stderr) == (2, "pipectl: error: shell must be one of bash, zsh, fish; got 'tcsh'\n")
    for shell in ("bash", "zsh", "fish"):
        assert "_PIPECTL_COMPLETE" in Project(tmp_path / shell, {}).ok("completion", shell).stdout
