"""The scheduler: turns schedules into runs and runs into tries.

``Engine.step()`` is the whole cycle (reap finished tries, promote queued runs,
start ready task instances) and is safe to call from any number of processes
at once: ticks, ``--wait`` supervisors and the short-lived reaper a task wrapper
starts when nobody else is watching. Correctness comes from the store's
conditional transitions, not from who calls.
"""
from __future__ import annotations

import os
import sqlite3
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable

from pipectl.exec import executor
from pipectl.state.files import private_dir, private_open, write_private
from pipectl.model.errors import PipectlError
from pipectl.model.states import FAILED, PENDING, RUNNING, SKIPPED, SUCCESS, TI_FINISHED, UP_FOR_RETRY, UPSTREAM_FAILED
from pipectl.model.pipeline import Pipeline, ProjectConfig, Task
from pipectl.engine.rules import Launchable, MaxActiveRuns, RetryTime, Slots, dispatch_key, trigger_outcome  # noqa: F401
from pipectl.state.store import Store, loads
UTC = timezone.utc
LAUNCH_CHUNK = 8  # a step with a deadline launches this many tries at a time, checking the clock between
RUN_PRIORITY = {"backfill": 0}  # everything else 1: scheduled work starts before backfills


def iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat()


def parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text)


@dataclass
class Clock:
    """Real time shifted by ``offset`` seconds: ``--now`` sets the offset, and detached
    task wrappers inherit it, so one simulated timeline covers every process."""

    offset: float = 0.0

    @classmethod
    def at(cls, now: datetime | None) -> "Clock":
        return cls(0.0 if now is None else now.timestamp() - time.time())

    def now(self) -> float:
        return time.time() + self.offset

    def dt(self) -> datetime:
        return datetime.fromtimestamp(self.now(), UTC)


@dataclass
class StepReport:
    created: list[str] = field(default_factory=list)
    launched: list[str] = field(default_factory=list)
    reaped: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    retried: list[str] = field(default_factory=list)
    finished_runs: list[str] = field(default_factory=list)
    pruned: list[str] = field(default_factory=list)  # issue 6: retention, in the tick log

    def __post_init__(self) -> None:
        # every list also writes to one timeline, so the report reads in the order things happened
        self._timeline: list[tuple[str, str]] = []
        for name in self.__dataclass_fields__:
            setattr(self, name, _Entries(name, self._timeline, getattr(self, name)))

    def merge(self, other: "StepReport") -> None:
        for kind, item in other._timeline:
            getattr(self, kind).append(item)

    def lines(self) -> list[str]:
        return [f"{kind.replace('_', ' ')}: {item}" for kind, item in self._timeline]


class _Entries(list):
    def __init__(self, kind: str, timeline: list, items=()):
        super().__init__()
        self._kind, self._timeline = kind, timeline
        self.extend(items)

    def append(self, item: str) -> None:
        super().append(item)
        self._timeline.append((self._kind, item))

    def extend(self, items) -> None:
        for item in items:
            self.append(item)


def task_instance_rows(pipeline: Pipeline) -> list[tuple[str, str, int | None, str | None, str]]:
    """The task instances a new run starts with; a static ``foreach`` is mapped at once."""
    rows = []
    for name, task in pipeline.tasks.items():
        if isinstance(task.foreach, tuple):
            if not task.foreach:
                rows.append((name, name, None, None, SKIPPED))
            for i, item in enumerate(task.foreach):
                rows.append((f"{name}[{i}]", name, i, item, PENDING))
        else:
            rows.append((name, name, None, None, PENDING))
    return rows


