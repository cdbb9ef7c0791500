"""Core engine commands: tick, trigger, run, status, runs, show, logs, explain, next."""
from __future__ import annotations

import os
import sys
import time
from datetime import date, datetime
from typing import Annotated, Optional

import typer

from pipectl.cli.app import MAX_COUNT, AtOpt, CountOpt, DateOpt, LimitOpt, RunIdOpt, PipelineArg, StrictOpt, WaitOpt, app, dst_lint, exit_with, get_ctx, parse_date_arg, parse_params, schedule_words
from pipectl.model.errors import PipectlError, UsageError
from pipectl.model.states import FAILED, SUCCESS, TRY_LIVE, UP_FOR_RETRY


def _clock(c):
    from pipectl.engine.step import Clock
    return Clock.at(c.now() if c.fake_now else None)


def _store(c, create: bool = False):
    """The state store, or None when no tick has created it yet (reading commands show nothing)."""
    from pipectl.state.store import existing_store, open_store
    return open_store(c.config()) if create else existing_store(c.config())


def _warn(c, line: str) -> None:
    print(f"pipectl: warning: {line}", file=sys.stderr)


@app.command()
def tick(ctx: typer.Context, wait: Annotated[bool, typer.Option("--wait", help="Drive every run it touched to the end, retries included.")] = False,
         dry_run: Annotated[bool, typer.Option("--dry-run", help="Print what this tick would create and start; change nothing.")] = False) -> None:
    """One scheduler pass: create due runs, reap finished tries, start ready tasks."""
    from pipectl.ops.ticking import tick as do_tick
    c = get_ctx(ctx)
    config = c.config()
    if dry_run:
        from pipectl.ops.preview import preview
        print_preview(c, preview(config, _clock(c)), "tick --dry-run")
        return
    result = do_tick(config, _clock(c), wait=wait)
    if result.busy:
        print("another tick is running; this one has nothing to do", file=sys.stderr)
        return
    _ticklog(config, result)
    if result.metrics_error:
        _warn(c, result.metrics_error)
    for name, errs in result.invalid.items():
        _warn(c, f"pipeline {name} is invalid and was skipped: {errs[0] if errs else ''}")
    lines = result.report.lines()
    if c.json:
        from pipectl.cli.render import print_json
        print_json({"busy": False, "fast": result.fast, "created": result.report.created,
                    "skipped": result.report.skipped,
                    "launched": result.report.launched, "reaped": result.report.reaped,
                    "lost": result.report.lost, "retried": result.report.retried,
                    "finished_runs": result.report.finished_runs, "invalid": result.invalid})
    else:
        for line in lines:
            print(line)
        if not lines:
            print("nothing due")
    failed = [r[: -len(" failed")] for r in result.report.finished_runs if r.endswith(" failed")] if wait else []
    if failed:
        # the report above says what happened; this line is what cron mail and scripts see
        more = f" (and {len(failed) - 3} more)" if len(failed) > 3 else ""
        raise PipectlError(f"{len(failed)} run{'s' if len(failed) != 1 else ''} failed: {', '.join(failed[:3])}{more}")


def print_preview(c, pv, what: str) -> None:
    """A preview (tick --dry-run, unpause --dry-run): what would be created and started."""
    if c.json:
        from pipectl.cli.render import print_json
        print_json({"dry_run": True, **pv.as_dict()})
        return
    print(f"{what} at {c.now().isoformat()}: nothing was changed")
    for name, errs in pv.invalid.items():
        _warn(c, f"pipeline {name} is invalid and would be skipped: {errs[0] if errs else ''}")
    _preview_list(f"would create {len(pv.created)} run{'s' if len(pv.created) != 1 else ''}", pv.created,
                  lambda r: f"{r['pipeline']} {r['logical_date']} ({r['run_type']}, ds {r['ds']})")
    _preview_list(f"would start {len(pv.starts)} task instance{'s' if len(pv.starts) != 1 else ''}", pv.starts,
                  lambda t: f"{t['pipeline']} {t['ds']} {t['task']} try {t['try']}")
    if pv.pokes:
        _preview_list(f"would check {len(pv.pokes)} sensor(s)", pv.pokes, lambda t: f"{t['pipeline']} {t['ds']} {t['task']}")
    if pv.expands:
        _preview_list(f"would run {len(pv.expands)} foreach command(s), then start their items", pv.expands,
                      lambda t: f"{t['pipeline']} {t['ds']} {t['task']}")
    if pv.ended_tries:
        print(f"also: {pv.ended_tries} tr{'y has' if pv.ended_tries == 1 else 'ies have'} ended since the last step; "
              "a real tick records them first, and what they make ready may start too")


