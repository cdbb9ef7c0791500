"""Core engine commands: tick, trigger, run, status, runs, show, logs, explain, next."""
from __future__ import annotations

import os
import sys
import time
from datetime import date, datetime, timezone
from typing import Annotated, Optional

import typer

from ..cli import (CountOpt, DateOpt, LimitOpt, PipelineArg, WaitOpt, app, exit_with, get_ctx, parse_date_arg,
                   parse_params, schedule_words)
from ..errors import PipectlError, UsageError

UTC = timezone.utc


def _clock(c):
    from ..scheduler import Clock

    return Clock.at(c.now() if c.fake_now else None)


def _store(c, create: bool = False):
    """The state store, or None when no tick has created it yet (reading commands show nothing)."""
    from ..tick import open_store

    config = c.config()
    if not create and not os.path.exists(config.state_db):
        return None
    return open_store(config, create=create)


def _warn(c, line: str) -> None:
    print(f"pipectl: warning: {line}", file=sys.stderr)


@app.command()
def tick(ctx: typer.Context, wait: Annotated[bool, typer.Option("--wait", help="Drive every run it touched to the end, retries included.")] = False) -> None:
    """One scheduler pass: create due runs, reap finished tries, start ready tasks."""
    from ..tick import tick as do_tick

    c = get_ctx(ctx)
    config = c.config()
    result = do_tick(config, _clock(c), wait=wait)
    if result.busy:
        print("another tick is running; this one has nothing to do", file=sys.stderr)
        return
    _ticklog(config, result)
    for name, errs in result.invalid.items():
        _warn(c, f"pipeline {name} is invalid and was skipped: {errs[0] if errs else ''}")
    lines = result.report.lines()
    if c.json:
        from ..render import print_json

        print_json({"busy": False, "fast": result.fast, "created": result.report.created,
                    "launched": result.report.launched, "reaped": result.report.reaped,
                    "lost": result.report.lost, "retried": result.report.retried,
                    "finished_runs": result.report.finished_runs, "invalid": result.invalid})
    else:
        for line in lines:
            print(line)
        if not lines:
            print("nothing due")
    if wait and any(r.endswith(" failed") for r in result.report.finished_runs):
        exit_with(1)


def _ticklog(config, result) -> None:
    try:
        from .. import ticklog
    except ImportError:
        return
    ticklog.append(config, time.time(), result.report.lines())


def _logical_date(when: date | datetime | None, pipeline, now: datetime) -> datetime:
    if when is None:
        return now
    if isinstance(when, datetime):
        return when
    from zoneinfo import ZoneInfo

    return datetime(when.year, when.month, when.day, tzinfo=ZoneInfo(pipeline.timezone)).astimezone(UTC)


def _trigger(ctx, pipeline: str, date_: str | None, param: list[str] | None, wait: bool) -> None:
    from ..scheduler import Engine, StepReport

    c = get_ctx(ctx)
    p = c.pipeline(pipeline)
    params = parse_params(param)
    when = parse_date_arg(date_, tz=p.timezone) if date_ else None
    config = c.config()
    clock = _clock(c)
    logical = _logical_date(when, p, clock.dt())
    store = _store(c, create=True)
    try:
        engine = Engine(config, store, clock)
        pk = engine.create_run(p, logical, run_type="manual", params=params)
        if pk is None:
            existing = store.run_by_date(p.name, logical.isoformat())
            raise UsageError(f"{p.name} already has a run for {logical.isoformat()} ({existing['run_id']}, "
                             f"{existing['state']}); use `pipectl retry {p.name} --date {existing['ds']}`")
        run = store.run(pk)
        print(run["run_id"])
        report = StepReport()
        if wait:
            engine.drive({pk}, report)
        else:
            engine.step(report)
        run = store.run(pk)
        if wait:
            _summary(store, run)
            if run["state"] != "success":
                exit_with(1)
    finally:
        store.close()


