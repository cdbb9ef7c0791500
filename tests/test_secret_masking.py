"""A secret's value is never printed (terminal, JSON, hook output, error lines) and never stored."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from conftest import call_cli, make_project, run_cli

TOKEN = "tok-5ecr3t-9f8e7d"
QUOTED = 'p@ss"w\\rd-é-Zq'  # JSON spells it differently from the raw text
FILE_KEY = "filekey-77aa55bb"
ENV = {"MY_TOKEN": TOKEN, "MY_QUOTED": QUOTED}
SECRETS = (TOKEN, QUOTED, FILE_KEY)

SPEC = """\
name: sec
params: {token: none}
env:
  TOKEN: ${MY_TOKEN}
  QUOTED: ${MY_QUOTED}
env_file: secrets.env
on_success: printf 'hook saw %s %s %s\\n' "$TOKEN" "$QUOTED" "$FILE_KEY"
tasks:
  leak:
    run: printf 'task saw %s %s %s\\n' "$TOKEN" "$QUOTED" "$FILE_KEY"
  sense:
    sensor: {command: 'test "{{ params.token }}" = none'}  # waits unless the param is left alone
    poke_interval: 1h
    timeout: 2h
"""


@pytest.fixture
def project(tmp_path):
    root = make_project(tmp_path, {"sec": SPEC})
    (root / "secrets.env").write_text(f"FILE_KEY={FILE_KEY}\n")
    return root


def cli(root, *args):
    return call_cli("--project", root, *args, env=ENV, cwd=root)


def spellings(value: str) -> set[str]:
    return {value, json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1], repr(value)[1:-1]}


def assert_masked(text: str, what: str) -> None:
    for secret in SECRETS:
        for s in spellings(secret):
            assert s not in text, f"{what} printed {s!r}"


def test_state_dir_never_holds_a_secret(project):
    """Snapshots keep `${MY_TOKEN}` and the env_file's path; the task still got the values."""
    r = cli(project, "trigger", "sec", "--date", "2026-01-01", "--wait")
    assert r.returncode == 0, r.stderr
    logs = project / ".pipectl" / "logs"
    task_log = next(logs.rglob("leak.1.log")).read_text()
    assert task_log == f"task saw {TOKEN} {QUOTED} {FILE_KEY}\n"  # resolved when it started
    checked = []
    for path in (project / ".pipectl").rglob("*"):
        if path.is_file() and logs not in path.parents:  # the tasks' own logs hold what they printed
            data = path.read_bytes()
            checked.append(path.name)
            for secret in SECRETS:
                assert secret.encode() not in data, f"{path} holds a secret"
    assert "state.db" in checked
    db = (project / ".pipectl" / "state.db").read_bytes() + b"".join(
        p.read_bytes() for p in (project / ".pipectl").glob("state.db-*"))
    assert b"${MY_TOKEN}" in db  # the reference is what is stored


def test_json_and_explain_mask_a_param_equal_to_a_secret(project):
    """A param given on the command line that equals a secret value is a secret in output too."""
    r = cli(project, "trigger", "sec", "--date", "2026-01-02", "--param", f"token={TOKEN}")
    assert r.returncode == 0, r.stderr
    assert_masked(r.stdout + r.stderr, "trigger")
    for args in (("runs", "sec", "--json"), ("status", "--json"), ("status", "sec", "--json"),
                 ("explain", "sec", "--date", "2026-01-02"), ("explain", "sec", "--date", "2026-01-02", "--json"),
                 ("show", "sec", "--date", "2026-01-02", "--json"), ("runs", "sec"), ("status",)):
        r = cli(project, *args)
        assert r.returncode == 0, (args, r.stderr)
        assert_masked(r.stdout + r.stderr, " ".join(args))
    runs = json.loads(cli(project, "runs", "sec", "--json").stdout)
    assert runs[0]["params"]["token"] == "***"
    explain = cli(project, "explain", "sec", "--date", "2026-01-02").stdout
    assert 'test "***" = none' in explain


def test_hook_output_is_masked(project):
    r = cli(project, "trigger", "sec", "--date", "2026-01-03", "--wait")
    assert r.returncode == 0, r.stderr
    deadline = time.time() + 10
    shown = ""
    while time.time() < deadline and "hook saw" not in shown:
        shown = cli(project, "logs", "sec", "--hooks", "--date", "2026-01-03").stdout
        time.sleep(0.1)
    assert shown == "hook saw *** *** ***\n"


@pytest.mark.parametrize("args", [
    ("trigger", "sec", "--param", TOKEN),
    ("show", "sec", "--date", TOKEN),
    ("trigger", "sec", "--date", QUOTED),
    ("logs", "sec", TOKEN, "--date", "2026-01-01"),
    ("backfill", "sec", "--start", "2026-01-01", "--end", "2026-01-01", "--tasks", "(" + TOKEN),
    ("runs", TOKEN),
    ("--now", TOKEN, "status"),
])
def test_error_lines_that_echo_input_mask_secrets(project, args):
    cli(project, "trigger", "sec", "--date", "2026-01-01")  # a run, so `logs` gets as far as the task name
    r = cli(project, *args)
    assert r.returncode in (1, 2)
    assert r.stderr.startswith("pipectl: error: ") and r.stderr.count("\n") == 1, r.stderr
    assert "***" in r.stderr
    assert_masked(r.stdout + r.stderr, " ".join(args))


def test_a_broken_secrets_module_fails_loudly(project, tmp_path):
    """No fallback prints unmasked when the masking code cannot be imported."""
    shadow = tmp_path / "shadow" / "pipectl"
    src = Path(__file__).resolve().parent.parent / "src" / "pipectl"
    import shutil

    shutil.copytree(src, shadow)
    (shadow / "spec" / "secrets.py").write_text("raise ImportError('broken on purpose')\n")
    r = run_cli("--project", project, "runs", "sec", env={**ENV, "PYTHONPATH": str(shadow.parent)}, cwd=project)
    assert r.returncode != 0
    assert "broken on purpose" in r.stderr
    assert_masked(r.stdout, "runs with a broken secrets.py")
