"""Operator commands: backfill, retry, mark, pause, unpause, grid."""
from __future__ import annotations

import shlex
import sys
from typing import Annotated, Optional

import typer

from pipectl.cli.app import MAX_COUNT, AtOpt, _complete_tasks, DateOpt, PipelineArg, RunIdOpt, WaitOpt, app, exit_with, get_ctx, parse_date_arg, parse_date_range
from pipectl.model.errors import UsageError
from pipectl.model.states import FAILED, PENDING, QUEUED, RUNNING, SKIPPED, SUCCESS, UP_FOR_RETRY, UPSTREAM_FAILED
StartOpt = Annotated[str, typer.Option("--start", metavar="D", show_default=False,
                                       help="First ds (YYYY-MM-DD) or logical date (ISO 8601), inclusive.")]
EndOpt = Annotated[str, typer.Option("--end", metavar="D", show_default=False,
                                     help="Last ds (YYYY-MM-DD) or logical date (ISO 8601), inclusive.")]


def _clock(c):
    from pipectl.engine.step import Clock
    return Clock.at(c.now() if c.fake_now else None)


def _history(c, name: str):
    """Operating on existing runs needs their snapshots, not a valid file today."""
    from pipectl.cli.commands.core import _history as history
    return history(c, name)


def _engine(c, store):
    from pipectl.engine.step import Engine
    return Engine(c.config(), store, _clock(c))


# --------------------------------------------------------------------------- backfill

@app.command()
def backfill(
    ctx: typer.Context,
    pipeline: PipelineArg,
    start: StartOpt,
    end: EndOpt,
    reprocess: Annotated[str, typer.Option(
        "--reprocess", metavar="missing|failed|all",
        help="missing: only create absent runs; failed: also re-run failed and upstream_failed task instances "
             "of finished runs; all: re-run every task instance (asks first).")] = "failed",
    tasks: Annotated[Optional[str], typer.Option(
        "--tasks", metavar="REGEX", help="Only tasks matching REGEX, and everything downstream of them.")] = None,
    max_active_runs: Annotated[Optional[int], typer.Option(
        "--max-active-runs", metavar="N", min=1, max=MAX_COUNT,
        help="Backfill runs in progress at once (default: the pipeline's max_active_runs).")] = None,
    backwards: Annotated[bool, typer.Option("--backwards", help="Newest logical date first.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would happen; change nothing.")] = False,
    schedule: Annotated[Optional[str], typer.Option(
        "--schedule", metavar="EXPR",
        help="Cron expression giving the logical dates (needed when the pipeline has no time schedule).")] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask before --reprocess all.")] = False,
    wait: WaitOpt = False,
) -> None:
    """One run per logical date whose ds is in [start, end]; re-runs failed work of existing runs."""
    c = get_ctx(ctx)
    p = c.pipeline(pipeline)
    lo, hi = parse_date_range(start, end, tz=p.timezone)
    from pipectl.ops import backfill as bf
    opts = dict(reprocess=reprocess, tasks=tasks, schedule=schedule, backwards=backwards)
    from pipectl.state.store import existing_store
    store = existing_store(c.config())
    try:
        items = bf.plan(p, store, lo, hi, **opts)
    finally:
        if store is not None:
            store.close()
    if dry_run:
        _print_plan(c, p, items, max_active_runs or p.max_active_runs)
        return
    reruns = bf.counts(items)
    if reprocess == "all" and reruns[bf.RERUN] and not yes:
        typer.confirm(f"re-run {reruns['task_instances']} task instances (successes included) in "
                      f"{reruns[bf.RERUN]} existing runs of {p.name}?", abort=True, err=True)

    from pipectl.state.store import open_store
    store = open_store(c.config())
    try:
        engine = _engine(c, store)
        batch, items, watch = bf.apply(engine, p, lo, hi, max_active=max_active_runs, **opts)
        n = bf.counts(items)
        limit = max_active_runs or p.max_active_runs
        head = (f"backfill {p.name}: {n[bf.CREATE]} runs created, {n[bf.RERUN]} re-opened "
                f"({n['task_instances']} task instances), {n[bf.RESUME]} in progress, {n[bf.SKIP]} skipped")
        if not wait:
            if c.json:
                from pipectl.cli.render import print_json
                print_json({"batch": batch, "max_active_runs": limit, "plan": [it.to_dict() for it in items]})
            else:
                print(head)
                if watch:
                    print(f"queued as batch {batch} (at most {limit} at once): `pipectl tick` runs them; "
                          f"add --wait to drive them now")
            return
        if not c.json:
            print(head, file=sys.stderr)
        interrupted = _drive(c, engine, watch)
        result = bf.outcome(store, watch)
    finally:
        store.close()
    _report(c, p, result, interrupted, _resume_command(p.name, start, end, reprocess, tasks, max_active_runs,
                                                        backwards, schedule))


