"""Pipeline YAML -> validated, immutable ``model.Pipeline`` objects.

Each file is read over its YAML node tree (``spec.nodes``), so every problem keeps its
``FILE:LINE:COL``; what each key may hold is the table in ``spec.keys`` (sensor kinds:
``spec.sensors``). Problems are collected, never raised: one run of ``validate`` shows all of
them, and a broken file only takes its own pipeline down.
"""
from __future__ import annotations

import glob as _glob
import os
import re
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from pipectl.model.pipeline import (AssetSchedule, CronSchedule, EverySchedule, FileSchedule, ForeachCommand, Pipeline,
                                    ProjectConfig, RetryPolicy, Sensor, Task, frozen_map)
from pipectl.spec import keys as K
from pipectl.spec.graph import TaskGraph
from pipectl.spec.keys import (MIN_EVERY, PIPELINE_KEYS, SCHEDULE_KEYS, TASK_KEYS, TASK_OPTION_KEYS, Templates,
                               check_templates, read_command)
from pipectl.spec.nodes import NodeReader, Pair, Pos, SpecError, is_kind, node_kind, suggest
from pipectl.spec.sensors import KINDS as SENSOR_KINDS, FileSensor
from pipectl.timing.durations import date_bounds_problem
from pipectl.timing.cron import NICKNAMES

__all__ = ["PIPELINE_KEYS", "TASK_KEYS", "TASK_OPTION_KEYS", "SpecError", "LoadResult", "load_pipelines",
           "spec_files", "suggest", "node_kind"]

_PIPELINE_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
# no dots (sensor targets are "pipeline.task") and no brackets (mapped ids are "task[0]")
_TASK_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]*$")
_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SECRET_REF_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_HHMM_RE = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")
_NO_TEMPLATES = Templates(frozenset())
# Names become directory and file names of logs (255 bytes at most on most file systems).
MAX_NAME = 100


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


def _read_rows(r: "_FileSpec", rows: K.Rows, pairs: dict[str, Pair], scope: Templates | None,
               out: dict[str, Any]) -> None:
    """Each row's key that ``pairs`` holds (or that is read when left out) -> ``out[row.field]``, in row order."""
    position = rows.position
    if rows.read_absent:
        present = [row for row in rows if row.name in pairs or row.read_absent]
    else:
        present = [rows[i] for i in sorted([position[k] for k in pairs if k in position])]
    for row in present:
        pair = pairs.get(row.name)
        if pair is None:
            node = None
        else:
            node = pair[1]
            if row.null_is_absent and is_kind(node, "null"):
                continue
        value = row.value.read(r, row.name, node, r.scope if scope is None else scope)
        if value is not None:
            out[row.field] = value


# -- one file ----------------------------------------------------------------

