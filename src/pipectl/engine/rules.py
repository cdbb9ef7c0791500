"""The rulebook: every condition that stands between a task instance and its start.

One rule per condition, in the spirit of Airflow's ``ti_deps``. Each rule has a
fast decision the engine uses (``promote``, ``advance``, ``dispatch``) and a
``reason`` that says, in words, what holds a task instance back (None: the rule
is met). ``explain`` (see :func:`plan`) replays one engine step over the world
as it stands with these same decisions, in the same order and with the same
limits, so it can never tell a different story from what dispatch does.

Kept import-light: the tick imports this through the scheduler.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone

from pipectl.model.states import FAILED, PENDING, RUNNING, SKIPPED, SUCCESS, TI_FINISHED, UP_FOR_RETRY, UPSTREAM_FAILED

from pipectl.model.pipeline import ForeachCommand, Pipeline, ProjectConfig, Task
UTC = timezone.utc
READY = "ready"


# -- words -------------------------------------------------------------------
def span(seconds: float) -> str:
    """42s, 3m05s, 2h10m, 3d4h: whole seconds, for countdowns."""
    s = max(0, int(round(seconds)))
    for unit, size, sub, subunit in (("d", 86400, 3600, "h"), ("h", 3600, 60, "m"), ("m", 60, 1, "s")):
        if s >= size:
            big, rest = divmod(s, size)
            small = rest // sub
            return f"{big}{unit}{small:02d}{subunit}" if small else f"{big}{unit}"
    return f"{s}s"


def at_words(epoch: float, now: float, tz: str | None = None) -> str:
    """'14:05:10, in 42s' in the pipeline's timezone; the date too when it is not that day."""
    from pipectl.timing.clock import to_local
    t = to_local(datetime.fromtimestamp(epoch, UTC), tz)
    today = to_local(datetime.fromtimestamp(now, UTC), tz).date()
    clock = t.strftime("%H:%M:%S") if t.date() == today else t.strftime("%Y-%m-%d %H:%M:%S")
    zone = t.tzname() or ""
    rel = "now" if abs(epoch - now) < 0.5 else f"in {span(epoch - now)}" if epoch > now else f"{span(now - epoch)} ago"
    return f"{clock} {zone}, {rel}".replace(" ,", ",")


def _outcome_words(ti) -> str:
    """'failed: exit 3 on try 3', 'failed: timeout (exit 124) on try 1', 'success on try 2'."""
    state, reason, code, n = ti["state"], ti["reason"], ti["exit_code"], ti["try_number"]
    if reason in (None, "exit_code"):
        what = f"exit {code}" if code is not None and state != SUCCESS else ""
    else:
        what = reason + (f" (exit {code})" if code is not None else "")
    on = f"on try {n}" if n else ""
    return state + (f": {what}" if what else "") + (f" {on}" if on else "")


def _state_words(ti) -> str:
    """'load_dims failed (exit 3)', 'clean upstream_failed', 'extract running'."""
    state = ti["state"]
    words = f"{ti['task']} {state}"
    if state == FAILED:
        if ti["exit_code"] is not None:
            words += f" (exit {ti['exit_code']})"
        elif ti["reason"]:
            words += f" ({ti['reason']})"
    return words


# -- run rules ---------------------------------------------------------------
class MaxActiveRuns:
    """A queued run is promoted while its pipeline (or its backfill batch) has fewer
    than ``max_active_runs`` runs running."""

    name = "max_active_runs"

    @staticmethod
    def limit(run, pipeline: Pipeline) -> int:
        return run["max_active"] or pipeline.max_active_runs

    @staticmethod
    def admits(running: int, limit: int) -> bool:
        return running < limit

    @staticmethod
    def reason(run, pipeline: Pipeline, place: int, holders: list) -> str:
        who = "its backfill batch" if run["batch"] else pipeline.name
        held = ", ".join(r["ds"] if r["ds"] else r["run_id"] for r in holders[:5])
        more = f" (+{len(holders) - 5})" if len(holders) > 5 else ""
        return (f"run queued: {_ordinal(place)} in line; max_active_runs {MaxActiveRuns.limit(run, pipeline)} "
                f"of {who} in use" + (f" by {held}{more}" if held else ""))


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