def _print_plan(c, p, items, limit: int) -> None:
    from pipectl.ops import backfill as bf
    if c.json:
        from pipectl.cli.render import print_json
        print_json({"pipeline": p.name, "dry_run": True, "max_active_runs": limit,
                    "plan": [it.to_dict() for it in items]})
        return
    from pipectl.cli.render import table
    t = table("ds", "logical date", "run", "action", title=f"backfill {p.name} (dry run: nothing changed)")
    for it in items:
        t.add_row(it.ds, it.logical_date.isoformat(), it.run.run_id if it.run is not None else "-", it.words)
    con = c.console()
    con.print(t)
    n = bf.counts(items)
    con.print(f"would create {n[bf.CREATE]} runs, re-run {n['task_instances']} task instances in {n[bf.RERUN]} runs; "
              f"{n[bf.RESUME]} in progress, {n[bf.SKIP]} skipped; at most {limit} runs at once")


def _drive(c, engine, watch: list[int]) -> bool:
    """Run ``watch`` to the end with a progress bar; True if Ctrl-C stopped it early."""
    import signal
    import time

    from pipectl.engine.step import StepReport
    store = engine.store
    total = len(watch)
    wanted = set(watch)
    err = c.console(stderr=True)
    interrupted: list[bool] = []

    def on_sigint(signum, frame):
        if interrupted:
            raise KeyboardInterrupt  # a second Ctrl-C: leave now; running tasks carry on detached
        interrupted.append(True)
        engine.stop_launching = True
        err.print("interrupted: starting nothing new; waiting for running tasks to finish and be recorded "
                  "(Ctrl-C again to leave them running)")

    progress = None
    bar = None
    if not c.json and total:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("runs · {task.fields[running]} tasks running · {task.fields[failed]} failed"),
                            TimeRemainingColumn(), console=err, transient=False)
        bar = progress.add_task("backfill", total=total, running=0, failed=0)
    last = [0.0]

    def on_progress(force: bool = False) -> None:
        if progress is None or (not force and time.monotonic() - last[0] < 0.5):
            return
        last[0] = time.monotonic()
        states = list(store.run_states(watch).values())
        running = sum(1 for t in store.active_tries() if t.run in wanted)
        progress.update(bar, completed=sum(s in (SUCCESS, FAILED) for s in states), running=running,
                        failed=states.count(FAILED))

    old = signal.signal(signal.SIGINT, on_sigint)
    try:
        if progress is not None:
            progress.start()
        try:
            engine.drive(wanted, StepReport(), on_progress=on_progress)
        finally:
            on_progress(force=True)
            if progress is not None:
                progress.stop()
    finally:
        signal.signal(signal.SIGINT, old)
    return bool(interrupted)


def _resume_command(name, start, end, reprocess, tasks, max_active, backwards, schedule) -> str:
    # `all` again would redo what the interrupted backfill already finished; `failed` picks up where it stopped
    args = ["pipectl", "backfill", name, "--start", start, "--end", end]
    if reprocess == "missing":
        args += ["--reprocess", "missing"]
    if tasks:
        args += ["--tasks", tasks]
    if max_active:
        args += ["--max-active-runs", str(max_active)]
    if backwards:
        args.append("--backwards")
    if schedule:
        args += ["--schedule", schedule]
    return shlex.join(args + ["--wait"])


def _report(c, p, result: dict, interrupted: bool, resume: str) -> None:
    ok = result["success"] == result["total"]
    if c.json:
        from pipectl.cli.render import print_json
        print_json({"pipeline": p.name, "interrupted": interrupted, "ok": ok, **result,
                    **({"resume": resume} if interrupted else {})})
    else:
        err = sys.stderr
        print(f"{result['success']} of {result['total']} runs succeeded"
              f"{', ' + str(len(result['failed'])) + ' failed' if result['failed'] else ''}"
              f"{', ' + str(len(result['unfinished'])) + ' unfinished' if result['unfinished'] else ''}")
        for run in result["failed"]:
            print(f"failed {run['ds']} ({run['logical_date']}):", file=err)
            for t in run["tasks"]:
                why = f" ({t['reason']}, exit {t['exit_code']})" if t["state"] == FAILED else ""
                log = f"  log: {t['log']}" if t["log"] and t["state"] == FAILED else ""
                print(f"  {t['task']} {t['state']}{why}{log}", file=err)
        if interrupted:
            print(f"stopped by Ctrl-C; every try that ran is recorded. {len(result['unfinished'])} runs are unfinished "
                  f"and stay queued (a `pipectl tick` would also continue them). "
                  f"Re-run the same command to resume: {resume}", file=err)
        elif result["failed"]:
            print(f"fix the cause, then re-run only the failed task instances: {resume}", file=err)
    if interrupted:
        exit_with(130)
    if not ok:
        exit_with(1)


