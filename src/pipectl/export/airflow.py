"""`pipectl export airflow`: pipelines as Airflow 3 DAG files, one per pipeline.

The DAGs lean on no Airflow default that would change what a pipeline means (see
``airflow_support.py``, copied beside them as ``pipectl_airflow.py``): the timetable,
catchup, start, end and max_active_runs are always written; ``ds`` is the calendar
date in the pipeline's timezone; commands keep pipectl's form, where a value never
becomes shell syntax because it travels in the environment; retries wait exactly
pipectl's delays. What cannot be carried faithfully (it would change which data is
processed) is refused with ``FILE:LINE:COL``, or, with ``lossy``, approximated under a
``# WARNING (pipectl export)`` block. Operational differences that change no data get
that block too.

Pure Python: nothing here imports Airflow. The DAGs are checked by Airflow itself in
``tests/airflow/``.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from datetime import date, datetime, time as dtime, timedelta
from pathlib import Path
from typing import Any, Mapping, Sequence
from zoneinfo import ZoneInfo

from pipectl.model.pipeline import (AssetSchedule, CronSchedule, EverySchedule, FileSchedule, ForeachCommand,
                                    Pipeline, ProjectConfig, Task)
from pipectl.spec.templates import ShellTemplateError, TemplateError, env_name, find_variables, shell_command
from pipectl.timing.clock import UTC

SUPPORT_MODULE = "pipectl_airflow"
POOLS_FILE = "pipectl_pools.json"
AIRFLOW_VERSIONS = ("3",)
# Ids of the tasks an export adds; a dot never occurs in a pipectl task name, so they cannot clash.
WATCHER = "pipectl.run_state"
ITEMS_SUFFIX = ".items"
ASSET_SENSOR = "pipectl.asset."
ASSET_POKE_INTERVAL = 60.0
WARNING_HEAD = "# WARNING (pipectl export)"


@dataclass(frozen=True)
class Refusal:
    file: str
    line: int
    col: int
    what: str
    reason: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}: cannot export {self.what}: {self.reason}"


@dataclass
class Exported:
    pipeline: str
    path: str  # the DAG file, in the output directory
    text: str
    refusals: list[Refusal] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # operational differences and, with lossy, approximations


@dataclass
class ExportResult:
    dags: list[Exported]
    written: list[str]  # every file written, empty when refused
    support: str  # the support module's path
    pools: str | None  # the pools file's path, when the exported pipelines use pools

    @property
    def refusals(self) -> list[Refusal]:
        return [r for d in self.dags for r in d.refusals]


class ExportError(ValueError):
    """Bad arguments to an export (exit 2)."""


# -- positions --------------------------------------------------------------------------------
class _Locator:
    """Line and column of a key's value in a spec file (the loader validated it; this only points)."""

    def __init__(self, path: str):
        import yaml

        self.shown = _shown(path)
        try:
            with open(path, encoding="utf-8") as f:
                self.root = yaml.compose(f.read(), Loader=yaml.SafeLoader)
        except (OSError, yaml.YAMLError, UnicodeDecodeError):
            self.root = None

    def at(self, *keys: str | int) -> tuple[int, int]:
        import yaml

        node = self.root
        found = (1, 1)
        for key in keys:
            if isinstance(node, yaml.MappingNode):
                nxt = next((v for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == key), None)
            elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
                nxt = node.value[key]
            else:
                nxt = None
            if nxt is None:
                break
            node = nxt
            found = (node.start_mark.line + 1, node.start_mark.column + 1)
        return found

    def has(self, *keys: str) -> bool:
        import yaml

        node = self.root
        for key in keys:
            if not isinstance(node, yaml.MappingNode):
                return False
            node = next((v for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == key), None)
            if node is None:
                return False
        return True


def _shown(path: str) -> str:
    try:
        rel = os.path.relpath(path)
    except (ValueError, OSError):
        return str(path)
    return str(path) if rel.startswith("..") else rel


# -- Jinja ------------------------------------------------------------------------------------
_PLAIN_CHAR = re.compile(r"[A-Za-z0-9 _.,:;/@+=%^~!?*()\[\]<>|&$#-]")


def jinja_string(text: str) -> str:
    """A Jinja string literal whose value is ``text`` exactly (quotes, braces, newlines escaped)."""
    out = []
    for c in text:
        if _PLAIN_CHAR.fullmatch(c):
            out.append(c)
        elif ord(c) < 0x100:
            out.append(f"\\x{ord(c):02x}")
        elif ord(c) < 0x10000:
            out.append(f"\\u{ord(c):04x}")
        else:
            out.append(f"\\U{ord(c):08x}")
    return "'" + "".join(out) + "'"


