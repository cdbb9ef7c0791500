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

from pipectl.model.errors import PipectlError, UsageError
from pipectl.timing.clock import UTC
from pipectl.timing.durations import MAX_COUNT
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

# the argument parsers live in cli/args.py, where cli/runref.py reaches them without this module
from pipectl.cli.args import (parse_date_arg, parse_date_range, parse_now,  # noqa: E402,F401
                              parse_params, resolve_pipeline, zone)


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
def _complete_pipelines(ctx: typer.Context, incomplete: str) -> list[str]:
    from pipectl.cli.completion import pipelines
    return pipelines(ctx, incomplete)


def _complete_tasks(ctx: typer.Context, incomplete: str) -> list[str]:
    from pipectl.cli.completion import tasks
    return tasks(ctx, incomplete)


def _complete_run_ids(ctx: typer.Context, incomplete: str) -> list[str]:
    from pipectl.cli.completion import run_ids
    return run_ids(ctx, incomplete)


PipelineArg = Annotated[str, typer.Argument(metavar="PIPELINE", help="Pipeline name.", show_default=False,
                                            autocompletion=_complete_pipelines)]
DateOpt = Annotated[Optional[str], typer.Option("--date", "-d", metavar="D",
                                                help="Logical date: YYYY-MM-DD (ds) or ISO 8601 datetime.")]
RunIdOpt = Annotated[Optional[str], typer.Option("--run-id", metavar="ID", help="The run with this run id.",
                                                 autocompletion=_complete_run_ids)]
AtOpt = Annotated[Optional[str], typer.Option("--at", metavar="DATETIME",
                                              help="The run at this logical datetime (ISO 8601; naive = the "
                                                   "pipeline's timezone), or HH:MM on --date's day.")]
WaitOpt = Annotated[bool, typer.Option("--wait/--no-wait", help="Drive the work to the end before returning.")]
# Counts are bounded: `--count 1e9` would otherwise compute (and hold) a billion fire times.
CountOpt = Annotated[int, typer.Option("--count", "-n", min=1, max=MAX_COUNT, help="How many.")]
LimitOpt = Annotated[int, typer.Option("--limit", "-n", min=1, max=MAX_COUNT, help="At most this many rows.")]


# --------------------------------------------------------------------------- global options

def _print_version(wanted: bool) -> None:
    if not wanted:
        return
    from importlib.metadata import PackageNotFoundError, version
    try:
        number = version("pipectl")
    except PackageNotFoundError:  # run from a source tree that was never installed
        number = "unknown"
    print(f"{PROG} {number}")
    raise typer.Exit()


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
    version: Annotated[bool, typer.Option("--version", callback=lambda v: _print_version(v), is_eager=True,
                                          help="Print pipectl's version and exit.")] = False,
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
    pipeline: Annotated[Optional[str], typer.Argument(metavar="[PIPELINE]", show_default=False,
                                                      help="Pipeline name (none with --assets).")] = None,
    date_: DateOpt = None,
    at: AtOpt = None,
    run_id: RunIdOpt = None,
    fmt: Annotated[str, typer.Option("--format", metavar="text|dot|mermaid",
                                     help="text (default), Graphviz dot, or a Mermaid flowchart.")] = "text",
    assets: Annotated[bool, typer.Option("--assets", help="The project's asset lineage: producers, assets, "
                                                          "consumers, across pipelines.")] = False,
) -> None:
    """Draw a pipeline's tasks in dependency layers (coloured by state with --date); with --assets,
    the lineage of assets across pipelines."""
    if fmt not in ("text", "dot", "mermaid"):
        raise UsageError(f"--format must be text, dot or mermaid; got {fmt!r}")
    if assets:
        if pipeline or date_ or at or run_id:
            raise UsageError("--assets draws the whole project: give no PIPELINE, --date, --at or --run-id")
        from pipectl.cli import render
        from pipectl.views.lineage import asset_lineage
        c = get_ctx(ctx)
        lineage = asset_lineage(c.load().pipelines)
        if c.json:
            render.print_json(lineage)
        else:
            print(render.lineage_text(lineage, fmt))
        return
    if pipeline is None:
        raise UsageError("missing PIPELINE (or --assets for the project's asset lineage)")
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
    if fmt != "text":
        print(render.graph_text(p, fmt, states))
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