# --------------------------------------------------------------------------- retry

@app.command()
def retry(
    ctx: typer.Context,
    pipeline: PipelineArg,
    date_: DateOpt = None,
    task: Annotated[Optional[str], typer.Option("--task", "-t", metavar="T", autocompletion=_complete_tasks,
                                                help="Re-run this task (any state but running).")] = None,
    downstream: Annotated[bool, typer.Option("--downstream", help="With --task: everything below it too.")] = False,
    wait: WaitOpt = False,
    at: AtOpt = None,
    run_id: RunIdOpt = None,
) -> None:
    """Re-run the failed task instances of one run (or task T); successes are kept."""
    c = get_ctx(ctx)
    p = _history(c, pipeline)
    if not (date_ or at or run_id):
        raise UsageError("retry needs --date D (the run's ds or logical date), --at DATETIME or --run-id ID")
    if downstream and not task:
        raise UsageError("--downstream needs --task")
    from pipectl.cli.app import find_run
    run = find_run(c, p, date_, run_id=run_id, at=at)
    from pipectl.ops import backfill as bf, rerun
    from pipectl.state.store import open_store
    store = open_store(c.config(), create=False)
    try:
        engine = _engine(c, store)
        todo, busy = rerun.retry_plan(engine, run, task, downstream)
        if not todo:
            what = f"{task}{' and downstream' if downstream else ''}" if task else "failed task instances"
            msg = f"nothing to retry in {run.run_id}: no {what}" + (
                f" that has finished ({', '.join(ti.task for ti in busy)} still active)" if busy else "")
            if c.json:
                from pipectl.cli.render import print_json
                print_json({"run_id": run.run_id, "retried": [], "active": [ti.task for ti in busy]})
            else:
                print(msg)
            return
        names, skipped = rerun.retry(engine, run, todo)
        # another process changed these between this command's look and its write: say so
        for name, now_state in skipped:
            print(f"{run.run_id}: {name} is {now_state}; not reset", file=sys.stderr)
        if not names:
            if c.json:
                from pipectl.cli.render import print_json
                print_json({"run_id": run.run_id, "retried": [], "active": [ti.task for ti in busy],
                            "skipped": [{"task": t, "state": st} for t, st in skipped]})
            else:
                print(f"nothing retried in {run.run_id}: every task instance to reset changed meanwhile")
            exit_with(1)
        if not wait:
            from pipectl.exec.timer import hand_off
            hand_off(engine, step_now=True)  # the timer starts them within a second, not the next tick
            if c.json:
                from pipectl.cli.render import print_json
                print_json({"run_id": run.run_id, "retried": names, "active": [ti.task for ti in busy],
                            "skipped": [{"task": t, "state": st} for t, st in skipped]})
            else:
                print(f"{run.run_id}: {len(names)} task instance{'s' if len(names) != 1 else ''} back to pending "
                      f"({', '.join(names)}), starting now; add --wait to follow them")
            return
        from pipectl.engine.step import StepReport
        engine.drive({run.id}, StepReport())
        result = bf.outcome(store, [run.id])
        final = store.run(run.id)
    finally:
        store.close()
    if c.json:
        from pipectl.cli.render import print_json
        print_json({"run_id": run.run_id, "retried": names, "state": final.state, **result})
    else:
        print(f"{run.run_id}: {final.state}")
        for r in result["failed"]:
            for t in r["tasks"]:
                log = f"  log: {t['log']}" if t["log"] and t["state"] == FAILED else ""
                print(f"  {t['task']} {t['state']}{log}", file=sys.stderr)
    if final.state != SUCCESS:
        exit_with(1)


# --------------------------------------------------------------------------- mark, pause