def literal(text: str) -> str:
    """Template source that renders to ``text``: itself when Jinja would read nothing in it."""
    if "{" in text or "\r" in text:
        return "{{ " + jinja_string(text) + " }}"
    return text


def to_jinja(text: str, expr: Mapping[str, str]) -> str:
    """A pipectl template (``{{ ds }}`` ...) as Airflow template source with the same rendering."""
    pattern = re.compile(r"\{\{(\s*)(.*?)\s*\}\}")
    out: list[str] = []
    pos = 0
    for m in pattern.finditer(text):
        if m.start() > pos:
            out.append(literal(text[pos:m.start()]))
        out.append("{{ " + expr[m.group(2)] + " }}")
        pos = m.end()
    if pos < len(text):
        out.append(literal(text[pos:]))
    return "".join(out)


# -- the export -------------------------------------------------------------------------------
def export_airflow(config: ProjectConfig, pipelines: Sequence[Pipeline], project: Mapping[str, Pipeline],
                   out_dir: str, *, lossy: bool = False, now: datetime, airflow: str = "3",
                   write: bool = True) -> ExportResult:
    """DAG files for ``pipelines`` in ``out_dir`` (made if missing), plus the support module and,
    when pools are used, a pools file for ``airflow pools import``. ``project`` holds every valid
    pipeline of the project (task sensors and assets look up their producers there). Nothing is
    written when a refusal stands (``lossy`` turns refusals into warnings)."""
    if airflow not in AIRFLOW_VERSIONS:
        raise ExportError(f"unsupported --airflow {airflow!r}: expected one of {', '.join(AIRFLOW_VERSIONS)}")
    out = Path(out_dir)
    dags = [_DagWriter(config, p, project, lossy=lossy, now=now).build(str(out / f"{p.name}.py")) for p in pipelines]
    support = str(out / f"{SUPPORT_MODULE}.py")
    pools_used = sorted({t.pool for p in pipelines for t in p.tasks.values() if t.pool})
    pools = str(out / POOLS_FILE) if pools_used else None
    result = ExportResult(dags=dags, written=[], support=support, pools=pools)
    if not write or (result.refusals and not lossy):
        return result
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ExportError(f"cannot create {out_dir}: {e.strerror or e}") from None
    if not out.is_dir():
        raise ExportError(f"{out_dir} is not a directory")
    files = {support: support_source()}
    if pools:
        files[pools] = json.dumps({name: {"slots": config.pools[name], "description": "pipectl pool",
                                          "include_deferred": False} for name in pools_used}, indent=2) + "\n"
    for d in dags:
        files[d.path] = d.text
    for path, text in files.items():
        tmp = f"{path}.tmp{os.getpid()}"
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(text)
            os.replace(tmp, path)
        except OSError as e:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise ExportError(f"cannot write {path}: {e.strerror or e}") from None
        result.written.append(path)
    return result


def support_source() -> str:
    return (Path(__file__).parent / "airflow_support.py").read_text(encoding="utf-8")


# -- one pipeline -----------------------------------------------------------------------------
_BASE_EXPR = {
    "ds": "pipectl.ds(logical_date)",
    "ds_nodash": "pipectl.ds_nodash(logical_date)",
    "logical_date": "pipectl.iso(logical_date)",
    "data_interval_start": "pipectl.iso(data_interval_start)",
    "data_interval_end": "pipectl.iso(data_interval_end)",
    "run_id": "run_id",
    "try_number": "ti.try_number",
}
_RUN_VARS = (("PIPECTL_RUN_ID", "run_id"), ("PIPECTL_DS", "ds"), ("PIPECTL_DS_NODASH", "ds_nodash"),
             ("PIPECTL_LOGICAL_DATE", "logical_date"), ("PIPECTL_DATA_INTERVAL_START", "data_interval_start"),
             ("PIPECTL_DATA_INTERVAL_END", "data_interval_end"))
_NOTES = {
    "run_id": "run ids: Airflow names the runs it schedules scheduled__<logical date>, as pipectl does, but a run "
              "triggered in Airflow gets Airflow's manual__ id, and an asset consumer's runs are scheduled__, "
              "not asset__; {{ run_id }} and PIPECTL_RUN_ID carry Airflow's id",
    "bash": "shell: a string `run` goes to BashOperator, which runs `bash -c`, not pipectl's `/bin/sh -c`; "
            "the command text is pipectl's own (values arrive as environment variables, never pasted in)",
    "timeout": "timeout: Airflow sends SIGTERM to the task's process group and never SIGKILL; a task that "
               "ignores SIGTERM outlives its timeout (pipectl sends SIGKILL after a grace period)",
    "secrets": "secrets: ${VAR} values and env_file are read from the worker's environment and file when a "
               "try starts and never rendered into Airflow's database; Airflow's secrets masker hides them in "
               "task logs (pipectl masks what it prints)",
    "hooks": "hooks: on_failure/on_retry/on_success run as Airflow task callbacks on the worker, through "
             "/bin/sh with the try's PIPECTL_* values; PIPECTL_LOG is empty and their output goes to the "
             "task's log",
    "sla": "SLA: the pipeline's sla/on_sla_miss (anchored at the end of the run's data interval) are not "
           "exported: Airflow 3 has no SLAs and its DeadlineAlert is experimental, so nothing fires when a "
           "run is late",
}


