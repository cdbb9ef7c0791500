"""The ``pipectl`` command line: argument parsing only; the work happens in the library.

Kept lean on purpose: cron starts ``pipectl tick`` every minute, so at import this
module pulls in typer and the standard library only. yaml, croniter, rich, sqlite3
and filelock are imported inside the commands that need them.
"""
from __future__ import annotations

import os
import sys
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, Optional

import typer

from pipectl.model.errors import ConfigError, PipectlError, StateError, UsageError
from pipectl.timing.clock import UTC
from pipectl.timing.durations import MAX_COUNT, date_bounds_problem
if TYPE_CHECKING:  # names for annotations only; never imported at run time from here
    from pipectl.model.pipeline import Pipeline, ProjectConfig
PROG = "pipectl"

app = typer.Typer(
    name=PROG,
    help="Dependency-aware pipeline runner that replaces chains of cron jobs: "
    "YAML pipelines, one `pipectl tick` a minute from cron, state in one SQLite file.\n\n"
    "Global options may also follow the command: `pipectl runs P --json`.",
    # Plain click help: rich help would cost every `--help` (and every usage error) ~100 ms.
    rich_markup_mode=None,
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 120},
)


# --------------------------------------------------------------------------- context

class Ctx:
    """What the global options decided, shared by every command (``typer.Context.obj``).

    Everything is computed on first use, so a command that never touches the
    project (``cron``, ``init``) works outside one.
    """

    def __init__(self, project: str | None = None, now: datetime | None = None,
                 json: bool = False, color: bool = True, cwd: str | None = None,
                 environ: Any = None):
        self.project = project
        self.json = json
        self.color = color
        self._now = now
        self._cwd = cwd
        self._environ = os.environ if environ is None else environ
        self._project_dir: Path | None = None
        self._config: ProjectConfig | None = None
        self._loaded: Any = None
        global _CTX
        _CTX = self

    # -- project ---------------------------------------------------------------
    def project_dir(self) -> Path:
        """``--project``, else ``PIPECTL_PROJECT``, else the nearest ancestor with pipectl.toml."""
        if self._project_dir is None:
            from pipectl.spec.config import find_project
            self._project_dir = find_project(self.project, self._cwd or os.getcwd(), self._environ)
        return self._project_dir

    def config(self) -> "ProjectConfig":
        if self._config is None:
            from pipectl.spec.config import load_config
            self._config = load_config(self.project_dir())
        return self._config

    def load(self):
        """The spec loader's ``LoadResult`` (``.pipelines``, ``.errors``, ``.invalid``), loaded once."""
        if self._loaded is None:
            config = self.config()  # a missing project is the clearer error, so it comes first
            from pipectl.spec.loader import load_pipelines
            self._loaded = load_pipelines(config)
        return self._loaded

    def pipeline(self, name: str) -> "Pipeline":
        return resolve_pipeline(self.load(), name)

    def secrets(self) -> list[str]:
        """The secret values of the project, for masking: the last valid spec of each pipeline kept in
        the state file (one made invalid by an edit, or whose file is gone, included), and the specs on
        disk when the command loaded them or when they changed since the state file's copy."""
        from pipectl.spec.secrets import secret_values
        try:
            config = self.config()
        except (PipectlError, OSError):
            return []  # no project: nothing of it can be printed either
        values: list[str] = []
        current = False
        if os.path.exists(config.state_db):
            import sqlite3

            from pipectl.engine.quicktick import spec_fingerprint
            from pipectl.state.store import loads, spec_copies
            try:
                specs, fingerprint = spec_copies(config.state_db)
            except sqlite3.Error:
                specs, fingerprint = [], None  # a state file that cannot be read is reported by the command
            for text in specs:
                values += secret_values(loads(text))
            # the copies are the specs on disk: a tick's report need not parse every YAML file again
            current = fingerprint is not None and fingerprint == spec_fingerprint(config)
        if self._loaded is not None or not current:
            try:
                loaded = self.load()
            except (PipectlError, OSError):
                return values
            for p in loaded.pipelines.values():
                values += secret_values(p)
        return values

    # -- time ------------------------------------------------------------------
    def now(self) -> datetime:
        """The scheduler's "now": ``--now`` / ``PIPECTL_NOW`` if given, else the clock; aware UTC."""
        return self._now if self._now is not None else datetime.now(UTC)

    @property
    def fake_now(self) -> bool:
        return self._now is not None

    # -- output ----------------------------------------------------------------
    def console(self, stderr: bool = False):
        from pipectl.cli.render import make_console
        return make_console(color=self.color, stderr=stderr)