def _summary(store, run) -> None:
    tis = store.task_instances(run["id"])
    print(f"{run['pipeline']} {run['ds']} {run['state']}: " +
          ", ".join(f"{ti['task']} {ti['state']}" for ti in tis))
    for ti in tis:
        if ti["state"] == "failed":
            tries = store.tries_for(ti["id"])
            log = tries[-1]["log_path"] if tries else "-"
            print(f"  {ti['task']} failed ({ti['reason']}, exit {ti['exit_code']}): {log}")


ParamOpt = Annotated[Optional[list[str]], typer.Option("--param", "-p", metavar="K=V", help="Override a param (repeatable).")]


@app.command()
def trigger(ctx: typer.Context, pipeline: PipelineArg, date_: DateOpt = None, param: ParamOpt = None,
            wait: WaitOpt = False) -> None:
    """Start a manual run now (for webhooks and scripts); prints the run id."""
    _trigger(ctx, pipeline, date_, param, wait)


@app.command()
def run(ctx: typer.Context, pipeline: PipelineArg, date_: DateOpt = None, param: ParamOpt = None,
        wait: WaitOpt = True) -> None:
    """Alias of trigger that waits for the run to finish (--no-wait to return at once)."""
    _trigger(ctx, pipeline, date_, param, wait)


WatchOpt = Annotated[bool, typer.Option("--watch", "-w", help="Live view, redrawn until Ctrl-C: running tries, "
                                          "why tasks wait, SLA countdowns, last failures.")]
IntervalOpt = Annotated[float, typer.Option("--interval", min=0.1, metavar="SECONDS", help="Redraw every SECONDS (--watch).")]
OnceOpt = Annotated[bool, typer.Option("--once", help="Draw the live view once and exit (implies --watch).")]


@app.command()
def status(ctx: typer.Context, pipeline: Annotated[Optional[str], typer.Argument(metavar="[PIPELINE]")] = None,
           watch: WatchOpt = False, interval: IntervalOpt = 1.0, once: OnceOpt = False) -> None:
    """Pipelines at a glance: schedule, last run, next run, recent runs, last tick."""
    if watch or once:
        return _watch(ctx, pipeline, interval, once)
    from ..views import next_runs, run_object

    c = get_ctx(ctx)
    loaded = c.load()
    names = sorted(set(loaded.pipelines) | set(loaded.invalid))
    if pipeline is not None:
        c.pipeline(pipeline) if pipeline not in loaded.invalid else None
        names = [pipeline]
    store = _store(c)
    now = c.now()
    rows = store.pipeline_rows() if store else {}
    out = []
    try:
        for name in names:
            p = loaded.pipelines.get(name)
            row = rows.get(name)
            last = store.last_run(name) if store else None
            recent = store.runs_for(name, limit=10) if store else []
            anchor = datetime.fromisoformat(row["anchor"]) if row and row["anchor"] else None
            nxt = next_runs(p, now, 1, anchor) if p else []
            out.append({
                "name": name, "valid": p is not None, "paused": bool(row["paused"]) if row else False,
                "schedule": schedule_words(p) if p else None,
                "errors": [str(e) for e in loaded.invalid.get(name, [])],
                "next_run": nxt[0]["fire_time"] if nxt else None,
                "last_run": run_object(store, last) if last else None,
                "recent": [r["state"] for r in reversed(recent)],
                "sla_misses": _sla_count(store, name),
            })
        last_tick = store.get_meta("last_tick") if store else None
    finally:
        if store:
            store.close()
    late = _late_assets(c, loaded, now)
    tick_age = (now.timestamp() - float(last_tick)) if last_tick else None
    stale = tick_age is None or tick_age > 150
    if c.json:
        from ..render import print_json

        print_json(out)
    else:
        _print_status(c, out, last_tick, tick_age, late)
    if stale and any(o["valid"] and o["schedule"] and "trigger or backfill only" not in o["schedule"] for o in out):
        when = "never" if last_tick is None else f"{int(tick_age)}s ago"
        _warn(c, f"ticks have stopped arriving (last tick: {when}); is the crontab line or timer installed? see `pipectl doctor`")


