"""``explain``: one engine step replayed over the state file, writing nothing.

:func:`plan` runs the step's promote, advance, pre-launch and dispatch phases
with the rulebook's decisions (the very functions and rules the engine uses:
``MaxActiveRuns.promotion``, ``RunView``, ``Launchable``, ``PreviousTry``,
``Slots``, ``dispatch_key``) and records, for every task instance, the first rule
it does not meet. :func:`why_no_run` says why a run does not exist (yet).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from pipectl.engine.advance import RunView, edges
from pipectl.engine.rules import (READY, Launchable, MaxActiveRuns, Paused, PreviousTry, RetryTime, Slots,
                                  TriggerRule, at_words, dispatch_key, outcome_words, trigger_outcome)
from pipectl.model.pipeline import Pipeline, ProjectConfig
from pipectl.model.states import PENDING, QUEUED, RUNNING, SKIPPED, TI_FINISHED, UPSTREAM_FAILED, UP_FOR_RETRY


@dataclass
class Verdict:
    task: str
    state: str
    ready: bool
    rule: str
    why: str

    def as_dict(self) -> dict:
        return {"task": self.task, "state": self.state, "ready": self.ready, "rule": self.rule, "why": self.why}


@dataclass
class Plan:
    """What one engine step would do right now, and why each task instance waits."""

    verdicts: dict[int, Verdict] = field(default_factory=dict)  # task instance id -> verdict
    run_notes: dict[int, str] = field(default_factory=dict)  # run id -> why the run itself waits
    promoted: list[int] = field(default_factory=list)
    starts: list[tuple] = field(default_factory=list)  # (run, pipeline, ti) in claim order
    pokes: list[tuple] = field(default_factory=list)  # sensors checked by the step
    expands: list[tuple] = field(default_factory=list)  # foreach commands run by the step
    finishing: list[int] = field(default_factory=list)  # runs the step finishes


def plan(store, config: ProjectConfig, now: float, spec_of=None) -> Plan:
    """Replay ``Engine.step`` (promote, advance, pre-launch, dispatch, and the second round a
    finished run brings) over the state file without writing anything.

    Not foreseeable here: tries that ended since the last step (their reaping comes first in
    the step) and the outcome of a sensor's check or a foreach command."""
    from pipectl.state.store import loads
    specs: dict[int, Pipeline] = {}

    def spec(run) -> Pipeline:
        p = specs.get(run.id)
        if p is None:
            p = specs[run.id] = spec_of(run) if spec_of else Pipeline.from_dict(loads(store.run_spec(run.id)))
        return p

    out = Plan()
    active = list(store.active_runs())
    state = {r.id: r.state for r in active}
    views: dict[int, tuple] = {}  # run id -> (view, rows by id)

    def promote() -> None:
        def admit(r, limit: int) -> bool:
            state[r.id] = RUNNING
            out.promoted.append(r.id)
            out.run_notes.pop(r.id, None)
            return True

        def hold(r, p: Pipeline, place: int, holders: list) -> None:
            out.run_notes[r.id] = MaxActiveRuns.reason(r, p, place, holders)

        MaxActiveRuns.promotion(active, lambda r: state[r.id], spec, admit, hold=hold)

    def advance() -> list[tuple]:
        candidates = []
        for r in active:
            if state[r.id] != RUNNING or r.id in out.finishing:
                continue
            p = spec(r)
            if r.id not in views:
                needs, down = edges(p)
                view = RunView(store.ti_states(r.id), needs, down)
                view.evaluate(p, needs, down)
                full = {ti.id: ti for ti in store.task_instances(r.id)}
                views[r.id] = (view, full)
                if view.unfinished == 0:
                    out.finishing.append(r.id)
                    continue
            view, full = views[r.id]
            candidates += [(r, p, full[i]) for i in view.launchable(now) if i not in claimed and i in full]
        return candidates

    claimed: set[int] = set()
    slots = Slots(config, store.running_counts(), store.running_by_pool(), _pool_holders(store))
    blocked: dict[int, tuple[str, str]] = {}  # task instance id -> (rule, why) dispatch held it back

    def dispatch(candidates: list[tuple]) -> None:
        keep = []
        for c in candidates:
            kind = Launchable.check(c[1].tasks[c[2].base], c[2])
            if kind == "sensor":
                if c not in out.pokes:
                    out.pokes.append(c)
            elif kind == "foreach":
                if c not in out.expands:
                    out.expands.append(c)
            else:
                ok, why = PreviousTry.verdict(store, c[2])
                if ok:
                    keep.append(c)
                else:
                    blocked[c[2].id] = (PreviousTry.name, why)
        for c in sorted(keep, key=dispatch_key):
            task = c[1].tasks[c[2].base]
            ok, why = slots.verdict(task)
            if not ok:
                blocked[c[2].id] = (Slots.name, why)
                continue
            slots.take(task, f"{c[2].task} ({_run_label(c[0])})")
            claimed.add(c[2].id)
            blocked.pop(c[2].id, None)
            out.starts.append(c)

    promote()
    dispatch(advance())
    if out.finishing:
        for pk in out.finishing:
            state[pk] = "finished"
        promote()
        dispatch(advance())

    for r in active:
        _explain_run(out, r, spec(r), views.get(r.id), claimed, blocked, state[r.id], store, now)
    return out