def _preview_list(title: str, items: list, line, head: int = 10, tail: int = 3) -> None:
    print(title + (":" if items else ""))
    shown = items if len(items) <= head + tail + 1 else items[:head] + [None] + items[-tail:]
    for i in shown:
        print(f"  ... {len(items) - head - tail} more" if i is None else f"  {line(i)}")


def _ticklog(config, result) -> None:
    from pipectl.state import ticklog
    ticklog.append(config, time.time(), result.report.lines())


def _logical_date(when: date | datetime | None, pipeline, now: datetime) -> datetime:
    if when is None:
        return now
    if isinstance(when, datetime):
        return when
    from pipectl.timing.clock import local_midnight
    return local_midnight(when, pipeline.timezone)


def _trigger(ctx, pipeline: str, date_: str | None, param: list[str] | None, wait: bool) -> None:
    from pipectl.engine.step import Engine, StepReport
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
            existing = store.run_by_date(p.name, logical)
            raise UsageError(f"{p.name} already has a run for {logical.isoformat()} ({existing.run_id}, "
                             f"{existing.state}); use `pipectl retry {p.name} --date {existing.ds}`")
        run = store.run(pk)
        print(run.run_id)
        report = StepReport()
        if wait:
            engine.drive({pk}, report)
        else:
            from pipectl.exec.timer import act_now
            act_now(engine, report)
        run = store.run(pk)
        if wait:
            _summary(store, run)
            if run.state != SUCCESS:
                exit_with(1)
    finally:
        store.close()


def _summary(store, run) -> None:
    tis = store.task_instances(run.id)
    print(f"{run.pipeline} {run.ds} {run.state}: " +
          ", ".join(f"{ti.task} {ti.state}" for ti in tis))
    for ti in tis:
        if ti.state == FAILED:
            tries = store.tries_for(ti.id)
            log = tries[-1].log_path if tries else "-"
            print(f"  {ti.task} failed ({ti.reason}, exit {ti.exit_code}): {log}")


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


WatchOpt = Annotated[bool, typer.Option("--watch", "-w", help="Live view, redrawn until Ctrl-C (one frame when "
                                          "not on a terminal): running tries, why tasks wait, SLA countdowns, last failures.")]
IntervalOpt = Annotated[float, typer.Option("--interval", min=0.1, metavar="SECONDS", help="Redraw the live view every SECONDS.")]
OnceOpt = Annotated[bool, typer.Option("--once", help="Draw the live view once and exit (implies --watch).")]


@app.command()
def status(ctx: typer.Context, pipeline: Annotated[Optional[str], typer.Argument(metavar="[PIPELINE]")] = None,
           watch: WatchOpt = False, interval: IntervalOpt = 1.0, once: OnceOpt = False) -> None:
    """Pipelines at a glance: schedule, last run, next run, recent runs, last tick."""
    if watch or once:
        return _watch(ctx, pipeline, interval, once)
    from pipectl.views.reading import next_runs, run_object
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
            nxt = next_runs(p, now, 1, row.anchor if row else None) if p else []
            out.append({
                "name": name, "valid": p is not None, "paused": row.paused if row else False,
                "owner": p.owner if p else None,
                "schedule": schedule_words(p) if p else None,
                "timezone": p.timezone if p else _snapshot_tz(last, c.config().timezone),
                "errors": [str(e) for e in loaded.invalid.get(name, [])],
                "next_run": nxt[0]["fire_time"] if nxt else None,
                "last_run": run_object(store, last) if last else None,
                "recent": [r.state for r in reversed(recent)],
                "sla_misses": _sla_count(store, name),
                "catchup_skips": _recent_skips(store, name, now),
            })
        last_tick = store.get_meta("last_tick") if store else None
    finally:
        if store:
            store.close()
    late = _late_assets(c, loaded, now)
    tick_age = (now.timestamp() - float(last_tick)) if last_tick else None
    stale = tick_age is None or tick_age > 150
    if c.json:
        from pipectl.cli.render import print_json
        print_json(out)
    else:
        _print_status(c, out, last_tick, tick_age, late, now)
    if stale and any(o["valid"] and o["schedule"] and "trigger or backfill only" not in o["schedule"] for o in out):
        from pipectl.cli.render import human_age
        when = "never" if last_tick is None else f"{human_age(tick_age)} ago"
        _warn(c, f"ticks have stopped arriving (last tick: {when}); is the crontab line or timer installed? see `pipectl doctor`")
    _warn_backlog(c, [loaded.pipelines[n] for n in names if n in loaded.pipelines], now)


