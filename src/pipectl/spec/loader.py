"""Pipeline YAML -> validated, immutable ``model.Pipeline`` objects.

Validation works on PyYAML's node tree rather than on constructed Python
objects so that every problem keeps a position (``FILE:LINE:COL``), duplicate
keys are visible (construction silently keeps the last one), and plain
scalars can be read as written (YAML 1.1 turns ``no`` into False and ``2:30``
into 150). Problems are collected, never raised: one run of ``validate``
shows all of them, and a broken file only takes its own pipeline down.
"""
from __future__ import annotations

import glob as _glob
import os
import re
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any, Iterable

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from pipectl.model import dag
from pipectl.timing.durations import MAX_SPEC_SECONDS, DurationError, date_bounds_problem, parse_duration
from pipectl.model.states import TRIGGER_RULES
from pipectl.model.pipeline import AssetSchedule, CronSchedule, EverySchedule, FileSchedule, ForeachCommand, Pipeline, ProjectConfig, RetryPolicy, Sensor, Task, frozen_map
from pipectl.timing.cron import NICKNAMES
from pipectl.spec.templates import TEMPLATE_VARS, find_variables
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

PIPELINE_KEYS = (
    "name", "description", "schedule", "timezone", "start_date", "end_date", "catchup",
    "max_active_runs", "params", "env", "env_file", "defaults", "tasks", "edges", "sla",
    "on_failure", "on_retry", "on_success", "on_sla_miss", "assets",
)
HOOK_KEYS = ("on_failure", "on_retry", "on_success", "on_sla_miss")
# keys a task may take from `defaults:`
TASK_OPTION_KEYS = (
    "retries", "retry_delay", "retry_backoff", "max_retry_delay", "retry_on_exit_codes",
    "no_retry_exit_codes", "timeout", "trigger_rule", "env", "cwd", "pool", "priority", "sla",
    *HOOK_KEYS, "poke_interval", "soft_fail",
)
TASK_KEYS = ("run", "needs", "sensor", "foreach", "produces", *TASK_OPTION_KEYS)
SENSOR_KEYS = {"file": ("file", "min_size", "glob"), "command": ("command",), "http": ("http",), "task": ("task", "delta")}
SCHEDULE_KEYS = {"cron": ("cron", "timezone"), "every": ("every",), "assets": ("assets", "mode"), "file": ("file",)}
BASE_TEMPLATE_VARS = tuple(v for v in TEMPLATE_VARS if v not in ("params", "item"))

_PIPELINE_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
# no dots (sensor targets are "pipeline.task") and no brackets (mapped ids are "task[0]")
_TASK_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]*$")
_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SECRET_REF_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_HHMM_RE = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")
_TAG_KINDS = {"str": "string", "int": "integer", "float": "number", "bool": "boolean", "null": "null",
              "timestamp": "date", "binary": "binary", "merge": "merge key"}
_MERGE_TAG = "tag:yaml.org,2002:merge"
# The only YAML tags a spec may use: JSON-like values (plus dates). Others (!!binary, !!set,
# !!python/..., local !tags) make values no snapshot, template or environment can carry.
_PLAIN_TAGS = frozenset(f"tag:yaml.org,2002:{t}" for t in
                        ("str", "int", "float", "bool", "null", "timestamp", "seq", "map", "merge"))
# Aliases share nodes, so a few hundred bytes can stand for billions of values ("billion laughs").
# Every reader of a spec walks values as if expanded: refuse a file whose expansion is bigger than
# any honest pipeline (a thousand tasks of a dozen keys is ~50,000 nodes).
MAX_SPEC_NODES = 200_000
# Counts a spec may give; beyond these a value is a typo, and an int that SQLite cannot hold.
MAX_RETRIES = 1000
MAX_ACTIVE_RUNS = 10000
MAX_PRIORITY = 1_000_000
MAX_MIN_SIZE = 2**53
# Names become directory and file names of logs (255 bytes at most on most file systems).
MAX_NAME = 100
MIN_EVERY = 1.0  # seconds: the scheduler's granularity; less would create runs faster than ticks can


@dataclass(frozen=True)
class SpecError:
    file: str
    line: int  # 1-based
    col: int  # 1-based
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}: {self.message}"


@dataclass
class LoadResult:
    pipelines: dict[str, Pipeline] = field(default_factory=dict)
    errors: list[SpecError] = field(default_factory=list)
    invalid: dict[str, list[SpecError]] = field(default_factory=dict)  # pipeline name (or file) -> errors
    files: dict[str, str] = field(default_factory=dict)  # pipeline name -> spec file, valid or not

    @property
    def ok(self) -> bool:
        return not self.errors


def spec_files(config: ProjectConfig) -> list[Path]:
    """Files matched by the ``pipelines`` globs of pipectl.toml, absolute and sorted."""
    found: set[str] = set()
    for pattern in config.pipelines:
        full = os.path.join(config.root, os.path.expanduser(pattern))
        found.update(p for p in _glob.glob(full, recursive=True) if os.path.isfile(p))
    return [Path(p) for p in sorted(found)]


def load_pipelines(config: ProjectConfig) -> LoadResult:
    parsed = [_FileSpec(path, config).load() for path in spec_files(config)]
    _check_unique_names(parsed)
    _check_sensor_targets(parsed)
    result = LoadResult()
    for spec in parsed:
        result.files.setdefault(spec.name, str(spec.path))
        errors = spec.sorted_errors()
        if errors:
            result.errors.extend(errors)
            result.invalid.setdefault(spec.name or spec.shown, []).extend(errors)
        elif spec.pipeline is not None:
            result.pipelines[spec.name] = spec.pipeline
    return result