_CTX: Ctx | None = None  # the command's context, for the masking of everything printed


def _secrets_now(args: list[str]) -> list[str]:
    """The secrets to mask, from the command's project (the first time anything is printed)."""
    c = _CTX
    if c is None:  # the arguments did not even parse: find the project as the command would have
        project = None
        for i, a in enumerate(args):
            if a == "--project" and i + 1 < len(args):
                project = args[i + 1]
            elif a.startswith("--project="):
                project = a.split("=", 1)[1]
        c = Ctx(project=project)
    return c.secrets()


def get_ctx(ctx: typer.Context) -> Ctx:
    """The shared :class:`Ctx` from a command's ``typer.Context`` (a default one under bare invocation)."""
    root = ctx.find_root()
    if not isinstance(root.obj, Ctx):
        root.obj = Ctx()
    return root.obj


# --------------------------------------------------------------------------- helpers

def parse_now(value: str, option: str = "--now") -> datetime:
    """ISO 8601 to an aware UTC datetime; a naive value means UTC (``Z`` accepted)."""
    try:
        dt = datetime.fromisoformat(value.strip())
    except (ValueError, AttributeError):
        raise UsageError(f"bad {option} value {value!r}: expected ISO 8601, e.g. 2026-04-05T03:00:00Z") from None
    _check_bounds(dt, option, value)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


def parse_date_arg(value: str, option: str = "--date", tz: str = "UTC") -> date | datetime:
    """A ``--date``-style argument.

    ``YYYY-MM-DD`` returns a ``date`` (a ``ds``: match runs by their calendar date).
    Anything else must be an ISO datetime and returns an aware UTC ``datetime``
    (a logical date); a naive one is read in ``tz`` (the pipeline's timezone), like
    ``start_date`` in a spec. Check ``isinstance(x, datetime)`` first: a datetime is
    also a date.
    """
    text = (value or "").strip()
    if len(text) == 10:
        try:
            d = date.fromisoformat(text)
        except ValueError:
            raise UsageError(f"bad {option} {value!r}: expected YYYY-MM-DD or an ISO 8601 datetime") from None
        _check_bounds(d, option, value)
        return d
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"bad {option} {value!r}: expected YYYY-MM-DD or an ISO 8601 datetime") from None
    _check_bounds(dt, option, value)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=zone(tz))
    return dt.astimezone(UTC)


def _check_bounds(d: date, option: str, value: str) -> None:
    """Dates far outside the range pipectl works in would overflow datetime arithmetic later."""
    problem = date_bounds_problem(d.year, d.month, d.day)
    if problem:
        raise UsageError(f"bad {option} {value!r}: {problem}")


def parse_date_range(start: str, end: str, tz: str = "UTC") -> tuple[date | datetime, date | datetime]:
    """``--start``/``--end`` pair; UsageError when end is before start."""
    a = parse_date_arg(start, "--start", tz)
    b = parse_date_arg(end, "--end", tz)
    if _sort_key(b, tz) < _sort_key(a, tz):
        raise UsageError(f"--end {end} is before --start {start}")
    return a, b


def _sort_key(d: date | datetime, tz: str) -> datetime:
    if isinstance(d, datetime):
        return d
    return datetime(d.year, d.month, d.day, tzinfo=zone(tz)).astimezone(UTC)


def zone(name: str):
    """The timezone ``--tz`` and friends name, or a UsageError naming the bad timezone."""
    from pipectl.timing.clock import timezone_error, zone as resolve
    problem = timezone_error(name)
    if problem:
        raise UsageError(problem)
    return resolve(name)


def parse_params(pairs: list[str] | None) -> dict[str, str]:
    """``--param k=v`` repeated, to a dict; later ones win."""
    out: dict[str, str] = {}
    for p in pairs or ():
        k, sep, v = p.partition("=")
        if not sep or not k.strip():
            raise UsageError(f"bad --param {p!r}: expected NAME=VALUE")
        out[k.strip()] = v
    return out