SKIPS_SHOWN_FOR = 7 * 86400.0  # status lists a bounded catch-up's skips for a week


def _recent_skips(store, name: str, now) -> list[dict]:
    """The missed runs a bounded catch-up left out lately: on-call learns of them without asking."""
    if store is None:
        return []
    from pipectl.timing.clock import iso
    return [{"at": k.ts, "first": iso(k.first), "last": iso(k.last), "count": k.count, "capped": k.capped,
             "bound": k.bound, "message": k.message}
            for k in store.catchup_skips(name, since=now.timestamp() - SKIPS_SHOWN_FOR)]


def _warn_backlog(c, pipelines, now) -> None:
    """A pending catch-up (many scheduled runs at the next tick, or on unpause) is said before it happens."""
    if not any(p.catchup for p in pipelines):
        return
    from pipectl.ops.preview import backlog, backlog_words
    store = _store(c)
    try:
        for p in pipelines:
            b = backlog(store, p, now)
            if b is not None:
                _warn(c, backlog_words(b))
    finally:
        if store:
            store.close()


@app.command()
def top(ctx: typer.Context, pipeline: Annotated[Optional[str], typer.Argument(metavar="[PIPELINE]")] = None,
        interval: IntervalOpt = 1.0, once: OnceOpt = False) -> None:
    """Live view (same as `status --watch`): running tries, why tasks wait, SLA countdowns, last failures."""
    _watch(ctx, pipeline, interval, once)


def _watch(ctx, pipeline: str | None, interval: float, once: bool) -> None:
    from pipectl.cli.live import watch
    c = get_ctx(ctx)
    if c.json:
        raise UsageError("--json does not go with a live view; use `pipectl status --json`")
    if pipeline is not None:
        loaded = c.load()
        if pipeline not in loaded.invalid:
            c.pipeline(pipeline)
    watch(c.config(), _clock(c).now, c.console(), interval=interval, pipeline=pipeline, once=once)


def _snapshot_tz(run, default: str) -> str:
    """An invalid pipeline's zone: what its newest run ran with."""
    if run is None:
        return default
    from pipectl.cli.runref import snapshot_pipeline
    return snapshot_pipeline(run).timezone


def _sla_count(store, name: str) -> int:
    if store is None:
        return 0
    from pipectl.engine.sla import misses_for
    return len(misses_for(store, pipeline=name))


def _late_assets(c, loaded, now) -> list:
    from pipectl.engine.assets import late_assets
    store = _store(c)
    if store is None:
        return []
    try:
        return late_assets(store, loaded.pipelines, now)
    finally:
        store.close()