class _RunView:
    """One running run's task instances as the engine last saw them, and what it decided.

    ``rows``: id -> (id, task, base, state, next_try_at). ``dirty``: bases whose trigger
    rule must be looked at again (one of their own task instances, or an upstream one,
    changed). ``ready``: pending task instances whose trigger rule is met, offered to
    dispatch on every step until they leave pending (a full pool or max_parallel may
    hold them back). A trigger rule depends only on upstream states, so a base not dirty
    keeps its outcome.
    """

    __slots__ = ("rows", "by_base", "unfinished", "dirty", "ready", "retry", "down")

    def __init__(self, tis: list[tuple], needs: dict, down: dict):
        self.rows: dict[int, tuple] = {}
        self.by_base: dict[str, list[int]] = {}
        self.unfinished = 0
        self.ready: dict[int, None] = {}  # an ordered set
        self.retry: set[int] = set()
        self.down = down
        finished_bases = set()
        for row in tis:
            self._add(row)
            if row[3] in TI_FINISHED:
                finished_bases.add(row[2])
        # With no upstream finished, no trigger rule can decide anything: only a task with
        # no upstream, or below a finished one, needs a look.
        self.dirty: set[str] = {b for b in self.by_base if not needs[b]}
        for b in finished_bases:
            self.dirty.update(down[b])

    def _add(self, row: tuple) -> None:
        self.rows[row[0]] = row
        self.by_base.setdefault(row[2], []).append(row[0])
        if row[3] not in TI_FINISHED:
            self.unfinished += 1
        if row[3] == UP_FOR_RETRY:
            self.retry.add(row[0])

    def _remove(self, ti_pk: int) -> None:
        row = self.rows.pop(ti_pk, None)
        if row is None:
            return
        self.by_base[row[2]].remove(ti_pk)
        if row[3] not in TI_FINISHED:
            self.unfinished -= 1
        self.retry.discard(ti_pk)
        self.ready.pop(ti_pk, None)
        self._touch(row[2])

    def _touch(self, base: str) -> None:
        self.dirty.add(base)
        self.dirty.update(self.down.get(base, ()))

    def apply(self, ti_pk: int, row: tuple | None) -> None:
        """A task instance changed: ``row`` is its current ti_states tuple, None if it is gone."""
        self._remove(ti_pk)
        if row is not None:
            self._add(row)
            self._touch(row[2])

    def evaluate(self, pipeline: Pipeline, needs: dict, down: dict) -> list[tuple[int, str, str]]:
        """Re-decide the dirty bases; returns (id, task, state) of instances settled by their
        trigger rule (already applied here; the caller writes them)."""
        rows, by_base, ready = self.rows, self.by_base, self.ready
        frontier, self.dirty = self.dirty, set()
        settled: list[tuple[int, str, str]] = []
        while frontier:
            base = frontier.pop()
            pending = [i for i in by_base.get(base, ()) if rows[i][3] == PENDING]
            if not pending:
                continue
            upstream = [rows[u][3] for name in needs[base] for u in by_base.get(name, ())]
            outcome = trigger_outcome(pipeline.tasks[base].trigger_rule, upstream)
            if outcome in (UPSTREAM_FAILED, SKIPPED):
                for i in pending:
                    row = rows[i]
                    rows[i] = (i, row[1], base, outcome, row[4])
                    self.unfinished -= 1
                    ready.pop(i, None)
                    settled.append((i, row[1], outcome))
                frontier.update(down[base])  # a settled task may settle the ones below it
            elif outcome == "ready":
                for i in pending:
                    ready[i] = None
            else:
                for i in pending:
                    ready.pop(i, None)
        return settled