def resolve_pipeline(loaded, name: str) -> "Pipeline":
    """The named pipeline from a ``LoadResult``.

    Unknown name: UsageError (exit 2) listing the known ones. A pipeline whose spec
    is invalid: PipectlError (exit 1) with its first spec error, since the fix is in
    the YAML, not the command line.
    """
    if name in loaded.pipelines:
        return loaded.pipelines[name]
    invalid = getattr(loaded, "invalid", {}) or {}
    if name in invalid:
        errs = invalid[name]
        more = f" (and {len(errs) - 1} more; run `pipectl validate`)" if len(errs) > 1 else ""
        raise PipectlError(f"pipeline {name!r} is invalid: {errs[0]}{more}" if errs else f"pipeline {name!r} is invalid")
    known = ", ".join(sorted(loaded.pipelines)) or "none"
    raise UsageError(f"unknown pipeline {name!r} (known: {known})")


def schedule_words(pipeline: "Pipeline") -> str:
    """Every schedule of a pipeline in words, e.g. ``at 02:00 every day (America/Los_Angeles)``."""
    from pipectl.model.pipeline import CronSchedule
    from pipectl.timing.describe import describe
    if not pipeline.schedules:
        return "no schedule (trigger or backfill only)"
    parts = []
    for s in pipeline.schedules:
        words = describe(s)
        if isinstance(s, CronSchedule):
            tz = s.timezone or pipeline.timezone
            if tz not in words:
                words = f"{words} ({tz})"
        parts.append(words)
    return "; or ".join(parts)


def exit_with(code: int) -> NoReturn:
    raise typer.Exit(code)


def iso(dt: datetime | None) -> str | None:
    """ISO 8601 with ``T`` and offset, the one datetime format of pipectl's output."""
    return None if dt is None else dt.isoformat()


# Option types the commands share, so every command spells them the same way.
PipelineArg = Annotated[str, typer.Argument(metavar="PIPELINE", help="Pipeline name.", show_default=False)]
DateOpt = Annotated[Optional[str], typer.Option("--date", "-d", metavar="D",
                                                help="Logical date: YYYY-MM-DD (ds) or ISO 8601 datetime.")]
RunIdOpt = Annotated[Optional[str], typer.Option("--run-id", metavar="ID", help="The run with this run id.")]
AtOpt = Annotated[Optional[str], typer.Option("--at", metavar="DATETIME",
                                              help="The run at this logical datetime (ISO 8601; naive = the "
                                                   "pipeline's timezone), or HH:MM on --date's day.")]
WaitOpt = Annotated[bool, typer.Option("--wait/--no-wait", help="Drive the work to the end before returning.")]
# Counts are bounded: `--count 1e9` would otherwise compute (and hold) a billion fire times.
CountOpt = Annotated[int, typer.Option("--count", "-n", min=1, max=MAX_COUNT, help="How many.")]
LimitOpt = Annotated[int, typer.Option("--limit", "-n", min=1, max=MAX_COUNT, help="At most this many rows.")]


# --------------------------------------------------------------------------- global options

@app.callback()
def _global(
    ctx: typer.Context,
    project: Annotated[Optional[str], typer.Option(
        "--project", metavar="DIR",
        help="Project directory (default: $PIPECTL_PROJECT, else the nearest parent with pipectl.toml).")] = None,
    now: Annotated[Optional[str], typer.Option(
        "--now", metavar="ISO8601", envvar="PIPECTL_NOW", show_envvar=False,
        help="The scheduler's \"now\" (default: $PIPECTL_NOW, else the clock); naive means UTC.")] = None,
    json_: Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")] = False,
    no_color: Annotated[bool, typer.Option("--no-color", help="No colours (also: NO_COLOR set).")] = False,
) -> None:
    """Global options, kept in a :class:`Ctx` on ``ctx.obj`` for every command."""
    color = not no_color and not os.environ.get("NO_COLOR")
    ctx.obj = Ctx(project=project, now=parse_now(now) if now else None, json=json_, color=color)


# --------------------------------------------------------------------------- project commands