def _print_status(c, out, last_tick, tick_age, late, now) -> None:
    from pipectl.cli import render
    from pipectl.timing.durations import format_duration
    con = c.console()
    if not out:
        con.print(f"no pipelines found (globs: {', '.join(c.config().pipelines)}); `pipectl validate` checks them")
    cells = []
    for o in out:
        tz = o["timezone"]
        lr = o["last_run"]
        last = render.state_text(lr["state"], f"{render.local_time(lr['logical_date'], tz, now)} {lr['state']}") \
            if lr else render.dash()
        took = format_duration(lr["duration"]) if lr and lr["duration"] else render.dash()
        nxt = render.dash()
        if o["next_run"]:
            nxt = f"{render.local_time(o['next_run'], tz, now)} ({render.ago(o['next_run'], now)})"
        sched = render.state_text("invalid", "invalid spec") if not o["valid"] else o["schedule"]
        cells.append((f"{o['name']} ({o['owner']})" if o.get("owner") else o["name"], sched, "yes" if o["paused"] else "no", last, took, nxt,
                      render.state_cells(o["recent"], con)))
    if out and render.narrow(con):
        # a table of seven columns cannot fit: one block per pipeline, every fact whole
        from rich.text import Text

        for name, sched, paused, last, took, nxt, recent in cells:
            con.print(Text.assemble((name, "bold"), "  ", sched, ("  paused" if paused == "yes" else "")))
            con.print(Text.assemble("  last ", last, f" ({took})" if took != "-" else "", "  recent ", recent))
            if nxt != "-":
                con.print(f"  next {nxt}", markup=False)
    elif out:
        from rich.text import Text

        t = render.table("pipeline", "schedule", "last run", "took", "next run", "recent")
        for name, sched, paused, last, took, nxt, recent in cells:
            if paused == "yes":
                sched = Text.assemble(sched, ("  paused", "yellow"))
            t.add_row(name, sched, last, took, nxt, recent)
        con.print(t)
    for o in out:
        if not o["valid"]:
            # whole, on its own line: the first error is what to fix, and it names FILE:LINE:COL
            first = o["errors"][0] if o["errors"] else "spec file removed"
            more = f" (and {len(o['errors']) - 1} more; `pipectl validate`)" if len(o["errors"]) > 1 else ""
            con.print(f"{o['name']} is invalid (new runs wait for a fix; history stays readable): {first}{more}",
                      soft_wrap=True, markup=False)
    for o in out:
        if o["sla_misses"]:
            con.print(f"{o['name']}: {o['sla_misses']} SLA miss(es); see `pipectl show {o['name']}`", markup=False)
    for o in out:
        for k in o["catchup_skips"]:
            when = f"{render.local_time(k['at'], o['timezone'], now)} ({render.ago(k['at'], now)})"
            con.print(f"{o['name']}: {when}: {k['message']}", soft_wrap=True, markup=False)
    for item in late:
        con.print(_late_words(item, now), soft_wrap=True, markup=False)
    tz = c.config().timezone
    when = "never" if last_tick is None else \
        f"{render.local_time(float(last_tick), tz, now, seconds=True)} {tz} ({render.ago(float(last_tick), now)})"
    con.print(f"last tick: {when}", markup=False)


def _late_words(item, now) -> str:
    from pipectl.cli import render
    if not isinstance(item, dict):
        return f"late asset: {item}"
    tz = item.get("timezone")
    last = item.get("last_update")
    return (f"late asset: {item.get('asset')} (from {item.get('pipeline')}): ds {item.get('ds')} was due "
            f"{render.local_time(item.get('due'), tz, now)} {tz or ''}".rstrip() +
            f"; last update {render.ago(last, now) if last else 'never'}")


def _run_for(c, store, p, date_: str | None, run_id: str | None = None, at: str | None = None):
    """The run named by --run-id, --at or --date, else the latest one (see runref.find_run)."""
    from pipectl.cli.runref import find_run
    return find_run(store, p, date_, run_id=run_id, at=at)


def _run_or_none(c, store, p, date_, run_id=None, at=None):
    """Like :func:`_run_for`, but a pipeline without runs (and nothing named) is an answer, not an error:
    it says so on stderr and the command exits 0."""
    from pipectl.cli.runref import NoRuns
    try:
        return _run_for(c, store, p, date_, run_id, at)
    except NoRuns as e:
        if c.json:
            from pipectl.cli.render import print_json
            print_json(None)
        print(str(e), file=sys.stderr)
        return None


def _history(c, name: str):
    """The pipeline for commands on existing runs: today's spec, or the last snapshot when the
    file is invalid (a warning says so) -- one typo must not hide the history."""
    from pipectl.cli.runref import history
    res = history(c, name)
    if not res.valid:
        _warn(c, f"pipeline {name} is invalid ({res.errors[0]}); showing its history from the runs' own snapshots")
    return res.pipeline