def _check_unique_names(parsed: list["_FileSpec"]) -> None:
    by_name: dict[str, list[_FileSpec]] = {}
    for spec in parsed:
        by_name.setdefault(spec.name, []).append(spec)
    for name, group in by_name.items():
        # every claimant is invalid: picking one silently could run the wrong spec
        for spec in group if len(group) > 1 else ():
            others = ", ".join(o.shown for o in group if o is not spec)
            spec.error(spec.name_pos, f"pipeline {name!r} is also defined in {others}")


def _check_sensor_targets(parsed: list["_FileSpec"]) -> None:
    names = {spec.name for spec in parsed}
    tasks = {spec.name: spec.task_names for spec in parsed if spec.pipeline is not None and not spec.errors}
    for spec in parsed:
        for pos, pipeline, task in spec.sensor_refs:
            if pipeline not in names:
                spec.error(pos, f"sensor waits for unknown pipeline {pipeline!r}{suggest(pipeline, names)}")
            elif pipeline in tasks and task not in tasks[pipeline]:
                spec.error(pos, f"sensor waits for unknown task {task!r} in pipeline {pipeline!r}"
                                f"{suggest(task, tasks[pipeline])}")


# -- helpers -----------------------------------------------------------------

def suggest(word: str, choices: Iterable[str]) -> str:
    import difflib

    match = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {match[0]!r}?)" if match else ""


def node_kind(node: Node) -> str:
    if isinstance(node, MappingNode):
        return "mapping"
    if isinstance(node, SequenceNode):
        return "list"
    return _TAG_KINDS.get(node.tag.rsplit(":", 1)[-1], "string")


def _is(node: Node, kind: str) -> bool:
    return isinstance(node, ScalarNode) and node_kind(node) == kind


def _shown(path: Path) -> str:
    try:
        rel = os.path.relpath(path)
    except (ValueError, OSError):
        return str(path)
    return str(path) if rel.startswith("..") else rel


def _parse_when(raw: str) -> datetime | None:
    try:
        return datetime.combine(date.fromisoformat(raw), datetime.min.time())
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(raw)
    except ValueError:
        return None


def _cron_error(expr: str) -> str | None:
    from pipectl.timing.cron import cron_error  # lazily: only files with a cron schedule pay for it

    try:
        return cron_error(expr)
    except Exception as e:  # a checker bug must not crash loading
        return f"bad cron expression {expr!r}: {e}"


def _timezone_error(tz: str) -> str | None:
    from zoneinfo import ZoneInfo, available_timezones

    try:
        ZoneInfo(tz)
        return None
    except Exception:
        return f"unknown timezone {tz!r}{suggest(tz, available_timezones())}"


def _plain_value(value: Any) -> Any:
    """Params end up in JSON snapshots: dates become ISO strings."""
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): _plain_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain_value(v) for v in value]
    return value


def _finite(value: Any) -> bool:
    """JSON has no inf or nan: a param holding one could not be snapshotted or rendered."""
    import math

    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    if isinstance(value, list):
        return all(_finite(v) for v in value)
    return True


Pos = tuple[int, int]
Pair = tuple[Node, Node]


@dataclass
class _Templates:
    """Which variables a template may use in one place of the spec."""

    params: frozenset[str]
    item: bool = False

    def problem(self, name: str) -> str | None:
        if name in BASE_TEMPLATE_VARS:
            return None
        if name == "item":
            return None if self.item else "template variable 'item' is only available in tasks with 'foreach'"
        if name.startswith("params.") and name[len("params."):] in self.params:
            return None
        choices = [*BASE_TEMPLATE_VARS, *(["item"] if self.item else []), *(f"params.{p}" for p in self.params)]
        return f"unknown template variable {name!r}{suggest(name, choices)}"


# -- one file ----------------------------------------------------------------