@app.command()
def mark(
    ctx: typer.Context,
    pipeline: PipelineArg,
    state: Annotated[str, typer.Argument(metavar="success|failed|skipped", help="The state to set.")],
    date_: DateOpt = None,
    task: Annotated[Optional[str], typer.Option("--task", "-t", metavar="T", autocompletion=_complete_tasks, help="The task (all its instances "
                                                "if mapped, or one: 'name[2]').")] = None,
    at: AtOpt = None,
    run_id: RunIdOpt = None,
) -> None:
    """Set a task instance's state by hand (recorded as an event)."""
    c = get_ctx(ctx)
    p = _history(c, pipeline)
    from pipectl.ops import rerun
    if state not in rerun.MARK_STATES:
        raise UsageError(f"bad state {state!r}: expected one of {', '.join(rerun.MARK_STATES)}")
    if not (date_ or at or run_id) or not task:
        raise UsageError("mark needs --date D and --task T (or name the run with --at DATETIME or --run-id ID)")
    from pipectl.cli.app import find_run
    run = find_run(c, p, date_, run_id=run_id, at=at)
    from pipectl.state.store import open_store
    store = open_store(c.config(), create=False)
    try:
        engine = _engine(c, store)
        changed, skipped = rerun.mark(engine, run, task, state)
        if changed:
            from pipectl.exec.timer import hand_off
            hand_off(engine, step_now=True)  # what the mark made ready starts within a second
        final = store.run(run.id).state
    finally:
        store.close()
    # a running task instance is never marked: its try would overwrite the mark when it ends
    for t, now_state in skipped:
        print(f"{run.run_id}: {t} is {now_state}; not marked (mark it once its try has ended, "
              f"or let its timeout end it)", file=sys.stderr)
    if c.json:
        from pipectl.cli.render import print_json
        print_json({"run_id": run.run_id, "state": state, "run_state": final,
                    "changed": [{"task": t, "was": old} for t, old in changed],
                    "skipped": [{"task": t, "state": st} for t, st in skipped]})
    elif not changed and not skipped:
        print(f"{run.run_id}: {task} already {state}; nothing changed")
    else:
        for t, old in changed:
            print(f"{run.run_id}: {t} {old} -> {state}")
        print(f"run is {final}")
    if skipped:
        exit_with(1)


def _pause(ctx: typer.Context, pipeline: str, paused: bool) -> None:
    c = get_ctx(ctx)
    p = c.pipeline(pipeline)
    from pipectl.ops import rerun
    from pipectl.state.store import open_store
    store = open_store(c.config())
    try:
        changed = rerun.set_paused(store, p, paused, _clock(c).now())
    finally:
        store.close()
    if changed and not paused:
        _schedule_now(c)
    word = "paused" if paused else "unpaused"
    if c.json:
        from pipectl.cli.render import print_json
        print_json({"pipeline": p.name, "paused": paused, "changed": changed})
    elif not changed:
        print(f"{p.name} is already {word}")
    elif paused:
        print(f"{p.name} paused: no new scheduled runs; work in progress finishes. `pipectl unpause {p.name}` resumes")
    else:
        from pipectl.engine.catchup import catchup_words
        catch = catchup_words(p)
        print(f"{p.name} unpaused: scheduling resumes now; {catch}")


def _schedule_now(c) -> None:
    """After unpause: the runs it makes due are created now (a tick), not at cron's next tick.
    When a tick is running it may have read the pipeline as paused: the timer then runs one."""
    from pipectl.engine.tick import tick
    from pipectl.state.store import open_store
    from pipectl.exec.timer import hand_off
    config = c.config()
    if not tick(config, _clock(c)).busy:
        return
    store = open_store(config)
    try:
        hand_off(_engine(c, store), tick=True)
    finally:
        store.close()


@app.command()
def pause(ctx: typer.Context, pipeline: PipelineArg) -> None:
    """Stop new scheduled runs of a pipeline; running work finishes."""
    _pause(ctx, pipeline, True)


@app.command()
def unpause(ctx: typer.Context, pipeline: PipelineArg,
            dry_run: Annotated[bool, typer.Option("--dry-run", help="Print what unpausing would create and start; change nothing.")] = False) -> None:
    """Resume scheduling (honours catchup)."""
    if dry_run:
        from pipectl.ops.preview import preview
        from pipectl.cli.commands.core import print_preview
        c = get_ctx(ctx)
        p = c.pipeline(pipeline)
        print_preview(c, preview(c.config(), _clock(c), unpause=p.name), f"unpause {p.name} --dry-run")
        return
    _pause(ctx, pipeline, False)


# --------------------------------------------------------------------------- grid

