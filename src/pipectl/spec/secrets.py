"""Keeping secrets out of what pipectl prints and stores.

A value is secret when the spec got it from ``${NAME}`` in ``env`` or from an
``env_file``: spec.py records those names in ``Pipeline.secret_env``. The spec
(and so every snapshot in the state file) keeps the reference, ``${NAME}`` or
the env_file's path; :func:`launch_env` resolves them when a task starts, from
the starting process's environment and the file as it is then.

Masking happens at one place for everything pipectl prints: the CLI wraps
stdout and stderr in a :class:`MaskingWriter`, whose secret list comes lazily
from the project (:func:`set_source`). Not when a task writes its log: the log
file holds what the task printed, and is 0600 in a 0700 state directory.

Values shorter than ``MIN_LENGTH`` characters are not masked: replacing every
"1" or "ab" in a log would garble unrelated output while such a value is no
secret worth the name. A multi-line value is masked whole and line by line, so
a key printed one line at a time is still caught.
"""
from __future__ import annotations

import os
import re
from typing import Any, Callable, Iterable, Mapping

MASK = "***"
MIN_LENGTH = 3
REF_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


# -- resolving references -------------------------------------------------------
def parse_env_file(text: str) -> tuple[dict[str, str], list[int]]:
    """``KEY=VALUE`` lines (``export`` and surrounding quotes allowed) and the numbers of bad lines."""
    out: dict[str, str] = {}
    bad: list[int] = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export "):].lstrip()
        key, eq, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if not eq or not _ENV_NAME_RE.match(key):
            bad.append(number)
            continue
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        out[key] = value
    return out, bad


def read_env_file(path: str | None) -> dict[str, str]:
    """An env_file's values now; an unreadable file gives none (the spec loader reports it)."""
    if not path:
        return {}
    try:
        with open(path, encoding="utf-8") as f:
            return parse_env_file(f.read())[0]
    except (OSError, UnicodeDecodeError):
        return {}


def resolve(value: str, environ: Mapping[str, str]) -> str:
    """``value`` with each ``${NAME}`` replaced by ``environ[NAME]`` (empty when unset)."""
    if "${" not in value:
        return value
    return REF_RE.sub(lambda r: environ.get(r.group(1), ""), value)


def launch_env(pipeline, task, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The variables a task's spec gives it, resolved now: env_file, then the pipeline's env, then the task's."""
    environ = os.environ if environ is None else environ
    env = read_env_file(getattr(pipeline, "env_file", None))
    env.update({k: resolve(str(v), environ) for k, v in pipeline.env.items()})
    if task is not None:
        env.update({k: resolve(str(v), environ) for k, v in task.env.items()})
    return env


def secret_values(pipeline, environ: Mapping[str, str] | None = None) -> list[str]:
    """The secret values of a ``Pipeline`` (or its ``to_dict()`` snapshot), resolved now, longest first."""
    environ = os.environ if environ is None else environ
    if isinstance(pipeline, Mapping):
        names = pipeline.get("secret_env") or ()
        env_file = pipeline.get("env_file")
        envs = [pipeline.get("env") or {}] + [(t or {}).get("env") or {} for t in (pipeline.get("tasks") or {}).values()]
    else:
        names = getattr(pipeline, "secret_env", ()) or ()
        env_file = getattr(pipeline, "env_file", None)
        envs = [pipeline.env] + [t.env for t in pipeline.tasks.values()]
    file_values = read_env_file(env_file) if env_file else {}
    found: set[str] = set()
    for name in names:
        if name in file_values:
            found.update(_variants(file_values[name]))
        for env in envs:
            value = env.get(name)
            if isinstance(value, str):
                found.update(_variants(resolve(value, environ)))
    return sorted(found, key=lambda v: (-len(v), v))


def _variants(value: str) -> list[str]:
    out = [value] if len(value.strip()) >= MIN_LENGTH else []
    if "\n" in value:
        out += [line for line in value.splitlines() if len(line.strip()) >= MIN_LENGTH]
    return out


def _spellings(value: str) -> list[str]:
    """How a secret can appear in printed text: itself, each of its lines, as JSON escapes them, and as
    Python's repr does (error lines quote what the user typed with ``{value!r}``)."""
    import json

    out = _variants(value)
    for v in list(out):
        out += [json.dumps(v)[1:-1], json.dumps(v, ensure_ascii=False)[1:-1], repr(v)[1:-1]]
    return list(dict.fromkeys(out))


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


# -- the one place where printed text is masked ----------------------------------
_source: Callable[[], Iterable[str]] | None = None
_known: list[str] | None = None
reporting_error = False  # set by the CLI while it prints its one error line


def set_source(source: Callable[[], Iterable[str]] | None) -> None:
    """Where :func:`current` gets the secrets from, on first need (the CLI: the project's specs)."""
    global _source, _known
    _source = source
    _known = None


def current() -> list[str]:
    """Every secret value pipectl knows of in this process, longest first (each spelling once)."""
    global _known
    if _known is None:
        _known = []  # a source that prints while loading must not come back here
        found: set[str] = set()
        if _source is not None:
            try:
                values = list(_source())
            except Exception:
                # While the CLI reports an error (often the very failure to load the project),
                # that error is the news; anywhere else fail loudly rather than print unmasked.
                if reporting_error:
                    return _known
                raise
            for value in values:
                found.update(_spellings(value))
        _known = sorted(found, key=lambda v: (-len(v), v))
    return _known


def mask_also(pipelines) -> None:
    """Add the secrets of a ``Pipeline``, a snapshot dict, or a list of them, to what is masked."""
    global _known
    extra: set[str] = set()
    for p in pipelines if isinstance(pipelines, (list, tuple)) else [pipelines]:
        if p:
            for value in secret_values(p):
                extra.update(_spellings(value))
    if extra - set(current()):
        _known = sorted(set(current()) | extra, key=lambda v: (-len(v), v))


def mask_current(text: str) -> str:
    return mask(text, current()) if text else text


class MaskingWriter:
    """A text stream that masks every secret in what is written through it.

    ``sys.stdout`` and ``sys.stderr`` of the CLI are these: rich consoles, JSON,
    error lines and log output all pass here. A secret is caught when it lies
    within one ``write`` call; pipectl writes each line, table or document whole.
    """

    def __init__(self, stream):
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(mask_current(text))
        return len(text)

    def writelines(self, lines) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str):
        return getattr(self._stream, name)