class _FileSpec:
    def __init__(self, path: Path, config: ProjectConfig):
        self.path = path
        self.config = config
        self.shown = _shown(path)
        self.name = path.stem
        self.name_pos: Pos = (1, 1)
        self.lines: list[str] = []
        self.errors: list[SpecError] = []
        self.pipeline: Pipeline | None = None
        self.task_names: list[str] = []
        self.sensor_refs: list[tuple[Pos, str, str]] = []
        self.secret_env: set[str] = set()
        self._constructor = yaml.constructor.SafeConstructor()

    # -- reporting --------------------------------------------------------
    def error(self, where: Node | Pos, message: str, file: str | None = None) -> None:
        line, col = self.pos(where)
        # one line per problem, always: PyYAML's messages carry their own "in <string>, line 4" tail
        message = " ".join(message.split("\n  in ")[0].split())
        self.errors.append(SpecError(file or self.shown, line, col, message))

    @staticmethod
    def pos(where: Node | Pos) -> Pos:
        if isinstance(where, Node):
            return where.start_mark.line + 1, where.start_mark.column + 1
        return where

    def pos_in(self, node: ScalarNode, offset: int) -> Pos:
        """Position of ``node.value[offset]`` in the file, when the source spells it verbatim."""
        start, end = node.start_mark, node.end_mark
        value = node.value
        quoted = node.style in ("'", '"')
        plain = not node.style  # the C loader spells plain as '', the Python one as None
        if (plain or quoted) and start.line == end.line and start.line < len(self.lines):
            raw = self.lines[start.line][start.column:end.column]
            inner = raw[1:-1] if quoted else raw
            if inner == value:
                return start.line + 1, start.column + 1 + offset + quoted
        if node.style == "|":
            k = value.count("\n", 0, offset)
            line_start = value.rfind("\n", 0, offset) + 1
            line_text = value[line_start:].split("\n", 1)[0]
            src_line = start.line + 1 + k
            if src_line < len(self.lines):
                at = self.lines[src_line].find(line_text)
                if at >= 0:
                    return src_line + 1, at + 1 + offset - line_start
        return self.pos(node)

    def sorted_errors(self) -> list[SpecError]:
        unique = dict.fromkeys(self.errors)  # defaults are checked once per task: drop repeats
        return sorted(unique, key=lambda e: (e.file != self.shown, e.file, e.line, e.col))

    # -- reading nodes ----------------------------------------------------
    def mapping(self, node: Node, what: str) -> dict[str, Pair] | None:
        if not isinstance(node, MappingNode):
            self.error(node, f"{what} must be a mapping, got {node_kind(node)}")
            return None
        out: dict[str, Pair] = {}
        merged: list[Pair] = []
        for key, value in node.value:
            if key.tag == _MERGE_TAG:
                merged.extend(self._merge_sources(value))
                continue
            if not isinstance(key, ScalarNode):
                self.error(key, f"keys in {what} must be strings, got {node_kind(key)}")
                continue
            if key.value in out:
                first = out[key.value][0].start_mark.line + 1
                self.error(key, f"duplicate key {key.value!r} (first at line {first})")
                continue
            out[key.value] = (key, value)
        for key, value in merged:  # `<<: *anchor` fills in only what is not written out
            if isinstance(key, ScalarNode):
                out.setdefault(key.value, (key, value))
        return out

    def _merge_sources(self, node: Node) -> list[Pair]:
        sources = node.value if isinstance(node, SequenceNode) else [node]
        pairs: list[Pair] = []
        for src in sources:
            if isinstance(src, MappingNode):
                pairs.extend(src.value)
            else:
                self.error(src, f"'<<' must merge a mapping, got {node_kind(src)}")
        return pairs

    def known_keys(self, m: dict[str, Pair], allowed: Iterable[str], where: str) -> None:
        allowed = tuple(allowed)
        for key, (knode, _) in m.items():
            if key not in allowed:
                self.error(knode, f"unknown key {key!r}{where}{suggest(key, allowed)}")

    def scalar(self, node: ScalarNode) -> Any:
        try:
            return self._constructor.construct_object(node, deep=True)
        except Exception as e:
            self.error(node, f"bad value {node.value!r}: {e}")
            return None

    def string(self, key: str, node: Node, nonempty: bool = True) -> str | None:
        if not _is(node, "string"):
            self.error(node, f"{key!r} must be a string, got {node_kind(node)}")
            return None
        if nonempty and not node.value.strip():
            self.error(node, f"{key!r} must not be empty")
            return None
        return node.value

    def text(self, key: str, node: Node) -> str | None:
        """Any scalar, as written (for descriptions, list items, env values)."""
        if not isinstance(node, ScalarNode) or _is(node, "null"):
            self.error(node, f"{key!r} must be a string, got {node_kind(node)}")
            return None
        return node.value

    def integer(self, key: str, node: Node, minimum: int | None = None, maximum: int | None = None) -> int | None:
        if not _is(node, "integer"):
            self.error(node, f"{key!r} must be an integer, got {node_kind(node)}")
            return None
        value = self.scalar(node)
        if value is None:
            return None
        if minimum is not None and value < minimum or maximum is not None and value > maximum:
            bound = f"between {minimum} and {maximum}" if maximum is not None else f"at least {minimum}"
            self.error(node, f"{key!r} must be {bound}, got {value}")
            return None
        return value

    def boolean(self, key: str, node: Node) -> bool | None:
        if not _is(node, "boolean"):
            self.error(node, f"{key!r} must be true or false, got {node_kind(node)}")
            return None
        return self.scalar(node)

    def duration(self, key: str, node: Node, positive: bool = False) -> float | None:
        if not isinstance(node, ScalarNode) or node_kind(node) not in ("string", "integer", "number"):
            self.error(node, f"{key!r} must be a duration (30s, 5m, 2h, 1d or seconds), got {node_kind(node)}")
            return None
        try:
            seconds = parse_duration(self.scalar(node), maximum=MAX_SPEC_SECONDS)
        except DurationError as e:
            self.error(node, f"{key!r}: {e}")
            return None
        if positive and seconds <= 0:
            self.error(node, f"{key!r} must be longer than 0")
            return None
        return seconds

    def choice(self, key: str, node: Node, choices: Iterable[str]) -> str | None:
        choices = tuple(choices)
        value = self.string(key, node)
        if value is not None and value not in choices:
            self.error(node, f"{key!r} must be one of {', '.join(choices)}; got {value!r}{suggest(value, choices)}")
            return None
        return value

    def items(self, key: str, node: Node, single_ok: bool = True) -> list[ScalarNode]:
        """A list of scalars (or, with ``single_ok``, one scalar) as nodes."""
        if single_ok and isinstance(node, ScalarNode) and not _is(node, "null"):
            return [node]
        if not isinstance(node, SequenceNode):
            self.error(node, f"{key!r} must be a list, got {node_kind(node)}")
            return []
        good = []
        for item in node.value:
            if isinstance(item, ScalarNode) and not _is(item, "null"):
                good.append(item)
            else:
                self.error(item, f"items of {key!r} must be strings, got {node_kind(item)}")
        return good

    def int_list(self, key: str, node: Node) -> tuple[int, ...] | None:
        if not isinstance(node, SequenceNode):
            self.error(node, f"{key!r} must be a list of exit codes, got {node_kind(node)}")
            return None
        codes = [self.integer(f"items of {key}", item, 0, 255) for item in node.value]
        return None if None in codes else tuple(codes)

    def timezone(self, node: Node) -> str | None:
        tz = self.string("timezone", node)
        if tz is not None:
            problem = _timezone_error(tz)
            if problem:
                self.error(node, problem)
                return None
        return tz

    def templates(self, node: ScalarNode, allowed: _Templates) -> None:
        for name, offset in find_variables(node.value):
            problem = allowed.problem(name)
            if problem:
                self.error(self.pos_in(node, offset), problem)

    def command(self, key: str, node: Node, allowed: _Templates) -> str | None:
        value = self.string(key, node)
        if value is not None:
            self.templates(node, allowed)
            self.shell_templates(node, allowed)
        return value

    def shell_templates(self, node: ScalarNode, allowed: _Templates) -> None:
        """A command for /bin/sh: every template must sit where a variable reference stays data."""
        from pipectl.spec.templates import shell_problems
        for offset, message in shell_problems(node.value, dict.fromkeys(allowed.params)):
            self.error(self.pos_in(node, offset), message)

    # -- the file -----------------------------------------------------------
    def load(self) -> "_FileSpec":
        try:
            text = self.path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            self.error((1, 1), f"cannot read pipeline file: {getattr(e, 'strerror', None) or e}")
            return self
        self.lines = text.splitlines()
        try:
            root = yaml.compose(text, Loader=_Loader)
        except yaml.YAMLError as e:
            self._syntax_error(e, text)
            return self
        except RecursionError:
            self.error((1, 1), "YAML nesting too deep")
            return self
        if root is not None and not self._plain_tree(root):
            return self
        if root is None:
            self.error((1, 1), "empty pipeline file: expected a mapping with 'tasks'")
            return self
        top = self.mapping(root, "a pipeline file")
        if top is not None:
            try:
                pipeline = self.pipeline_from(top)
            except Exception as e:  # a loader bug must cost one pipeline, never the whole tick
                self.error((1, 1), f"internal error while validating: {type(e).__name__}: {e}")
                return self
            self.pipeline = None if self.errors else pipeline
        return self

    def _plain_tree(self, root: Node) -> bool:
        """Refuse non-plain tags, recursive aliases and alias bombs before anything walks the tree.

        One pass over the distinct nodes (aliases are shared, so this stays linear in the file)
        counts the nodes of the expanded tree."""
        size: dict[int, int] = {}
        path: set[int] = set()  # nodes entered but not finished: the ancestors of the current one
        stack: list[tuple[Node, bool]] = [(root, False)]
        while stack:
            node, done = stack.pop()
            key = id(node)
            children: list[Node] = []
            if isinstance(node, SequenceNode):
                children = list(node.value)
            elif isinstance(node, MappingNode):
                children = [n for pair in node.value for n in pair]
            if done:
                path.discard(key)
                size[key] = total = 1 + sum(size[id(c)] for c in children)
                if total > MAX_SPEC_NODES:
                    self.error(node, f"YAML aliases expand this value to more than {MAX_SPEC_NODES} nodes "
                                     "(an alias bomb?); write the values out")
                    return False
                continue
            if key in size:
                continue
            if key in path:
                self.error(node, "recursive YAML alias: a value may not contain itself")
                return False
            if node.tag not in _PLAIN_TAGS:
                shown = node.tag.replace("tag:yaml.org,2002:", "!!")
                self.error(node, f"unsupported YAML tag {shown!r}: specs take plain strings, numbers, booleans, "
                                 "dates, lists and mappings")
                return False
            path.add(key)
            stack.append((node, True))
            stack.extend((c, False) for c in children if id(c) not in size)
        return True

    def _syntax_error(self, e: yaml.YAMLError, text: str) -> None:
        mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
        if mark is not None:
            pos = (mark.line + 1, mark.column + 1)
        elif isinstance(e, yaml.reader.ReaderError):
            before = text[: e.position]
            pos = (before.count("\n") + 1, e.position - (before.rfind("\n") + 1) + 1)
        else:
            pos = (1, 1)
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        message = f"YAML syntax error: {problem}"
        context, cmark = getattr(e, "context", None), getattr(e, "context_mark", None)
        if context and cmark is not None:
            message += f" ({context} at line {cmark.line + 1})"
        line_text = self.lines[pos[0] - 1] if 0 < pos[0] <= len(self.lines) else ""
        if "\t" in line_text[: pos[1]] or "\t" in problem:
            # PyYAML only says "found character that cannot start any token"
            message = ("YAML syntax error: a tab character; YAML indents with spaces only "
                       "(replace the tab with spaces)")
        if ">>" in line_text and "[" in line_text:
            message += "; quote edges that start with '[', e.g. - \"[a, b] >> c\""
        self.error(pos, message)
        match = re.search(r"^name:\s*['\"]?([A-Za-z0-9_.-]+)", text, re.M)
        if match:  # keep the pipeline's real name so status shows it as invalid, not missing
            self.name = match.group(1)

    def pipeline_from(self, top: dict[str, Pair]) -> Pipeline | None:
        self.known_keys(top, PIPELINE_KEYS, "")
        kw: dict[str, Any] = {}
        self._name(top)
        get = {k: v for k, (_, v) in top.items()}
        pipeline_tz = self.config.timezone
        if "timezone" in get:
            pipeline_tz = self.timezone(get["timezone"]) or pipeline_tz
        kw["timezone"] = pipeline_tz
        if "description" in get and not _is(get["description"], "null"):
            kw["description"] = self.text("description", get["description"]) or ""
        schedules = self.schedules(get["schedule"]) if "schedule" in get else []
        kw["schedules"] = tuple(schedules)
        params = self.params(get["params"]) if "params" in get else {}
        kw["params"] = frozen_map(params)
        declared = set(params) | ({"file"} if any(isinstance(s, FileSchedule) for s in schedules) else set())
        allowed = _Templates(frozenset(declared))
        self.dates(get, kw)
        if "catchup" in get:
            kw["catchup"] = self.boolean("catchup", get["catchup"])
        if "max_active_runs" in get:
            kw["max_active_runs"] = self.integer("max_active_runs", get["max_active_runs"], 1, MAX_ACTIVE_RUNS)
        if "sla" in get:
            kw["sla"] = self.duration("sla", get["sla"], positive=True)
        for hook in HOOK_KEYS:
            if hook in get and not _is(get[hook], "null"):
                kw[hook] = self.command(hook, get[hook], allowed)
        env: dict[str, str] = {}
        if "env_file" in get:
            # only the file's path is kept: its values are read again when a task starts,
            # so no secret of it reaches the state file
            if self.env_file(get["env_file"]) is not None:
                kw["env_file"] = str(Path(self.config.root) / os.path.expanduser(get["env_file"].value))
        if "env" in get:
            env.update(self.env_map(get["env"], "env"))
        kw["env"] = frozen_map(env)
        if "assets" in get:
            kw["assets"] = frozen_map(self.assets(get["assets"], pipeline_tz))
        tasks = self.tasks(top, get, allowed)
        kw["secret_env"] = tuple(sorted(self.secret_env))
        if self.errors or tasks is None:
            return None
        return Pipeline(name=self.name, path=str(self.path), tasks=frozen_map(tasks), **kw)

    def _name(self, top: dict[str, Pair]) -> None:
        if "name" in top:
            knode, vnode = top["name"]
            self.name_pos = self.pos(vnode)
            name = self.string("name", vnode)
            if name is None:
                return
            self.name = name
        if not _PIPELINE_NAME_RE.match(self.name):
            origin = "" if "name" in top else " (from the file name)"
            self.error(self.name_pos, f"pipeline name {self.name!r}{origin} may only contain letters, digits, "
                                      "'_', '-' and '.'")
        elif len(self.name) > MAX_NAME:
            self.error(self.name_pos, f"pipeline name is {len(self.name)} characters long; at most {MAX_NAME}")

    def dates(self, get: dict[str, Node], kw: dict[str, Any]) -> None:
        when: dict[str, datetime] = {}
        for key in ("start_date", "end_date"):
            node = get.get(key)
            if node is None or _is(node, "null"):
                continue
            parsed = _parse_when(node.value) if isinstance(node, ScalarNode) else None
            if parsed is None:
                shown = node.value if isinstance(node, ScalarNode) else node_kind(node)
                self.error(node, f"{key!r} must be a date (YYYY-MM-DD) or datetime (YYYY-MM-DDTHH:MM[:SS][+HH:MM]),"
                                 f" got {shown!r}")
                continue
            problem = date_bounds_problem(parsed.year, parsed.month, parsed.day)
            if problem:
                self.error(node, f"{key!r} {problem}, got {node.value!r}")
                continue
            when[key] = parsed
            kw[key] = date.fromisoformat(node.value).isoformat() if len(node.value) == 10 else parsed.isoformat()
        if len(when) == 2:
            start, end = when["start_date"], when["end_date"]
            if (start.tzinfo is None) == (end.tzinfo is None) and end < start:
                self.error(get["end_date"], "'end_date' is before 'start_date'")

    def params(self, node: Node) -> dict[str, Any]:
        if _is(node, "null"):
            return {}
        m = self.mapping(node, "'params'")
        if m is None:
            return {}
        out = {}
        for key, (_, vnode) in m.items():
            try:
                value = _plain_value(self._constructor.construct_object(vnode, deep=True))
            except Exception as e:  # e.g. `!!bool all`, `!!int x`: the constructor's own errors
                detail = getattr(e, "problem", None) or (e if isinstance(e, ValueError) else f"{type(e).__name__}: {e}")
                self.error(vnode, f"bad value for param {key!r}: {detail}")
                continue
            if not _finite(value):
                self.error(vnode, f"bad value for param {key!r}: numbers must be finite (no .inf or .nan)")
                continue
            out[key] = value
        return out

    # -- schedules ------------------------------------------------------------
    def schedules(self, node: Node) -> list:
        if _is(node, "null"):
            return []
        nodes = node.value if isinstance(node, SequenceNode) else [node]
        return [s for s in (self.schedule(n) for n in nodes) if s is not None]

    def schedule(self, node: Node):
        if _is(node, "string"):
            cron = self.cron(node)
            return CronSchedule(cron) if cron else None
        if not isinstance(node, MappingNode):
            self.error(node, f"'schedule' must be a cron string, a mapping or a list, got {node_kind(node)}")
            return None
        m = self.mapping(node, "'schedule'") or {}
        kinds = [k for k in m if k in SCHEDULE_KEYS]
        if not kinds:
            self.known_keys(m, [k for keys in SCHEDULE_KEYS.values() for k in keys], " in schedule")
            if not m or all(k in ("timezone", "mode") for k in m):
                self.error(node, "a schedule needs one of 'cron', 'every', 'assets' or 'file'")
            return None
        if len(kinds) > 1:
            self.error(m[kinds[1]][0], f"a schedule has one of 'cron', 'every', 'assets' or 'file', "
                                       f"got {kinds[0]!r} and {kinds[1]!r}; use a list for several schedules")
            return None
        kind = kinds[0]
        self.known_keys(m, SCHEDULE_KEYS[kind], f" in {kind} schedule")
        value = m[kind][1]
        if kind == "cron":
            cron = self.cron(value) if self.string("cron", value) is not None else None
            tz = self.timezone(m["timezone"][1]) if "timezone" in m else None
            return CronSchedule(cron, tz) if cron else None
        if kind == "every":
            seconds = self.duration("every", value, positive=True)
            if seconds is not None and seconds < MIN_EVERY:
                self.error(value, f"'every' must be at least {MIN_EVERY:g}s")
                return None
            return EverySchedule(seconds) if seconds else None
        if kind == "assets":
            assets = [self.text("assets", n) for n in self.items("assets", value)]
            mode = self.choice("mode", m["mode"][1], ("all", "any")) if "mode" in m else "all"
            if not assets and isinstance(value, SequenceNode):
                self.error(value, "'assets' must name at least one asset")
            return AssetSchedule(tuple(assets), mode) if assets and mode and None not in assets else None
        pattern = self.string("file", value)
        return FileSchedule(pattern) if pattern else None

    def cron(self, node: ScalarNode) -> str | None:
        expr = " ".join(node.value.split())
        if expr.startswith("@"):
            if expr.lower() in NICKNAMES:
                return NICKNAMES[expr.lower()]
            self.error(node, f"unknown cron nickname {expr!r}{suggest(expr, NICKNAMES)}")
            return None
        problem = _cron_error(expr)
        if problem:
            self.error(node, problem)
            return None
        return expr

    # -- env ------------------------------------------------------------------
    def env_map(self, node: Node, what: str) -> dict[str, str]:
        if _is(node, "null"):
            return {}
        m = self.mapping(node, f"{what!r}")
        if m is None:
            return {}
        out = {}
        for key, (knode, vnode) in m.items():
            if not _ENV_NAME_RE.match(key):
                self.error(knode, f"bad environment variable name {key!r}")
                continue
            value = self.text(key, vnode)
            if value is None:
                continue
            value = self._resolve_secrets(key, value, vnode)
            if value is not None:
                out[key] = value
        return out

    def _resolve_secrets(self, key: str, value: str, node: ScalarNode) -> str | None:
        """``${NAME}`` reads the caller's environment when a task starts; such values are masked in output.

        The value stays the reference: it is what snapshots in the state file hold."""
        refs = list(_SECRET_REF_RE.finditer(value))
        if not refs:
            return value
        self.secret_env.add(key)
        missing = [r for r in refs if r.group(1) not in os.environ]
        for ref in missing:
            self.error(self.pos_in(node, ref.start()),
                       f"environment variable {ref.group(1)!r} is not set (needed by env {key!r})")
        if missing:
            return None
        return value

    def env_file(self, node: Node) -> dict[str, str] | None:
        from pipectl.spec.secrets import parse_env_file
        rel = self.string("env_file", node)
        if rel is None:
            return None
        path = Path(self.config.root) / os.path.expanduser(rel)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            self.error(node, f"cannot read env_file {rel!r}: {getattr(e, 'strerror', None) or e}")
            return None
        shown = _shown(path)
        out, bad = parse_env_file(text)
        for number in bad:
            self.error((number, 1), "expected KEY=VALUE", file=shown)
        self.secret_env.update(out)
        return out

    # -- assets ---------------------------------------------------------------
    def assets(self, node: Node, pipeline_tz: str) -> dict[str, Any]:
        if _is(node, "null"):
            return {}
        m = self.mapping(node, "'assets'") or {}
        out = {}
        for name, (knode, vnode) in m.items():
            spec = self.mapping(vnode, f"asset {name!r}")
            if spec is None:
                continue
            self.known_keys(spec, ("fresh_by", "timezone"), f" in asset {name!r}")
            entry = {"timezone": pipeline_tz}
            if "fresh_by" not in spec:
                self.error(knode, f"asset {name!r} needs 'fresh_by' (HH:MM)")
            else:
                fnode = spec["fresh_by"][1]
                hhmm = _HHMM_RE.match(fnode.value) if isinstance(fnode, ScalarNode) else None
                if hhmm is None:
                    self.error(fnode, f"'fresh_by' must be a time HH:MM, got {getattr(fnode, 'value', node_kind(fnode))!r}")
                else:
                    entry["fresh_by"] = f"{int(hhmm.group(1)):02d}:{hhmm.group(2)}"
            if "timezone" in spec:
                entry["timezone"] = self.timezone(spec["timezone"][1]) or pipeline_tz
            out[name] = frozen_map(entry)
        return out

    # -- tasks ----------------------------------------------------------------
    def tasks(self, top: dict[str, Pair], get: dict[str, Node], allowed: _Templates) -> dict[str, Task] | None:
        if "tasks" not in top:
            self.error((1, 1), "pipeline has no 'tasks'")
            return None
        tasks = self.mapping(get["tasks"], "'tasks'")
        if tasks is None:
            return None
        if not tasks:
            self.error(top["tasks"][0], "'tasks' must declare at least one task")
            return None
        self.task_names = list(tasks)
        defaults = self.defaults(get.get("defaults"), allowed)
        edge_pos: dict[tuple[str, str], Pos] = {}
        needs: dict[str, list[str]] = {name: [] for name in tasks}
        built: dict[str, dict[str, Any]] = {}
        for name, (knode, vnode) in tasks.items():
            if not _TASK_NAME_RE.match(name):
                self.error(knode, f"task name {name!r} may only contain letters, digits, '_' and '-'")
            elif len(name) > MAX_NAME:
                self.error(knode, f"task name is {len(name)} characters long; at most {MAX_NAME}")
            spec = self.mapping(vnode, f"task {name!r}")
            if spec is not None:
                built[name] = self.task(name, knode, spec, defaults, allowed, needs, edge_pos)
        if "edges" in get:
            self.edges(get["edges"], tasks, needs, edge_pos)
        self.cycles(list(tasks), needs, edge_pos)
        if self.errors:
            return None
        order = {name: i for i, name in enumerate(tasks)}
        return {name: Task(name=name, needs=tuple(sorted(set(needs[name]), key=order.__getitem__)), **kw)
                for name, kw in built.items()}

    def defaults(self, node: Node | None, allowed: _Templates) -> dict[str, Pair]:
        if node is None or _is(node, "null"):
            return {}
        m = self.mapping(node, "'defaults'") or {}
        self.known_keys(m, TASK_OPTION_KEYS, " in defaults")
        valid = {k: v for k, v in m.items() if k in TASK_OPTION_KEYS}
        self.options(valid, _Templates(allowed.params, item=True), sensor=True)  # report problems once
        return valid

    def task(self, name: str, knode: Node, spec: dict[str, Pair], defaults: dict[str, Pair], allowed: _Templates,
             needs: dict[str, list[str]], edge_pos: dict[tuple[str, str], Pos]) -> dict[str, Any]:
        self.known_keys(spec, TASK_KEYS, f" in task {name!r}")
        get = {k: v for k, (_, v) in spec.items()}
        here = _Templates(allowed.params, item="foreach" in get)
        kw: dict[str, Any] = {}
        if "foreach" in get:
            kw["foreach"] = self.foreach(get["foreach"], allowed)
        is_sensor = "sensor" in get
        if is_sensor and "run" in get:
            self.error(spec["sensor"][0], f"task {name!r} has both 'run' and 'sensor'; a sensor task has no 'run'")
        elif not is_sensor and "run" not in get:
            self.error(knode, f"task {name!r} needs 'run' (or 'sensor')")
        if "run" in get:
            kw["run"] = self.run(get["run"], here)
        for key in ("poke_interval", "soft_fail"):
            if key in spec and not is_sensor:
                self.error(spec[key][0], f"{key!r} only applies to sensor tasks")
        options = {**defaults, **{k: v for k, v in spec.items() if k in TASK_OPTION_KEYS}}
        if "env" in defaults and "env" in spec:
            options.pop("env")
            env = {**self.env_map(defaults["env"][1], "env"), **self.env_map(spec["env"][1], "env")}
        else:
            env = None
        kw.update(self.options(options, here, sensor=is_sensor))
        if env is not None:
            kw["env"] = frozen_map(env)
        if is_sensor:
            kw["sensor"] = self.sensor(get["sensor"], here, kw)
        if "needs" in get:
            for item in self.items("needs", get["needs"]):
                self.upstream(item.value, name, item, self.pos(item), f" in needs of task {name!r}", needs, edge_pos)
        if "produces" in get:
            kw["produces"] = tuple(dict.fromkeys(n.value for n in self.items("produces", get["produces"])))
        return kw

    def options(self, options: dict[str, Pair], allowed: _Templates, sensor: bool) -> dict[str, Any]:
        """Keys shared by tasks and `defaults:` -> Task keyword arguments (plus sensor settings)."""
        get = {k: v for k, (_, v) in options.items()}
        retry: dict[str, Any] = {}
        if "retries" in get:
            retry["retries"] = self.integer("retries", get["retries"], 0, MAX_RETRIES)
        for key in ("retry_delay", "max_retry_delay"):
            if key in get:
                retry[key] = self.duration(key, get[key])
        if "retry_backoff" in get:
            retry["retry_backoff"] = self.choice("retry_backoff", get["retry_backoff"], ("fixed", "exponential"))
        for key in ("retry_on_exit_codes", "no_retry_exit_codes"):
            if key in get:
                retry[key] = self.int_list(key, get[key])
        kw: dict[str, Any] = {"retry": RetryPolicy(**{k: v for k, v in retry.items() if v is not None})}
        if "timeout" in get:
            kw["timeout"] = self.duration("timeout", get["timeout"], positive=True)
        if "sla" in get:
            kw["sla"] = self.duration("sla", get["sla"], positive=True)
        if "trigger_rule" in get:
            kw["trigger_rule"] = self.choice("trigger_rule", get["trigger_rule"], TRIGGER_RULES)
        if "env" in get:
            kw["env"] = frozen_map(self.env_map(get["env"], "env"))
        if "cwd" in get:
            kw["cwd"] = self.string("cwd", get["cwd"])
        if "pool" in get:
            kw["pool"] = self.pool(get["pool"])
        if "priority" in get:
            kw["priority"] = self.integer("priority", get["priority"], -MAX_PRIORITY, MAX_PRIORITY)
        for hook in HOOK_KEYS:
            if hook in get and not _is(get[hook], "null"):
                kw[hook] = self.command(hook, get[hook], allowed)
        if "poke_interval" in get:
            kw["poke_interval"] = self.duration("poke_interval", get["poke_interval"])  # 0s: at every check
        if "soft_fail" in get:
            kw["soft_fail"] = self.boolean("soft_fail", get["soft_fail"])
        sensor_keys = {k: kw.pop(k) for k in ("poke_interval", "soft_fail") if k in kw}
        if sensor:
            kw["_sensor"] = sensor_keys
        return {k: v for k, v in kw.items() if v is not None}

    def pool(self, node: Node) -> str | None:
        pool = self.string("pool", node)
        if pool is not None and pool not in self.config.pools:
            self.error(node, f"unknown pool {pool!r}{suggest(pool, self.config.pools)}"
                             " (pools are declared under [pools] in pipectl.toml)")
            return None
        return pool

    def run(self, node: Node, allowed: _Templates) -> str | tuple[str, ...] | None:
        if _is(node, "string"):
            return self.command("run", node, allowed)
        if isinstance(node, SequenceNode):
            argv = self.items("run", node, single_ok=False)
            if not node.value:
                self.error(node, "'run' must not be an empty list")
            for item in argv:
                self.templates(item, allowed)
            return tuple(item.value for item in argv)
        self.error(node, f"'run' must be a string or a list, got {node_kind(node)}")
        return None

    def foreach(self, node: Node, allowed: _Templates) -> tuple[str, ...] | ForeachCommand | None:
        if isinstance(node, SequenceNode):
            items = self.items("foreach", node, single_ok=False)
            if not node.value:
                self.error(node, "'foreach' must list at least one item")
            return tuple(item.value for item in items)
        if isinstance(node, MappingNode):
            m = self.mapping(node, "'foreach'") or {}
            self.known_keys(m, ("command",), " in foreach")
            if "command" not in m:
                self.error(node, "'foreach' needs a list of items or 'command'")
                return None
            command = self.command("command", m["command"][1], allowed)
            return ForeachCommand(command) if command else None
        self.error(node, f"'foreach' must be a list or a mapping with 'command', got {node_kind(node)}")
        return None

    def sensor(self, node: Node, allowed: _Templates, kw: dict[str, Any]) -> Sensor | None:
        settings = kw.pop("_sensor", {})
        m = self.mapping(node, "'sensor'")
        if m is None:
            return None
        kinds = [k for k in m if k in SENSOR_KEYS]
        if len(kinds) != 1:
            every = [k for keys in SENSOR_KEYS.values() for k in keys]
            self.known_keys(m, every, " in sensor")
            self.error(node if not kinds else m[kinds[1]][0],
                       "a sensor has exactly one of 'file', 'command', 'http' or 'task'")
            return None
        kind = kinds[0]
        self.known_keys(m, SENSOR_KEYS[kind], f" in {kind} sensor")
        tnode = m[kind][1]
        target = self.string(kind, tnode)
        if target is None:
            return None
        extra: dict[str, Any] = {}
        if kind in ("file", "command", "http"):
            self.templates(tnode, allowed)
        if kind == "command":
            self.shell_templates(tnode, allowed)
        if kind == "http" and not target.startswith(("http://", "https://")):
            self.error(tnode, f"'http' must be an http:// or https:// URL, got {target!r}")
        if kind == "task":
            pipeline, dot, task = target.rpartition(".")
            if not dot or not pipeline or not task:
                self.error(tnode, f"'task' must be PIPELINE.TASK, got {target!r}")
            else:
                self.sensor_refs.append((self.pos(tnode), pipeline, task))
            if "delta" in m:
                extra["delta"] = self.duration("delta", m["delta"][1])
        if "min_size" in m:
            extra["min_size"] = self.integer("min_size", m["min_size"][1], 0, MAX_MIN_SIZE)
        if "glob" in m:
            extra["glob"] = self.boolean("glob", m["glob"][1])
        settings = {**settings, **{k: v for k, v in extra.items() if v is not None}}
        return Sensor(kind=kind, target=target, timeout=kw.get("timeout"), **settings)

    # -- graph ----------------------------------------------------------------
    def upstream(self, up: str, down: str, node: ScalarNode, pos: Pos, where: str,
                 needs: dict[str, list[str]], edge_pos: dict[tuple[str, str], Pos]) -> None:
        if up not in needs:
            self.error(pos, f"unknown task {up!r}{where}{suggest(up, needs)}")
            return
        needs[down].append(up)
        edge_pos.setdefault((up, down), pos)

    def edges(self, node: Node, tasks: dict[str, Pair], needs: dict[str, list[str]],
              edge_pos: dict[tuple[str, str], Pos]) -> None:
        if _is(node, "null"):
            return
        for item in self.items("edges", node):
            steps = self.edge_steps(item)
            for ups, downs in zip(steps, steps[1:]):
                for up, up_off in ups:
                    if up not in needs:
                        continue  # reported by edge_steps
                    for down, down_off in downs:
                        if down in needs:
                            needs[down].append(up)
                            edge_pos.setdefault((up, down), self.pos_in(item, down_off))

    def edge_steps(self, node: ScalarNode) -> list[list[tuple[str, int]]]:
        """``[a, b] >> c`` -> [[(a, off), (b, off)], [(c, off)]]; names checked against the tasks."""
        text = node.value
        steps: list[list[tuple[str, int]]] = []
        offset = 0
        for part in text.split(">>"):
            names = self._step_names(part, offset)
            if names is None:
                self.error(self.pos_in(node, offset), f"bad edge {text!r}: expected 'a >> b', '[a, b] >> c'")
                return []
            steps.append(names)
            offset += len(part) + 2
        if len(steps) < 2:
            self.error(node, f"bad edge {text!r}: expected 'a >> b', '[a, b] >> c'")
            return []
        for names in steps:
            for name, off in names:
                if name not in self.task_names:
                    self.error(self.pos_in(node, off), f"unknown task {name!r} in edges{suggest(name, self.task_names)}")
        return steps

    @staticmethod
    def _step_names(part: str, offset: int) -> list[tuple[str, int]] | None:
        stripped = part.strip()
        start = offset + part.index(stripped) if stripped else offset
        if stripped.startswith("[") and stripped.endswith("]"):
            inner, base = stripped[1:-1], start + 1
            names, pos = [], 0
            for piece in inner.split(","):
                name = piece.strip()
                if not name:
                    return None
                names.append((name, base + pos + piece.index(name)))
                pos += len(piece) + 1
            return names
        if not stripped or any(c in stripped for c in "[], "):
            return None
        return [(stripped, start)]

    def cycles(self, nodes: list[str], needs: dict[str, list[str]], edge_pos: dict[tuple[str, str], Pos]) -> None:
        """Report each cycle once, at the edge that closes it (the one written last)."""
        graph = {n: list(ups) for n, ups in needs.items()}
        for _ in range(10):
            cycle = dag.find_cycle(nodes, graph)
            if cycle is None:
                return
            pairs = list(zip(cycle, cycle[1:]))
            closing = max(pairs, key=lambda p: edge_pos.get(p, (0, 0)))
            self.error(edge_pos.get(closing, (1, 1)), "cycle: " + " -> ".join(cycle))
            graph[closing[1]] = [u for u in graph[closing[1]] if u != closing[0]]