@app.command()
def runs(ctx: typer.Context, pipeline: PipelineArg, limit: LimitOpt = 20) -> None:
    """Run history of a pipeline, newest first."""
    from pipectl.views.reading import dag_order, run_object
    c = get_ctx(ctx)
    p = _history(c, pipeline)
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
        from pipectl.cli.render import print_json
        print_json(rows)
        return
    from pipectl.cli import render
    from pipectl.timing.durations import format_duration
    con = c.console()
    if not rows:
        con.print(f"{p.name} has no runs yet")
        return
    now = c.now()
    narrow = render.narrow(con)
    cols = ["logical date", "type", "state"] + ([] if narrow else ["start"]) + ["took", "tasks"]
    t = render.table(*cols)
    for r in rows:
        dur = format_duration(r["duration"]) if r["duration"] is not None else render.dash()
        if r["slow"]:
            dur += " slow"
        # the ds plus the time of day in the pipeline's zone: sub-daily runs stay apart
        logical = render.local_time(r["logical_date"], p.timezone, year=True)
        cells = [logical, r["run_type"], render.state_text(r["state"])]
        if not narrow:
            cells.append(render.local_time(r["start"], p.timezone, now, seconds=True) if r["start"] else render.dash())
        # the strip reads left to right in DAG order, like show and grid
        order = dag_order(p, list(r["tasks"]))
        t.add_row(*cells, dur, render.state_cells([r["tasks"][n]["state"] for n in order], con))
    con.print(t)
    con.print(f"times in {p.timezone}", style="dim")


def _creep(rows: list[dict]) -> set[str]:
    from pipectl.views.history import flag_creep
    return flag_creep(rows)


@app.command()
def show(ctx: typer.Context, pipeline: PipelineArg, date_: DateOpt = None, at: AtOpt = None,
         run_id: RunIdOpt = None) -> None:
    """One run: task instances in DAG order, each try (state, start, duration, exit code, reason, log), events."""
    from pipectl.cli.runref import snapshot_pipeline
    from pipectl.views.reading import run_detail
    c = get_ctx(ctx)
    p = _history(c, pipeline)
    store = _store(c)
    try:
        run = _run_or_none(c, store, p, date_, run_id, at)
        if run is None:
            return
        snap = snapshot_pipeline(run)
        detail = run_detail(store, run, snap)
        detail["sla_misses"] = _sla_misses(store, run)
    finally:
        if store:
            store.close()
    detail = _mask([p, _snapshot(run)], detail)
    if c.json:
        from pipectl.cli.render import print_json
        print_json(detail)
        return
    _print_show(c, detail, snap.timezone)