class Paused:
    """``pause`` holds new scheduled (and asset/file) runs; work of existing runs goes on."""

    name = "paused"

    @staticmethod
    def note(pipeline: str) -> str:
        return (f"{pipeline} is paused: no new scheduled runs (`pipectl unpause {pipeline}`); "
                "runs already created keep going")


# -- task instance rules -----------------------------------------------------
def trigger_outcome(rule: str, upstream: list[str]) -> str | None:
    """What a pending task instance should do given its upstreams' states:
    'ready', a final state (upstream_failed / skipped), or None to keep waiting."""
    if not upstream:
        return READY
    done = all(s in TI_FINISHED for s in upstream)
    failed = sum(s in (FAILED, UPSTREAM_FAILED) for s in upstream)
    success = sum(s == SUCCESS for s in upstream)
    skipped = sum(s == SKIPPED for s in upstream)
    if rule == "all_success":
        if failed:
            return UPSTREAM_FAILED
        if skipped:
            return SKIPPED
        return READY if done else None
    if rule == "all_done":
        return READY if done else None
    if rule == "all_failed":
        if success or skipped:
            return SKIPPED
        return READY if done else None
    if rule == "one_failed":
        if failed:
            return READY
        return SKIPPED if done else None
    if rule == "one_success":
        if success:
            return READY
        return UPSTREAM_FAILED if done else None
    if rule == "none_failed":
        if failed:
            return UPSTREAM_FAILED
        return READY if done else None
    raise ValueError(f"unknown trigger rule {rule!r}")


class TriggerRule:
    """The task's trigger rule over its upstream task instances."""

    name = "trigger_rule"
    outcome = staticmethod(trigger_outcome)

    @staticmethod
    def reason(task: Task, upstream: list, outcome: str | None, settles: bool = False) -> str | None:
        """``upstream``: the upstream task instance rows; ``outcome``: trigger_outcome over their states;
        ``settles``: the task instance is still pending and the next step writes ``outcome``."""
        rule = task.trigger_rule
        if outcome == READY:
            return None
        if outcome is None:
            by_task: dict[str, set] = {}
            for u in upstream:
                if u["state"] not in TI_FINISHED:
                    by_task.setdefault(u["base"], set()).add(u["state"])
            return f"waiting on upstream ({rule}): " + ", ".join(
                f"{name} ({', '.join(sorted(states))})" for name, states in by_task.items())
        bad = {UPSTREAM_FAILED: (FAILED, UPSTREAM_FAILED), SKIPPED: (SKIPPED, SUCCESS)}[outcome]
        culprits = [u for u in upstream if u["state"] in bad]
        if rule == "one_success":
            culprits, lead = upstream, f"no upstream succeeded ({rule}): "
        elif rule == "one_failed":
            culprits, lead = upstream, f"no upstream failed ({rule}): "
        elif rule == "all_failed" and outcome == SKIPPED:
            lead = f"not every upstream failed ({rule}): "
        else:
            lead = ""
        when = " on the next step" if settles else ""
        return f"{outcome}{when} because {lead}" + ", ".join(_state_words(u) for u in culprits)


class RetryTime:
    """An up_for_retry task instance waits for its ``next_try_at``."""

    name = "retry_time"

    @staticmethod
    def due(next_try_at: float | None, now: float) -> bool:
        return (next_try_at or 0) <= now

    @staticmethod
    def reason(task: Task, ti, now: float, tz: str | None) -> str | None:
        if RetryTime.due(ti["next_try_at"], now):
            return None
        retry = ti["try_number"] - ti["budget_base"]  # tries made in this budget = the retry about to come
        code = ti["exit_code"]
        if ti["reason"] in (None, "exit_code"):
            after = f"exit {code}" if code is not None else "a failure"
        else:
            after = ti["reason"] + (f" (exit {code})" if code is not None else "")
        return (f"retry {retry} of {task.retry.retries} (try {ti['try_number'] + 1}) at "
                f"{at_words(ti['next_try_at'], now, tz)}; after {after}")


class Launchable:
    """Only a task with a command is launched: a sensor is poked and a ``foreach`` command
    is expanded into mapped task instances first (both happen in the step, before dispatch)."""

    name = "launchable"

    @staticmethod
    def check(task: Task, ti) -> str | None:
        """None: launched by dispatch; 'sensor' or 'foreach': handled before dispatch."""
        if task.sensor is not None and task.run is None:
            return "sensor"
        if isinstance(task.foreach, ForeachCommand) and ti["map_index"] is None:
            return "foreach"
        return None