def _seconds(value: float | None) -> str:
    if value is None:
        return "None"
    v = int(value) if float(value).is_integer() else value
    return f"datetime.timedelta(seconds={v!r})"


def _when(value: str | None, tz: str, end_of_day: bool = False) -> datetime | None:
    """A spec's start_date/end_date as pipectl reads it: a date is local midnight (end: 23:59:59)."""
    if value is None:
        return None
    if len(value) == 10:
        t = dtime(23, 59, 59) if end_of_day else dtime(0, 0)
        return datetime.combine(date.fromisoformat(value), t, ZoneInfo(tz))
    dt = datetime.fromisoformat(value)
    return dt.replace(tzinfo=ZoneInfo(tz)) if dt.tzinfo is None else dt


def _pendulum(dt: datetime | None, tz: str) -> str:
    if dt is None:
        return "None"
    if isinstance(dt.tzinfo, ZoneInfo):
        zone = dt.tzinfo.key
    else:
        dt, zone = dt.astimezone(UTC), "UTC"
    parts = [dt.year, dt.month, dt.day, dt.hour, dt.minute, dt.second]
    if dt.microsecond:
        parts.append(dt.microsecond)
    return f"pendulum.datetime({', '.join(map(str, parts))}, tz={zone!r})"


def _star_rule_differs(cron: str) -> bool:
    """cron (cronie): with day-of-month and day-of-week both restricted a day matches either, but a
    field starting with '*' ('*/2') counts as unrestricted; Airflow's croniter reads '*/2' as restricted."""
    fields = cron.split()
    if len(fields) != 5:
        return False
    dom, dow = fields[2], fields[4]
    restricted = [f for f in (dom, dow) if f != "*"]
    return len(restricted) == 2 and any(f.startswith("*") for f in restricted)


def dst_difference(cron: str, tz: str, first: date, last: date) -> str | None:
    """Where Airflow's CronDataIntervalTimetable fires other than cron on a DST change day between
    ``first`` and ``last``, in words; None when they agree. cron runs a fixed time that falls in the
    skipped hour right after the jump and one in the repeated hour at its first occurrence; Airflow
    moves the first a whole hour on and takes the second occurrence of the other."""
    from pipectl.timing.cron import parse_cron
    from pipectl.timing.timetable import _transition

    spec = parse_cron(cron)
    zone = ZoneInfo(tz)
    hour_star = spec.fields[1] == "*"
    d = first
    while d <= last:
        start = datetime(d.year, d.month, d.day, tzinfo=zone)
        nxt = d + timedelta(days=1)
        end = datetime(nxt.year, nxt.month, nxt.day, tzinfo=zone)
        if start.utcoffset() == end.utcoffset() and start.utcoffset() == end.replace(fold=1).utcoffset() \
                and start.utcoffset() == start.replace(fold=1).utcoffset():
            d = nxt
            continue
        if spec.day_matches(d):
            for h in spec.hours:
                for m in spec.minutes:
                    naive = datetime(d.year, d.month, d.day, h, m)
                    a = naive.replace(tzinfo=zone, fold=0).astimezone(UTC)
                    b = naive.replace(tzinfo=zone, fold=1).astimezone(UTC)
                    if a == b:
                        continue
                    repeated = a.astimezone(zone).replace(tzinfo=None) == naive
                    if spec.wild and hour_star:
                        continue  # both agree: every real instant that matches (Airflow's fold-hour handling)
                    if repeated:
                        return (f"{h:02d}:{m:02d} happens twice on {d} in {tz}; cron runs it at the first, "
                                "Airflow at the second")
                    # cron: the jump's instant; Airflow: the wall time read with the offset before the jump
                    if spec.wild or a != _transition(zone, b, a):
                        return (f"{h:02d}:{m:02d} does not exist on {d} in {tz}; cron runs it right after the "
                                "jump, Airflow an hour later")
        d = nxt
    return None


