"""Every key a pipeline file may hold, as data: one row per key.

A row says where the key may be written, what its value must be (a value type, which reads and
checks the node and reports problems at their position), and what leaving it out means. The
loader walks these rows; adding a key is one row here, plus a field on ``model.pipeline`` for the
value to land in (and a value type, if none of the ones below fits).

Rows are listed in the order the loader reads them. The order matters only to problems reported
at one position (an alias used by two keys): they are listed in this order.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable

from pipectl.model.states import TRIGGER_RULES
from pipectl.spec.templates import TEMPLATE_VARS, find_variables

if TYPE_CHECKING:
    from yaml.nodes import Node, ScalarNode

    from pipectl.spec.nodes import NodeReader

# where a key may be written
PIPELINE = "pipeline"  # the top level of a pipeline file
TASK = "task"  # a task under `tasks:`
DEFAULTS = "defaults"  # `defaults:`, for every task that does not set the key itself
# a mapping under `schedule:` has one kind key (cron, every, assets or file) and that kind's keys
SCHEDULE_KINDS = ("cron", "every", "assets", "file")
ASSET = "asset"  # an asset under `assets:`
FOREACH = "foreach"  # `foreach:` as a mapping
# (sensor kinds carry their own rows: spec.sensors)

# Counts a spec may give; beyond these a value is a typo, and an int that SQLite cannot hold.
MAX_RETRIES = 1000
MAX_ACTIVE_RUNS = 10000
MAX_CATCHUP_RUNS = 1_000_000
MAX_PRIORITY = 1_000_000
MAX_MIN_SIZE = 2**53
MIN_EVERY = 1.0  # seconds: the scheduler's granularity; less would create runs faster than ticks can

BASE_TEMPLATE_VARS = tuple(v for v in TEMPLATE_VARS if v not in ("params", "item"))


class Templates:
    """Which variables a template may use in one place of the spec."""

    __slots__ = ("params", "item")

    def __init__(self, params: frozenset[str], item: bool = False):
        self.params = params
        self.item = item

    def problem(self, name: str) -> str | None:
        if name in BASE_TEMPLATE_VARS:
            return None
        if name == "item":
            return None if self.item else "template variable 'item' is only available in tasks with 'foreach'"
        if name.startswith("params.") and name[len("params."):] in self.params:
            return None
        from pipectl.spec.nodes import suggest

        choices = [*BASE_TEMPLATE_VARS, *(["item"] if self.item else []), *(f"params.{p}" for p in self.params)]
        return f"unknown template variable {name!r}{suggest(name, choices)}"


def check_templates(r: "NodeReader", node: "ScalarNode", scope: Templates) -> None:
    for name, offset in find_variables(node.value):
        problem = scope.problem(name)
        if problem:
            r.error(r.pos_in(node, offset), problem)


def check_shell(r: "NodeReader", node: "ScalarNode", scope: Templates) -> None:
    """A command for /bin/sh: every template must sit where a variable reference stays data."""
    from pipectl.spec.templates import shell_problems

    for offset, message in shell_problems(node.value, dict.fromkeys(scope.params)):
        r.error(r.pos_in(node, offset), message)


def read_command(r: "NodeReader", key: str, node: "Node", scope: Templates) -> str | None:
    value = r.string(key, node)
    if value is not None:
        check_templates(r, node, scope)
        check_shell(r, node, scope)
    return value


# -- value types -----------------------------------------------------------------
# ``read(r, key, node, scope)``: the value, or None after reporting why there is none.
# (Plain classes, not dataclasses: making a dataclass costs a millisecond or more of import time.)

class Value:
    kind = "value"  # what the key holds, for people

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.kind!r})"

    def read(self, r: "NodeReader", key: str, node: "Node", scope: Templates) -> Any:
        raise NotImplementedError


class Integer(Value):
    def __init__(self, minimum: int, maximum: int):
        self.minimum, self.maximum = minimum, maximum

    @property
    def kind(self) -> str:
        return f"integer {self.minimum}..{self.maximum}"

    def read(self, r, key, node, scope):
        return r.integer(key, node, self.minimum, self.maximum)


class Duration(Value):
    def __init__(self, positive: bool = False):
        self.positive = positive

    @property
    def kind(self) -> str:
        return "duration" + (" > 0" if self.positive else "")

    def read(self, r, key, node, scope):
        return r.duration(key, node, positive=self.positive)


class Choice(Value):
    def __init__(self, choices: tuple[str, ...]):
        self.choices = tuple(choices)

    @property
    def kind(self) -> str:
        return " | ".join(self.choices)

    def read(self, r, key, node, scope):
        return r.choice(key, node, self.choices)


class Boolean(Value):
    kind = "boolean"

    def read(self, r, key, node, scope):
        return r.boolean(key, node)


class String(Value):
    kind = "string"

    def read(self, r, key, node, scope):
        return r.string(key, node)


class Text(Value):
    kind = "text"  # any scalar, as written

    def read(self, r, key, node, scope):
        return r.text(key, node)


class Timezone(Value):
    kind = "timezone"

    def read(self, r, key, node, scope):
        return r.timezone(node)


class ExitCodes(Value):
    kind = "list of exit codes"

    def read(self, r, key, node, scope):
        return r.int_list(key, node)


class Command(Value):
    kind = "shell command (templated)"

    def read(self, r, key, node, scope):
        return read_command(r, key, node, scope)


class Part(Value):
    """A value with structure of its own (tasks, schedules, env, ...): read by the loader's method."""

    def __init__(self, method: str, kind: str):
        self.method, self.kind = method, kind

    def read(self, r, key, node, scope):
        return getattr(r, "read_" + self.method)(key, node, scope)