@app.command()
def init(
    ctx: typer.Context,
    directory: Annotated[Optional[str], typer.Argument(metavar="[DIR]", show_default=False,
                                                        help="Where to create the project (default: --project, else .).")] = None,
) -> None:
    """Scaffold pipectl.toml and an example pipeline."""
    c = get_ctx(ctx)
    try:
        target = Path(directory or c.project or ".").expanduser().resolve()
    except (RuntimeError, ValueError, OSError) as e:  # ~nouser, a NUL byte, a loop of symlinks
        raise UsageError(f"bad directory {directory or c.project!r}: {e}") from None
    if (target / "pipectl.toml").exists():
        raise UsageError(f"{target / 'pipectl.toml'} already exists; nothing changed")
    if target.exists() and not target.is_dir():
        raise UsageError(f"{target} is not a directory")
    from pipectl.ops.scaffold import init_project
    created = init_project(target)
    if c.json:
        from pipectl.cli.render import print_json
        print_json({"project": str(target), "created": [str(p) for p in created]})
        return
    for p in created:
        print(f"created {_rel(p)}")
    where = "" if target == Path.cwd().resolve() else f"cd {_rel(target)} && "
    print(f"next: {where}pipectl validate && pipectl tick")


StrictOpt = Annotated[bool, typer.Option(
    "--strict", help="A schedule time skipped or repeated by a DST change within 12 months is an error, not a warning.")]


def dst_lint(c: Ctx, pipelines, strict: bool) -> list[str]:
    """Print the DST warnings of ``pipelines`` (errors with --strict) and return them."""
    from pipectl.timing.dstlint import dst_warnings

    found = [w for p in pipelines for w in dst_warnings(p, c.now())]
    for w in found:
        print(f"{PROG}: {'error' if strict else 'warning'}: {w}", file=sys.stderr)
    return found


@app.command()
def validate(ctx: typer.Context, strict: StrictOpt = False) -> None:
    """Check every pipeline spec; problems as FILE:LINE:COL: message. Warns of schedule times a DST change
    skips or repeats within 12 months."""
    c = get_ctx(ctx)
    res = c.load()
    for err in res.errors:
        print(str(err), file=sys.stderr)
    rows = []
    for name, p in sorted(res.pipelines.items()):
        rows.append({"name": name, "path": _rel(p.path), "tasks": len(p.tasks),
                     "schedule": schedule_words(p), "timezone": p.timezone})
    warnings = cwd_warnings(c.config(), res.pipelines)
    for w in warnings:
        print(f"{PROG}: warning: {w}", file=sys.stderr)
    dst = dst_lint(c, [p for _, p in sorted(res.pipelines.items())], strict)
    if c.json:
        from pipectl.cli.render import print_json
        print_json({
            "ok": not res.errors,
            "warnings": warnings + dst,
            "pipelines": rows,
            "invalid": sorted(str(k) for k in (getattr(res, "invalid", {}) or {})),
            "errors": [_error_dict(e) for e in res.errors],
        })
    else:
        width = max((len(r["name"]) for r in rows), default=0)
        for r in rows:
            n = r["tasks"]
            print(f"ok  {r['name']:<{width}}  {n} task{'s' if n != 1 else ''}  {r['schedule']}")
        if res.errors:
            bad = len(getattr(res, "invalid", {}) or {}) or "some"
            print(f"{len(res.errors)} problem{'s' if len(res.errors) != 1 else ''} in {bad} "
                  f"pipeline spec{'s' if bad != 1 else ''}", file=sys.stderr)
        elif not rows:
            print(f"no pipelines found (globs: {', '.join(c.config().pipelines)})", file=sys.stderr)
    if res.errors or (strict and dst):
        exit_with(1)


def cwd_warnings(config, pipelines) -> list[str]:
    """Tasks whose ``cwd`` does not exist now: not an error (a task before it may create
    it), but a try started there fails at once."""
    out = []
    for name, p in sorted(pipelines.items()):
        for task in p.tasks.values():
            if task.cwd and not os.path.isdir(os.path.join(config.root, task.cwd)):
                out.append(f"{_rel(p.path)}: task {task.name!r} has cwd {task.cwd!r}, which does not exist "
                           f"(relative to {_rel(config.root) if _rel(config.root) != '.' else 'the project'}); "
                           "its tries fail to start unless something creates it first")
    return out