class Engine:
    def __init__(self, config: ProjectConfig, store: Store, clock: Clock, log: Callable[[str], None] | None = None):
        self.config = config
        self.store = store
        self.clock = clock
        self.log = log or (lambda line: None)
        self.children: dict[int, object] = {}  # pid -> Popen of wrappers and hooks this process started
        self._specs: dict[tuple, Pipeline] = {}
        # SLAs per distinct snapshot text: a catch-up queues thousands of runs sharing one
        self.sla_by_spec: dict[str, tuple] = {}
        self._edge_cache: dict[int, tuple[dict, dict]] = {}
        self._views: dict[int, _RunView] = {}  # running runs' task-instance states, see _views_for
        self._dv: int | None = None  # the state file's data_version when the views were last valid
        self._recorded: set[int] = set()  # pids of our wrappers whose try _finish recorded
        self._gone: set[tuple[int, int]] = set()  # (ti, try) whose session is known empty
        self._unevaluable: set[int] = set()  # runs whose snapshot could not be evaluated (one event each)
        self.stop_launching = False
        # real time (time.time()) by which a step must be done: a tick's budget. Every loop that can be
        # long checks it and leaves the rest for the next step; ``truncated`` says that happened.
        self.deadline: float | None = None
        self.truncated = False
        self.asset_dirty = False  # issue 5: a complete asset event was recorded by this engine
        self.boot = executor.boot_id()
        self.me = (os.getpid(), executor.process_start(os.getpid()))

    def out_of_time(self) -> bool:
        if self.deadline is not None and time.time() >= self.deadline:
            self.truncated = True
            return True
        return False

    # -- runs ------------------------------------------------------------
    def _edges(self, run, pipeline: Pipeline) -> tuple[dict, dict]:
        """(needs, downstream) by task name for a run's snapshot; a snapshot never changes."""
        e = self._edge_cache.get(run["id"])
        if e is None:
            needs = {name: task.needs for name, task in pipeline.tasks.items()}
            down: dict[str, list[str]] = {name: [] for name in needs}
            for name, ups in needs.items():
                for u in ups:
                    down.setdefault(u, []).append(name)
            e = self._edge_cache[run["id"]] = (needs, down)
        return e

    def _spec_key(self, run) -> tuple:
        # keyed by creation time too: prune frees row ids, and SQLite hands the newest
        # deleted one to the next run, which must not inherit the deleted run's spec
        return run["id"], run["created"] if "created" in run.keys() else self.store.run_created(run["id"])

    def cached_spec(self, run) -> Pipeline | None:
        """The run's parsed spec if this engine has parsed it already, else None."""
        return self._specs.get(self._spec_key(run))

    def spec_of(self, run) -> Pipeline:
        key = self._spec_key(run)
        p = self._specs.get(key)
        if p is None:
            spec = run["spec"] if "spec" in run.keys() else self.store.run_spec(run["id"])
            p = self._specs[key] = Pipeline.from_dict(loads(spec))
        return p

    def create_run(self, pipeline: Pipeline, logical_date: datetime, *, run_type: str,
                   interval: tuple[datetime | None, datetime | None] = (None, None), params: dict | None = None,
                   batch: str | None = None, max_active: int | None = None) -> int | None:
        """Queue a run; None if the pipeline already has one for that logical date."""
        from pipectl.timing.clock import ds_of
        ld = iso(logical_date)
        merged = {**pipeline.params, **(params or {})}
        now = self.clock.now()
        with self.store.tx():
            pk = self.store.insert_run(
                run_id=f"{run_type}__{ld}", pipeline=pipeline.name, logical_date=ld,
                ds=ds_of(logical_date, pipeline.timezone),
                interval=(iso(interval[0]) if interval[0] else ld, iso(interval[1]) if interval[1] else ld),
                run_type=run_type, params=merged, spec=pipeline.to_dict(), now=now,
                priority=RUN_PRIORITY.get(run_type, 1), batch=batch, max_active=max_active)
            if pk is None:
                return None
            self.store.insert_task_instances(pk, task_instance_rows(pipeline))
            self.store.add_event("run_created", now=now, pipeline=pipeline.name, run=pk, message=f"{run_type} run for {ld}")
        self.log(f"created {pipeline.name} {run_type} run {ld}")
        return pk

    def promote(self) -> None:
        """queued -> running while the pipeline (or the backfill batch) is under its max_active_runs."""
        active = self.store.active_runs()
        running: dict[tuple, int] = {}
        for r in active:
            if r["state"] == RUNNING:
                key = (r["pipeline"], r["batch"])
                running[key] = running.get(key, 0) + 1
        full: set[tuple] = set()  # keys found at their limit: a catch-up queues thousands of runs
        for r in active:
            if r["state"] != "queued":
                continue
            key = (r["pipeline"], r["batch"])
            if (key, r["max_active"]) in full or self.out_of_time():
                continue
            limit = MaxActiveRuns.limit(r, self.spec_of(r))
            if not MaxActiveRuns.admits(running.get(key, 0), limit):
                full.add((key, r["max_active"]))
                continue
            with self.store.tx():
                promoted = self.store.promote_run(r["id"], limit, self.clock.now())
            if promoted:
                running[key] = running.get(key, 0) + 1

    # -- reaping ---------------------------------------------------------
    def reap(self, report: StepReport) -> set[int]:
        """Record every finished or vanished try; returns the runs that changed."""
        dirty: set[int] = set()
        for t in self.store.active_tries():
            if self.out_of_time():
                break
            status = executor.read_status(t["status_path"])
            if status is not None:
                self._record(t, status, report)
                dirty.add(t["run"])
                continue
            if t["state"] == "starting":
                if executor.is_alive(*self._launcher(t)):
                    continue
                t = self._unrecorded(t)
                if t is None:
                    continue
            elif executor.is_alive(t["pid"], t["pid_start"], t["boot_id"]):
                continue
            # the wrapper may have written its status between our two looks
            self._record(t, executor.read_status(t["status_path"]), report)
            dirty.add(t["run"])
        return dirty

    def _record(self, t, status: tuple | None, report: StepReport) -> None:
        """Record an ended try (``status`` None: it vanished). A try whose outcome cannot be
        evaluated (a snapshot whose retry time is out of range, ...) fails its own task instance
        with reason ``error``; it must never stop the reaping of every other try."""
        try:
            if status is not None:
                self._finish(t, status[0], status[1] + self.clock.offset, report)
            else:
                self._lose(t, report)
        except (sqlite3.Error, PipectlError):
            raise  # the state file itself is in trouble: nothing here can be recorded
        except Exception as e:
            exit_code = status[0] if status is not None else None
            message = f"cannot evaluate: {type(e).__name__}: {e}"
            now = self.clock.now()
            run = self.store.run(t["run"])
            pipe = run["pipeline"] if run is not None else None
            with self.store.tx():
                ended = self.store.finish_try(t["id"], FAILED, now=now, exit_code=exit_code, reason="error")
                if ended:
                    self.store.finish_task_instance(t["ti"], t["try_number"], FAILED, now=now, reason="error",
                                                    exit_code=exit_code)
                # not ended: the try was recorded and only its hook failed
                self.store.add_event("task_failed" if ended else "hook_failed", now=now, pipeline=pipe,
                                     run=t["run"], task=t["task"], message=message)
            if ended:
                executor.discard_status(t["status_path"])
                report.reaped.append(f"{pipe} {t['task']} try {t['try_number']} {message}")
            self.log(f"{pipe} {t['task']} try {t['try_number']}: {message}")

    def _launcher(self, t):
        return t["launcher_pid"], t["launcher_start"], t["boot_id"]

    def _unrecorded(self, t):
        """A starting try whose launcher died before recording its wrapper: adopt a live
        wrapper (None: nothing more to do now), or return the try as it is to be lost --
        still ``starting`` if nothing of it ever ran, ``running`` with its session if it did."""
        outcome, pid = executor.unrecorded_try(t["status_path"])
        if outcome == "wait":
            return None
        if outcome == "never":
            return t
        alive = executor.is_wrapper(pid, t["status_path"])
        start = executor.process_start(pid) if alive else None
        # "-" matches no start time: the session is named, and its leader is known to be gone
        start = start if start is not None else "-"
        with self.store.tx():
            if not self.store.mark_try_started(t["id"], pid, start):
                return None  # someone else recorded it meanwhile
        if start != "-":
            return None  # adopted: its wrapper runs on
        return {**dict(t), "state": RUNNING, "pid": pid, "pid_start": start}

    def _end_session(self, t) -> bool:
        """Kill what is left of a try's session; True once nothing of it runs."""
        sid, start = t["pid"], t["pid_start"]
        if not sid:
            claim = executor.read_claim(t["status_path"])
            if not claim:
                return True  # it never ran
            sid, start = claim, None
        return executor.end_session(sid, start, t["boot_id"], t["status_path"])

    def _finish(self, t, exit_code: int, end: float, report: StepReport) -> None:
        run = self.store.run(t["run"])
        pipeline = self.spec_of(run)
        task = pipeline.tasks[t["base"]]
        # the status file's mtime comes from the kernel's coarse clock, a few ms behind
        # time.time(): a fast try would otherwise end before it started
        end = max(end, t["start"] or end)
        timed_out = bool(t["timeout"]) and exit_code in (124, 137) and end - t["start"] >= t["timeout"] - 0.05
        reason = None if exit_code == 0 else ("timeout" if timed_out else "exit_code")
        if timed_out:
            # it ran its whole limit, after the wrapper and timeout(1) took over a millisecond to
            # start; only the mtime's coarse clock (up to a jiffy behind) says less
            end = max(end, t["start"] + t["timeout"] + 0.001)
        # the try has ended: nothing of it outlives it (a retry waits if something would not die)
        self._end_session(t)
        with self.store.tx():
            ti = self.store.task_instance(t["ti"])
            if not self.store.finish_try(t["id"], SUCCESS if exit_code == 0 else FAILED, now=end,
                                         exit_code=exit_code, reason=reason):
                return
            hook = self._settle(run, ti, task, t["try_number"], exit_code, reason, end, report)
        executor.discard_status(t["status_path"])
        if t["pid"] in self.children:
            self._recorded.add(t["pid"])
        report.reaped.append(f"{self.run_label(run)} {t['task']} try {t['try_number']} exit {exit_code}")
        if hook:
            self._hook(hook, run, pipeline, ti, t, exit_code)

    def _lose(self, t, report: StepReport) -> None:
        run = self.store.run(t["run"])
        pipeline = self.spec_of(run)
        task = pipeline.tasks[t["base"]]
        # the wrapper is gone, but the task it started may not be: never let it run beside a retry.
        # (A live process at that pid with another start time reused it: a stranger, not ours.)
        if self._end_session(t) and t["pid"]:
            executor.discard_status(t["status_path"])  # its claim: that wrapper cannot come back
        now = self.clock.now()
        with self.store.tx():
            ti = self.store.task_instance(t["ti"])
            if not self.store.finish_try(t["id"], "lost", now=now, exit_code=None, reason="lost"):
                return
            if t["state"] == "starting":
                # its launcher was killed between claiming it and starting it: nothing ran,
                # so it costs no retry (kill -9 at any instant must not fail a task)
                self.store.requeue_unstarted(ti["id"], t["try_number"])
                hook = None
            else:
                hook = self._settle(run, ti, task, t["try_number"], None, "lost", now, report)
        report.lost.append(f"{self.run_label(run)} {t['task']} try {t['try_number']}")
        if hook:
            self._hook(hook, run, pipeline, ti, t, None)

    def _settle(self, run, ti, task: Task, try_number: int, exit_code: int | None, reason: str | None, now: float,
                report: StepReport) -> str | None:
        """Move a task instance on after its try ``t`` ended; returns the hook to run (None when
        the task instance is no longer at that try: nothing of it is changed)."""
        pipe = run["pipeline"]
        if ti is None or ti["state"] != RUNNING or ti["try_number"] != try_number:
            return None
        if reason is None:
            self.store.finish_task_instance(ti["id"], try_number, SUCCESS, now=now, reason=None, exit_code=exit_code)
            self.store.add_event("task_success", now=now, pipeline=pipe, run=run["id"], task=ti["task"])
            self.on_task_success(run, ti, task, now)
            return "on_success"
        tries_in_budget = ti["try_number"] - ti["budget_base"]
        if task.retry.may_retry(tries_in_budget, exit_code):
            at = now + task.retry.delay(tries_in_budget)
            self.store.finish_task_instance(ti["id"], try_number, UP_FOR_RETRY, now=now, reason=reason,
                                            exit_code=exit_code, next_try_at=at)
            self.store.add_event("task_retry", now=now, pipeline=pipe, run=run["id"], task=ti["task"],
                                 message=f"{reason} (exit {exit_code}); retry at {iso(datetime.fromtimestamp(at, UTC))}")
            report.retried.append(f"{self.run_label(run)} {ti['task']}")
            return "on_retry"
        self.store.finish_task_instance(ti["id"], try_number, FAILED, now=now, reason=reason, exit_code=exit_code)
        self.store.add_event("task_failed", now=now, pipeline=pipe, run=run["id"], task=ti["task"],
                             message=f"{reason} (exit {exit_code})")
        return "on_failure"

    def on_task_success(self, run, ti, task: Task, now: float) -> None:
        """Extension point: assets record their events here, inside the transition's transaction."""
        if task.produces:  # issue 5: assets
            from pipectl.engine.assets import record
            record(self, run, ti, task, now)

    # -- advancing runs ----------------------------------------------------
    def _views_for(self, runs) -> None:
        """Bring ``self._views`` up to date with the state file before runs are advanced.

        A supervisor steps once per finished try: re-reading every task instance of a
        1000-task run each time made a chain O(n^2). Instead each run's task-instance
        states are kept in memory and refreshed from two change detectors: this
        connection's own changes are logged by TEMP triggers (store.track_ti_changes),
        and any commit by another process (a tick, a wrapper's reaper, `retry`, `mark`)
        moves ``data_version``, which drops every view for a full re-read."""
        store = self.store
        if self._dv is None:
            store.track_ti_changes(self)
        dv = store.data_version()  # before reading anything: a later commit is seen next time
        changes = store.take_ti_changes(self)
        if dv != self._dv:
            self._dv = dv
            self._views.clear()
            changes = []
        live = {r["id"] for r in runs}
        for pk in [pk for pk in self._views if pk not in live]:
            del self._views[pk]
        mine = [ti for ti, run in changes if run in self._views]
        if mine:
            fresh = {row[0]: row for row in store.ti_states_of(mine)}
            for ti, run in changes:
                view = self._views.get(run)
                if view is not None:
                    view.apply(ti, fresh.get(ti))

    def advance(self, run_pks: set[int] | None, report: StepReport) -> list[tuple]:
        """Settle what trigger rules decide and finish complete runs; returns launch candidates."""
        active = [r for r in self.store.active_runs() if r["state"] == RUNNING]
        self._views_for(active)
        runs = [r for r in active if run_pks is None or r["id"] in run_pks]
        candidates: list[tuple] = []
        now = self.clock.now()
        for run in runs:
            if self.out_of_time():
                break
            try:
                pipeline = self.spec_of(run)
                needs, down = self._edges(run, pipeline)
                view = self._views.get(run["id"])
                if view is None:
                    view = self._views[run["id"]] = _RunView(self.store.ti_states(run["id"]), needs, down)
                settled = view.evaluate(pipeline, needs, down)
            except BaseException as e:
                self._views.pop(run["id"], None)
                if isinstance(e, (sqlite3.Error, PipectlError)) or not isinstance(e, Exception):
                    raise
                self._fail_run(run, e, report)  # one run that cannot be evaluated stops only itself
                continue
            ready_pks = list(view.ready)
            rows = view.rows
            ready_pks.extend(i for i in view.retry if RetryTime.due(rows[i][4], now))
            finished = view.unfinished == 0
            if settled or finished:
                try:
                    stale = False
                    with self.store.tx():
                        for ti_pk, name, state in settled:
                            if self.store.set_ti_state(ti_pk, state, now=now, reason="trigger_rule"):
                                self.store.add_event(f"task_{state}", now=now, pipeline=run["pipeline"],
                                                     run=run["id"], task=name)
                            else:
                                stale = True  # it left pending meanwhile (another process)
                        if finished:
                            # the store decides from the task instances as they are, not as this view saw them
                            state = self.store.finish_run(run["id"], now)
                            if state is not None:
                                self.store.add_event(f"run_{state}", now=now, pipeline=run["pipeline"], run=run["id"])
                                report.finished_runs.append(f"{self.run_label(run)} {state}")
                            else:
                                stale = True
                    if stale:
                        self._views.pop(run["id"], None)  # re-read next step
                except BaseException:
                    self._views.pop(run["id"], None)  # it holds states that were never written
                    raise
            if not finished:
                ready = [row for row in map(self.store.task_instance, ready_pks) if row is not None]
                candidates.extend((run, pipeline, ti) for ti in ready)
        return candidates

    def _fail_run(self, run, error: Exception, report: StepReport) -> None:
        """A run whose snapshot cannot be evaluated: what waits in it fails with reason ``error``
        (tries still running are failed the same way when reaped), and the run finishes."""
        now = self.clock.now()
        message = f"cannot evaluate: {type(error).__name__}: {error}"
        with self.store.tx():
            for ti in self.store.task_instances(run["id"]):
                if ti["state"] == PENDING:
                    self.store.set_ti_state(ti["id"], FAILED, now=now, reason="error")
                elif ti["state"] == UP_FOR_RETRY:
                    self.store.mark_task_instance(ti["id"], FAILED, expect=UP_FOR_RETRY, now=now, reason="error")
            if run["id"] not in self._unevaluable:
                self.store.add_event("run_error", now=now, pipeline=run["pipeline"], run=run["id"], message=message)
            state = self.store.finish_run(run["id"], now)
        self._unevaluable.add(run["id"])
        if state is not None:
            report.finished_runs.append(f"{run['pipeline']} {run['ds']} {state}")
        self.log(f"{run['pipeline']} {run['ds']}: {message}")

    # -- launching -------------------------------------------------------
    def dispatch(self, candidates: list[tuple], report: StepReport) -> None:
        if self.stop_launching or not candidates:
            return
        candidates.sort(key=dispatch_key)
        if self.deadline is not None and len(candidates) > LAUNCH_CHUNK:
            # starting a process takes milliseconds, far more under load: launch in chunks, each
            # recorded before the next, and stop when the deadline comes (never between a claim
            # and its launch)
            for i in range(0, len(candidates), LAUNCH_CHUNK):
                if self.out_of_time():
                    return
                self._dispatch(candidates[i:i + LAUNCH_CHUNK], report)
            return
        self._dispatch(candidates, report)

    def _dispatch(self, candidates: list[tuple], report: StepReport) -> None:
        """Claim and launch ``candidates``, in their order, as far as slots allow."""
        candidates = [c for c in candidates if self._previous_try_gone(c[2])]
        now = self.clock.now()
        launches = []
        with self.store.tx():
            # the rulebook's slot rule, the one `explain` replays
            slots = Slots(self.config, self.store.running_counts(), self.store.running_by_pool())
            for run, pipeline, ti in candidates:
                if slots.free <= 0:
                    break
                task = pipeline.tasks[ti["base"]]
                if slots.blocked(task) or Launchable.check(task, ti) is not None:
                    continue  # a full pool; a sensor is poked and a foreach command expanded, never launched
                try_number = self.store.claim_task_instance(ti["id"], now)
                if try_number is None:
                    continue
                try:
                    launch = self._prepare(run, pipeline, task, ti, try_number)
                except Exception as e:  # e.g. a template that cannot render: this task instance fails alone
                    if isinstance(e, (sqlite3.Error, PipectlError)):
                        raise
                    self.store.finish_task_instance(ti["id"], try_number, FAILED, now=now, reason="error",
                                                    exit_code=None)
                    self.store.add_event("task_failed", now=now, pipeline=run["pipeline"], run=run["id"],
                                         task=ti["task"], message=f"cannot start: {type(e).__name__}: {e}")
                    continue
                try_pk = self.store.insert_try(ti["id"], try_number, launcher_pid=self.me[0], launcher_start=self.me[1],
                                               boot_id=self.boot, status_path=launch.status_path,
                                               log_path=launch.log_path, timeout=task.timeout, pool=task.pool, now=now)
                self.store.add_event("try_started", now=now, pipeline=run["pipeline"], run=run["id"], task=ti["task"],
                                     message=f"try {try_number}")
                launches.append((try_pk, launch, f"{self.run_label(run)} {ti['task']} try {try_number}"))
                slots.take(task)
        started = []
        for try_pk, launch, label in launches:
            try:
                proc = executor.start(launch)
            except OSError as e:
                # cannot even start: record a failed try with the reason instead of a stuck instance
                write_private(launch.status_path, "127\n")
                fd = private_open(launch.log_path)  # the try's log is where its user looks
                try:
                    os.write(fd, f"pipectl: could not start the task: {e}\n".encode())
                finally:
                    os.close(fd)
                self.log(f"could not start {label}: {e}")
                continue
            self.children[proc.pid] = proc
            started.append((try_pk, proc.pid))
            report.launched.append(label)
        if started:
            with self.store.tx():
                for try_pk, pid in started:
                    self.store.mark_try_started(try_pk, pid, executor.process_start(pid))

    def run_label(self, run) -> str:
        return run_label(run, self.spec_of(run).timezone)

    def _previous_try_gone(self, ti) -> bool:
        """Whether nothing of the task instance's previous try runs any more (killing what is
        left of it): a retry never starts beside its predecessor's leftovers."""
        n = ti["try_number"]
        if not n or (ti["id"], n) in self._gone:
            return True
        prev = [t for t in self.store.tries_for(ti["id"]) if t["try_number"] == n]
        if prev:
            if prev[-1]["state"] in ("starting", "running"):
                return False  # still to be recorded
            if not self._end_session(prev[-1]):
                self.log(f"{ti['task']}: a process of try {n} would not die; its next try waits")
                return False
        self._gone.add((ti["id"], n))
        return True

    def template_values(self, run, pipeline: Pipeline, ti, try_number: int) -> dict:
        return template_values(run, ti, try_number)

    def task_environment(self, pipeline: Pipeline, task: Task, values: dict) -> dict[str, str]:
        from pipectl.spec.secrets import launch_env
        from pipectl.spec.templates import task_env
        env = dict(os.environ)
        env.pop("PIPECTL_NOW", None)  # the task's own clock is the real one
        env.update(launch_env(pipeline, task, os.environ))  # ${VAR} and env_file resolved only now
        env.update(task_env(values))
        return env

    def _prepare(self, run, pipeline: Pipeline, task: Task, ti, try_number: int) -> executor.Launch:
        from pipectl.spec.templates import TemplateError, refusal, render, runnable_command
        values = self.template_values(run, pipeline, ti, try_number)
        env = self.task_environment(pipeline, task, values)
        if isinstance(task.run, str):
            command, refs = runnable_command(task.run, values)
            argv = ["/bin/sh", "-c", command]
            env.update(refs)
        else:
            try:
                argv = [render(a, values, shell=False) for a in task.run]
            except TemplateError as e:
                command, refs = refusal(e)
                argv = ["/bin/sh", "-c", command]
                env.update(refs)
        cwd = os.path.join(self.config.root, task.cwd) if task.cwd else self.config.root
        return executor.Launch(
            argv=argv, cwd=cwd, env=env,
            log_path=log_path(self.config, run, ti["task"], try_number),
            status_path=os.path.join(self.config.state_dir, "status", f"{ti['id']}.{try_number}"),
            timeout=task.timeout, supervisors_dir=supervisors_dir(self.config), project=self.config.root,
            clock_offset=self.clock.offset,
        )

    def _hook(self, which: str, run, pipeline: Pipeline, ti, t, exit_code: int | None) -> None:
        task = pipeline.tasks[ti["base"]]
        command = getattr(task, which) or getattr(pipeline, which)
        if not command:
            return
        from pipectl.spec.templates import runnable_command
        values = self.template_values(run, pipeline, ti, t["try_number"])
        env = self.task_environment(pipeline, task, values)
        command, refs = runnable_command(command, values)
        env.update(refs)
        state = {"on_success": SUCCESS, "on_retry": UP_FOR_RETRY, "on_failure": FAILED}.get(which, which)
        env.update(PIPECTL_STATE=state, PIPECTL_EXIT_CODE="" if exit_code is None else str(exit_code),
                   PIPECTL_LOG=t["log_path"] or "")
        hook_log = os.path.join(os.path.dirname(t["log_path"]), "hooks.log")
        proc = executor.run_hook(command, cwd=self.config.root, env=env,
                                 log_path=hook_log, label=which)
        if proc is not None:
            self.children[proc.pid] = proc

    # -- the cycle -------------------------------------------------------
    def step(self, report: StepReport | None = None) -> StepReport:
        report = report or StepReport()
        self.reap(report)
        # -- issue 5: a consumer starts as soon as its producers' assets are complete
        if self.asset_dirty:
            from pipectl.engine.assets import trigger_from_rows
            self.asset_dirty = False
            trigger_from_rows(self, report)
        finished_before = len(report.finished_runs)
        # each phase reads every active run first (thousands in a catch-up): past a deadline, skip them
        if self.out_of_time():
            return report
        self.promote()
        if self.out_of_time():
            return report
        candidates = self.advance(None, report)
        # -- issue 5: sensors are poked and foreach commands expanded here, never launched
        from pipectl.engine.fanout import prelaunch
        from pipectl.engine.sla import check as check_slas
        self.dispatch(prelaunch(self, candidates, report), report)
        # -- issue 3: a run that just finished freed a max_active_runs slot; fill it now
        # (from a wrapper's reaper too), not a cron tick later
        if len(report.finished_runs) > finished_before and not self.out_of_time():
            self.promote()
            self.dispatch(prelaunch(self, self.advance(None, report), report), report)
        if not self.out_of_time():
            check_slas(self, report)
        return report

    def collect_children(self) -> int:
        """Forget the children that have exited; returns how many did whose try is not recorded yet
        (a wrapper reaped in this very step needs no second step)."""
        ended = 0
        for pid, proc in list(self.children.items()):
            if proc.poll() is not None:  # type: ignore[attr-defined]
                del self.children[pid]
                if pid in self._recorded:
                    self._recorded.discard(pid)
                else:
                    ended += 1
        return ended

    def next_wakeup(self) -> float | None:
        """Epoch of the earliest retry (or sensor poke) that is waiting on time."""
        # issue 3: one indexed query (retries and issue 5's sensor pokes) instead of reading every TI per loop
        return self.store.earliest_wakeup()

    def drive(self, run_pks: set[int] | None, report: StepReport, poll: float = 0.2,
              on_progress: Callable[[], None] | None = None) -> StepReport:
        """Step until every run in ``run_pks`` (all active runs if None) has finished.

        Registers as a supervisor so wrappers leave reaping to us, and
        sleeps on the wrappers' pidfds so a downstream task starts within
        milliseconds of its upstream's end.
        """
        import select

        me = register_supervisor(self.config)
        try:
            while True:
                self.step(report)
                ended = self.collect_children()
                if on_progress is not None:  # e.g. backfill's progress bar; called between steps
                    on_progress()
                if self._done(run_pks):
                    break
                if ended:
                    continue  # a try ended after this step's reap: record it now, not a poll later
                fds = {}
                for pid in list(self.children):
                    try:
                        fds[os.pidfd_open(pid)] = pid
                    except OSError:
                        pass
                wake = self.next_wakeup()
                timeout = poll if wake is None else max(0.0, min(poll, wake - self.clock.now()))
                try:
                    select.select(list(fds), [], [], timeout)
                finally:
                    for fd in fds:
                        os.close(fd)
        finally:
            unregister_supervisor(me)
            # a wrapper that finished while we were registered left its status for us
            began = self.clock.now()
            self.step(report)
            if not self.stop_launching:  # interrupted: start nothing new; the next tick decides
                from pipectl.exec.timer import hand_off
                hand_off(self, began)  # other runs' retries and pokes we were keeping
        for proc in list(self.children.values()):
            proc.wait()  # type: ignore[attr-defined]  # hooks: their output is part of the run
        self.children.clear()
        return report

    def _done(self, run_pks: set[int] | None) -> bool:
        if self.stop_launching:
            # interrupted: finished once nothing we watch is still in flight
            return not any(run_pks is None or t["run"] in run_pks for t in self.store.active_tries())
        if run_pks is None:
            return not self.store.active_runs()
        states = self.store.run_states(list(run_pks))  # one query: a backfill watches hundreds of runs
        return all(states.get(pk, SUCCESS) in (SUCCESS, FAILED) for pk in run_pks)  # a pruned run is done