class ReadBy(Value):
    """Read by the loader's method for another value (``defaults`` and ``edges`` with ``tasks``, a
    task's own keys with the task), never on its own."""

    def __init__(self, method: str, kind: str):
        self.method, self.kind = method, kind

    def read(self, r, key, node, scope):
        return None


# -- rows ----------------------------------------------------------------------

ABSENT = object()  # a default meaning "left out of the model's arguments" (the model's own default)


class Key:
    """One key: its name, its value type, where it may be written, and what leaving it out means."""

    __slots__ = ("name", "value", "where", "default", "field", "null_is_absent", "read_absent", "sensor_only",
                 "merge")

    def __init__(self, name: str, value: Value, where: tuple[str, ...], *, default: Any = ABSENT, field: str = "",
                 null_is_absent: bool = False, read_absent: bool = False, sensor_only: bool = False,
                 merge: bool = False):
        self.name = name
        self.value = value
        self.where = where
        self.default = default  # what leaving the key out means; ABSENT: the model field's default
        # where the value goes: a field of Pipeline or Task; "retry.F" of RetryPolicy, "sensor.F" of Sensor
        self.field = field or name
        self.null_is_absent = null_is_absent  # `key: null` (or `key:`) is the same as leaving the key out
        self.read_absent = read_absent  # read even when left out (its reader checks a default, or requires it)
        self.sensor_only = sensor_only  # a task key that only a sensor task may set
        self.merge = merge  # a mapping a task merges over the one in `defaults:`, key by key

    def __repr__(self) -> str:
        return f"Key({self.name!r}, {self.value!r}, {self.where!r})"


_HOOKS = ("on_failure", "on_retry", "on_success", "on_sla_miss")
_OPTION = (TASK, DEFAULTS)