@app.command()
def graph(
    ctx: typer.Context,
    pipeline: PipelineArg,
    date_: DateOpt = None,
    at: AtOpt = None,
    run_id: RunIdOpt = None,
) -> None:
    """Draw a pipeline's tasks in dependency layers (coloured by state with --date)."""
    c = get_ctx(ctx)
    states = None
    if date_ or at or run_id:
        # a run is drawn as it ran: its own snapshot, even if today's spec is broken or different
        from pipectl.cli.runref import history, snapshot_pipeline
        res = history(c, pipeline)
        if not res.valid:
            print(f"{PROG}: warning: pipeline {pipeline} is invalid ({res.errors[0]}); "
                  "drawing the run from its own snapshot", file=sys.stderr)
        run = find_run(c, res.pipeline, date_, run_id=run_id, at=at)
        p = snapshot_pipeline(run)
        states = task_states(c, run)
    else:
        p = c.pipeline(pipeline)
    from pipectl.cli import render
    if c.json:
        render.print_json(render.graph_data(p, states))
        return
    c.console().print(render.graph(p, states))


def task_states(c: Ctx, run) -> dict[str, str]:
    """Task instance id (``task`` or ``task[i]``) -> state, for ``run``. Read-only."""
    from pipectl.state.store import existing_store
    store = existing_store(c.config())
    if store is None:
        return {}
    try:
        return {ti.task: ti.state for ti in store.task_instances(run.id)}
    finally:
        store.close()


def find_run(c: Ctx, pipeline: "Pipeline", when: date | datetime | str | None, run_id: str | None = None,
             at: str | None = None):
    """The run row of ``pipeline`` named by ``when`` (``--date``), ``at`` or ``run_id``; UsageError if none
    or if a ds matches several runs (see :func:`pipectl.cli.runref.find_run`)."""
    from pipectl.cli.runref import find_run as resolve
    from pipectl.state.store import existing_store
    store = existing_store(c.config())
    try:
        return resolve(store, pipeline, when, run_id=run_id, at=at)
    finally:
        if store is not None:
            store.close()


@app.command()
def cron(
    ctx: typer.Context,
    expr: Annotated[str, typer.Argument(metavar="EXPR", help="Cron expression, quoted: \"0 2 * * *\", @daily, ...")],
    tz: Annotated[str, typer.Option("--tz", metavar="TZ", help="Timezone the expression is read in.")] = "UTC",
    count: CountOpt = 5,
) -> None:
    """A cron expression in words and its next fire times after "now"."""
    c = get_ctx(ctx)
    zi = zone(tz)
    from pipectl.timing.cron import cron_error
    from pipectl.timing.describe import describe_cron
    from pipectl.timing.timetable import fire_times
    problem = cron_error(expr)
    if problem:
        raise UsageError(problem)
    now = c.now()
    times = [t.astimezone(zi) for t in fire_times(expr, tz, now, count)]
    if c.json:
        from pipectl.cli.render import print_json
        print_json([t.isoformat() for t in times])
        return
    print(f"{expr}: {describe_cron(expr)} ({tz})")
    print(f"next {len(times)} after {now.astimezone(zi).isoformat()}:")
    for t in times:
        print(f"  {t.isoformat()}  {t:%a}")


# --------------------------------------------------------------------------- engine commands
# tick, trigger, run, status, runs, show, logs, explain, next, backfill, retry, mark,
# pause, unpause, grid, assets, install, doctor, prune, metrics.
#
# Pattern (keep commands thin; import the engine inside the function):
#
#   @app.command()
#   def runs(ctx: typer.Context, pipeline: PipelineArg, limit: LimitOpt = 20) -> None:
#       """Run history of a pipeline, newest first."""
#       c = get_ctx(ctx)
#       p = c.pipeline(pipeline)          # UsageError "unknown pipeline 'x' (known: ...)"
#       from .store import Store
#       ...
#       if c.json: render.print_json(...) else: c.console().print(render.table(...))
#       exit_with(1) when the work failed
#
# Helpers: get_ctx, Ctx.{project_dir,config,load,pipeline,now,json,color,console},
# find_run, task_states, parse_date_arg, parse_date_range, parse_params, zone, schedule_words, iso, exit_with.


# Command modules register themselves on `app`; one line each, keep them import-light.
from pipectl.cli.commands import admin as _admin  # noqa: E402,F401
from pipectl.cli.commands import core as _core  # noqa: E402,F401
from pipectl.cli.commands import events as _events  # noqa: E402,F401
from pipectl.cli.commands import export as _export  # noqa: E402,F401
from pipectl.cli.commands import imports as _imports  # noqa: E402,F401
from pipectl.cli.commands import ops as _ops  # noqa: E402,F401
from pipectl.cli.commands import simulate as _simulate  # noqa: E402,F401

# --------------------------------------------------------------------------- entry point