def _print_show(c, detail: dict, tz: str) -> None:
    """Rows drawn by hand, not a rich table: a log path must print whole on its own line
    (copyable at any width), and events must line up in columns."""
    from rich.text import Text

    from pipectl.cli import render
    from pipectl.timing.durations import format_duration
    con = c.console()
    now = c.now()
    base = os.getcwd()  # relative only when that still opens from here: copyable as printed
    took = format_duration(detail["duration"]) if detail["duration"] is not None else None
    con.print(Text.assemble((detail["pipeline"], "bold"), "  ", detail["run_id"], "  ",
                            render.state_text(detail["state"])), soft_wrap=True)
    bits = [f"ds {detail['ds']}", f"logical {render.local_time(detail['logical_date'], tz, year=True)} {tz}",
            detail["run_type"]]
    con.print("  " + " · ".join(bits), soft_wrap=True, markup=False, highlight=False)
    owners = {ti["task"]: ti["owner"] for ti in detail["task_instances"] if ti.get("owner") != detail.get("owner")}
    if detail.get("owner") or owners:
        own = [f"owner {detail['owner']}"] if detail.get("owner") else []
        own += [f"{task}: {who}" for task, who in owners.items() if who]
        con.print("  " + " · ".join(own), soft_wrap=True, markup=False, highlight=False)
    bits = []
    if detail["start"]:
        bits.append(f"started {render.local_time(detail['start'], tz, now, seconds=True)} ({render.ago(detail['start'], now)})")
    if took:
        bits.append(f"took {took}")
    if bits:
        con.print("  " + " · ".join(bits), soft_wrap=True, markup=False, highlight=False)

    day = render.local_time(detail["start"] or detail["logical_date"], tz, now).split(" ")[0]

    def clock(value) -> str:
        text = render.local_time(value, tz, now, seconds=True)
        return text.split(" ", 1)[1] if text.startswith(day + " ") else text

    rows: list[tuple[list, str | None]] = []  # (cells, log path under the row)
    for ti in detail["task_instances"]:
        why = ti["reason"] or ""
        if ti["state"] == UP_FOR_RETRY and ti["next_try_at"]:
            why = f"retry at {clock(ti['next_try_at'])}" + (f" after {ti['reason']}" if ti["reason"] else "")
        rows.append(([(ti["task"], "bold"), ti["state"], str(ti["tries"] or "-"), "", "", "" if ti["exit_code"] is None
                      else str(ti["exit_code"]), why], None))
        for tr in ti["try_log"]:
            rows.append(([(f"  try {tr['try']}", ""), tr["state"], "", clock(tr["start"]) if tr["start"] else "-",
                          format_duration(tr["duration"]) if tr["duration"] is not None else "",
                          "" if tr["exit_code"] is None else str(tr["exit_code"]), tr["reason"] or ""], tr["log"]))
    head = ["task / try", "state", "tries", "start", "took", "exit", "reason"]
    if render.narrow(con):
        # the try rows already count the tries: a narrow terminal keeps the rest on one line
        # and the reason goes under its row, like the log path, rather than past the edge
        head = ["task", *head[1:2], *head[3:-1], ""]
        rows = [([cells[0], cells[1], *cells[3:-1], ""], log, cells[-1]) for cells, log in rows]
    else:
        rows = [(cells, log, "") for cells, log in rows]
    widths = [max(len(head[i]), *(len(r[0][i][0] if i == 0 else r[0][i]) for r in rows)) if rows else len(head[i])
              for i in range(len(head))]
    con.print(Text("  ".join(h.ljust(w) for h, w in zip(head, widths)).rstrip(), style="bold"), soft_wrap=True)
    for cells, log, note in rows:
        line = Text()
        name, style = cells[0]
        line.append(name.ljust(widths[0]), style=style)
        for i, cell in enumerate(cells[1:-1], 1):
            line.append("  ")
            if head[i] == "state":
                line.append_text(render.state_text(cell, cell.ljust(widths[i])))
            else:
                line.append(cell.ljust(widths[i]))
        line.append("  ")
        _hanging(con, line, cells[-1])
        if note:
            _hanging(con, Text(" " * 4), note)
        if log:
            con.print(Text.assemble(" " * 4, ("log ", "dim"), render.short_path(log, base)), soft_wrap=True)
    for m in detail["sla_misses"]:
        con.print(_sla_words(m, tz, now), soft_wrap=True, markup=False, highlight=False)
    if detail["events"]:
        con.print("events:")
        kw = max(len(e["kind"]) for e in detail["events"])
        tw = max(len(e["task"] or "-") for e in detail["events"])
        for e in detail["events"]:
            _hanging(con, Text(f"  {clock(e['ts'])}  {e['kind']:<{kw}}  {(e['task'] or '-'):<{tw}}  "),
                     render.local_due_times_in(e["message"] or "", clock))


def _hanging(con, head, tail: str) -> None:
    """``head`` then ``tail``; a tail too long for the terminal wraps at word boundaries under
    its own column, so the columns to its left stay readable at 60 columns."""
    import textwrap

    from rich.text import Text

    room = con.width - len(head.plain)
    if len(head.plain) + len(tail) <= con.width:
        line = Text.assemble(head, tail)
        line.rstrip()
        con.print(line, soft_wrap=True)
        return
    if room < 20:  # the columns leave too little room: the tail goes below, indented
        head = head.copy()
        head.rstrip()
        con.print(head, soft_wrap=True)
        head, room = Text(" " * 6), con.width - 6
    lines = textwrap.wrap(tail, room, break_long_words=True, break_on_hyphens=False) or [""]
    con.print(Text.assemble(head, lines[0]), soft_wrap=True)
    for more in lines[1:]:
        con.print(" " * len(head.plain) + more, soft_wrap=True, markup=False, highlight=False)


def _sla_words(m, tz: str, now) -> str:
    from pipectl.cli import render
    if not isinstance(m, dict):
        return f"SLA miss: {m}"
    what = f"task {m['task']}" if m.get("task") else "the run"
    return (f"SLA miss: {what} was due by {render.local_time(m.get('deadline'), tz, now)} {tz}; "
            f"recorded {render.local_time(m.get('recorded'), tz, now, seconds=True)}")