class PreviousTry:
    """A retry never starts beside its predecessor: not while that try is still live in the
    state file (nor, in the engine, while a process of its session survives being killed)."""

    name = "previous_try"

    @staticmethod
    def live(store, ti) -> bool:
        n = ti["try_number"]
        return bool(n) and any(t["try_number"] == n and t["state"] in ("starting", "running")
                               for t in store.tries_for(ti["id"]))

    @staticmethod
    def reason(ti) -> str:
        return f"try {ti['try_number']} has not been recorded as ended yet; the next try waits for it"


class Slots:
    """``max_parallel`` over every pipeline and the named pools, at one instant.

    Dispatch takes candidates in priority order; each one it claims takes a slot,
    so a candidate further down the order finds fewer free."""

    name = "slots"

    def __init__(self, config: ProjectConfig, running: int, by_pool: dict[str, int], holders: dict | None = None):
        self.config = config
        self.running = running
        self.free = config.max_parallel - running
        self.by_pool = dict(by_pool)
        self.holders = holders  # pool -> [labels], only when explaining
        self.taken: dict[str | None, list[str]] = {}

    def pool_limit(self, pool: str) -> int:
        return self.config.pools.get(pool, self.config.max_parallel)

    def blocked(self, task: Task) -> bool:
        if self.free <= 0:
            return True
        return task.pool is not None and self.by_pool.get(task.pool, 0) >= self.pool_limit(task.pool)

    def take(self, task: Task, label: str | None = None) -> None:
        self.free -= 1
        if task.pool is not None:
            self.by_pool[task.pool] = self.by_pool.get(task.pool, 0) + 1
        if label is not None:  # only explain names who took a slot
            self.taken.setdefault(None, []).append(label)
            if task.pool is not None:
                self.taken.setdefault(task.pool, []).append(label)

    def reason(self, task: Task) -> str | None:
        if self.free <= 0:
            mp = self.config.max_parallel
            first = self.taken.get(None, [])
            also = f"; {len(first)} more start in this step: {_list(first)} (ahead in priority order)" if first else ""
            return f"max_parallel {mp} reached: {self.running} tries running{also}"
        if task.pool is not None:
            used, limit = self.by_pool.get(task.pool, 0), self.pool_limit(task.pool)
            if used >= limit:
                held = list((self.holders or {}).get(task.pool, []))
                mine = self.taken.get(task.pool, [])
                also = f"; {_list(mine)} take{'s' if len(mine) == 1 else ''} a slot in this step (ahead in priority order)" if mine else ""
                return f"pool {task.pool} full: {used}/{limit}" + (f" held by {_list(held)}" if held else "") + also
        return None


def _list(items: list[str], most: int = 4) -> str:
    return ", ".join(items[:most]) + (f" (+{len(items) - most})" if len(items) > most else "")


def dispatch_key(candidate: tuple):
    """The order dispatch offers slots in: scheduled before backfill, task priority,
    backfill order, oldest logical date, then task instance id."""
    run, pipeline, ti = candidate
    return (-run["priority"], -pipeline.tasks[ti["base"]].priority, run["seq"] or 0, run["logical_date"], ti["id"])