def run_label(run, tz: str) -> str:
    """How report and tick-log lines name a run: ``pipeline ds``, and the logical time of day
    (the pipeline's zone) when its interval is shorter than a day -- then a ds holds many runs."""
    label = f"{run['pipeline']} {run['ds']}"
    start, end = run["data_interval_start"], run["data_interval_end"]
    if not (start and end):
        return label
    a, b = datetime.fromisoformat(start), datetime.fromisoformat(end)
    if 0 < (b - a).total_seconds() < 23 * 3600:  # a DST day is 23h long and still daily
        from zoneinfo import ZoneInfo

        local = datetime.fromisoformat(run["logical_date"]).astimezone(ZoneInfo(tz))
        label += local.strftime(" %H:%M:%S" if local.second else " %H:%M")
    return label


def template_values(run, ti, try_number: int) -> dict:
    """What ``{{ ... }}`` and the PIPECTL_* variables of one try see."""
    return {
        "ds": run["ds"], "ds_nodash": run["ds"].replace("-", ""), "logical_date": run["logical_date"],
        "data_interval_start": run["data_interval_start"], "data_interval_end": run["data_interval_end"],
        "run_id": run["run_id"], "pipeline": run["pipeline"], "task": ti["task"], "try_number": str(try_number),
        "params": loads(run["params"]) or {}, "item": ti["item"] if ti["item"] is not None else "",
    }


