from datetime import datetime, timezone

import pytest

from pipectl.spec.templates import TemplateError, find_variables, render, shell_command, task_env
VALUES = {
    "ds": "2026-04-25",
    "logical_date": datetime(2026, 4, 25, 2, tzinfo=timezone.utc),
    "pipeline": "orders",
    "task": "extract",
    "run_id": "scheduled__2026-04-25T02:00:00+00:00",
    "try_number": 2,
    "params": {"region": "x; rm -rf /", "n": 3},
}


def test_find_variables_offsets():
    text = "a {{ ds }} b {{params.region}}"
    assert find_variables(text) == [("ds", 5), ("params.region", 15)]
    assert text[5:7] == "ds"


def test_render_without_shell_is_verbatim():
    assert render("{{ ds_nodash }}/{{ params.region }}", VALUES, shell=False) == "20260425/x; rm -rf /"
    assert render("{{ logical_date }}", VALUES, shell=False) == "2026-04-25T02:00:00+00:00"


def _sh(cmd: str, values) -> str:
    """What /bin/sh prints for a rendered command, given the environment it asks for."""
    import os
    import subprocess

    command, env = shell_command(cmd, values)
    return subprocess.run(["/bin/sh", "-c", command], env={**os.environ, **env}, capture_output=True, text=True,
                          check=True).stdout


def test_param_cannot_inject_shell_syntax():
    command, env = shell_command("echo {{ params.region }}", VALUES)
    assert command == 'echo "${PIPECTL_PARAM_REGION}"'  # a reference, never the value
    assert env == {"PIPECTL_PARAM_REGION": "x; rm -rf /"}
    assert _sh("printf '%s|' {{ params.region }}", VALUES) == "x; rm -rf /|"


@pytest.mark.parametrize(
    "cmd, word",
    [
        ("printf '%s|' 'day {{ params.region }}!'", "day x; rm -rf /!|"),
        ('printf \'%s|\' "day {{ params.region }}!"', "day x; rm -rf /!|"),
        ("printf '%s|' day-{{ params.region }}!", "day-x; rm -rf /!|"),
    ],
)
def test_value_inside_quotes_stays_one_word(cmd, word):
    assert _sh(cmd, VALUES) == word


def test_quote_in_value_cannot_escape():
    values = {"params": {"v": "a'b\"c $(id) `id`"}}
    for cmd in ["printf '%s|' {{ params.v }}", "printf '%s|' '{{ params.v }}'", "printf '%s|' \"{{ params.v }}\""]:
        assert _sh(cmd, values) == "a'b\"c $(id) `id`|"


def test_render_refuses_shell():
    with pytest.raises(TypeError):
        render("echo {{ ds }}", VALUES, shell=True)


def test_missing_value_raises():
    with pytest.raises(TemplateError):
        shell_command("{{ item }}", VALUES)
    with pytest.raises(TemplateError):
        shell_command("{{ params.nope }}", VALUES)


def test_task_env():
    env = task_env({**VALUES, "item": "eu-west-1"})
    assert env["PIPECTL_DS"] == "2026-04-25"
    assert env["PIPECTL_DS_NODASH"] == "20260425"
    assert env["PIPECTL_LOGICAL_DATE"] == "2026-04-25T02:00:00+00:00"
    assert env["PIPECTL_TRY_NUMBER"] == "2"
    assert env["PIPECTL_PARAM_REGION"] == "x; rm -rf /"
    assert env["PIPECTL_PARAM_N"] == "3"
    assert env["PIPECTL_ITEM"] == "eu-west-1"
    assert env["PIPECTL_PIPELINE"] == "orders" and env["PIPECTL_TASK"] == "extract"
    assert all(isinstance(v, str) for v in env.values())


def test_a_command_that_cannot_be_rendered_fails_alone_with_its_reason():
    """A snapshot from before validate refused a context (or a value gone missing) fails its own
    task, hook or sensor with the reason; it never raises into the engine's step."""
    import os
    import subprocess

    from pipectl.spec.templates import runnable_command
    for cmd in ["sh -c 'echo {{ params.region }}'", "echo {{ params.nope }}"]:
        command, env = runnable_command(cmd, VALUES)
        r = subprocess.run(["/bin/sh", "-c", command], env={**os.environ, **env}, capture_output=True, text=True)
        assert r.returncode == 127
        assert r.stderr.startswith("pipectl: not run: ") and r.stdout == ""
    assert runnable_command("echo {{ ds }}", VALUES) == ('echo "${PIPECTL_DS}"', {"PIPECTL_DS": "2026-04-25"})