class _FileSpec(NodeReader):
    def __init__(self, path: Path, config: ProjectConfig):
        super().__init__(_shown(path))
        self.path = path
        self.config = config
        self.name = path.stem
        self.name_pos: Pos = (1, 1)
        self.pipeline: Pipeline | None = None
        self.task_names: list[str] = []
        self.sensor_refs: list[tuple[Pos, str, str]] = []
        self.secret_env: set[str] = set()
        self.kw: dict[str, Any] = {}  # the Pipeline's arguments read so far
        self.top: dict[str, Pair] = {}
        self.when: dict[str, datetime] = {}  # start_date and end_date, parsed
        self._scope: tuple[Any, Any, Templates] | None = None

    @property
    def scope(self) -> Templates:
        """Template variables of the pipeline's commands: its params, and ``file`` for file-triggered runs."""
        params, schedules = self.kw.get("params", ()), self.kw.get("schedules", ())
        if self._scope is None or self._scope[0] is not params or self._scope[1] is not schedules:
            declared = set(params)
            if any(isinstance(s, FileSchedule) for s in schedules):
                declared.add("file")
            self._scope = (params, schedules, Templates(frozenset(declared)))
        return self._scope[2]

    # -- the file -----------------------------------------------------------
    def load(self) -> "_FileSpec":
        try:
            text = self.path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            self.error((1, 1), f"cannot read pipeline file: {getattr(e, 'strerror', None) or e}")
            return self
        root = self.compose(text)
        if self.errors:
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

    def syntax_error(self, e, text: str) -> None:
        super().syntax_error(e, text)
        match = re.search(r"^name:\s*['\"]?([A-Za-z0-9_.-]+)", text, re.M)
        if match:  # keep the pipeline's real name so status shows it as invalid, not missing
            self.name = match.group(1)

    def pipeline_from(self, top: dict[str, Pair]) -> Pipeline | None:
        self.known_keys(top, PIPELINE_KEYS, "")
        self.top = top
        self.kw = kw = {"timezone": self.config.timezone}
        try:
            _read_rows(self, K.PIPELINE_ROWS, top, None, kw)
        finally:
            # every file's reader lives until all are read: holding its node tree would make the
            # collector walk every file's nodes again and again (validate got 40% slower)
            self.top, self.kw = {}, {}
        kw["secret_env"] = tuple(sorted(self.secret_env))
        if self.errors or kw.get("tasks") is None:
            return None
        return Pipeline(path=str(self.path), **kw)

    # -- the pipeline's keys (``Part`` rows of spec.keys name these ``read_*`` methods) -------------
    def read_name(self, key: str, node: Node | None, scope: Templates) -> str:
        if node is not None:
            self.name_pos = self.pos(node)
            name = self.string("name", node)
            if name is None:
                return self.name
            self.name = name
        if not _PIPELINE_NAME_RE.match(self.name):
            origin = "" if node is not None else " (from the file name)"
            self.error(self.name_pos, f"pipeline name {self.name!r}{origin} may only contain letters, digits, "
                                      "'_', '-' and '.'")
        elif len(self.name) > MAX_NAME:
            self.error(self.name_pos, f"pipeline name is {len(self.name)} characters long; at most {MAX_NAME}")
        return self.name

    def read_date(self, key: str, node: Node, scope: Templates) -> str | None:
        parsed = _parse_when(node.value) if isinstance(node, ScalarNode) else None
        if parsed is None:
            shown = node.value if isinstance(node, ScalarNode) else node_kind(node)
            self.error(node, f"{key!r} must be a date (YYYY-MM-DD) or datetime (YYYY-MM-DDTHH:MM[:SS][+HH:MM]),"
                             f" got {shown!r}")
            return None
        problem = date_bounds_problem(parsed.year, parsed.month, parsed.day)
        if problem:
            self.error(node, f"{key!r} {problem}, got {node.value!r}")
            return None
        self.when[key] = parsed
        if key == "end_date" and "start_date" in self.when:
            start = self.when["start_date"]
            if (start.tzinfo is None) == (parsed.tzinfo is None) and parsed < start:
                self.error(node, "'end_date' is before 'start_date'")
        return date.fromisoformat(node.value).isoformat() if len(node.value) == 10 else parsed.isoformat()

    def read_params(self, key: str, node: Node, scope: Templates) -> Any:
        if is_kind(node, "null"):
            return None
        m = self.mapping(node, "'params'")
        if m is None:
            return None
        out = {}
        for name, (_, vnode) in m.items():
            try:
                value = _plain_value(self.construct(vnode))
            except Exception as e:  # e.g. `!!bool all`, `!!int x`: the constructor's own errors
                detail = getattr(e, "problem", None) or (e if isinstance(e, ValueError) else f"{type(e).__name__}: {e}")
                self.error(vnode, f"bad value for param {name!r}: {detail}")
                continue
            if not _finite(value):
                self.error(vnode, f"bad value for param {name!r}: numbers must be finite (no .inf or .nan)")
                continue
            out[name] = value
        return frozen_map(out)

    # -- schedules ------------------------------------------------------------
    def read_schedules(self, key: str, node: Node, scope: Templates) -> tuple | None:
        if is_kind(node, "null"):
            return None
        nodes = node.value if isinstance(node, SequenceNode) else [node]
        return tuple(s for s in (self.schedule(n) for n in nodes) if s is not None)

    def schedule(self, node: Node):
        if is_kind(node, "string"):
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
        values: dict[str, Any] = {}
        _read_rows(self, K.SCHEDULE_ROWS[kind], m, _NO_TEMPLATES, values)
        if kind == "cron":
            return CronSchedule(values["cron"], values.get("timezone")) if values.get("cron") else None
        if kind == "every":
            return EverySchedule(values["every"]) if values.get("every") else None
        if kind == "assets":
            assets, mode = values["assets"], values.get("mode") if "mode" in m else "all"
            if not assets and isinstance(m["assets"][1], SequenceNode):
                self.error(m["assets"][1], "'assets' must name at least one asset")
            return AssetSchedule(assets, mode) if assets and mode and None not in assets else None
        return FileSchedule(values["file"]) if values.get("file") else None

    def read_cron(self, key: str, node: Node, scope: Templates) -> str | None:
        return self.cron(node) if self.string("cron", node) is not None else None

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

    def read_every(self, key: str, node: Node, scope: Templates) -> float | None:
        seconds = self.duration("every", node, positive=True)
        if seconds is not None and seconds < MIN_EVERY:
            self.error(node, f"'every' must be at least {MIN_EVERY:g}s")
            return None
        return seconds

    def read_schedule_assets(self, key: str, node: Node, scope: Templates) -> tuple[str | None, ...]:
        """The names, None for each that is no name (reported): the schedule checks the whole."""
        return tuple(self.text("assets", n) for n in self.items("assets", node))

    # -- env ------------------------------------------------------------------
    def read_env_map(self, key: str, node: Node, scope: Templates) -> Any:
        if is_kind(node, "null"):
            return frozen_map({})
        m = self.mapping(node, f"{key!r}")
        if m is None:
            return frozen_map({})
        out = {}
        for name, (knode, vnode) in m.items():
            if not _ENV_NAME_RE.match(name):
                self.error(knode, f"bad environment variable name {name!r}")
                continue
            value = self.text(name, vnode)
            if value is None:
                continue
            value = self._resolve_secrets(name, value, vnode)
            if value is not None:
                out[name] = value
        return frozen_map(out)

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

    def read_env_file(self, key: str, node: Node, scope: Templates) -> str | None:
        """Only the file's path is kept: its values are read again when a task starts, so no
        secret of it reaches the state file."""
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
        return str(path)

    # -- assets ---------------------------------------------------------------
    def read_assets(self, key: str, node: Node, scope: Templates) -> Any:
        if is_kind(node, "null"):
            return None
        m = self.mapping(node, "'assets'") or {}
        pipeline_tz = self.kw["timezone"]
        out = {}
        for name, (knode, vnode) in m.items():
            spec = self.mapping(vnode, f"asset {name!r}")
            if spec is None:
                continue
            self.known_keys(spec, K.ASSET_KEYS, f" in asset {name!r}")
            entry = {"timezone": pipeline_tz}
            if "fresh_by" not in spec:
                self.error(knode, f"asset {name!r} needs 'fresh_by' (HH:MM)")
            _read_rows(self, K.ASSET_ROWS, spec, scope, entry)
            out[name] = frozen_map(entry)
        return frozen_map(out)

    def read_fresh_by(self, key: str, node: Node, scope: Templates) -> str | None:
        hhmm = _HHMM_RE.match(node.value) if isinstance(node, ScalarNode) else None
        if hhmm is None:
            self.error(node, f"'fresh_by' must be a time HH:MM, got {getattr(node, 'value', node_kind(node))!r}")
            return None
        return f"{int(hhmm.group(1)):02d}:{hhmm.group(2)}"

    # -- catch-up -------------------------------------------------------------
    def read_catchup(self, key: str, node: Node, scope: Templates) -> bool | None:
        """``true``, ``false``, or ``{window: 3d}``: a catch-up bounded to the intervals that ended
        within the window (the window lands in ``catchup_window``)."""
        if isinstance(node, MappingNode):
            m = self.mapping(node, "'catchup'") or {}
            self.known_keys(m, K.CATCHUP_KEYS, " in catchup")
            if "window" not in m:
                if not m:  # an unknown key was reported above, with the likely spelling
                    self.error(node, "'catchup' as a mapping needs 'window' (e.g. {window: 3d}); or write true or false")
                return None
            window = K.key("catchup", "window").value.read(self, "window", m["window"][1], scope)
            if window is None:
                return None
            self.kw["catchup_window"] = window
            return True
        return self.boolean(key, node)

    def read_max_catchup_runs(self, key: str, node: Node, scope: Templates) -> int | None:
        """Bounds a catch-up to the newest N missed intervals; on its own it turns catch-up on, and
        next to an explicit ``catchup: false`` it contradicts it."""
        if is_kind(node, "null"):
            return None
        value = self.integer(key, node, 1, K.MAX_CATCHUP_RUNS)
        if value is None:
            return None
        if "catchup" in self.top and self.kw.get("catchup") is False:
            self.error(node, "'max_catchup_runs' bounds a catch-up, but this pipeline has 'catchup: false'")
            return None
        self.kw["catchup"] = True
        return value

    # -- tasks ----------------------------------------------------------------
    def read_tasks(self, key: str, node: Node | None, scope: Templates) -> Any:
        if node is None:
            self.error((1, 1), "pipeline has no 'tasks'")
            return None
        tasks = self.mapping(node, "'tasks'")
        if tasks is None:
            return None
        if not tasks:
            self.error(self.top["tasks"][0], "'tasks' must declare at least one task")
            return None
        self.task_names = list(tasks)
        defaults = self.defaults(self.top.get("defaults"), scope)
        graph = TaskGraph(self, self.task_names)
        built: dict[str, dict[str, Any]] = {}
        for name, (knode, vnode) in tasks.items():
            if not _TASK_NAME_RE.match(name):
                self.error(knode, f"task name {name!r} may only contain letters, digits, '_' and '-'")
            elif len(name) > MAX_NAME:
                self.error(knode, f"task name is {len(name)} characters long; at most {MAX_NAME}")
            spec = self.mapping(vnode, f"task {name!r}")
            if spec is not None:
                built[name] = self.task(name, knode, spec, defaults, scope, graph)
        if "edges" in self.top:
            graph.read_edges(self.top["edges"][1])
        graph.report_cycles()
        if self.errors:
            return None
        return frozen_map({name: Task(name=name, needs=graph.upstream(name), **kw) for name, kw in built.items()})

    def defaults(self, pair: Pair | None, scope: Templates) -> dict[str, Pair]:
        if pair is None or is_kind(pair[1], "null"):
            return {}
        m = self.mapping(pair[1], "'defaults'") or {}
        self.known_keys(m, TASK_OPTION_KEYS, " in defaults")
        valid = {k: v for k, v in m.items() if k in TASK_OPTION_KEYS}
        self.options(valid, Templates(scope.params, item=True), sensor=True)  # report problems once
        return valid

    def task(self, name: str, knode: Node, spec: dict[str, Pair], defaults: dict[str, Pair], scope: Templates,
             graph: TaskGraph) -> dict[str, Any]:
        self.known_keys(spec, TASK_KEYS, f" in task {name!r}")
        get = {k: v for k, (_, v) in spec.items()}
        here = Templates(scope.params, item="foreach" in get)
        kw: dict[str, Any] = {}
        if "foreach" in get:
            kw["foreach"] = self.read_foreach("foreach", get["foreach"], scope)
        is_sensor = "sensor" in get
        if is_sensor and "run" in get:
            self.error(spec["sensor"][0], f"task {name!r} has both 'run' and 'sensor'; a sensor task has no 'run'")
        elif not is_sensor and "run" not in get:
            self.error(knode, f"task {name!r} needs 'run' (or 'sensor')")
        if "run" in get:
            kw["run"] = self.read_run("run", get["run"], here)
        for row in K.SENSOR_ONLY_ROWS:
            if row.name in spec and not is_sensor:
                self.error(spec[row.name][0], f"{row.name!r} only applies to sensor tasks")
        options = {**defaults, **{k: v for k, v in spec.items() if k in TASK_OPTION_KEYS}}
        merged: dict[str, Any] = {}
        for row in K.MERGED_ROWS:  # a mapping in both: the task's entries over the defaults' ones
            if row.name in defaults and row.name in spec:
                options.pop(row.name)
                merged[row.field] = frozen_map({**row.value.read(self, row.name, defaults[row.name][1], here),
                                                 **row.value.read(self, row.name, spec[row.name][1], here)})
        kw.update(self.options(options, here, sensor=is_sensor))
        kw.update(merged)
        if is_sensor:
            kw["sensor"] = self.sensor(get["sensor"], here, kw)
        if "needs" in get:
            for item in self.items("needs", get["needs"]):
                graph.need(item.value, name, self.pos(item), f" in needs of task {name!r}")
        if "produces" in get:
            kw["produces"] = tuple(dict.fromkeys(n.value for n in self.items("produces", get["produces"])))
        return kw

    def options(self, options: dict[str, Pair], scope: Templates, sensor: bool) -> dict[str, Any]:
        """Keys shared by tasks and `defaults:` -> Task keyword arguments (plus sensor settings)."""
        values: dict[str, Any] = {}
        _read_rows(self, K.OPTION_ROWS, options, scope, values)
        kw: dict[str, Any] = {}
        parts: dict[str, dict[str, Any]] = {"retry": {}, "sensor": {}}
        for name, value in values.items():
            part, dot, attr = name.partition(".")
            if dot:
                parts[part][attr] = value
            else:
                kw[name] = value
        kw["retry"] = RetryPolicy(**parts["retry"])
        if sensor:
            kw["_sensor"] = parts["sensor"]
        return kw

    def read_pool(self, key: str, node: Node, scope: Templates) -> str | None:
        pool = self.string("pool", node)
        if pool is not None and pool not in self.config.pools:
            self.error(node, f"unknown pool {pool!r}{suggest(pool, self.config.pools)}"
                             " (pools are declared under [pools] in pipectl.toml)")
            return None
        return pool

    def read_run(self, key: str, node: Node, scope: Templates) -> str | tuple[str, ...] | None:
        if is_kind(node, "string"):
            return read_command(self, "run", node, scope)
        if isinstance(node, SequenceNode):
            argv = self.items("run", node, single_ok=False)
            if not node.value:
                self.error(node, "'run' must not be an empty list")
            for item in argv:
                check_templates(self, item, scope)
            return tuple(item.value for item in argv)
        self.error(node, f"'run' must be a string or a list, got {node_kind(node)}")
        return None

    def read_foreach(self, key: str, node: Node, scope: Templates) -> tuple[str, ...] | ForeachCommand | None:
        if isinstance(node, SequenceNode):
            items = self.items("foreach", node, single_ok=False)
            if not node.value:
                self.error(node, "'foreach' must list at least one item")
            return tuple(item.value for item in items)
        if isinstance(node, MappingNode):
            m = self.mapping(node, "'foreach'") or {}
            self.known_keys(m, K.FOREACH_KEYS, " in foreach")
            if "command" not in m:
                self.error(node, "'foreach' needs a list of items or 'command'")
                return None
            command = read_command(self, "command", m["command"][1], scope)
            return ForeachCommand(command) if command else None
        self.error(node, f"'foreach' must be a list or a mapping with 'command', got {node_kind(node)}")
        return None

    def sensor(self, node: Node, scope: Templates, kw: dict[str, Any]) -> Sensor | None:
        settings = kw.pop("_sensor", {})
        m = self.mapping(node, "'sensor'")
        if m is None:
            return None
        kinds = [k for k in m if k in SENSOR_KINDS]
        if len(kinds) != 1:
            self.known_keys(m, [k for kind in SENSOR_KINDS.values() for k in kind.key_names()], " in sensor")
            self.error(node if not kinds else m[kinds[1]][0],
                       "a sensor has exactly one of 'file', 'command', 'http' or 'task'")
            return None
        kind = SENSOR_KINDS[kinds[0]]
        self.known_keys(m, kind.key_names(), f" in {kind.name} sensor")
        tnode = m[kind.name][1]
        target = self.string(kind.name, tnode)
        if target is None:
            return None
        extra = kind.read(self, m, tnode, target, scope)
        if kind is not FileSensor:  # a stray min_size or glob is reported unknown, and its value checked too
            extra.update(FileSensor.read_keys(self, m, scope))
        return Sensor(kind=kind.name, target=target, timeout=kw.get("timeout"), **{**settings, **extra})
