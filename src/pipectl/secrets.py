"""Keeping secrets out of what pipectl prints.

A value is secret when the spec got it from ``${NAME}`` in ``env`` or from an
``env_file``: spec.py records those names in ``Pipeline.secret_env`` and the
values sit in ``Pipeline.env`` or a task's ``env``. Masking happens when
pipectl shows something (``logs``, ``show``, hook logs, errors), not when a
task writes its log: the log file holds what the task printed, and is 0600 in
a 0700 state directory.

Values shorter than ``MIN_LENGTH`` characters are not masked: replacing every
"1" or "ab" in a log would garble unrelated output while such a value is no
secret worth the name. A multi-line value is masked whole and line by line, so
a key printed one line at a time is still caught.
"""
from __future__ import annotations

import re
from typing import Any, Iterable, Mapping

MASK = "***"
MIN_LENGTH = 3


def secret_values(pipeline) -> list[str]:
    """The secret values of a ``Pipeline`` (or its ``to_dict()`` snapshot), longest first."""
    if isinstance(pipeline, Mapping):
        names = pipeline.get("secret_env") or ()
        envs = [pipeline.get("env") or {}] + [(t or {}).get("env") or {} for t in (pipeline.get("tasks") or {}).values()]
    else:
        names = getattr(pipeline, "secret_env", ()) or ()
        envs = [pipeline.env] + [t.env for t in pipeline.tasks.values()]
    found: set[str] = set()
    for name in names:
        for env in envs:
            value = env.get(name)
            if isinstance(value, str):
                found.update(_variants(value))
    return sorted(found, key=lambda v: (-len(v), v))


def _variants(value: str) -> list[str]:
    out = [value] if len(value.strip()) >= MIN_LENGTH else []
    if "\n" in value:
        out += [line for line in value.splitlines() if len(line.strip()) >= MIN_LENGTH]
    return out


def mask(text: str, values: Iterable[str]) -> str:
    """``text`` with every occurrence of each value replaced by ``***``; longest values win."""
    vals = sorted({v for v in values if v and len(v.strip()) >= MIN_LENGTH}, key=lambda v: (-len(v), v))
    if not vals or not text:
        return text
    # one alternation, longest first: at each position the longest secret matches, so a
    # secret that contains another is never half-masked
    return re.compile("|".join(map(re.escape, vals))).sub(MASK, text)


def mask_obj(pipeline, obj: Any, extra: Iterable[str] = ()) -> Any:
    """A copy of a JSON-like ``obj`` (dicts, lists, strings) with the pipeline's secrets masked.

    ``pipeline`` may be a ``Pipeline``, a spec snapshot dict, a list of either
    (e.g. the current spec and a run's own snapshot), or None.
    """
    values = set(extra)
    for p in pipeline if isinstance(pipeline, (list, tuple)) else [pipeline]:
        if p is not None:
            values.update(secret_values(p))
    if not values:
        return obj
    vals = sorted(values, key=lambda v: (-len(v), v))
    return _walk(obj, vals)


def _walk(obj: Any, vals: list[str]) -> Any:
    if isinstance(obj, str):
        return mask(obj, vals)
    if isinstance(obj, Mapping):
        return {(_walk(k, vals) if isinstance(k, str) else k): _walk(v, vals) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_walk(v, vals) for v in obj]
    return obj


def read_masked(path: str, pipeline, offset: int = 0) -> tuple[str, int]:
    """A log file's text from ``offset`` with secrets masked, and the offset reached.

    For hook logs (``hooks.log`` beside the task logs) and task logs alike. A
    secret split across two reads of a growing file (``--follow``) can slip
    through; whole-file reads never split one.
    """
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read()
    except FileNotFoundError:
        return "", offset
    text = data.decode("utf-8", "replace")
    return mask_obj(pipeline, text), offset + len(data)