# -- explaining the world: one engine step replayed -----------------------------
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
    from pipectl.engine.step import _RunView
    from pipectl.state.store import loads
    specs: dict[int, Pipeline] = {}

    def spec(run) -> Pipeline:
        p = specs.get(run["id"])
        if p is None:
            p = specs[run["id"]] = spec_of(run) if spec_of else Pipeline.from_dict(loads(store.run_spec(run["id"])))
        return p

    out = Plan()
    active = list(store.active_runs())
    state = {r["id"]: r["state"] for r in active}
    views: dict[int, tuple] = {}  # run id -> (view, rows by id)

    def promote() -> None:
        running: dict[tuple, list] = {}
        for r in active:
            if state[r["id"]] == RUNNING:
                running.setdefault((r["pipeline"], r["batch"]), []).append(r)
        place: dict[tuple, int] = {}
        full: dict[tuple, Pipeline] = {}  # as in the engine: a catch-up queues thousands of runs
        for r in active:
            if state[r["id"]] != "queued":
                continue
            key = (r["pipeline"], r["batch"])
            p = full.get((key, r["max_active"]))
            if p is not None:
                place[key] = place.get(key, 0) + 1
                out.run_notes[r["id"]] = MaxActiveRuns.reason(r, p, place[key], running.get(key, []))
                continue
            p = spec(r)
            if MaxActiveRuns.admits(len(running.get(key, ())), MaxActiveRuns.limit(r, p)):
                state[r["id"]] = RUNNING
                out.promoted.append(r["id"])
                out.run_notes.pop(r["id"], None)
                running.setdefault(key, []).append(r)
            else:
                full[(key, r["max_active"])] = p
                place[key] = place.get(key, 0) + 1
                out.run_notes[r["id"]] = MaxActiveRuns.reason(r, p, place[key], running.get(key, []))

    def advance() -> list[tuple]:
        candidates = []
        for r in active:
            if state[r["id"]] != RUNNING or r["id"] in out.finishing:
                continue
            p = spec(r)
            if r["id"] not in views:
                needs = {name: t.needs for name, t in p.tasks.items()}
                down: dict[str, list[str]] = {name: [] for name in needs}
                for name, ups in needs.items():
                    for u in ups:
                        down.setdefault(u, []).append(name)
                view = _RunView(store.ti_states(r["id"]), needs, down)
                view.evaluate(p, needs, down)
                full = {ti["id"]: ti for ti in store.task_instances(r["id"])}
                views[r["id"]] = (view, full)
                if view.unfinished == 0:
                    out.finishing.append(r["id"])
                    continue
            view, full = views[r["id"]]
            pks = [i for i in view.ready if view.rows[i][3] == PENDING]
            pks += [i for i in view.retry if view.rows[i][3] == UP_FOR_RETRY and RetryTime.due(view.rows[i][4], now)]
            candidates += [(r, p, full[i]) for i in pks if i not in claimed and i in full]
        return candidates

    claimed: set[int] = set()
    slots = Slots(config, store.running_counts(), store.running_by_pool(), _pool_holders(store))
    blocked: dict[int, str] = {}

    def dispatch(candidates: list[tuple]) -> None:
        keep = []
        for c in candidates:
            kind = Launchable.check(c[1].tasks[c[2]["base"]], c[2])
            if kind == "sensor":
                if c not in out.pokes:
                    out.pokes.append(c)
            elif kind == "foreach":
                if c not in out.expands:
                    out.expands.append(c)
            elif PreviousTry.live(store, c[2]):
                blocked[c[2]["id"]] = PreviousTry.reason(c[2])
            else:
                keep.append(c)
        for c in sorted(keep, key=dispatch_key):
            task = c[1].tasks[c[2]["base"]]
            if slots.blocked(task):
                blocked[c[2]["id"]] = slots.reason(task)
                continue
            slots.take(task, f"{c[2]['task']} ({_run_label(c[0])})")
            claimed.add(c[2]["id"])
            blocked.pop(c[2]["id"], None)
            out.starts.append(c)

    promote()
    dispatch(advance())
    if out.finishing:
        for pk in out.finishing:
            state[pk] = "finished"
        promote()
        dispatch(advance())

    for r in active:
        _explain_run(out, r, spec(r), views.get(r["id"]), claimed, blocked, state[r["id"]], store, now)
    return out


def _pool_holders(store) -> dict[str, list[str]]:
    holders: dict[str, list[str]] = {}
    runs: dict[int, object] = {}
    for t in store.active_tries():
        if t["pool"] is None:
            continue
        run = runs.get(t["run"]) or runs.setdefault(t["run"], store.run(t["run"]))
        holders.setdefault(t["pool"], []).append(f"{t['task']} ({_run_label(run)})")
    return holders


def _run_label(run) -> str:
    return f"{run['pipeline']} {run['ds']}" if run is not None else "?"