@app.command()
def top(ctx: typer.Context, pipeline: Annotated[Optional[str], typer.Argument(metavar="[PIPELINE]")] = None,
        interval: IntervalOpt = 1.0, once: OnceOpt = False) -> None:
    """Live view (same as `status --watch`): running tries, why tasks wait, SLA countdowns, last failures."""
    _watch(ctx, pipeline, interval, once)


def _watch(ctx, pipeline: str | None, interval: float, once: bool) -> None:
    from ..live import watch

    c = get_ctx(ctx)
    if c.json:
        raise UsageError("--json does not go with a live view; use `pipectl status --json`")
    if pipeline is not None:
        loaded = c.load()
        if pipeline not in loaded.invalid:
            c.pipeline(pipeline)
    watch(c.config(), _clock(c).now, c.console(), interval=interval, pipeline=pipeline, once=once)


def _sla_count(store, name: str) -> int:
    if store is None:
        return 0
    try:
        from ..sla import misses_for
    except ImportError:
        return 0
    return len(misses_for(store, pipeline=name))


def _late_assets(c, loaded, now) -> list:
    try:
        from ..assets import late_assets
    except ImportError:
        return []
    store = _store(c)
    if store is None:
        return []
    try:
        return late_assets(store, loaded.pipelines, now)
    finally:
        store.close()


def _print_status(c, out, last_tick, tick_age, late) -> None:
    from .. import render
    from ..durations import format_duration

    con = c.console()
    t = render.table("pipeline", "schedule", "paused", "last run", "duration", "next run", "recent")
    for o in out:
        if not o["valid"]:
            t.add_row(o["name"], render.state_text("failed", "invalid spec"), "", "", "", "", o["errors"][0] if o["errors"] else "")
            continue
        lr = o["last_run"]
        last = f"{lr['ds']} " if lr else ""
        t.add_row(o["name"], o["schedule"], "yes" if o["paused"] else "no",
                  render.state_text(lr["state"], last + lr["state"]) if lr else render.dash(),
                  format_duration(lr["duration"]) if lr and lr["duration"] else render.dash(),
                  o["next_run"] or render.dash(), render.state_cells(o["recent"]))
    con.print(t)
    for o in out:
        if o["sla_misses"]:
            con.print(f"{o['name']}: {o['sla_misses']} SLA miss(es); see `pipectl show`")
    for item in late:
        con.print(f"late asset: {item}")
    when = "never" if last_tick is None else f"{datetime.fromtimestamp(float(last_tick), UTC).isoformat()} ({int(tick_age)}s ago)"
    con.print(f"last tick: {when}")


def _run_for(c, store, p, date_: str | None):
    """The run named by --date, else the latest one."""
    if store is None:
        raise UsageError(f"{p.name} has no runs yet")
    if date_:
        when = parse_date_arg(date_, tz=p.timezone)
        if isinstance(when, datetime):
            run = store.run_by_date(p.name, when.isoformat())
        else:
            rows = store.runs_by_ds(p.name, when.isoformat())
            run = rows[-1] if rows else None
        if run is None:
            raise UsageError(f"no run of {p.name} for {date_} (see `pipectl runs {p.name}`)")
        return run
    run = store.last_run(p.name)
    if run is None:
        raise UsageError(f"{p.name} has no runs yet")
    return run


@app.command()
def runs(ctx: typer.Context, pipeline: PipelineArg, limit: LimitOpt = 20) -> None:
    """Run history of a pipeline, newest first."""
    from ..views import run_object

    c = get_ctx(ctx)
    p = c.pipeline(pipeline)
    store = _store(c)
    rows = []
    try:
        if store:
            rows = [run_object(store, r) for r in store.runs_for(p.name, limit=limit)]
    finally:
        if store:
            store.close()
    creep = _creep(rows)
    for r in rows:
        r["slow"] = r["run_id"] in creep
    if c.json:
        from ..render import print_json

        print_json(rows)
        return
    from .. import render
    from ..durations import format_duration

    t = render.table("ds", "logical date", "type", "state", "start", "duration", "tasks")
    for r in rows:
        dur = format_duration(r["duration"]) if r["duration"] is not None else render.dash()
        if r["slow"]:
            dur += " slow"
        t.add_row(r["ds"], r["logical_date"], r["run_type"], render.state_text(r["state"]), r["start"] or render.dash(),
                  dur, render.state_cells([v["state"] for v in r["tasks"].values()]))
    c.console().print(t)


