"""The rulebook: every condition that stands between a task instance and its start.

One rule per condition, in the spirit of Airflow's ``ti_deps``: max_active_runs,
paused, trigger rule, retry time, launchable (sensor, foreach), sensor, previous
try, slots (max_parallel and pools). Each rule has a fast decision the engine's
phases use (promote, advance, pre-launch, dispatch) and a ``reason`` that says, in
words, what holds a task instance back (None: the rule is met); ``check`` gives
both at once as ``(ok, reason)``. :mod:`pipectl.engine.explain` replays one
engine step over the world as it stands with these same decisions, in the same
order and with the same limits, so it can never tell a different story from what
dispatch does.

Kept import-light: the tick imports this through the engine's phases.
"""
from __future__ import annotations


from pipectl.model.pipeline import ForeachCommand, Pipeline, ProjectConfig, Task
from pipectl.model.states import FAILED, QUEUED, RUNNING, SKIPPED, SUCCESS, TI_FINISHED, TRY_LIVE, UPSTREAM_FAILED
from pipectl.timing.clock import from_epoch

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
    t = to_local(from_epoch(epoch), tz)
    today = to_local(from_epoch(now), tz).date()
    clock = t.strftime("%H:%M:%S") if t.date() == today else t.strftime("%Y-%m-%d %H:%M:%S")
    zone = t.tzname() or ""
    rel = "now" if abs(epoch - now) < 0.5 else f"in {span(epoch - now)}" if epoch > now else f"{span(now - epoch)} ago"
    return f"{clock} {zone}, {rel}".replace(" ,", ",")


def outcome_words(ti) -> str:
    """'failed: exit 3 on try 3', 'failed: timeout (exit 124) on try 1', 'success on try 2'."""
    state, reason, code, n = ti.state, ti.reason, ti.exit_code, ti.try_number
    if reason in (None, "exit_code"):
        what = f"exit {code}" if code is not None and state != SUCCESS else ""
    else:
        what = reason + (f" (exit {code})" if code is not None else "")
    on = f"on try {n}" if n else ""
    return state + (f": {what}" if what else "") + (f" {on}" if on else "")


def state_words(ti) -> str:
    """'load_dims failed (exit 3)', 'clean upstream_failed', 'extract running'."""
    state = ti.state
    words = f"{ti.task} {state}"
    if state == FAILED:
        if ti.exit_code is not None:
            words += f" (exit {ti.exit_code})"
        elif ti.reason:
            words += f" ({ti.reason})"
    return words


# -- run rules ---------------------------------------------------------------
class MaxActiveRuns:
    """A queued run is promoted while its pipeline (or its backfill batch) has fewer
    than ``max_active_runs`` runs running."""

    name = "max_active_runs"

    @staticmethod
    def limit(run, pipeline: Pipeline) -> int:
        return run.max_active or pipeline.max_active_runs

    @staticmethod
    def admits(running: int, limit: int) -> bool:
        return running < limit

    @staticmethod
    def promotion(active, state_of, spec_of, admit, *, stop=None, hold=None) -> None:
        """The promotion pass over ``active`` runs in their order, shared by the engine and
        ``explain``: each queued run is offered to ``admit(run, limit) -> bool`` while its key
        (pipeline, batch) is under its limit; a run left queued goes to ``hold(run, pipeline,
        place in line, runs holding the slots)``. ``stop()``: the step's deadline has come.
        A key found full stays full for the pass: a catch-up queues thousands of runs."""
        running: dict[tuple, list] = {}
        for r in active:
            if state_of(r) == RUNNING:
                running.setdefault((r.pipeline, r.batch), []).append(r)
        full: dict[tuple, Pipeline] = {}
        place: dict[tuple, int] = {}
        for r in active:
            if state_of(r) != QUEUED:
                continue
            key = (r.pipeline, r.batch)
            p = full.get((key, r.max_active))
            if p is None:
                if stop is not None and stop():
                    continue
                p = spec_of(r)
                limit = MaxActiveRuns.limit(r, p)
                if MaxActiveRuns.admits(len(running.get(key, ())), limit):
                    if admit(r, limit):
                        running.setdefault(key, []).append(r)
                    continue
                full[(key, r.max_active)] = p
            if hold is not None:
                place[key] = place.get(key, 0) + 1
                hold(r, p, place[key], running.get(key, []))

    @staticmethod
    def verdict(run, pipeline: Pipeline, holders: list, place: int = 1) -> tuple[bool, str | None]:
        """``holders``: the runs of the run's key (pipeline, batch) that are running."""
        if MaxActiveRuns.admits(len(holders), MaxActiveRuns.limit(run, pipeline)):
            return True, None
        return False, MaxActiveRuns.reason(run, pipeline, place, holders)

    @staticmethod
    def reason(run, pipeline: Pipeline, place: int, holders: list) -> str:
        who = "its backfill batch" if run.batch else pipeline.name
        held = ", ".join(r.ds if r.ds else r.run_id for r in holders[:5])
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
    def holds(row) -> bool:
        """``row``: the pipeline's row in the state file (None: never seen, not paused)."""
        return bool(row is not None and row.paused)

    @staticmethod
    def verdict(row, pipeline: str) -> tuple[bool, str | None]:
        return (False, Paused.note(pipeline)) if Paused.holds(row) else (True, None)

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
    if rule == "none_failed_min_one_success":
        if failed:
            return UPSTREAM_FAILED
        if not done:
            return None
        return READY if success else SKIPPED
    if rule == "none_skipped":
        if skipped:
            return SKIPPED
        return READY if done else None
    raise ValueError(f"unknown trigger rule {rule!r}")