KEYS: tuple[Key, ...] = (
    # the pipeline file
    Key("name", Part("name", "pipeline name"), (PIPELINE,), default="the file's name", read_absent=True),
    Key("timezone", Timezone(), (PIPELINE,), default="the project's timezone"),
    Key("description", Text(), (PIPELINE,), default="", null_is_absent=True),
    Key("owner", String(), (PIPELINE,), default=None, null_is_absent=True),
    Key("schedule", Part("schedules", "cron | mapping | list"), (PIPELINE,), field="schedules", default=()),
    Key("params", Part("params", "mapping"), (PIPELINE,), default={}),
    Key("start_date", Part("date", "date or datetime"), (PIPELINE,), default=None, null_is_absent=True),
    Key("end_date", Part("date", "date or datetime"), (PIPELINE,), default=None, null_is_absent=True),
    Key("catchup", Part("catchup", "boolean | {window: duration}"), (PIPELINE,), default=False),
    Key("max_catchup_runs", Part("max_catchup_runs", f"integer 1..{MAX_CATCHUP_RUNS}"), (PIPELINE,), default=None),
    Key("max_active_runs", Integer(1, MAX_ACTIVE_RUNS), (PIPELINE,), default=1),
    Key("sla", Duration(positive=True), (PIPELINE,), default=None),
    *(Key(hook, Command(), (PIPELINE,), default=None, null_is_absent=True) for hook in _HOOKS),
    Key("env_file", Part("env_file", "path"), (PIPELINE,), default=None),
    Key("env", Part("env_map", "mapping"), (PIPELINE,), default={}),
    Key("assets", Part("assets", "mapping"), (PIPELINE,), default={}),
    Key("tasks", Part("tasks", "mapping"), (PIPELINE,), read_absent=True),
    Key("defaults", ReadBy("tasks", "task options"), (PIPELINE,), default={}),
    Key("edges", ReadBy("tasks", "list of 'a >> b'"), (PIPELINE,), default=()),
    # a task
    Key("run", ReadBy("task", "command | argv list"), (TASK,), default=None),
    Key("needs", ReadBy("task", "task names"), (TASK,), default=()),
    Key("sensor", ReadBy("task", "mapping (spec.sensors)"), (TASK,), default=None),
    Key("foreach", ReadBy("task", "list | {command}"), (TASK,), default=None),
    Key("produces", ReadBy("task", "asset names"), (TASK,), default=()),
    # a task's options, which `defaults:` may give too
    Key("retries", Integer(0, MAX_RETRIES), _OPTION, field="retry.retries", default=0),
    Key("retry_delay", Duration(), _OPTION, field="retry.retry_delay", default=300.0),
    Key("max_retry_delay", Duration(), _OPTION, field="retry.max_retry_delay", default=None),
    Key("retry_backoff", Choice(("fixed", "exponential")), _OPTION, field="retry.retry_backoff", default="fixed"),
    Key("retry_on_exit_codes", ExitCodes(), _OPTION, field="retry.retry_on_exit_codes", default=None),
    Key("no_retry_exit_codes", ExitCodes(), _OPTION, field="retry.no_retry_exit_codes", default=()),
    Key("timeout", Duration(positive=True), _OPTION, default=None),
    Key("sla", Duration(positive=True), _OPTION, default=None),
    Key("trigger_rule", Choice(TRIGGER_RULES), _OPTION, default="all_success"),
    Key("skip_exit_codes", ExitCodes(), _OPTION, default=()),
    Key("owner", String(), _OPTION, default=None, null_is_absent=True),
    Key("env", Part("env_map", "mapping"), _OPTION, default={}, merge=True),
    Key("cwd", String(), _OPTION, default=None),
    Key("pool", Part("pool", "pool name"), _OPTION, default=None),
    Key("priority", Integer(-MAX_PRIORITY, MAX_PRIORITY), _OPTION, default=0),
    *(Key(hook, Command(), _OPTION, default=None, null_is_absent=True) for hook in _HOOKS),
    Key("poke_interval", Duration(), _OPTION, field="sensor.poke_interval", default=60.0, sensor_only=True),
    Key("soft_fail", Boolean(), _OPTION, field="sensor.soft_fail", default=False, sensor_only=True),
    # inside other values (read by the loader's methods for those values)
    Key("cron", Part("cron", "cron expression or @nickname"), ("cron schedule",)),
    Key("timezone", Timezone(), ("cron schedule",), default="the pipeline's timezone"),
    Key("every", Part("every", "duration >= 1s"), ("every schedule",)),
    Key("assets", Part("schedule_assets", "list of asset names"), ("assets schedule",)),
    Key("mode", Choice(("all", "any")), ("assets schedule",), default="all"),
    Key("file", String(), ("file schedule",)),
    Key("fresh_by", Part("fresh_by", "HH:MM"), (ASSET,)),
    Key("timezone", Timezone(), (ASSET,), default="the pipeline's timezone"),
    Key("command", Command(), (FOREACH,)),
    Key("window", Duration(positive=True), ("catchup",)),
)

class Rows(tuple):
    """The rows of one place, in reading order, with each name's position (a mapping usually
    holds a few of a place's keys: the reader visits those, not every row)."""

    def __new__(cls, rows: Iterable[Key]) -> "Rows":
        self = super().__new__(cls, rows)
        self.position = {row.name: i for i, row in enumerate(self)}
        self.read_absent = tuple(row for row in self if row.read_absent)
        return self


_BY_PLACE: dict[str, Rows] = {}
for _place in dict.fromkeys(p for _row in KEYS for p in _row.where):
    _BY_PLACE[_place] = Rows(k for k in KEYS if _place in k.where)


def keys(where: str) -> Rows:
    """The rows of keys that may be written in one place, in reading order."""
    return _BY_PLACE.get(where) or Rows(())


def names(rows: Iterable[Key]) -> tuple[str, ...]:
    return tuple(k.name for k in rows)


def key(where: str, name: str) -> Key:
    return next(k for k in KEYS if where in k.where and k.name == name)


PIPELINE_ROWS = keys(PIPELINE)
TASK_ROWS = Rows(k for k in keys(TASK) if DEFAULTS not in k.where)
OPTION_ROWS = keys(DEFAULTS)
PIPELINE_KEYS = names(PIPELINE_ROWS)
TASK_OPTION_KEYS = names(OPTION_ROWS)
TASK_KEYS = names(keys(TASK))
SENSOR_ONLY_ROWS = tuple(k for k in OPTION_ROWS if k.sensor_only)
MERGED_ROWS = tuple(k for k in OPTION_ROWS if k.merge)
ASSET_ROWS, ASSET_KEYS = keys(ASSET), names(keys(ASSET))
FOREACH_KEYS = names(keys(FOREACH))
CATCHUP_KEYS = names(keys("catchup"))
SCHEDULE_ROWS = {kind: keys(f"{kind} schedule") for kind in SCHEDULE_KINDS}
HOOK_KEYS = _HOOKS
SCHEDULE_KEYS = {kind: names(rows) for kind, rows in SCHEDULE_ROWS.items()}