def _creep(rows: list[dict]) -> set[str]:
    try:
        from ..history import flag_creep
    except ImportError:
        return set()
    return flag_creep(rows)


@app.command()
def show(ctx: typer.Context, pipeline: PipelineArg, date_: DateOpt = None) -> None:
    """One run: task instances, tries, start, duration, exit code, reason, log path, events."""
    from ..views import run_detail

    c = get_ctx(ctx)
    p = c.pipeline(pipeline)
    store = _store(c)
    try:
        run = _run_for(c, store, p, date_)
        detail = run_detail(store, run)
        detail["sla_misses"] = _sla_misses(store, run)
    finally:
        if store:
            store.close()
    detail = _mask([p, _snapshot(run)], detail)
    if c.json:
        from ..render import print_json

        print_json(detail)
        return
    from .. import render
    from ..durations import format_duration

    con = c.console()
    con.print(f"{detail['pipeline']}  {detail['run_id']}  ds {detail['ds']}  "
              f"{detail['run_type']}  ", render.state_text(detail["state"]))
    t = render.table("task", "state", "try", "start", "duration", "exit", "reason", "log")
    for ti in detail["task_instances"]:
        tries = ti["try_log"] or [None]
        for tr in tries:
            if tr is None:
                t.add_row(ti["task"], render.state_text(ti["state"]), "-", "", "", "", ti["reason"] or "", "")
                continue
            t.add_row(ti["task"], render.state_text(ti["state"]), str(tr["try"]), tr["start"] or "",
                      format_duration(tr["duration"]) if tr["duration"] is not None else "",
                      "" if tr["exit_code"] is None else str(tr["exit_code"]), tr["reason"] or "", tr["log"] or "")
    con.print(t)
    for m in detail["sla_misses"]:
        con.print(f"SLA miss: {m}")
    if detail["events"]:
        con.print("events:")
        for e in detail["events"]:
            con.print(f"  {e['ts']}  {e['kind']:<16} {e['task'] or ''} {e['message'] or ''}", markup=False, highlight=False)


def _sla_misses(store, run) -> list:
    try:
        from ..sla import misses_for
    except ImportError:
        return []
    return [dict(m) if not isinstance(m, (str, dict)) else m for m in misses_for(store, run=run["id"])]


def _snapshot(run) -> dict:
    """The spec a run executed with: it holds the secret values that were in force then."""
    from ..store import loads

    return loads(run["spec"]) or {}


def _mask(p, obj):
    """Secrets from ${VAR} and env_file never reach the terminal."""
    try:
        from ..secrets import mask_obj
    except ImportError:
        return obj
    return mask_obj(p, obj)


@app.command()
def logs(ctx: typer.Context,
         pipeline: Annotated[Optional[str], typer.Argument(metavar="[PIPELINE]")] = None,
         task: Annotated[Optional[str], typer.Argument(metavar="[TASK]")] = None,
         date_: DateOpt = None,
         try_: Annotated[Optional[int], typer.Option("--try", min=1, help="Try number (default: the latest).")] = None,
         follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing until the try ends.")] = False,
         tick_: Annotated[bool, typer.Option("--tick", help="Show the tick log instead.")] = False,
         hooks: Annotated[bool, typer.Option("--hooks", help="Show the run's hook output instead (PIPELINE only).")] = False) -> None:
    """A try's log (or, with --tick, what recent ticks did; with --hooks, what the run's hooks printed)."""
    c = get_ctx(ctx)
    if tick_:
        from .. import ticklog

        sys.stdout.write(ticklog.read(c.config()))
        return
    if hooks and pipeline:
        _print_hooks(c, c.pipeline(pipeline), date_)
        return
    if not pipeline or not task:
        raise UsageError("logs needs PIPELINE and TASK (or --tick, or PIPELINE --hooks)")
    p = c.pipeline(pipeline)
    store = _store(c)
    try:
        run = _run_for(c, store, p, date_)
        ti = next((t for t in store.task_instances(run["id"]) if t["task"] == task), None)
        if ti is None:
            known = ", ".join(t["task"] for t in store.task_instances(run["id"]))
            raise UsageError(f"unknown task {task!r} in {p.name} (known: {known})")
        tries = store.tries_for(ti["id"])
        if not tries:
            raise UsageError(f"{task} has not run yet in {run['run_id']} (state {ti['state']})")
        chosen = tries[-1] if try_ is None else next((t for t in tries if t["try_number"] == try_), None)
        if chosen is None:
            raise UsageError(f"{task} has no try {try_} (tries: 1..{tries[-1]['try_number']})")
        path, try_pk = chosen["log_path"], chosen["id"]
        secrets_of = [p, _snapshot(run)]
        _print_log(secrets_of, path)
        if follow:
            _follow(secrets_of, store, path, try_pk)
    finally:
        if store:
            store.close()