_GLOBAL_FLAGS = {"--json", "--no-color"}
_GLOBAL_VALUED = {"--project", "--now"}


def hoist_global_options(argv: list[str]) -> list[str]:
    """Move global options written after the command in front of it.

    Users type ``pipectl runs P --json`` (SPEC §7 does too); click only accepts
    group options before the command. Stops at ``--``.
    """
    front: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--":
            rest.extend(argv[i:])
            break
        name = a.split("=", 1)[0]
        if a in _GLOBAL_FLAGS:
            front.append(a)
        elif name in _GLOBAL_VALUED and "=" in a and a.startswith("--"):
            front.append(a)
        elif a in _GLOBAL_VALUED and i + 1 < len(argv):
            front.extend(argv[i:i + 2])
            i += 1
        else:
            rest.append(a)
        i += 1
    return front + rest


def install_fast_coercion(command: Any) -> int:
    """Give plain ``str``/``int``/``bool`` parameters a trivial coercer; returns how many were patched.

    typer 0.29 coerces every non-bool parameter through a pydantic TypeAdapter, and
    importing pydantic costs ~65 ms: more than the rest of a no-op ``pipectl tick``,
    which cron starts 1440 times a day. Parameters with anything fancier (choices,
    paths, parsers, callbacks' types) keep typer's own coercion. If typer's internals
    change, this quietly does nothing and pipectl is merely slower.
    """
    try:
        from dataclasses import dataclass
        from typing import Union, get_args, get_origin

        from typer import _click as click
        from typer._coercion import RuntimeParam
    except ImportError:
        return 0

    @dataclass(frozen=True)
    class Plain(RuntimeParam):  # type: ignore[misc]
        convert: Any = str
        many: bool = False

        def _coerce_value(self, value, param, ctx):
            if self.many:
                return [self._one(v, param, ctx) for v in value]
            return self._one(value, param, ctx)

        def _one(self, value, param, ctx):
            if self.convert is str:
                return str(value)
            if self.convert is bool:
                if isinstance(value, bool):
                    return value
                text = str(value).strip().lower()
                if text in ("1", "true", "t", "yes", "y", "on"):
                    return True
                if text in ("0", "false", "f", "no", "n", "off", ""):
                    return False
                raise click.exceptions.BadParameter(f"{value!r} is not a valid boolean.", ctx=ctx, param=param)
            try:
                n = int(value)
            except (TypeError, ValueError):
                raise click.exceptions.BadParameter(f"{value!r} is not a valid integer.", ctx=ctx, param=param) from None
            lo, hi = self.parameter_info.min, self.parameter_info.max
            if getattr(self.parameter_info, "clamp", False):
                return min(hi, n) if hi is not None and n > hi else max(lo, n) if lo is not None and n < lo else n
            if (lo is not None and n < lo) or (hi is not None and n > hi):
                rng = f"{lo}<=x<={hi}" if lo is not None and hi is not None else f"x>={lo}" if lo is not None else f"x<={hi}"
                raise click.exceptions.BadParameter(f"{n} is not in the range {rng}.", ctx=ctx, param=param)
            return n

    def plain_type(annotation):
        many = False
        if get_origin(annotation) is Union:
            args = [a for a in get_args(annotation) if a is not type(None)]
            if len(args) != 1:
                return None
            annotation = args[0]
        if get_origin(annotation) is list:
            args = get_args(annotation)
            if len(args) != 1:
                return None
            annotation, many = args[0], True
        return (annotation, many) if annotation in (str, int, bool) else None

    def fix(param) -> bool:
        desc = getattr(param, "type_descriptor", None)
        if desc is None or getattr(param, "_runtime_param", "absent") is not None:
            return False
        info = desc.parameter_info
        kind = plain_type(desc.annotation)
        if kind is None or getattr(info, "parser", None) is not None or getattr(info, "click_type", None) is not None:
            return False
        param._runtime_param = Plain(parameter_info=info, annotation=desc.annotation, convert=kind[0], many=kind[1])
        return True

    def lazy_help(cmd) -> None:
        # --help is created on first use, as a bool option like any other
        original = cmd.get_help_option

        def get_help_option(ctx):
            opt = original(ctx)
            if opt is not None:
                fix(opt)
            return opt

        cmd.get_help_option = get_help_option

    patched = 0
    stack = [command]
    while stack:
        cmd = stack.pop()
        stack.extend(getattr(cmd, "commands", {}).values())
        patched += sum(fix(param) for param in cmd.params)
        lazy_help(cmd)
    return patched


