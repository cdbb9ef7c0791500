"""Assets: data a task produces, and pipelines scheduled on their updates.

Producing: when a task instance with ``produces: [name]`` succeeds, an asset event
is recorded for the run's ``ds`` (inside the success transaction). The event is
*complete* when the producing run covers the whole day ``ds``: its data interval
reaches the next midnight in the producer's timezone. A daily run always does;
a 5-minute pipeline's runs only do for the last interval of the day, so a daily
consumer never starts on a partial day. Manual, asset and file runs have no
interval and count as covering their ds.

Consuming: ``schedule: {assets: [...], mode: all|any}`` creates one run per ds
once every listed asset (``all``) or any (``any``) has a complete event for that
ds newer than the one last consumed. The run's type is ``asset``, its logical
date midnight of ds in the consumer's timezone and its data interval that day.
A consumer gets at most one run per ds: if a run for that ds already exists
(its cron fallback fired first) the trigger stands down and only records the
consumption, and a cron fallback stands down when an asset run for its ds exists
(``fallback_covered``). Later re-productions of a consumed ds are recorded but do
not start another run (use ``pipectl retry``). Events recorded before the
consumer was first seen by a tick are not consumed.
"""
from __future__ import annotations

from datetime import date, datetime, time as dtime, timedelta
from typing import Mapping

from pipectl.engine.context import StepContext
from pipectl.engine.dates import instant
from pipectl.engine.rules import Paused
from pipectl.engine.runs import covers_day, create_run  # noqa: F401  (covers_day: read here too)
from pipectl.model.pipeline import AssetSchedule, Pipeline
from pipectl.state.store import loads
from pipectl.timing.clock import UTC, epoch_iso, iso, local_midnight

COMPLETED = "asset_completed"  # the signal a complete asset event raises for the step's sources phase


# -- producing ----------------------------------------------------------------
def record(ctx: StepContext, run, ti, task, now: float) -> None:
    """The ``on_success`` extension: called inside the transaction that makes ``ti`` succeed."""
    if not task.produces:
        return
    complete = covers_day(run)
    for name in task.produces:
        ctx.store.add_asset_event(asset=name, ds=run.ds, pipeline=run.pipeline, task=ti.task,
                                  run=run.id, complete=complete, now=now)
    if complete:
        ctx.signal(COMPLETED)


# -- consuming ----------------------------------------------------------------
def asset_schedules(p: Pipeline) -> list[AssetSchedule]:
    return [s for s in p.schedules if isinstance(s, AssetSchedule)]


def _epoch(dt: datetime | None) -> float:
    return dt.timestamp() if dt else 0.0


def trigger(ctx: StepContext, pipelines: Mapping[str, Pipeline], rows, now_dt, report) -> list[int]:
    """A tick's source (tick.SOURCES), also the step's right after a producer succeeded."""
    created: list[int] = []
    store = ctx.store
    for name, p in pipelines.items():
        scheds = asset_schedules(p)
        row = rows.get(name)
        if not scheds or row is None or Paused.holds(row) or not row.valid:
            continue
        start = instant(p.start_date, p.timezone)
        start_ds = None
        if start is not None:
            from pipectl.timing.clock import ds_of
            start_ds = ds_of(start, p.timezone)
        seen_since = _epoch(row.anchor)
        for sched in scheds:
            latest = {(r.asset, r.ds): r for r in store.latest_asset_events(list(sched.assets))}
            consumed = store.consumed(name)
            for ds in sorted({ds for _, ds in latest}):
                if start_ds and ds < start_ds:
                    continue
                new = [a for a in sched.assets if (a, ds) in latest and latest[(a, ds)].event > consumed.get((a, ds), 0)
                       and latest[(a, ds)].ts >= seen_since]
                if not new or (sched.mode == "all" and len(new) < len(sched.assets)):
                    continue
                with store.tx():
                    existing = store.runs_by_ds(name, ds)
                    if existing:
                        pk, fresh = existing[0].id, False
                    else:
                        lo = local_midnight(ds, p.timezone)
                        hi = local_midnight(date.fromisoformat(ds) + timedelta(days=1), p.timezone)
                        pk = create_run(ctx, p, lo, run_type="asset", interval=(lo, hi))
                        fresh = pk is not None
                    now = ctx.clock.now()
                    for a in new:
                        store.mark_consumed(name, a, ds, latest[(a, ds)].event, pk, now)
                    store.add_event("assets_consumed", now=now, pipeline=name, run=pk,
                                    message=f"{', '.join(new)} for {ds}" + ("" if fresh else " (run already there)"))
                if fresh:
                    created.append(pk)
                    report.created.append(f"{name} {iso_of(store, pk)} (assets {', '.join(new)})")
    return created


