"""Typed, immutable objects for a loaded pipeline.

The spec loader (``spec/loader.py``) builds these from YAML after validating it; the
store keeps ``Pipeline.to_dict()`` as each run's spec snapshot, and
``Pipeline.from_dict()`` rebuilds it without YAML or validation, so the hot
path of tick and of the task reaper never imports yaml.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any, Mapping, Union


def frozen_map(d: Mapping | None) -> Mapping:
    return MappingProxyType(dict(d or {}))


@dataclass(frozen=True)
class RetryPolicy:
    retries: int = 0
    retry_delay: float = 300.0
    retry_backoff: str = "fixed"  # fixed | exponential
    max_retry_delay: float | None = None
    retry_on_exit_codes: tuple[int, ...] | None = None
    no_retry_exit_codes: tuple[int, ...] = ()

    def delay(self, try_number: int) -> float:
        """Seconds to wait after failed try ``try_number`` (1-based) before the next."""
        from pipectl.model.limits import MAX_SPEC_SECONDS
        d = self.retry_delay
        if self.retry_backoff == "exponential":
            # 2.0**64 times any delay is past every cap; a bigger exponent would overflow a float
            d = self.retry_delay * 2.0 ** min(max(try_number - 1, 0), 64)
        if self.max_retry_delay is not None:
            d = min(d, self.max_retry_delay)
        # the longest delay a spec may write: exponential backoff never waits longer either
        return min(d, MAX_SPEC_SECONDS)

    def may_retry(self, try_number: int, exit_code: int | None) -> bool:
        """``try_number`` tries have been made within the current retry budget."""
        if try_number > self.retries:
            return False
        if exit_code is not None:
            if exit_code in self.no_retry_exit_codes:
                return False
            if self.retry_on_exit_codes is not None and exit_code not in self.retry_on_exit_codes:
                return False
        return True


@dataclass(frozen=True)
class Sensor:
    kind: str  # file | command | http | task
    target: str  # path template, command, url template, or "pipeline.task"
    min_size: int | None = None
    delta: float | None = None  # seconds, for kind task: look at ds shifted by delta
    poke_interval: float = 60.0
    timeout: float | None = None
    soft_fail: bool = False
    glob: bool = False  # kind file: target is a glob; ready when a match qualifies


@dataclass(frozen=True)
class ForeachCommand:
    command: str


@dataclass(frozen=True)
class Task:
    name: str
    run: Union[str, tuple[str, ...], None] = None
    needs: tuple[str, ...] = ()  # every upstream task, from `needs` and `edges` merged
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    timeout: float | None = None
    trigger_rule: str = "all_success"
    # exit codes that mean "nothing to do": the task instance is skipped (no retry), and its
    # downstream follows its trigger rule, as Airflow's skip_on_exit_code
    skip_exit_codes: tuple[int, ...] = ()
    owner: str | None = None  # the pipeline's owner when None
    env: Mapping[str, str] = field(default_factory=lambda: frozen_map({}))
    cwd: str | None = None
    pool: str | None = None
    priority: int = 0
    sensor: Sensor | None = None
    foreach: Union[tuple[str, ...], ForeachCommand, None] = None
    produces: tuple[str, ...] = ()
    sla: float | None = None
    on_failure: str | None = None
    on_retry: str | None = None
    on_success: str | None = None
    on_sla_miss: str | None = None


@dataclass(frozen=True)
class CronSchedule:
    cron: str
    timezone: str | None = None  # None: the pipeline's timezone


@dataclass(frozen=True)
class EverySchedule:
    every: float  # seconds


@dataclass(frozen=True)
class AssetSchedule:
    assets: tuple[str, ...]
    mode: str = "all"  # all | any


@dataclass(frozen=True)
class FileSchedule:
    file: str  # glob, relative to the project dir


Schedule = Union[CronSchedule, EverySchedule, AssetSchedule, FileSchedule]
_SCHEDULE_KINDS = {"cron": CronSchedule, "every": EverySchedule, "assets": AssetSchedule, "file": FileSchedule}


@dataclass(frozen=True)
class Pipeline:
    name: str
    path: str  # the YAML file it came from
    tasks: Mapping[str, Task]  # in file order
    description: str = ""
    owner: str | None = None  # who answers for it: shown by status and show, PIPECTL_OWNER in hooks
    schedules: tuple[Schedule, ...] = ()
    timezone: str = "UTC"
    start_date: str | None = None  # ISO date or datetime; naive means the pipeline's timezone
    end_date: str | None = None
    catchup: bool = False
    # a bounded catch-up runs only the missed intervals ending within this many seconds of now,
    # and at most this many of them (the newest); the older ones are skipped and recorded
    catchup_window: float | None = None
    max_catchup_runs: int | None = None
    max_active_runs: int = 1
    params: Mapping[str, Any] = field(default_factory=lambda: frozen_map({}))
    env: Mapping[str, str] = field(default_factory=lambda: frozen_map({}))
    secret_env: tuple[str, ...] = ()  # names in env whose values came from ${VAR} or env_file
    env_file: str | None = None  # absolute path; its values are read when a task starts, never stored
    sla: float | None = None
    on_failure: str | None = None
    on_retry: str | None = None
    on_success: str | None = None
    on_sla_miss: str | None = None
    # asset name -> {"fresh_by": "HH:MM", "timezone": TZ}: when its daily update is due
    assets: Mapping[str, Mapping[str, str]] = field(default_factory=lambda: frozen_map({}))

    @property
    def catchup_bounded(self) -> bool:
        return self.catchup and (self.catchup_window is not None or self.max_catchup_runs is not None)

    @property
    def time_schedules(self) -> tuple[Schedule, ...]:
        return tuple(s for s in self.schedules if isinstance(s, (CronSchedule, EverySchedule)))

    def downstream(self, task: str) -> tuple[str, ...]:
        return tuple(t.name for t in self.tasks.values() if task in t.needs)

    # -- snapshot (JSON-able plain data) ---------------------------------
    def to_dict(self) -> dict:
        return _plain(self)

    @classmethod
    def from_dict(cls, d: Mapping) -> "Pipeline":
        kw = dict(d)
        kw["tasks"] = frozen_map({name: _task_from(t) for name, t in d["tasks"].items()})
        kw["schedules"] = tuple(_schedule_from(s) for s in d.get("schedules", ()))
        kw["params"] = frozen_map(d.get("params"))
        kw["env"] = frozen_map(d.get("env"))
        kw["secret_env"] = tuple(d.get("secret_env", ()))
        kw["assets"] = frozen_map({k: frozen_map(v) for k, v in (d.get("assets") or {}).items()})
        return cls(**kw)


def _plain(obj: Any) -> Any:
    if hasattr(obj, "__dataclass_fields__"):
        out = {f.name: _plain(getattr(obj, f.name)) for f in fields(obj)}
        for kind, klass in _SCHEDULE_KINDS.items():
            if type(obj) is klass:
                out = {"kind": kind, **out}
        if isinstance(obj, ForeachCommand):
            out = {"kind": "command", **out}
        return out
    if isinstance(obj, Mapping):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (tuple, list)):
        return [_plain(v) for v in obj]
    return obj


def _tuple_or_none(v):
    return None if v is None else tuple(v)


def _schedule_from(d: Mapping) -> Schedule:
    d = dict(d)
    kind = d.pop("kind")
    if kind == "assets":
        d["assets"] = tuple(d["assets"])
    return _SCHEDULE_KINDS[kind](**d)


def _task_from(d: Mapping) -> Task:
    kw = dict(d)
    r = dict(kw["retry"])
    r["retry_on_exit_codes"] = _tuple_or_none(r.get("retry_on_exit_codes"))
    r["no_retry_exit_codes"] = tuple(r.get("no_retry_exit_codes") or ())
    kw["retry"] = RetryPolicy(**r)
    kw["run"] = kw["run"] if kw.get("run") is None or isinstance(kw["run"], str) else tuple(kw["run"])
    kw["needs"] = tuple(kw.get("needs", ()))
    kw["skip_exit_codes"] = tuple(kw.get("skip_exit_codes") or ())
    kw["produces"] = tuple(kw.get("produces", ()))
    kw["env"] = frozen_map(kw.get("env"))
    if kw.get("sensor") is not None:
        kw["sensor"] = Sensor(**kw["sensor"])
    fe = kw.get("foreach")
    if isinstance(fe, Mapping):
        kw["foreach"] = ForeachCommand(fe["command"])
    elif fe is not None:
        kw["foreach"] = tuple(str(x) for x in fe)
    return Task(**kw)


@dataclass(frozen=True)
class ProjectConfig:
    """``pipectl.toml``, with every path made absolute."""

    root: str
    pipelines: tuple[str, ...] = ("pipelines/*.yaml",)
    state_dir: str = ".pipectl"  # absolute after loading
    timezone: str = "UTC"
    max_parallel: int = 8
    tick_budget: float = 50.0
    pools: Mapping[str, int] = field(default_factory=lambda: frozen_map({}))
    retention: float | None = None  # seconds; ticks prune when set
    metrics_file: str | None = None  # absolute; each full tick rewrites it (Prometheus text)

    @property
    def state_db(self) -> str:
        return self.state_dir + "/state.db"