def _print_hooks(c, p, date_: str | None) -> None:
    """Hooks of a run write to one hooks.log beside its task logs."""
    from ..scheduler import log_path

    store = _store(c)
    try:
        run = _run_for(c, store, p, date_)
    finally:
        if store:
            store.close()
    path = os.path.join(os.path.dirname(log_path(c.config(), run, "x", 1)), "hooks.log")
    if not os.path.exists(path):
        print(f"no hook output for {run['run_id']}", file=sys.stderr)
        return
    _print_log([p, _snapshot(run)], path)


def _print_log(p, path: str, offset: int = 0) -> int:
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read()
    except FileNotFoundError:
        return offset
    text = data.decode("utf-8", "replace")
    masked = _mask(p, {"t": text})["t"]
    sys.stdout.write(masked)
    sys.stdout.flush()
    return offset + len(data)


def _follow(p, store, path: str, try_pk: int) -> None:
    offset = os.path.getsize(path) if os.path.exists(path) else 0
    while True:
        row = store.try_(try_pk)
        offset = _print_log(p, path, offset)
        if row is None or row["state"] not in ("starting", "running"):
            return
        time.sleep(0.2)


@app.command()
def explain(ctx: typer.Context, pipeline: PipelineArg, date_: DateOpt = None) -> None:
    """Why each task is or is not running: upstream, pool, sensor, retry time, paused, max_active_runs."""
    from ..views import explain_run

    c = get_ctx(ctx)
    p = c.pipeline(pipeline)
    store = _store(c)
    try:
        notes = []
        row = store.pipeline_row(p.name) if store else None
        if row and row["paused"]:
            notes.append(f"{p.name} is paused: no new scheduled runs (`pipectl unpause {p.name}`)")
        run = _run_for(c, store, p, date_)
        items = explain_run(store, c.config(), run, p, _clock(c).now())
    finally:
        if store:
            store.close()
    if c.json:
        from ..render import print_json

        print_json({"run_id": run["run_id"], "state": run["state"], "notes": notes, "tasks": items})
        return
    from .. import render

    con = c.console()
    for n in notes:
        con.print(n)
    con.print(f"{p.name} {run['run_id']} ({run['state']})")
    t = render.table("task", "state", "why")
    for i in items:
        t.add_row(i["task"], render.state_text(i["state"]), i["why"])
    con.print(t)


@app.command("next")
def next_(ctx: typer.Context, pipeline: PipelineArg, count: CountOpt = 5) -> None:
    """Upcoming schedule times after now, with the logical date each run will carry."""
    from ..views import next_runs

    c = get_ctx(ctx)
    p = c.pipeline(pipeline)
    if not p.time_schedules:
        raise UsageError(f"{p.name} has no time schedule ({schedule_words(p)})")
    items = next_runs(p, c.now(), count)
    if c.json:
        from ..render import print_json

        print_json(items)
        return
    print(f"{p.name}: {schedule_words(p)}")
    for i in items:
        print(f"  {i['fire_time']}  runs ds {i['ds']}  (logical date {i['logical_date']})")