@app.command()
def grid(
    ctx: typer.Context,
    pipeline: PipelineArg,
    start: Annotated[Optional[str], typer.Option("--start", metavar="D", help="First ds shown.")] = None,
    end: Annotated[Optional[str], typer.Option("--end", metavar="D", help="Last ds shown.")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=MAX_COUNT,
                                       help="Without --start: the latest N runs.")] = 30,
) -> None:
    """Partition grid: one row per run (dates), one column per task, coloured by state.

    --start/--end take a ds (whole days) or a datetime (that instant; naive = the pipeline's zone)."""
    c = get_ctx(ctx)
    p = _history(c, pipeline)
    lo = hi = None
    if start and end:
        lo, hi = parse_date_range(start, end, tz=p.timezone)
    elif start:
        lo = parse_date_arg(start, "--start", p.timezone)
    elif end:
        hi = parse_date_arg(end, "--end", p.timezone)
    ds_from = _ds(lo, p.timezone) if lo is not None else None
    ds_to = _ds(hi, p.timezone) if hi is not None else None
    from pipectl.views.history import grid_data
    from pipectl.state.store import existing_store
    store = existing_store(c.config())
    try:
        if store is None:
            runs, tis = [], []
        else:
            runs = store.runs_for(p.name, limit=None if ds_from else limit, ds_from=ds_from, ds_to=ds_to)
            runs = [r for r in runs if _within(r.logical_date, lo, hi)]
            tis = store.task_instances_for_runs([r.id for r in runs])
    finally:
        if store is not None:
            store.close()
    data = grid_data(p, runs, tis, _clock(c).now())
    if c.json:
        from pipectl.cli.render import print_json
        print_json(data)
        return
    _draw_grid(c, data)


def _within(at, lo, hi) -> bool:
    """A datetime bound is an instant; a ds bound was already applied by the query."""
    from datetime import datetime

    return not ((isinstance(lo, datetime) and at < lo) or (isinstance(hi, datetime) and at > hi))


def _ds(d, tz: str) -> str:
    from datetime import datetime

    if isinstance(d, datetime):
        from pipectl.timing.clock import ds_of
        return ds_of(d, tz)
    return d.isoformat()


def _draw_grid(c, data: dict) -> None:
    from rich.table import Table
    from rich.text import Text

    from pipectl.cli.render import legend, state_cell
    con = c.console()
    if not data["runs"]:
        con.print(f"no runs of {data['pipeline']} in that range")
        return
    all_cols = data["tasks"]
    label_w = max(len(r["label"]) + (5 if r["slow"] else 0) for r in data["runs"])
    # each column costs its width plus one space; what is left after the date and run columns is the tasks'
    free = con.width - label_w - 5
    room = max(1, free // max(1, len(all_cols)) - 1)
    named = max(len(n) for n in all_cols) <= room
    cols = all_cols
    if not named:
        # numbered columns; more tasks than fit are left out and said so, never squeezed into "…"
        fit = max(1, free // (len(str(len(all_cols))) + 1))
        cols = all_cols[:fit]
    headers = cols if named else [str(i) for i in range(1, len(cols) + 1)]
    t = Table(box=None, padding=(0, 1, 0, 0), show_edge=False, header_style="bold", pad_edge=False)
    t.add_column("ds", no_wrap=True)
    t.add_column("run", justify="center", no_wrap=True)
    for h in headers:
        t.add_column(h, justify="center", no_wrap=True)
    seen: list[str] = []
    for r in data["runs"]:
        cells = [Text(r["label"]), state_cell(r["state"], con)]
        for name in cols:
            s = r["tasks"][name]
            cells.append(state_cell(s, con))
            if s and s not in seen:
                seen.append(s)
        if r["slow"]:
            cells[0].append(" slow", style="yellow")
        t.add_row(*cells)
        if r["state"] not in seen:
            seen.append(r["state"])
    con.print(t)
    if not named:
        con.print(Text("  ".join(f"{i}={n}" for i, n in enumerate(cols, 1)), style="dim"))
    if len(cols) < len(all_cols):
        con.print(Text(f"showing the first {len(cols)} of {len(all_cols)} tasks (DAG order); a wider terminal "
                       f"or --json shows all", style="dim"))
    order = [SUCCESS, RUNNING, QUEUED, PENDING, UP_FOR_RETRY, FAILED, UPSTREAM_FAILED, SKIPPED]
    shown = [s for s in order if s in seen]
    if any(v is None for r in data["runs"] for v in r["tasks"].values()):
        shown.append("not in run")
    con.print(legend(shown, con))