def _explain_run(out: Plan, run, pipeline: Pipeline, vf, claimed: set, blocked: dict, run_state: str, store,
                 now: float) -> None:
    tis = vf[1] if vf else {ti["id"]: ti for ti in store.task_instances(run["id"])}
    sim = vf[0].rows if vf else {}
    for pk, ti in tis.items():
        out.verdicts[pk] = explain_ti(run, pipeline, ti, tis, sim, claimed=pk in claimed, blocked=blocked.get(pk),
                                      run_note=out.run_notes.get(run["id"]), run_state=run_state, now=now,
                                      promoted=run["id"] in out.promoted)


def _as_seen(row, sim: dict):
    """A task instance row with the state the step's trigger-rule pass gives it."""
    s = sim.get(row["id"])
    if s is None or s[3] == row["state"]:
        return row
    d = dict(zip(row.keys(), tuple(row)))
    d["state"] = s[3]
    return d


def explain_ti(run, pipeline: Pipeline, ti, tis: dict, sim: dict, *, claimed: bool = False, blocked: str | None = None,
               run_note: str | None = None, run_state: str | None = None, now: float,
               promoted: bool = False) -> Verdict:
    """The first rule a task instance does not meet, in the order the engine applies them.

    ``tis``: the run's task instances by id; ``sim``: id -> (id, task, base, state, next_try_at)
    after the step's trigger-rule pass; ``claimed``/``blocked``: what dispatch did with it."""
    name, state = ti["task"], ti["state"]
    run_state = run_state or run["state"]
    task = pipeline.tasks.get(ti["base"])
    tz = pipeline.timezone

    def v(ready: bool, rule: str, why: str) -> Verdict:
        return Verdict(name, state, ready, rule, why)

    if task is None:
        return v(False, "spec", "task no longer in this run's spec")
    if claimed:
        first = " (its run is promoted first)" if promoted else ""
        if state == UP_FOR_RETRY:
            what = f"retry {ti['try_number'] - ti['budget_base']} (try {ti['try_number'] + 1})"
        else:
            what = f"try {ti['try_number'] + 1}"
        return v(True, READY, f"ready: {what} starts on the next step{first}")
    upstream = [_as_seen(u, sim) for u in tis.values() if u["base"] in task.needs]
    if state == RUNNING:
        since = at_words(ti["start"], now, tz) if ti["start"] else "?"
        return v(False, "running", f"running try {ti['try_number']} since {since}")
    if state in (UPSTREAM_FAILED, SKIPPED) and ti["reason"] == "trigger_rule":
        outcome = trigger_outcome(task.trigger_rule, [u["state"] for u in upstream])
        why = TriggerRule.reason(task, upstream, outcome) if outcome == state else None
        return v(False, "done", why or f"{state} by its trigger rule ({task.trigger_rule})")
    if state in TI_FINISHED:
        return v(False, "done", _outcome_words(ti))
    if run_state == "queued":
        return v(False, MaxActiveRuns.name, run_note or "run queued")
    if run_state not in (RUNNING, "finished"):  # finished: the step settles what is left, see below
        return v(False, "run", f"its run is {run_state}: nothing more starts in it")
    if state == PENDING:
        outcome = trigger_outcome(task.trigger_rule, [u["state"] for u in upstream])
        seen = sim.get(ti["id"])
        settles = seen is not None and seen[3] != state
        why = TriggerRule.reason(task, upstream, outcome, settles=settles)
        if why is not None:
            return v(False, TriggerRule.name, why)
    if state == UP_FOR_RETRY:
        why = RetryTime.reason(task, ti, now, tz)
        if why is not None:
            return v(False, RetryTime.name, why)
    kind = Launchable.check(task, ti)
    if kind == "sensor":
        from pipectl.engine.step import template_values
        from pipectl.engine.sensors import describe_wait
        return v(False, "sensor", describe_wait(task, ti, template_values(run, ti, ti["try_number"]), now))
    if kind == "foreach":
        return v(False, "foreach", "its foreach command lists the items on the next step; they start then")
    if blocked:
        return v(False, PreviousTry.name if blocked == PreviousTry.reason(ti) else Slots.name, blocked)
    return v(False, "unknown", "not offered to dispatch in this step")