class TriggerRule:
    """The task's trigger rule over its upstream task instances."""

    name = "trigger_rule"
    outcome = staticmethod(trigger_outcome)

    @staticmethod
    def verdict(task: Task, upstream: list, settles: bool = False) -> tuple[bool, str | None]:
        """``upstream``: the upstream task instance rows, with the states the step sees."""
        outcome = trigger_outcome(task.trigger_rule, [u.state for u in upstream])
        return outcome == READY, TriggerRule.reason(task, upstream, outcome, settles=settles)

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
                if u.state not in TI_FINISHED:
                    by_task.setdefault(u.base, set()).add(u.state)
            return f"waiting on upstream ({rule}): " + ", ".join(
                f"{name} ({', '.join(sorted(states))})" for name, states in by_task.items())
        bad = {UPSTREAM_FAILED: (FAILED, UPSTREAM_FAILED), SKIPPED: (SKIPPED, SUCCESS)}[outcome]
        culprits = [u for u in upstream if u.state in bad]
        if rule == "one_success":
            culprits, lead = upstream, f"no upstream succeeded ({rule}): "
        elif rule == "one_failed":
            culprits, lead = upstream, f"no upstream failed ({rule}): "
        elif rule == "all_failed" and outcome == SKIPPED:
            lead = f"not every upstream failed ({rule}): "
        elif rule == "none_failed_min_one_success" and outcome == SKIPPED:
            lead = f"no upstream succeeded ({rule}): "
        elif rule == "none_skipped":
            culprits, lead = [u for u in upstream if u.state == SKIPPED], f"an upstream was skipped ({rule}): "
        else:
            lead = ""
        when = " on the next step" if settles else ""
        return f"{outcome}{when} because {lead}" + ", ".join(state_words(u) for u in culprits)


class RetryTime:
    """An up_for_retry task instance waits for its ``next_try_at``."""

    name = "retry_time"

    @staticmethod
    def due(next_try_at: float | None, now: float) -> bool:
        return (next_try_at or 0) <= now

    @staticmethod
    def verdict(task: Task, ti, now: float, tz: str | None) -> tuple[bool, str | None]:
        why = RetryTime.reason(task, ti, now, tz)
        return why is None, why

    @staticmethod
    def reason(task: Task, ti, now: float, tz: str | None) -> str | None:
        if RetryTime.due(ti.next_try_at, now):
            return None
        retry = ti.try_number - ti.budget_base  # tries made in this budget = the retry about to come
        code = ti.exit_code
        if ti.reason in (None, "exit_code"):
            after = f"exit {code}" if code is not None else "a failure"
        else:
            after = ti.reason + (f" (exit {code})" if code is not None else "")
        return (f"retry {retry} of {task.retry.retries} (try {ti.try_number + 1}) at "
                f"{at_words(ti.next_try_at, now, tz)}; after {after}")


class Launchable:
    """Only a task with a command is launched: a sensor is poked and a ``foreach`` command
    is expanded into mapped task instances first (both happen in the step, before dispatch)."""

    name = "launchable"

    @staticmethod
    def check(task: Task, ti) -> str | None:
        """None: launched by dispatch; 'sensor' or 'foreach': handled before dispatch."""
        if task.sensor is not None and task.run is None:
            return "sensor"
        if isinstance(task.foreach, ForeachCommand) and ti.map_index is None:
            return "foreach"
        return None

    @staticmethod
    def verdict(run, task: Task, ti, now: float) -> tuple[bool, str | None]:
        """Not launched: (False, what the step does with it instead)."""
        kind = Launchable.check(task, ti)
        if kind == "sensor":
            return Sensor.verdict(run, task, ti, now)
        if kind == "foreach":
            return False, "its foreach command lists the items on the next step; they start then"
        return True, None


class Sensor:
    """A ready sensor is poked (no more often than its poke_interval), never launched:
    it waits for its condition, until its timeout."""

    name = "sensor"

    @staticmethod
    def verdict(run, task: Task, ti, now: float) -> tuple[bool, str | None]:
        if task.sensor is None:
            return True, None
        return False, Sensor.reason(run, task, ti, now)

    @staticmethod
    def reason(run, task: Task, ti, now: float) -> str:
        from pipectl.engine.runs import template_values
        from pipectl.engine.sensors import describe_wait
        return describe_wait(task, ti, template_values(run, ti, ti.try_number), now)


class PreviousTry:
    """A retry never starts beside its predecessor: not while that try is still live in the
    state file (nor, in the engine, while a process of its session survives being killed)."""

    name = "previous_try"

    @staticmethod
    def live(store, ti) -> bool:
        n = ti.try_number
        return bool(n) and any(t.try_number == n and t.state in TRY_LIVE
                               for t in store.tries_for(ti.id))

    @staticmethod
    def verdict(store, ti) -> tuple[bool, str | None]:
        return (False, PreviousTry.reason(ti)) if PreviousTry.live(store, ti) else (True, None)

    @staticmethod
    def reason(ti) -> str:
        return f"try {ti.try_number} has not been recorded as ended yet; the next try waits for it"


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

    def verdict(self, task: Task) -> tuple[bool, str | None]:
        if not self.blocked(task):
            return True, None
        return False, self.reason(task)

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
    return (-run.priority, -pipeline.tasks[ti.base].priority, run.seq or 0, run.logical_date, ti.id)