def supervisors_dir(config: ProjectConfig) -> str:
    """One empty file per live ``--wait`` supervisor, named by its pid. A finishing
    wrapper looks here with shell builtins only (``kill -0``): no extra process on
    the path from one task's end to the next one's start."""
    return os.path.join(config.state_dir, "supervisors")


def register_supervisor(config: ProjectConfig) -> str:
    path = os.path.join(private_dir(supervisors_dir(config)), str(os.getpid()))
    write_private(path, executor.process_start(os.getpid()) or "")
    return path


def forget_dead_supervisors(config: ProjectConfig) -> int:
    """Remove the pid files of supervisors killed before they could: a reused pid would
    otherwise look alive to every wrapper, which would then leave reaping to the next tick."""
    d = supervisors_dir(config)
    try:
        names = os.listdir(d)
    except OSError:
        return 0
    gone = 0
    for name in names:
        path = os.path.join(d, name)
        try:
            with open(path) as f:
                started = f.read().strip()
        except OSError:
            continue
        if not name.isdigit() or executor.process_start(int(name)) != started:
            unregister_supervisor(path)
            gone += 1
    return gone


def unregister_supervisor(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def log_path(config: ProjectConfig, run, task: str, try_number: int) -> str:
    safe = run["run_id"].replace(":", "").replace("+", "_")
    return os.path.join(config.state_dir, "logs", run["pipeline"], safe, f"{task}.{try_number}.log")