def _pool_holders(store) -> dict[str, list[str]]:
    holders: dict[str, list[str]] = {}
    runs: dict[int, object] = {}
    for t in store.active_tries():
        if t.pool is None:
            continue
        run = runs.get(t.run) or runs.setdefault(t.run, store.run(t.run))
        holders.setdefault(t.pool, []).append(f"{t.task} ({_run_label(run)})")
    return holders


def _run_label(run) -> str:
    return f"{run.pipeline} {run.ds}" if run is not None else "?"


def _explain_run(out: Plan, run, pipeline: Pipeline, vf, claimed: set, blocked: dict, run_state: str, store,
                 now: float) -> None:
    tis = vf[1] if vf else {ti.id: ti for ti in store.task_instances(run.id)}
    sim = vf[0].rows if vf else {}
    for pk, ti in tis.items():
        out.verdicts[pk] = explain_ti(run, pipeline, ti, tis, sim, claimed=pk in claimed, blocked=blocked.get(pk),
                                      run_note=out.run_notes.get(run.id), run_state=run_state, now=now,
                                      promoted=run.id in out.promoted)


def _as_seen(row, sim: dict):
    """A task instance row with the state the step's trigger-rule pass gives it."""
    s = sim.get(row.id)
    if s is None or s[3] == row.state:
        return row
    return row._replace(state=s[3])


def explain_ti(run, pipeline: Pipeline, ti, tis: dict, sim: dict, *, claimed: bool = False,
               blocked: tuple[str, str] | None = None,
               run_note: str | None = None, run_state: str | None = None, now: float,
               promoted: bool = False) -> Verdict:
    """The first rule a task instance does not meet, in the order the engine applies them.

    ``tis``: the run's task instances by id; ``sim``: id -> (id, task, base, state, next_try_at)
    after the step's trigger-rule pass; ``claimed``/``blocked`` (rule, why): what dispatch did with it."""
    name, state = ti.task, ti.state
    run_state = run_state or run.state
    task = pipeline.tasks.get(ti.base)
    tz = pipeline.timezone

    def v(ready: bool, rule: str, why: str) -> Verdict:
        return Verdict(name, state, ready, rule, why)

    if task is None:
        return v(False, "spec", "task no longer in this run's spec")
    if claimed:
        first = " (its run is promoted first)" if promoted else ""
        if state == UP_FOR_RETRY:
            what = f"retry {ti.try_number - ti.budget_base} (try {ti.try_number + 1})"
        else:
            what = f"try {ti.try_number + 1}"
        return v(True, READY, f"ready: {what} starts on the next step{first}")
    upstream = [_as_seen(u, sim) for u in tis.values() if u.base in task.needs]
    if state == RUNNING:
        since = at_words(ti.start, now, tz) if ti.start else "?"
        return v(False, "running", f"running try {ti.try_number} since {since}")
    if state in (UPSTREAM_FAILED, SKIPPED) and ti.reason == "trigger_rule":
        outcome = trigger_outcome(task.trigger_rule, [u.state for u in upstream])
        why = TriggerRule.reason(task, upstream, outcome) if outcome == state else None
        return v(False, "done", why or f"{state} by its trigger rule ({task.trigger_rule})")
    if state in TI_FINISHED:
        return v(False, "done", outcome_words(ti))
    if run_state == QUEUED:
        return v(False, MaxActiveRuns.name, run_note or "run queued")
    if run_state not in (RUNNING, "finished"):  # finished: the step settles what is left, see below
        return v(False, "run", f"its run is {run_state}: nothing more starts in it")
    # the rules in the order the engine's phases apply them: advance, pre-launch, dispatch
    if state == PENDING:
        seen = sim.get(ti.id)
        ok, why = TriggerRule.verdict(task, upstream, settles=seen is not None and seen[3] != state)
        if not ok:
            return v(False, TriggerRule.name, why)
    if state == UP_FOR_RETRY:
        ok, why = RetryTime.verdict(task, ti, now, tz)
        if not ok:
            return v(False, RetryTime.name, why)
    ok, why = Launchable.verdict(run, task, ti, now)
    if not ok:
        return v(False, Launchable.check(task, ti), why)
    if blocked:
        return v(False, *blocked)
    return v(False, "unknown", "not offered to dispatch in this step")