def _sla_misses(store, run) -> list:
    from pipectl.engine.sla import misses_for
    return misses_for(store, run=run.id)


def _snapshot(run) -> dict:
    """The spec a run executed with: it holds the secret values that were in force then."""
    from pipectl.state.store import loads
    return loads(run.spec) or {}


def _mask(p, obj):
    """Everything printed is masked at one place (secrets.MaskingWriter); a run's own snapshot may
    name secrets the current spec no longer has, so it adds them there. ``obj`` is returned as is."""
    from pipectl.spec.secrets import mask_also
    mask_also(p)
    return obj


@app.command()
def logs(ctx: typer.Context,
         pipeline: Annotated[Optional[str], typer.Argument(metavar="[PIPELINE]")] = None,
         task: Annotated[Optional[str], typer.Argument(metavar="[TASK]")] = None,
         date_: DateOpt = None,
         try_: Annotated[Optional[int], typer.Option("--try", min=1, max=MAX_COUNT, help="Try number (default: the latest).")] = None,
         follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing until the try ends.")] = False,
         tick_: Annotated[bool, typer.Option("--tick", help="Show the tick log instead.")] = False,
         hooks: Annotated[bool, typer.Option("--hooks", help="Show the run's hook output instead (PIPELINE only).")] = False,
         at: AtOpt = None, run_id: RunIdOpt = None) -> None:
    """A try's log (or, with --tick, what recent ticks did; with --hooks, what the run's hooks printed)."""
    c = get_ctx(ctx)
    if tick_:
        from pipectl.state import ticklog
        sys.stdout.write(ticklog.read(c.config()))
        return
    if hooks and pipeline:
        _print_hooks(c, _history(c, pipeline), date_, run_id, at)
        return
    if not pipeline or not task:
        raise UsageError("logs needs PIPELINE and TASK (or --tick, or PIPELINE --hooks)")
    p = _history(c, pipeline)
    store = _store(c)
    try:
        run = _run_or_none(c, store, p, date_, run_id, at)
        if run is None:
            return
        ti = next((t for t in store.task_instances(run.id) if t.task == task), None)
        if ti is None:
            known = ", ".join(t.task for t in store.task_instances(run.id))
            raise UsageError(f"unknown task {task!r} in {p.name} (known: {known})")
        tries = store.tries_for(ti.id)
        if not tries:
            # a fair question, not a mistake: say where the task stands
            print(f"{task} has not run yet in {run.run_id} (state {ti.state}); "
                  f"`pipectl explain {p.name}` says why", file=sys.stderr)
            return
        chosen = tries[-1] if try_ is None else next((t for t in tries if t.try_number == try_), None)
        if chosen is None:
            raise UsageError(f"{task} has no try {try_} (tries: 1..{tries[-1].try_number})")
        path, try_pk = chosen.log_path, chosen.id
        secrets_of = [p, _snapshot(run)]
        # the header goes to stderr: stdout stays the task's own output, byte for byte, for pipes
        print(f"==> {p.name} {run.run_id} {task} try {chosen.try_number}: {_try_words(chosen)} "
              f"-- {render_path(path)}", file=sys.stderr, flush=True)
        _print_log(secrets_of, path)
        if follow:
            final = _follow(secrets_of, store, path, try_pk)
            if final is not None:
                print(f"==> {task} try {chosen.try_number} ended: {_try_words(final)}", file=sys.stderr)
    finally:
        if store:
            store.close()


def render_path(path: str) -> str:
    from pipectl.cli.render import short_path
    return short_path(path, os.getcwd())


def _try_words(t) -> str:
    from pipectl.timing.durations import format_duration
    words = str(t.state)
    if t.exit_code is not None:
        words += f", exit {t.exit_code}"
    if t.reason and t.reason != "exit_code":
        words += f" ({t.reason})"
    if t.start and t.end:
        words += f", took {format_duration(t.end - t.start)}"
    return words


def _print_hooks(c, p, date_: str | None, run_id: str | None = None, at: str | None = None) -> None:
    """Hooks of a run write to one hooks.log beside its task logs."""
    from pipectl.exec.layout import hooks_log
    store = _store(c)
    try:
        run = _run_or_none(c, store, p, date_, run_id, at)
        if run is None:
            return
    finally:
        if store:
            store.close()
    path = hooks_log(c.config(), run)
    if not os.path.exists(path):
        print(f"no hook output for {run.run_id}", file=sys.stderr)
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