class _DagWriter:
    def __init__(self, config: ProjectConfig, p: Pipeline, project: Mapping[str, Pipeline], *, lossy: bool,
                 now: datetime):
        self.config, self.p, self.project, self.lossy, self.now = config, p, project, lossy, now
        self.loc = _Locator(p.path)
        self.refusals: list[Refusal] = []
        self.notes: list[str] = []
        self.lines: list[str] = []

    # -- findings ------------------------------------------------------------------------
    def refuse(self, keys: tuple, what: str, reason: str, approximation: str) -> None:
        line, col = self.loc.at(*keys)
        self.refusals.append(Refusal(self.loc.shown, line, col, what, reason))
        self.notes.append(f"{what}: {reason}; exported as {approximation}")

    def note(self, key: str) -> None:
        if _NOTES[key] not in self.notes:
            self.notes.append(_NOTES[key])

    # -- schedule -----------------------------------------------------------------------
    def schedule(self) -> tuple[str, Any]:
        """(timetable source, the schedule it stands for: CronSchedule, EverySchedule, AssetSchedule or None)."""
        p = self.p
        if p.catchup_bounded:
            from pipectl.engine.catchup import catchup_bound
            self.refuse(("catchup",) if self.loc.has("catchup") else ("max_catchup_runs",),
                        f"a bounded catch-up ({catchup_bound(p)})",
                        "Airflow's catchup is all or nothing: after downtime it runs every missed interval, "
                        "where pipectl runs only those within the bound", "catchup=True (every missed interval)")
        scheds = list(p.schedules)
        if len(scheds) > 1:
            chosen = next((s for s in scheds if isinstance(s, AssetSchedule)), None) or \
                next((s for s in scheds if isinstance(s, (CronSchedule, EverySchedule))), scheds[0])
            self.refuse(("schedule",), "a list of schedules",
                        "one Airflow DAG has one timetable, so the runs of the other schedules would not happen",
                        f"its {_kind(chosen)} schedule alone")
            scheds = [chosen]
        s = scheds[0] if scheds else None
        if isinstance(s, FileSchedule):
            self.refuse(("schedule",), f"schedule {{file: {s.file!r}}}",
                        "Airflow has no run per new file deduplicated by path, size and mtime",
                        "a DAG without schedule (trigger it yourself)")
            return "None", None
        if isinstance(s, AssetSchedule):
            if s.mode == "any":
                self.refuse(("schedule", "mode") if self.loc.has("schedule", "mode") else ("schedule",),
                            "schedule {assets: ..., mode: any}",
                            "the faithful Airflow form waits for every producer's run covering the day; a run "
                            "started by any one asset would process the other inputs' partial days",
                            "mode all")
            return f"CronDataIntervalTimetable('0 0 * * *', timezone={p.timezone!r})", s
        if isinstance(s, CronSchedule):
            if _star_rule_differs(s.cron):
                self.refuse(("schedule",), f"cron {s.cron!r}",
                            "with both day fields restricted and one starting with '*', cron needs both to match "
                            "and Airflow's cron reads either", "Airflow's reading")
            tz = s.timezone or p.timezone
            lo = min(self.now, _when(p.start_date, p.timezone) or self.now).astimezone(ZoneInfo(tz)).date()
            hi = self.now.astimezone(ZoneInfo(tz)).date() + timedelta(days=3 * 366)
            if p.end_date:
                hi = min(hi, _when(p.end_date, p.timezone, end_of_day=True).astimezone(ZoneInfo(tz)).date())
            differs = dst_difference(s.cron, tz, lo, hi)
            if differs:
                self.refuse(("schedule",), f"cron {s.cron!r}",
                            f"{differs}: that run's data interval would differ", "Airflow's reading")
            return f"CronDataIntervalTimetable({s.cron!r}, timezone={tz!r})", s
        if isinstance(s, EverySchedule):
            if p.start_date is None:
                self.refuse(("schedule", "every"), "every: without start_date",
                            "pipectl anchors the intervals at the first tick that saw the pipeline; Airflow needs "
                            "a fixed start", "intervals anchored at the export's time")
            else:
                anchor = _when(p.start_date, p.timezone)
                off = (anchor.astimezone(UTC) - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds() % s.every
                if off and not p.catchup:
                    self.refuse(("start_date",), "every: with catchup false and this start_date",
                                f"Airflow aligns a catchup-free interval schedule to multiples of {s.every:g}s "
                                "since 1970, pipectl to start_date; the intervals would differ",
                                "Airflow's alignment")
            return f"DeltaDataIntervalTimetable({_seconds(s.every)})", s
        return "None", None

    # -- values ----------------------------------------------------------------------------
    def exprs(self, task: str, mapped: bool, try_number: str | None = None) -> dict[str, str]:
        e = dict(_BASE_EXPR)
        e["pipeline"] = jinja_string(self.p.name)
        e["task_name"] = task
        e["task"] = f"pipectl.mapped({jinja_string(task)}, ti)" if mapped else jinja_string(task)
        if try_number is not None:
            e["try_number"] = jinja_string(try_number)
        e["item"] = "pipectl.fmt(task.pipectl_item)" if mapped else "''"
        for key in self.params():
            e[f"params.{key}"] = f"pipectl.fmt(params[{jinja_string(str(key))}])"
        return e

    def params(self) -> dict[str, Any]:
        params = dict(self.p.params)
        if any(isinstance(s, FileSchedule) for s in self.p.schedules):
            params.setdefault("file", "")
        return params

    def sample_values(self) -> dict[str, Any]:
        values: dict[str, Any] = {k: "x" for k in ("ds", "ds_nodash", "logical_date", "data_interval_start",
                                                    "data_interval_end", "run_id", "pipeline", "task",
                                                    "try_number", "item")}
        values["params"] = self.params()
        return values

    def shell(self, text: str, exprs: Mapping[str, str], keys: tuple) -> tuple[str, dict[str, str]]:
        """pipectl's command for ``text`` and the Jinja source of each variable it references."""
        try:
            command, refs = shell_command(text, self.sample_values())
        except (ShellTemplateError, TemplateError) as e:  # validate rejects these; an old spec cannot reach here
            self.refuse(keys, "a command", str(e), "a command that fails")
            return "exit 127", {}
        params = self.params()
        env: dict[str, str] = {}
        for name, _ in find_variables(text):
            env[env_name(name, params)] = "{{ " + exprs[name] + " }}"
        assert set(env) == set(refs)
        return command, env

    def run_env(self, exprs: Mapping[str, str]) -> dict[str, str]:
        """The PIPECTL_* variables of every try (templates.task_env)."""
        task = exprs["task"]
        plain_task = task.startswith("'")  # an unmapped task's name is a constant
        env = {"PIPECTL_PIPELINE": self.p.name,
               "PIPECTL_TASK": literal(exprs["task_name"]) if plain_task else "{{ " + task + " }}"}
        env.update({var: "{{ " + exprs[name] + " }}" for var, name in _RUN_VARS})
        env["PIPECTL_TRY_NUMBER"] = "{{ " + exprs["try_number"] + " }}"
        env["PIPECTL_ITEM"] = "" if exprs["item"] == "''" else "{{ " + exprs["item"] + " }}"
        for key in self.params():
            env["PIPECTL_PARAM_" + re.sub(r"\W", "_", str(key)).upper()] = "{{ " + exprs[f"params.{key}"] + " }}"
        return env

    def spec_env(self, task: Task) -> tuple[dict[str, str], dict[str, str]]:
        """(literal env, secret env): the task's env over the pipeline's; ``${VAR}`` values stay references."""
        merged = {**self.p.env, **task.env}
        secret = set(self.p.secret_env)
        refs = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*\}")
        plain, secrets = {}, {}
        for k, v in merged.items():
            if k in secret and refs.search(v):
                secrets[k] = v
            else:
                plain[k] = literal(v)
        return plain, secrets

    # -- the file ----------------------------------------------------------------------------
    def build(self, path: str) -> Exported:
        p = self.p
        timetable, sched = self.schedule()
        self.note("run_id")
        for name, task in p.tasks.items():
            if task.sla is not None:
                keys = ("tasks", name, "sla") if self.loc.has("tasks", name, "sla") else ("defaults", "sla")
                self.refuse(keys, f"task sla ({name})",
                            "Airflow 3 dropped SLAs and DeadlineAlert is experimental; nothing would fire when "
                            "the task is late", "no SLA")
        for asset, spec in p.assets.items():
            if spec.get("fresh_by"):
                self.refuse(("assets", asset, "fresh_by"), f"fresh_by of asset {asset!r}",
                            "Airflow has no deadline for an asset's daily update; nothing would report it late",
                            "no deadline")
        if p.sla is not None or p.on_sla_miss or any(t.on_sla_miss for t in p.tasks.values()):
            self.note("sla")
        tasks_src = self.tasks_source(sched)
        text = self.render(path, timetable, sched, tasks_src)
        return Exported(pipeline=p.name, path=path, text=text, refusals=self.refusals, notes=self.notes)

    def start_end(self, sched) -> tuple[str, str, str]:
        p = self.p
        start = _when(p.start_date, p.timezone)
        why = ""
        if start is None:
            # pipectl starts a pipeline without start_date at the first tick that sees it: the export's day
            local = self.now.astimezone(ZoneInfo(p.timezone))
            start = datetime.combine(local.date(), dtime(0), ZoneInfo(p.timezone))
            why = "  # no start_date in the spec: pipectl starts at the first tick that sees it; the export's day"
        end = _when(p.end_date, p.timezone, end_of_day=True)
        return _pendulum(start, p.timezone), _pendulum(end, p.timezone), why

    def task_common(self, task: Task, *, sensor: bool = False) -> list[str]:
        r = task.retry
        out = [f"trigger_rule={task.trigger_rule!r},",
               f"pool={(task.pool or 'default_pool')!r},",
               "pool_slots=1,",
               f"priority_weight={task.priority!r},",
               "weight_rule='absolute',"]
        if sensor:
            out += ["retries=0,"]  # a sensor is never retried: its timeout is final
        else:
            out += [f"retries={r.retries!r},",
                    f"retry_delay={_seconds(r.retry_delay)},",
                    "retry_exponential_backoff=0,",  # Airflow's own backoff adds jitter; ExactBackoff decides
                    f"max_retry_delay={_seconds(r.max_retry_delay)},",
                    f"retry_policy=pa.ExactBackoff({_num(r.retry_delay)}, {r.retry_backoff == 'exponential'!r}, "
                    f"{_num(r.max_retry_delay)}),",
                    f"execution_timeout={_seconds(task.timeout)},"]
        if task.produces:
            out.append("outlets=[" + ", ".join(f"Asset({a!r})" for a in task.produces) + "],")
        return out

    def hooks(self, task: Task, exprs: Mapping[str, str], name: str) -> list[str]:
        out = []
        for which, state, cb in (("on_failure", "failed", "on_failure_callback"),
                                 ("on_retry", "up_for_retry", "on_retry_callback"),
                                 ("on_success", "success", "on_success_callback")):
            command = getattr(task, which) or getattr(self.p, which)
            if not command:
                continue
            self.note("hooks")
            keys = ("tasks", name, which) if getattr(task, which) else (which,)
            cmd, refs = self.shell(command, exprs, keys)
            out.append(f"{cb}=pa.Hook({cmd!r}, {state!r}, {_dict(refs)}),")
        return out

    def tasks_source(self, sched) -> list[str]:
        p = self.p
        src: list[str] = []
        cwd_of = {name: os.path.join(self.config.root, t.cwd) if t.cwd else self.config.root
                  for name, t in p.tasks.items()}
        added_upstream: dict[str, list[str]] = {name: [] for name in p.tasks}
        roots = [n for n, t in p.tasks.items() if not t.needs]
        if isinstance(sched, AssetSchedule):
            for asset in sched.assets:
                producers = [(q, t) for q in self.project.values() for t in q.tasks.values() if asset in t.produces]
                if not producers:
                    self.refuse(("schedule", "assets"), f"asset {asset!r}",
                                "no pipeline of the project produces it, so no sensor can wait for it",
                                "no wait for it")
                    continue
                for q, t in producers:
                    sid = ASSET_SENSOR + re.sub(r"[^\w.-]", "_", asset) + (
                        f".{q.name}.{t.name}" if len(producers) > 1 else "")
                    src += [f"t[{sid!r}] = ExternalTaskSensor(",
                            f"    task_id={sid!r},",
                            f"    external_dag_id={q.name!r},",
                            f"    external_task_id={t.name!r},",
                            "    allowed_states=['success'],",
                            "    failed_states=[],",
                            f"    execution_date_fn={self.covering(q, None)},",
                            "    check_existence=False,",
                            "    deferrable=False,",
                            "    mode='reschedule',",
                            f"    poke_interval={ASSET_POKE_INTERVAL!r},",
                            "    timeout=pa.FOREVER,",
                            "    soft_fail=False,",
                            "    retries=0,",
                            ")"]
                    for r in roots:
                        added_upstream[r].append(sid)
        for name, task in p.tasks.items():
            src += self.task_source(name, task, cwd_of[name])
        # edges
        for name, task in p.tasks.items():
            ups = [f"t[{u!r}]" for u in task.needs] + [f"t[{u!r}]" for u in added_upstream[name]]
            target = f"t[{(name + ITEMS_SUFFIX)!r}]" if isinstance(task.foreach, ForeachCommand) else f"t[{name!r}]"
            if len(ups) == 1:
                src.append(f"{ups[0]} >> {target}")
            elif ups:
                src.append(f"[{', '.join(ups)}] >> {target}")
        src += ["",
                "# pipectl fails a run when any task instance failed; Airflow judges only the leaf tasks",
                f"t[{WATCHER!r}] = PythonOperator(",
                f"    task_id={WATCHER!r},",
                "    python_callable=pa.fail_run,",
                "    trigger_rule='one_failed',",
                "    retries=0,",
                ")",
                f"[task for task_id, task in t.items() if task_id != {WATCHER!r}] >> t[{WATCHER!r}]"]
        return src

    def covering(self, q: Pipeline, delta: float | None) -> str:
        """pa.CoveringRun(...) for pipeline ``q``'s run covering the consumer's ds."""
        args = [repr(self.p.timezone), repr(q.timezone)]
        time_scheds = [s for s in q.schedules if isinstance(s, (CronSchedule, EverySchedule))]
        asset = [s for s in q.schedules if isinstance(s, AssetSchedule)]
        s = asset[0] if asset else (time_scheds[0] if time_scheds else None)
        if isinstance(s, CronSchedule):
            args += [f"cron={s.cron!r}", f"cron_tz={(s.timezone or q.timezone)!r}"]
        elif isinstance(s, EverySchedule):
            anchor = _when(q.start_date, q.timezone) or self.now
            args += [f"every={_num(s.every)}", f"anchor={anchor.astimezone(UTC).isoformat()!r}"]
        if delta:
            args.append(f"delta={_num(delta)}")
        return f"pa.CoveringRun({', '.join(args)})"

    def task_source(self, name: str, task: Task, cwd: str) -> list[str]:
        p = self.p
        mapped = task.foreach is not None
        plain, secrets = self.spec_env(task)
        src = [""]
        if task.sensor is not None:
            return src + self.sensor_source(name, task, cwd, plain, secrets)
        exprs = self.exprs(name, mapped)
        env = {**plain, **self.run_env(exprs)}
        if isinstance(task.run, str):
            self.note("bash")
            command, refs = self.shell(task.run, exprs, ("tasks", name, "run"))
            env.update(refs)
            head = "pa.ShellTask"
            body = [f"bash_command={command!r},", "append_env=True,", "skip_on_exit_code=None,"]
        else:
            argv = [to_jinja(a, exprs) for a in task.run]
            head = "pa.ExecTask"
            body = [f"argv={argv!r},"]
        if task.timeout is not None:
            self.note("timeout")
        if secrets or p.env_file:
            self.note("secrets")
        body += [f"cwd={cwd!r},",
                 f"env={_dict(env)},",
                 f"secret_env={_dict(secrets)},",
                 f"env_file={p.env_file!r},",
                 f"no_retry_exit_codes={tuple(task.retry.no_retry_exit_codes)!r},",
                 *([f"skip_exit_codes={tuple(task.skip_exit_codes)!r},"] if task.skip_exit_codes else []),
                 f"retry_on_exit_codes={_tuple_or_none(task.retry.retry_on_exit_codes)},"]
        body += self.task_common(task) + self.hooks(task, exprs, name)
        if not mapped:
            return src + [f"t[{name!r}] = {head}(", f"    task_id={name!r},"] + [_indent(b) for b in body] + [")"]
        if isinstance(task.foreach, ForeachCommand):
            lexprs = self.exprs(name, False, try_number="0")
            lenv = {**plain, **self.run_env(lexprs)}
            lcmd, lrefs = self.shell(task.foreach.command, lexprs, ("tasks", name, "foreach", "command"))
            lenv.update(lrefs)
            lid = name + ITEMS_SUFFIX
            src += [f"# foreach: {{command: ...}}: its items, one per non-blank line, when {name} is ready",
                    f"t[{lid!r}] = pa.ListItems(",
                    f"    task_id={lid!r},",
                    f"    command={lcmd!r},",
                    f"    cwd={cwd!r},",
                    _indent(f"env={_dict(lenv)},"),
                    f"    secret_env={_dict(secrets)},",
                    f"    env_file={p.env_file!r},",
                    f"    trigger_rule={task.trigger_rule!r},",
                    f"    pool={(task.pool or 'default_pool')!r},",
                    f"    priority_weight={task.priority!r},",
                    "    weight_rule='absolute',",
                    "    retries=0,",
                    ")"]
            items = f"t[{lid!r}].output"
            body = [b for b in body if not b.startswith("trigger_rule=")] + ["trigger_rule='all_success',"]
        else:
            items = repr(list(task.foreach))
        return src + [f"t[{name!r}] = {head}.partial(", f"    task_id={name!r},"] + [_indent(b) for b in body] + \
            [f").expand(pipectl_item={items})"]

    def sensor_source(self, name: str, task: Task, cwd: str, plain: dict, secrets: dict) -> list[str]:
        s = task.sensor
        exprs = self.exprs(name, False, try_number="0")  # a sensor makes no tries: pipectl's try_number is 0
        settings = ["mode='reschedule',",
                    f"poke_interval={max(s.poke_interval, 1.0)!r},",
                    f"timeout={'pa.FOREVER' if s.timeout is None else repr(float(s.timeout))},",
                    f"soft_fail={s.soft_fail!r},",
                    "execution_timeout=None,"]
        common = self.task_common(task, sensor=True)
        if s.kind == "file":
            head = "pa.FileSensor"
            body = [f"path={to_jinja(s.target, exprs)!r},", f"root={cwd!r},", f"min_size={s.min_size!r},",
                    f"glob={s.glob!r},"]
        elif s.kind == "http":
            head = "pa.HttpSensor"
            body = [f"url={to_jinja(s.target, exprs)!r},"]
        elif s.kind == "command":
            head = "pa.CommandSensor"
            command, refs = self.shell(s.target, exprs, ("tasks", name, "sensor", "command"))
            env = {**plain, **self.run_env(exprs), **refs}
            if secrets or self.p.env_file:
                self.note("secrets")
            body = [f"command={command!r},", f"cwd={cwd!r},", f"env={_dict(env)},", f"secret_env={_dict(secrets)},",
                    f"env_file={self.p.env_file!r},"]
        else:
            other, _, other_task = s.target.rpartition(".")
            q = self.project.get(other)
            if q is None:
                self.refuse(("tasks", name, "sensor", "task"), f"sensor {s.target!r}",
                            f"pipeline {other!r} is not valid in this project", "a sensor that never succeeds")
                q = self.p
            head = "ExternalTaskSensor"
            body = [f"external_dag_id={other!r},", f"external_task_id={other_task!r},",
                    "allowed_states=['success'],", "failed_states=[],",
                    f"execution_date_fn={self.covering(q, s.delta)},", "check_existence=False,",
                    "deferrable=False,"]
        return [f"t[{name!r}] = {head}(", f"    task_id={name!r},"] + [_indent(b) for b in body + settings + common] + [")"]

    # -- text ------------------------------------------------------------------------------
    def render(self, path: str, timetable: str, sched, tasks_src: list[str]) -> str:
        p = self.p
        start, end, why = self.start_end(sched)
        exprs = self.exprs("", False)
        lines = [f"# Airflow DAG for the pipectl pipeline {p.name!r}, written by `pipectl export airflow`",
                 f"# from {self.loc.shown}. Change the YAML and export again rather than editing this file.",
                 f"# Needs {SUPPORT_MODULE}.py beside it" + (f" and the pools in {POOLS_FILE}"
                                                               " (airflow pools import)." if any(
                     t.pool for t in p.tasks.values()) else ".")]
        if self.notes:
            lines += ["#", WARNING_HEAD] + [_comment(n) for n in self.notes]
        lines += ["from __future__ import annotations",
                  "",
                  "import datetime",
                  "import os",
                  "import sys",
                  "",
                  "import pendulum",
                  "from airflow.providers.standard.operators.python import PythonOperator",
                  "from airflow.providers.standard.sensors.external_task import ExternalTaskSensor",
                  "from airflow.sdk import DAG, Asset, CronDataIntervalTimetable, DeltaDataIntervalTimetable",
                  "",
                  f"# {SUPPORT_MODULE}.py lies beside this file, which may sit below Airflow's dags folder",
                  "if os.path.dirname(os.path.abspath(__file__)) not in sys.path:",
                  "    sys.path.append(os.path.dirname(os.path.abspath(__file__)))",
                  "",
                  f"import {SUPPORT_MODULE} as pa  # noqa: E402",
                  "",
                  "with DAG(",
                  f"    dag_id={p.name!r},",
                  f"    description={p.description!r},",
                  f"    schedule={timetable},",
                  f"    start_date={start},{why}",
                  f"    end_date={end},",
                  f"    catchup={p.catchup!r},",
                  f"    max_active_runs={p.max_active_runs!r},",
                  "    dagrun_timeout=None,",
                  f"    params={_py(dict(self.params()))},",
                  f"    user_defined_macros={{'pipectl': pa.Macros({p.timezone!r})}},",
                  "    render_template_as_native_obj=False,",
                  "    jinja_environment_kwargs={'keep_trailing_newline': True},",
                  "    tags=['pipectl'],",
                  ") as dag:",
                  "    t = {}"]
        lines += [("    " + line) if line else "" for s in tasks_src for line in s.split("\n")]
        del exprs
        return "\n".join(lines) + "\n"


def _kind(s) -> str:
    return {CronSchedule: "cron", EverySchedule: "every", AssetSchedule: "assets", FileSchedule: "file"}[type(s)]


def _num(v: float | None) -> str:
    if v is None:
        return "None"
    return repr(int(v)) if float(v).is_integer() else repr(v)


def _tuple_or_none(v) -> str:
    return "None" if v is None else repr(tuple(v))


def _py(v: Any) -> str:
    return repr(v)


def _dict(d: Mapping[str, str]) -> str:
    if not d:
        return "{}"
    return "{\n" + "".join(f"    {k!r}: {v!r},\n" for k, v in d.items()) + "}"


def _indent(text: str, n: int = 4) -> str:
    return "\n".join(" " * n + line for line in text.split("\n"))


def _comment(text: str, width: int = 100) -> str:
    words = text.split()
    lines, cur = [], "#   - "
    for w in words:
        if len(cur) + len(w) + 1 > width and cur.strip() not in ("#", "#   -"):
            lines.append(cur.rstrip())
            cur = "#     "
        cur += w + " "
    lines.append(cur.rstrip())
    return "\n".join(lines)