def explain_run(store, config: ProjectConfig, run, pipeline: Pipeline, now: float, step: Plan | None = None) -> list[Verdict]:
    """Every task instance of ``run``, in DAG order, with the rule that holds it back."""
    from pipectl.model.dag import topo_order
    tis = store.task_instances(run.id)
    if run.state in (RUNNING, QUEUED):
        step = step or plan(store, config, now)
        verdicts = {ti.id: step.verdicts[ti.id] for ti in tis if ti.id in step.verdicts}
    else:
        by_id = {ti.id: ti for ti in tis}
        verdicts = {ti.id: explain_ti(run, pipeline, ti, by_id, {}, now=now) for ti in tis}
    order = {n: i for i, n in enumerate(topo_order(list(pipeline.tasks), {n: list(t.needs) for n, t in pipeline.tasks.items()}))}
    tis = sorted(tis, key=lambda ti: (order.get(ti.base, len(order)), ti.map_index or 0, ti.id))
    return [verdicts[ti.id] for ti in tis if ti.id in verdicts]


# -- runs that do not exist (yet) ---------------------------------------------
def why_no_run(store, pipeline: Pipeline, when, now: datetime) -> list[str]:
    """Why ``pipeline`` has no run for ``when`` (a ds ``date`` or a logical-date ``datetime``), in the
    order the scheduler would decide it: schedule, start_date, end_date, interval not closed yet,
    paused, skipped by ``catchup: false``, due at the next tick; assets a consumer waits for."""
    from pipectl.model.pipeline import AssetSchedule, FileSchedule
    row = store.pipeline_row(pipeline.name) if store is not None else None
    paused = Paused.holds(row)
    out: list[str] = []
    if pipeline.time_schedules:
        out.append(_time_reason(store, pipeline, row, when, now, paused))
    for s in pipeline.schedules:
        if isinstance(s, AssetSchedule):
            out.append(_asset_reason(store, pipeline, s, when, paused))
        elif isinstance(s, FileSchedule):
            out.append(f"schedule {{file: {s.file}}}: one run per new matching file; none has made a run for "
                       f"{_when_text(when)}" + (" (paused: files wait for unpause)" if paused else ""))
    if not pipeline.schedules:
        out.append(f"{pipeline.name} has no schedule: runs come only from `pipectl trigger` or `pipectl backfill`")
    return out


def _when_text(when) -> str:
    return when.isoformat() if isinstance(when, datetime) else f"ds {when.isoformat()}"