def _follow(p, store, path: str, try_pk: int):
    """Print what the try appends until it ends; its final row (None if it vanished)."""
    offset = os.path.getsize(path) if os.path.exists(path) else 0
    while True:
        row = store.try_(try_pk)
        offset = _print_log(p, path, offset)
        if row is None or row.state not in TRY_LIVE:
            return row
        time.sleep(0.2)


@app.command()
def explain(ctx: typer.Context, pipeline: PipelineArg, date_: DateOpt = None, at: AtOpt = None,
            run_id: RunIdOpt = None) -> None:
    """Why each task is or is not running: upstream, pool, sensor, retry time, paused, max_active_runs;
    for a run that does not exist, why not."""
    from pipectl.views.reading import explain_view
    c = get_ctx(ctx)
    p = _history(c, pipeline)
    when = _asked_when(p, date_, at)
    store = _store(c)
    try:
        run = _run_for(c, store, p, date_, run_id, at) if run_id or _has_run(store, p, when) else None
        view = explain_view(store, c.config(), p, run, when, _clock(c).dt())
    finally:
        if store:
            store.close()
    if c.json:
        from pipectl.cli.render import print_json
        print_json(view)
        return
    from pipectl.cli import render
    con = c.console()
    if run is None:
        asked = at or date_
        con.print(f"{p.name}: no run " + (f"for {asked}" if asked else "yet"), markup=False, highlight=False)
    else:
        con.print(f"{p.name} {run.run_id} ", render.state_text(run.state))
    for line in view["notes"] + (view["why"] or []):
        con.print(line, markup=False, highlight=False)
    if view["tasks"]:
        t = render.table("task", "state", "why")
        for i in view["tasks"]:
            t.add_row(i["task"], render.state_text("ready" if i["ready"] else i["state"], i["state"]), i["why"])
        con.print(t)


def _asked_when(p, date_: str | None, at: str | None):
    """The ds (a date) or logical date (a datetime) that --date / --at name, None for neither."""
    if at:
        from pipectl.cli.runref import _parse_at
        day = parse_date_arg(date_, tz=p.timezone) if date_ else None
        return _parse_at(at, p.timezone, day if day is not None and not isinstance(day, datetime) else None)
    return parse_date_arg(date_, tz=p.timezone) if date_ else None


def _has_run(store, p, when) -> bool:
    """Whether --date (or, without it, the pipeline) names at least one run."""
    if store is None:
        return False
    if when is None:
        return store.last_run(p.name) is not None
    if isinstance(when, datetime):
        return store.run_by_date(p.name, when.isoformat()) is not None
    return bool(store.runs_by_ds(p.name, when.isoformat()))


@app.command("next")
def next_(ctx: typer.Context, pipeline: PipelineArg, count: CountOpt = 5, strict: StrictOpt = False) -> None:
    """Upcoming schedule times after now, with the logical date each run will carry; warns of schedule
    times a DST change skips or repeats within 12 months."""
    from pipectl.views.reading import next_runs
    c = get_ctx(ctx)
    p = _history(c, pipeline)  # an invalid spec: what its last valid version would do (the warning says so)
    if not p.time_schedules:
        raise UsageError(f"{p.name} has no time schedule ({schedule_words(p)})")
    items = next_runs(p, c.now(), count)
    if c.json:
        from pipectl.cli.render import print_json
        print_json(items)
        _warn_backlog(c, [p], c.now())
        if dst_lint(c, [p], strict) and strict:
            exit_with(1)
        return
    from pipectl.cli import render
    now = c.now()
    print(f"{p.name}: {schedule_words(p)}; times in {p.timezone}")
    for i in items:
        print(f"  {render.local_time(i['fire_time'], p.timezone, now)} ({render.ago(i['fire_time'], now)})  "
              f"runs ds {i['ds']}, logical date {render.local_time(i['logical_date'], p.timezone, now)}")
    _warn_backlog(c, [p], c.now())
    if dst_lint(c, [p], strict) and strict:
        exit_with(1)
