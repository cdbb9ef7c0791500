"""Template values never become shell syntax: every payload, every shell context, through the real CLI."""
from __future__ import annotations

import importlib.util
import subprocess
from pathlib import Path

import pytest

from conftest import call_cli, make_project
from pipectl.spec.templates import shell_command
REPO = Path(__file__).resolve().parent.parent


def _soak():
    spec = importlib.util.spec_from_file_location("soak_inject", REPO / "bench" / "soak_inject.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


soak = _soak()

# One of each family: command substitution, backticks, separators, a newline, quote breakers,
# an expansion, a heredoc terminator, and a value that is only odd.
PAYLOADS = [
    "$(touch @M@)",
    "`touch @M@`",
    "; touch @M@ #",
    "x\ntouch @M@\n",
    "'\"; touch @M@; echo '\"",
    "${x:-$(touch @M@)}",
    "EOF\ntouch @M@\nEOF",
    "$((x[$(touch @M@)]))",
    " spaced  * ? ~ \\ é ☃",
]


def test_every_payload_arrives_as_data_in_every_context(tmp_path):
    """Each payload goes in as `trigger --param x=...`; every context (bare, "...", '...', $(...) in
    "...", backticks, heredoc, ${V:-...}, hooks, a command sensor, a foreach command, a list run)
    writes what it got: byte-exact, and no payload touched its marker file."""
    result = soak.inject(tmp_path / "p", PAYLOADS)
    assert result["problems"] == []
    assert (result["injections"], result["wrong"]) == (0, 0)
    assert result["contexts"] == 15


def test_soak_bounded(tmp_path):
    """The bench script at small size: its one verdict line says nothing leaked."""
    r = subprocess.run([__import__("sys").executable, str(REPO / "bench" / "soak_inject.py"), "--quick"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    line = r.stdout.strip()
    assert line.startswith("soak_inject: 5 payloads x 15 contexts: 0 injections, 0 wrong values; ")
    assert " 0 unmasked; state dir: secret absent" in line


# -- how each context is written ----------------------------------------------------

VALUES = {"ds": "2026-04-25", "params": {"x": "v"}}


@pytest.mark.parametrize("cmd, rendered", [
    ("echo {{ params.x }}", 'echo "${PIPECTL_PARAM_X}"'),
    ('echo "a {{ params.x }}"', 'echo "a ${PIPECTL_PARAM_X}"'),
    ("echo 'a {{ params.x }} b'", "echo 'a '\"${PIPECTL_PARAM_X}\"' b'"),
    ('echo "$(cat {{ params.x }})"', 'echo "$(cat "${PIPECTL_PARAM_X}")"'),
    ('echo "`cat {{ params.x }}`"', 'echo "`cat "${PIPECTL_PARAM_X}"`"'),
    ('echo ${V:-{{ params.x }}}', 'echo ${V:-"${PIPECTL_PARAM_X}"}'),
    ('echo "${V:-{{ params.x }}}"', 'echo "${V:-${PIPECTL_PARAM_X}}"'),
    ("cat <<EOF\n{{ params.x }} '{{ ds }}'\nEOF\necho {{ ds }}",
     "cat <<EOF\n${PIPECTL_PARAM_X} '${PIPECTL_DS}'\nEOF\necho \"${PIPECTL_DS}\""),
    ("true # {{ params.x }}", "true # PIPECTL_PARAM_X"),
    ("sh -c 'echo \"$1\"' sh {{ params.x }}", "sh -c 'echo \"$1\"' sh \"${PIPECTL_PARAM_X}\""),
])
def test_reference_form_per_context(cmd, rendered):
    command, env = shell_command(cmd, VALUES)
    assert command == rendered
    assert env == {k: v for k, v in {"PIPECTL_PARAM_X": "v", "PIPECTL_DS": "2026-04-25"}.items()
                   if "${" + k + "}" in rendered or k in rendered}


def test_params_whose_variable_names_collide_keep_their_own_values():
    values = {"params": {"a-b": "dash", "a_b": "underscore"}}
    command, env = shell_command("printf '%s|' {{ params.a-b }} {{ params.a_b }}", values)
    import os

    out = subprocess.run(["/bin/sh", "-c", command], env={**os.environ, **env}, capture_output=True,
                         text=True).stdout
    assert out == "dash|underscore|"


# -- what validate refuses ------------------------------------------------------------

REFUSED = [
    # (run command, the start of validate's message)
    ('sh -c "echo {{ params.x }}"', "'sh' parses this word as code"),
    ("bash -ec 'echo {{ params.x }}'", "'bash' parses this word as code"),
    ("eval echo {{ params.x }}", "'eval' parses this word as code"),
    ('python3 -c "print({{ params.x }})"', "'python3' parses this word as code"),
    ("ssh host ls {{ params.x }}", "'ssh' parses this word as code"),
    ("echo {{ params.x }} | sh", "'sh' reads its code from the pipe"),
    ("echo $(( {{ params.x }} + 1 ))", "a template inside $((...)) is evaluated as an expression"),
    ("echo \\{{ params.x }}", "a template right after a backslash"),
]


@pytest.mark.parametrize("command, message", REFUSED)
def test_validate_refuses_contexts_that_parse_the_value(tmp_path, command, message):
    text = "params: {x: ''}\ntasks:\n  t:\n    run: %s\n" % _yaml_str(command)
    root = make_project(tmp_path, {"p": text})
    r = call_cli("--project", root, "validate", cwd=root)
    assert r.returncode == 1
    line = r.stdout.splitlines()[0] if r.stdout.strip() else r.stderr.splitlines()[0]
    col = _column(command)
    assert line.startswith(f"pipelines/p.yaml:4:{col}: {message}"), (line, col)
    assert "PIPECTL_PARAM_X" in line or "backslash" in line


def _yaml_str(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def _column(command: str) -> int:
    """Where validate points: the template's name, or the scalar's start when YAML escapes change offsets."""
    if "'" in command:
        return 10  # `    run: ` is 9 characters
    return 11 + command.index("{{ params.x }}") + 3


def test_validate_refuses_quoted_heredoc_in_hooks_sensors_and_foreach(tmp_path):
    text = """\
        params: {x: ''}
        on_failure: |
          cat <<'EOF'
          {{ params.x }}
          EOF
        tasks:
          s:
            sensor:
              command: sh -c "test -f {{ params.x }}"
          f:
            foreach: {command: "eval ls {{ ds }}"}
            run: echo {{ item }}
        """
    root = make_project(tmp_path, {"p": text})
    r = call_cli("--project", root, "validate", cwd=root)
    assert r.returncode == 1
    lines = [ln for ln in (r.stdout + r.stderr).splitlines() if ln.startswith("pipelines/")]
    assert [ln.split(": ", 1)[0] for ln in lines] == ["pipelines/p.yaml:4:6", "pipelines/p.yaml:9:34",
                                                      "pipelines/p.yaml:11:36"]
    assert "heredoc with a quoted delimiter (<<'EOF') is never expanded; write \"$PIPECTL_PARAM_X\"" in lines[0]
    assert "'sh' parses this word as code" in lines[1]
    assert "'eval' parses this word as code" in lines[2]


def test_validate_accepts_the_safe_spellings(tmp_path):
    text = """\
        params: {x: ''}
        tasks:
          a: {run: "sh -c 'printf %s \\"$1\\"' sh {{ params.x }}"}
          b: {run: "python3 scripts/x.py --date {{ ds }} {{ params.x }}"}
          c: {run: "awk -v d={{ ds }} '{print d}' f"}
          d:
            run: |
              sh <<'EOF'
              echo "$PIPECTL_PARAM_X"
              EOF
          e: {run: 'printf %s "$(printf %s "{{ params.x }}")" # {{ ds }}'}
        """
    root = make_project(tmp_path, {"p": text})
    r = call_cli("--project", root, "validate", cwd=root)
    assert r.returncode == 0, r.stdout + r.stderr


def test_hook_with_a_trailing_comment_still_runs_and_reports_its_exit(tmp_path):
    """A hook's command is handed to its own shell: a comment or heredoc in it cannot eat the
    wrapper's failure report."""
    text = """\
        params: {x: "a b"}
        on_success: |
          printf %s {{ params.x }} > hook.out; exit 4 # done
        tasks:
          t: {run: "true"}
        """
    root = make_project(tmp_path, {"p": text})
    r = call_cli("--project", root, "trigger", "p", "--date", "2026-01-01", "--wait")
    assert r.returncode == 0, r.stderr
    import time

    deadline = time.time() + 10
    logs = list((root / ".pipectl" / "logs").rglob("hooks.log"))
    while time.time() < deadline and not (logs and "exited 4" in logs[0].read_text()):
        time.sleep(0.1)
        logs = list((root / ".pipectl" / "logs").rglob("hooks.log"))
    assert (root / "hook.out").read_text() == "a b"
    assert logs[0].read_text() == "pipectl: hook on_success exited 4\n"