def iso_of(store, pk: int) -> str:
    r = store.run(pk)
    return iso(r.logical_date) if r else "?"


def step_source(ctx: StepContext, report) -> None:
    """The step's sources phase: a consumer starts as soon as its producers' assets are
    complete, from a wrapper's reaper or a supervisor too, not a cron tick later."""
    if ctx.take_signal(COMPLETED):
        trigger_from_rows(ctx, report)


def trigger_from_rows(ctx: StepContext, report) -> list[int]:
    """The reaper/supervisor path: consumers' specs come from the store's cache, no YAML."""
    rows = ctx.store.pipeline_rows()
    pipelines = {}
    for n, r in rows.items():
        spec = loads(r.spec) if r.valid and r.spec else None
        if spec and any(s.get("kind") == "assets" for s in spec.get("schedules", ())):
            pipelines[n] = Pipeline.from_dict(spec)
    if not pipelines:
        return []
    return trigger(ctx, pipelines, rows, ctx.clock.dt(), report)


def fallback_covered(store, pipeline: Pipeline, logical_date: datetime) -> bool:
    """A cron fallback of an asset-scheduled pipeline stands down when its ds already has a run."""
    from pipectl.timing.clock import ds_of
    return bool(asset_schedules(pipeline)) and bool(store.runs_by_ds(pipeline.name, ds_of(logical_date, pipeline.timezone)))


# -- reading ------------------------------------------------------------------
def late_assets(store, pipelines: Mapping[str, Pipeline], now) -> list[dict]:
    """Assets with a freshness target (``assets: {name: {fresh_by: HH:MM}}``) that are late.

    The update for ds D is due on D+1 at ``fresh_by`` in the asset's timezone; an
    asset is late when the most recent due ds has no complete event. Each entry:
    ``{asset, pipeline, ds, fresh_by, timezone, due, last_update}`` (ISO 8601)."""
    from zoneinfo import ZoneInfo

    if isinstance(now, (int, float)):
        now = datetime.fromtimestamp(now, UTC)
    out, seen = [], set()
    for pname, p in pipelines.items():
        for name, cfg in p.assets.items():
            if name in seen or "fresh_by" not in cfg:
                continue
            seen.add(name)
            tz = ZoneInfo(cfg.get("timezone") or p.timezone)
            local = now.astimezone(tz)
            hh, mm = (int(x) for x in cfg["fresh_by"].split(":"))
            due_day = local.date() if local.time() >= dtime(hh, mm) else local.date() - timedelta(days=1)
            ds = (due_day - timedelta(days=1)).isoformat()
            events = {r.ds: r for r in store.latest_asset_events([name])}
            if ds in events:
                continue
            last = max((r.ts for r in events.values()), default=None)
            out.append({"asset": name, "pipeline": pname, "ds": ds, "fresh_by": cfg["fresh_by"],
                        "timezone": str(tz), "due": datetime.combine(due_day, dtime(hh, mm), tz).isoformat(),
                        "last_update": epoch_iso(last)})
    return out


def report(store, pipelines: Mapping[str, Pipeline], now, days: int = 7) -> list[dict]:
    """What `pipectl assets` shows: each asset's producers, consumers and last update per ds."""
    names: set[str] = set(store.asset_names())
    producers: dict[str, list[str]] = {}
    consumers: dict[str, list[str]] = {}
    for pname, p in pipelines.items():
        for t in p.tasks.values():
            for a in t.produces:
                producers.setdefault(a, []).append(f"{pname}.{t.name}")
                names.add(a)
        for s in asset_schedules(p):
            for a in s.assets:
                consumers.setdefault(a, []).append(pname if s.mode == "all" else f"{pname} (any)")
                names.add(a)
        names.update(p.assets)
    late = {e["asset"]: e for e in late_assets(store, pipelines, now)}
    out = []
    for name in sorted(names):
        rows = store.latest_asset_events([name], complete_only=False)
        complete = {r.ds for r in store.latest_asset_events([name])}
        updates = [{"ds": r.ds, "last_update": epoch_iso(r.ts), "events": r.n, "complete": r.ds in complete}
                   for r in rows][-days:][::-1]
        out.append({"asset": name, "producers": producers.get(name, []), "consumers": consumers.get(name, []),
                    "updates": updates, "late": late.get(name)})
    return out
