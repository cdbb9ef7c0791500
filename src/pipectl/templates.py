"""``{{ var }}`` templates in commands, sensor targets and hooks.

Import-light on purpose: the task reaper and ``tick`` render commands on the
hot path, so this module uses only the standard library.
"""
from __future__ import annotations

import re
import shlex
from datetime import date, datetime
from typing import Any, Mapping

# Base names; ``params.NAME`` and ``item`` are allowed where the spec says so.
TEMPLATE_VARS: tuple[str, ...] = (
    "ds",
    "ds_nodash",
    "logical_date",
    "data_interval_start",
    "data_interval_end",
    "run_id",
    "pipeline",
    "task",
    "try_number",
    "params",
    "item",
)

# Anything between braces is captured so that a typo like `{{ ds | upper }}`
# is reported as an unknown variable instead of passing through silently.
_TEMPLATE_RE = re.compile(r"\{\{(\s*)(.*?)\s*\}\}")

_ENV_NAMES = {
    "pipeline": "PIPECTL_PIPELINE",
    "task": "PIPECTL_TASK",
    "run_id": "PIPECTL_RUN_ID",
    "ds": "PIPECTL_DS",
    "ds_nodash": "PIPECTL_DS_NODASH",
    "logical_date": "PIPECTL_LOGICAL_DATE",
    "data_interval_start": "PIPECTL_DATA_INTERVAL_START",
    "data_interval_end": "PIPECTL_DATA_INTERVAL_END",
    "try_number": "PIPECTL_TRY_NUMBER",
    "item": "PIPECTL_ITEM",
}


class TemplateError(ValueError):
    """A template names a variable that has no value (the spec loader prevents this)."""


def find_variables(text: str) -> list[tuple[str, int]]:
    """Every ``{{ name }}`` in ``text`` as (name, offset of the name in ``text``)."""
    return [(m.group(2), m.start(2)) for m in _TEMPLATE_RE.finditer(text)]


def format_value(value: Any) -> str:
    """How a value is spelled in commands and the environment (ISO 8601 with offset for instants)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if value is None:
        return ""
    if isinstance(value, (list, tuple, dict)):
        import json

        return json.dumps(value, default=str)
    return str(value)


def lookup(name: str, values: Mapping[str, Any]) -> str:
    if name.startswith("params."):
        params = values.get("params") or {}
        key = name[len("params."):]
        if key in params:
            return format_value(params[key])
        raise TemplateError(f"no value for template variable {name!r}")
    if name == "ds_nodash" and "ds_nodash" not in values and "ds" in values:
        return format_value(values["ds"]).replace("-", "")
    if name in values and name != "params":
        return format_value(values[name])
    raise TemplateError(f"no value for template variable {name!r}")


def render(text: str, values: Mapping[str, Any], shell: bool) -> str:
    """Substitute every variable; with ``shell`` each value becomes exactly one shell word.

    Quoting depends on where the template sits: inside '...' or "..." the
    surrounding quote is closed, the quoted value inserted and the quote
    reopened, so `echo 'day {{ ds }}'` still yields one word whatever ds holds.
    """
    out: list[str] = []
    pos = 0
    for m in _TEMPLATE_RE.finditer(text):
        literal = text[pos:m.start()]
        out.append(literal)
        value = lookup(m.group(2), values)
        if shell:
            value = _shell_word(value, _quote_state("".join(out)))
        out.append(value)
        pos = m.end()
    out.append(text[pos:])
    return "".join(out)


def _shell_word(value: str, state: str | None) -> str:
    quoted = shlex.quote(value)
    if state == "'":
        return "'" + quoted + "'"
    if state == '"':
        return '"' + quoted + '"'
    return quoted


def _quote_state(prefix: str) -> str | None:
    """The quote (' or ") open at the end of ``prefix`` as /bin/sh would read it, or None."""
    state: str | None = None
    i = 0
    n = len(prefix)
    while i < n:
        c = prefix[i]
        if state is None:
            if c == "\\":
                i += 1
            elif c in "'\"":
                state = c
        elif state == "'":
            if c == "'":
                state = None
        else:  # inside double quotes backslash still escapes
            if c == "\\":
                i += 1
            elif c == '"':
                state = None
        i += 1
    return state


def task_env(values: Mapping[str, Any]) -> dict[str, str]:
    """The ``PIPECTL_*`` variables every task and hook sees, for the values present."""
    env: dict[str, str] = {}
    for name, var in _ENV_NAMES.items():
        if name in values and values[name] is not None:
            env[var] = format_value(values[name])
    if "PIPECTL_DS_NODASH" not in env and "PIPECTL_DS" in env:
        env["PIPECTL_DS_NODASH"] = env["PIPECTL_DS"].replace("-", "")
    for key, value in (values.get("params") or {}).items():
        env["PIPECTL_PARAM_" + re.sub(r"\W", "_", str(key)).upper()] = format_value(value)
    return env
