"""`pipectl simulate`: rehearse a stretch of time on a scratch copy of the state."""
from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer

from pipectl.cli.app import app, get_ctx, parse_now

# what the summary's timeline keeps; `--timeline` shows every happening
NOTABLE = ("run_failed", "task_failed", "task_retry", "sla_miss", "catchup_skipped",
           "assets_consumed", "task_skipped", "schedule_failed", "run_error")
SUMMARY_LINES = 40


@app.command()
def simulate(
    ctx: typer.Context,
    pipelines: Annotated[Optional[list[str]], typer.Argument(metavar="[PIPELINE]...",
                                                             help="Only these (the others stay idle).")] = None,
    start: Annotated[str, typer.Option("--from", metavar="T", show_default=False,
                                       help="Start of the rehearsal (ISO 8601; naive = UTC).")] = ...,
    end: Annotated[str, typer.Option("--to", metavar="T", show_default=False,
                                     help="End of the rehearsal (ISO 8601; naive = UTC).")] = ...,
    stub: Annotated[Optional[list[str]], typer.Option(
        "--stub", metavar="TASK=SPEC",
        help="What a task does instead of running: exit:N, duration:D, sensor:ok|never, items:N; "
             "TASK is task or pipeline.task; several specs joined with ','. Default: success at once.")] = None,
    unpause: Annotated[bool, typer.Option("--unpause", help="The named pipelines start unpaused.")] = False,
    timeline: Annotated[bool, typer.Option("--timeline", help="Every happening, not just the notable ones.")] = False,
) -> None:
    """Rehearse: the real scheduler over a scratch copy of the state on a virtual clock, tasks
    stubbed; prints the runs, retries, SLA misses, catch-up skips and DST shifts it would see.
    Nothing real is touched and nothing runs."""
    from pipectl.ops.simulate import parse_stub, simulate as rehearse
    c = get_ctx(ctx)
    t0, t1 = parse_now(start, "--from"), parse_now(end, "--to")
    stubs = dict(parse_stub(s) for s in stub or ())
    config = c.config()
    progress = _progress(c, t0, t1)
    try:
        sim = rehearse(config, t0, t1, stubs=stubs, pipelines=list(pipelines or ()), unpause=unpause,
                       progress=progress.update if progress else None)
    finally:
        if progress:
            progress.close()
    loaded = c.load()
    zones = {name: p.timezone for name, p in loaded.pipelines.items()}
    if c.json:
        from pipectl.cli.render import print_json
        from pipectl.timing.clock import epoch_iso
        print_json({"from": t0.isoformat(), "to": t1.isoformat(), "ticks": sim.ticks, "steps": sim.steps,
                    "runs": sim.runs, "dst": sim.dst, "hooks": sim.hooks, "invalid": sim.invalid,
                    "happenings": [{**h._asdict(), "at": epoch_iso(h.at)} for h in sim.happenings]})
        return
    _print(c, sim, zones, config.timezone, timeline)


class _Bar:
    def __init__(self, progress, task, t0: float, t1: float):
        self.progress, self.task, self.t0, self.t1 = progress, task, t0, t1

    def update(self, fraction: float) -> None:
        self.progress.update(self.task, completed=round(fraction * 1000))

    def close(self) -> None:
        self.progress.stop()


def _progress(c, t0, t1) -> _Bar | None:
    """A bar on a terminal for rehearsals long enough to wait on (more than a day of ticks)."""
    if c.json or (t1 - t0).total_seconds() < 86400 or not sys.stderr.isatty():
        return None
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
    progress = Progress(TextColumn("[bold]simulate"), BarColumn(), TimeRemainingColumn(), console=c.console(stderr=True),
                        transient=True)
    task = progress.add_task("simulate", total=1000)
    progress.start()
    return _Bar(progress, task, t0.timestamp(), t1.timestamp())


def _print(c, sim, zones: dict[str, str], project_tz: str, timeline: bool) -> None:
    from pipectl.cli import render
    from pipectl.timing.clock import to_local, from_epoch
    con = c.console()
    span = sim.end - sim.start
    con.print(f"simulated {sim.start:%Y-%m-%d %H:%M} to {sim.end:%Y-%m-%d %H:%M} UTC ({render.human_age(span.total_seconds())}: "
              f"{sim.ticks} ticks, {sim.steps} steps); nothing real was touched, no task ran", markup=False)
    for name, errs in sim.invalid.items():
        con.print(f"{name} is invalid and was left out: {errs[0] if errs else ''}", markup=False, soft_wrap=True)
    kinds: dict[str, int] = {}
    for h in sim.happenings:
        kinds[h.kind] = kinds.get(h.kind, 0) + 1
    if sim.runs:
        con.print("runs created (logical dates, each pipeline's local time):", markup=False)
        for name in sorted(sim.runs):
            r = sim.runs[name]
            states = ", ".join(f"{n} {s}" for s, n in sorted(r["states"].items()))
            tz = zones.get(name, project_tz)
            first, last = (_local(r[k], tz) for k in ("first", "last"))
            span = first if first == last else f"{first} .. {last}"
            con.print(f"  {name}: {states}; {span}", markup=False, soft_wrap=True)
    else:
        con.print("runs created: none", markup=False)
    counts = [("tries", kinds.get("try_started", 0)), ("retries", kinds.get("task_retry", 0)),
              ("failed tasks", kinds.get("task_failed", 0)), ("SLA misses", kinds.get("sla_miss", 0)),
              ("catch-up skips", kinds.get("catchup_skipped", 0)), ("asset-triggered runs", kinds.get("assets_consumed", 0)),
              ("hooks", sim.hooks)]
    con.print("  ".join(f"{label}: {n}" for label, n in counts), markup=False, soft_wrap=True)
    for note in sim.dst:
        con.print(f"DST: {note}", markup=False, soft_wrap=True)
    if not sim.dst:
        con.print("DST: no offset change in the span", markup=False)
    shown = [h for h in sim.happenings if timeline or h.kind in NOTABLE]
    if not shown:
        return
    limit = len(shown) if timeline else SUMMARY_LINES
    con.print("timeline (each pipeline's local time):" if timeline else
              "notable (each pipeline's local time; --timeline for every happening):", markup=False)
    for h in shown[:limit]:
        tz = zones.get(h.pipeline or "", project_tz)
        local = to_local(from_epoch(h.at), tz)
        what = " ".join(x for x in (h.pipeline, _run_words(h, tz), h.task) if x)
        con.print(f"  {local:%m-%d %H:%M:%S %Z}  {h.kind:<15} {what}: {h.message}", markup=False, soft_wrap=True)
    if len(shown) > limit:
        con.print(f"  ... and {len(shown) - limit} more (--timeline shows them all)", markup=False)


def _local(when: str, tz: str) -> str:
    from datetime import datetime

    from pipectl.timing.clock import to_local
    return f"{to_local(datetime.fromisoformat(when), tz):%m-%d %H:%M %Z}"


def _run_words(h, tz: str) -> str | None:
    """A run by its logical date in the pipeline's zone (the time only when not midnight)."""
    if h.logical_date is None:
        return None
    from datetime import datetime

    from pipectl.timing.clock import to_local
    local = to_local(datetime.fromisoformat(h.logical_date), tz)
    return f"{local:%Y-%m-%d}" if (local.hour, local.minute) == (0, 0) else f"{local:%Y-%m-%d %H:%M}"
