import shlex
from datetime import datetime, timezone

import pytest

from pipectl.templates import TemplateError, find_variables, render, task_env

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


def test_param_cannot_inject_shell_syntax():
    out = render("echo {{ params.region }}", VALUES, shell=True)
    assert out == "echo 'x; rm -rf /'"
    assert shlex.split(out) == ["echo", "x; rm -rf /"]


@pytest.mark.parametrize(
    "cmd, word",
    [
        ("echo 'day {{ params.region }}!'", "day x; rm -rf /!"),
        ('echo "day {{ params.region }}!"', "day x; rm -rf /!"),
        ("echo day-{{ params.region }}!", "day-x; rm -rf /!"),
    ],
)
def test_value_inside_quotes_stays_one_word(cmd, word):
    assert shlex.split(render(cmd, VALUES, shell=True)) == ["echo", word]


def test_quote_in_value_cannot_escape():
    values = {"params": {"v": "a'b\"c $(id) `id`"}}
    for cmd in ["x {{ params.v }}", "x '{{ params.v }}'", 'x "{{ params.v }}"']:
        assert shlex.split(render(cmd, values, shell=True)) == ["x", "a'b\"c $(id) `id`"]


def test_missing_value_raises():
    with pytest.raises(TemplateError):
        render("{{ item }}", VALUES, shell=True)
    with pytest.raises(TemplateError):
        render("{{ params.nope }}", VALUES, shell=True)


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