def explain_run(store, config: ProjectConfig, run, pipeline: Pipeline, now: float, step: Plan | None = None) -> list[Verdict]:
    """Every task instance of ``run``, in DAG order, with the rule that holds it back."""
    from pipectl.model.dag import topo_order
    tis = store.task_instances(run["id"])
    if run["state"] in (RUNNING, "queued"):
        step = step or plan(store, config, now)
        verdicts = {ti["id"]: step.verdicts[ti["id"]] for ti in tis if ti["id"] in step.verdicts}
    else:
        by_id = {ti["id"]: ti for ti in tis}
        verdicts = {ti["id"]: explain_ti(run, pipeline, ti, by_id, {}, now=now) for ti in tis}
    order = {n: i for i, n in enumerate(topo_order(list(pipeline.tasks), {n: list(t.needs) for n, t in pipeline.tasks.items()}))}
    tis = sorted(tis, key=lambda ti: (order.get(ti["base"], len(order)), ti["map_index"] or 0, ti["id"]))
    return [verdicts[ti["id"]] for ti in tis if ti["id"] in verdicts]


# -- runs that do not exist (yet) ---------------------------------------------
def why_no_run(store, pipeline: Pipeline, when, now: datetime) -> list[str]:
    """Why ``pipeline`` has no run for ``when`` (a ds ``date`` or a logical-date ``datetime``), in the
    order the scheduler would decide it: schedule, start_date, end_date, interval not closed yet,
    paused, skipped by ``catchup: false``, due at the next tick; assets a consumer waits for."""
    from pipectl.model.pipeline import AssetSchedule, FileSchedule
    row = store.pipeline_row(pipeline.name) if store is not None else None
    paused = bool(row and row["paused"])
    out: list[str] = []
    if pipeline.time_schedules:
        out.append(_time_reason(pipeline, row, when, now, paused))
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


def _time_reason(pipeline: Pipeline, row, when, now: datetime, paused: bool) -> str:
    from datetime import time as dtime, timedelta
    from zoneinfo import ZoneInfo

    from pipectl.timing.describe import describe
    from pipectl.timing.timetable import due_intervals, timetable
    from pipectl.engine.tick import instant
    tz = pipeline.timezone
    start = instant(pipeline.start_date, tz)
    end = instant(pipeline.end_date, tz, end_of_day=True)
    anchor = start or (datetime.fromisoformat(row["anchor"]) if row and row["anchor"] else now)
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
    cursor = datetime.fromisoformat(row["cursor"]) if row and row["cursor"] else None
    backfill = f"`pipectl backfill {pipeline.name} --start {lo.date()} --end {lo.date()}` runs it"
    if cursor is not None and hi <= cursor:  # the scheduler has moved past it
        if not pipeline.catchup:
            return (f"{label} was skipped by `catchup: false`: after a gap only the latest missed interval runs; "
                    + backfill)
        return f"{label}: the scheduler is past it and it has no run (pruned, or deleted); " + backfill
    due = due_intervals(tt, cursor, start, end, now, pipeline.catchup)
    if paused:
        if (lo, hi) in due:
            then = "unpausing creates it"
        else:
            then = "unpausing skips it (`catchup: false` runs only the latest missed interval)"
        return (f"{label}: {pipeline.name} is paused, so no scheduled run is created; {then} "
                f"(`pipectl unpause {pipeline.name} --dry-run` previews)")
    if (lo, hi) in due:
        return f"{label} is due: its interval closed at {at_words(hi.timestamp(), nowts, tz)}; the next tick creates it"
    return (f"{label} will be skipped by `catchup: false`: the next tick creates only the latest missed interval; "
            + backfill)


def _asset_reason(store, pipeline: Pipeline, sched, when, paused: bool) -> str:
    ds = (when.date() if isinstance(when, datetime) else when).isoformat()
    have = {r["asset"] for r in (store.latest_asset_events(list(sched.assets)) if store is not None else ()) if r["ds"] == ds}
    missing = [a for a in sched.assets if a not in have]
    if paused:
        return f"{pipeline.name} is paused: asset updates wait for unpause"
    if not missing:
        return f"assets {', '.join(sched.assets)} are all updated for ds {ds}: the next tick creates the run"
    if sched.mode == "any" and have:
        return f"asset {', '.join(sorted(have))} is updated for ds {ds}: the next tick creates the run"
    word = "every one of" if sched.mode == "all" else "any of"
    return (f"waiting on asset {', '.join(missing)} for ds {ds} (needs {word} {', '.join(sched.assets)})")