# Exit codes belong to the CLI: 2 when the invocation or the project's configuration is
# wrong (fix the command line or pipectl.toml), 1 when the work, a spec or the state failed.
EXIT_CODES: dict[type, int] = {UsageError: 2, ConfigError: 2, StateError: 1, PipectlError: 1}

# The values a library error names, as the flags that supply them.
FLAGS = {"project": "--project", "tasks": "--tasks", "task": "--task", "downstream": "--downstream", "schedule": "--schedule",
         "reprocess": "--reprocess", "date": "--date", "at": "--at", "run_id": "--run-id"}


def exit_code(err: PipectlError) -> int:
    """The exit code of a library error: its nearest class in EXIT_CODES."""
    return next(EXIT_CODES[c] for c in type(err).__mro__ if c in EXIT_CODES)


def error_line(err: PipectlError) -> str:
    """A library error in the CLI's terms (parameters named as flags)."""
    return err.render(FLAGS)


def _die(message: str, code: int) -> NoReturn:
    # One line, always: cron mails and CI logs show exactly what went wrong.
    from pipectl.spec import secrets
    text = " ".join(str(message).split()) or "unknown error"
    secrets.reporting_error = True
    print(f"{PROG}: error: {text}", file=sys.stderr)
    sys.exit(code)


def main(argv: list[str] | None = None) -> NoReturn:
    """Console script: run the app, turning every failure into one stderr line and an exit code."""
    from typer import _click as click

    args = hoist_global_options(list(sys.argv[1:] if argv is None else argv))
    debug = os.environ.get("PIPECTL_DEBUG", "") not in ("", "0")
    # One choke point: whatever pipectl prints (tables, JSON, logs, error lines) passes a
    # writer that masks the project's secrets; the project is read only if something is printed.
    from pipectl.spec import secrets
    secrets.set_source(lambda: _secrets_now(args))
    if not isinstance(sys.stdout, secrets.MaskingWriter):
        sys.stdout = secrets.MaskingWriter(sys.stdout)
    if not isinstance(sys.stderr, secrets.MaskingWriter):
        sys.stderr = secrets.MaskingWriter(sys.stderr)
    command = typer.main.get_command(app)
    install_fast_coercion(command)
    try:
        rv = command.main(args=args, prog_name=PROG, standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as e:
        print(e.ctx.get_help())
        _die(f"missing command (see '{e.ctx.command_path} --help')", 2)
    except click.exceptions.UsageError as e:
        hint = ""
        if e.ctx is not None:
            hint = f" (see '{e.ctx.command_path} --help')"
        _die(e.format_message() + hint, 2)
    except click.exceptions.ClickException as e:
        _die(e.format_message(), e.exit_code or 1)
    except typer.Abort:
        _die("aborted", 1)
    except PipectlError as e:
        if debug:
            import traceback

            secrets.reporting_error = True
            traceback.print_exc()
        _die(error_line(e), exit_code(e))
    except KeyboardInterrupt:
        _die("interrupted", 130)
    except BrokenPipeError:
        # `pipectl runs P | head`: the reader left; not an error worth a line.
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        sys.exit(1)
    except OSError as e:
        if debug:
            import traceback

            traceback.print_exc()
        # a read-only or full disk, a missing directory, permissions: what failed, and where
        where = f": {e.filename}" if e.filename else ""
        _die(f"{e.strerror or type(e).__name__}{where}", 1)
    except Exception as e:  # noqa: BLE001 - the last line of defence: never a traceback for users
        if debug:
            import traceback

            secrets.reporting_error = True
            traceback.print_exc()
            sys.exit(1)
        _die(f"internal error: {type(e).__name__}: {e} (set PIPECTL_DEBUG=1 for a traceback)", 1)
    sys.exit(rv if isinstance(rv, int) else 0)


def _rel(path: Any) -> str:
    """A path relative to the working directory when under it: shorter lines, still clickable."""
    p = Path(path)
    try:
        return str(p.resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return str(p)


def _error_dict(err: Any) -> dict:
    return {
        "file": str(getattr(err, "file", "")),
        "line": getattr(err, "line", None),
        "col": getattr(err, "col", None),
        "message": getattr(err, "message", str(err)),
    }