def _time_reason(store, pipeline: Pipeline, row, when, now: datetime, paused: bool) -> str:
    from datetime import time as dtime, timedelta
    from zoneinfo import ZoneInfo

    from pipectl.timing.describe import describe
    from pipectl.timing.clock import iso
    from pipectl.timing.timetable import due_intervals, timetable
    from pipectl.engine.dates import instant
    tz = pipeline.timezone
    start = instant(pipeline.start_date, tz)
    end = instant(pipeline.end_date, tz, end_of_day=True)
    anchor = start or (row.anchor if row and row.anchor else now)
    tt = timetable(pipeline.time_schedules, tz, anchor)
    words = "; ".join(describe(s, tz) for s in pipeline.time_schedules)
    if isinstance(when, datetime):
        lo = when
        if not tt.fires_at(lo):
            return f"{lo.isoformat()} is not a schedule time of {pipeline.name} ({words}): no scheduled run has it"
    else:
        day = datetime.combine(when, dtime(0, 0), ZoneInfo(tz))
        lo = day if tt.fires_at(day) else tt.next_after(day)
        if lo is None or lo >= datetime.combine(when + timedelta(days=1), dtime(0, 0), ZoneInfo(tz)):
            return f"no schedule time of {pipeline.name} falls on ds {when.isoformat()} ({words})"
    hi = tt.next_after(lo)
    label = f"the run for {lo.isoformat()}"
    if start is not None and lo < start:
        return (f"{label} is before start_date {pipeline.start_date}: the scheduler never creates it "
                f"(`pipectl backfill {pipeline.name}` can)")
    if end is not None and lo > end:
        return f"{label} is beyond end_date {pipeline.end_date}: the scheduler never creates it"
    nowts = now.timestamp()
    if hi is None:
        return f"{label}: its interval never closes ({words})"
    if hi > now:
        return (f"{label} does not exist yet: its interval closes at {at_words(hi.timestamp(), nowts, tz)}; "
                "the first tick after that creates it" + (f" (but {pipeline.name} is paused)" if paused else ""))
    cursor = row.cursor if row else None
    backfill = f"`pipectl backfill {pipeline.name} --start {lo.date()} --end {lo.date()}` runs it"
    if cursor is not None and hi <= cursor:  # the scheduler has moved past it
        if not pipeline.catchup:
            return (f"{label} was skipped by `catchup: false`: after a gap only the latest missed interval runs; "
                    + backfill)
        skipped = store.catchup_skips(pipeline.name, covering=iso(lo), limit=1) if store is not None else []
        if skipped:
            k = skipped[0]
            many = "the only missed run" if k.count == 1 and not k.capped else \
                f"one of {k.count}{'+' if k.capped else ''} missed runs"
            return (f"{label} was skipped by the bounded catch-up ({k.bound}) at {at_words(k.ts, nowts, tz)}, "
                    f"{many} it left out; " + backfill)
        return f"{label}: the scheduler is past it and it has no run (pruned, or deleted); " + backfill
    due = due_intervals(tt, cursor, start, end, now, pipeline.catchup)
    rule = "`catchup: false` runs only the latest missed interval"
    if pipeline.catchup_bounded:
        from pipectl.engine.catchup import catchup_bound
        from pipectl.timing.timetable import bounded_catchup
        lower = max((x for x in (cursor, start) if x is not None), default=None)
        skip = bounded_catchup(tt, lower, now, pipeline.catchup_window, pipeline.max_catchup_runs)
        if skip is not None and lo < skip.resume:
            due = [d for d in due if d[0] >= skip.resume]
        rule = f"the catch-up is bounded by {catchup_bound(pipeline)}"
    if paused:
        if (lo, hi) in due:
            then = "unpausing creates it"
        else:
            then = f"unpausing skips it ({rule})"
        return (f"{label}: {pipeline.name} is paused, so no scheduled run is created; {then} "
                f"(`pipectl unpause {pipeline.name} --dry-run` previews)")
    if (lo, hi) in due:
        return f"{label} is due: its interval closed at {at_words(hi.timestamp(), nowts, tz)}; the next tick creates it"
    if pipeline.catchup_bounded:
        return f"{label} will be skipped: {rule}; " + backfill
    return (f"{label} will be skipped by `catchup: false`: the next tick creates only the latest missed interval; "
            + backfill)


def _asset_reason(store, pipeline: Pipeline, sched, when, paused: bool) -> str:
    ds = (when.date() if isinstance(when, datetime) else when).isoformat()
    have = {r.asset for r in (store.latest_asset_events(list(sched.assets)) if store is not None else ()) if r.ds == ds}
    missing = [a for a in sched.assets if a not in have]
    if paused:
        return f"{pipeline.name} is paused: asset updates wait for unpause"
    if not missing:
        return f"assets {', '.join(sched.assets)} are all updated for ds {ds}: the next tick creates the run"
    if sched.mode == "any" and have:
        return f"asset {', '.join(sorted(have))} is updated for ds {ds}: the next tick creates the run"
    word = "every one of" if sched.mode == "all" else "any of"
    return (f"waiting on asset {', '.join(missing)} for ds {ds} (needs {word} {', '.join(sched.assets)})")
