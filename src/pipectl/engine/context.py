"""What every phase of an engine step works over: the :class:`StepContext`.

A context lives as long as the process that steps (a tick, a ``--wait``
supervisor, a wrapper's reaper, the timer): it holds the state file, the clock,
the project, the processes this process started, the real-time deadline of a
tick's budget, and the caches that outlive one step (parsed spec snapshots,
each running run's task-instance view). Phases are functions of a context; the
extensions a step is built with (sensors, fan-out, assets, SLAs) are handed in
as an :class:`Extensions` and reach the engine only through the context.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable

from pipectl.exec import executor
from pipectl.model.pipeline import Pipeline, ProjectConfig
from pipectl.state.store import Store, loads
from pipectl.timing.clock import from_epoch


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
        return from_epoch(self.now())


@dataclass
class StepReport:
    created: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # missed runs a bounded catch-up left out
    launched: list[str] = field(default_factory=list)
    reaped: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    retried: list[str] = field(default_factory=list)
    finished_runs: list[str] = field(default_factory=list)
    pruned: list[str] = field(default_factory=list)  # retention, in the tick log

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


@dataclass(frozen=True)
class PrelaunchHandler:
    """How the pre-launch phase treats task instances of one :class:`rules.Launchable` kind
    (``sensor``, ``foreach``): ``slow(task, ti)`` says whether handling one may take
    seconds (a tick near its deadline leaves it to the next step); ``handle(ctx, run,
    pipeline, task, ti, report)`` returns True when the run's task instances changed."""

    slow: Callable
    handle: Callable


@dataclass(frozen=True)
class Extensions:
    """What a step is built with besides its core phases (see ``step.EXTENSIONS``).

    - ``on_success(ctx, run, ti, task, now)``: inside the transaction that makes a task
      instance succeed (assets record their events here).
    - ``sources(ctx, report)``: the step's sources phase, runs created between ticks
      (an asset consumer right after its producer).
    - ``prelaunch``: Launchable kind -> :class:`PrelaunchHandler`.
    - ``checks(ctx, report)``: the last phase, what watches runs without moving them (SLAs).
    """

    on_success: tuple = ()
    sources: tuple = ()
    prelaunch: dict = field(default_factory=dict)
    checks: tuple = ()


class StepContext:
    def __init__(self, config: ProjectConfig, store: Store, clock: Clock, log: Callable[[str], None] | None = None,
                 *, extensions: Extensions | None = None, deadline: float | None = None):
        self.config = config
        self.store = store
        self.clock = clock
        self.log = log or (lambda line: None)
        self.extensions = extensions or Extensions()
        self.children: dict[int, object] = {}  # pid -> Popen of wrappers and hooks this process started
        # real time (time.time()) by which a step must be done: a tick's budget. Every loop that can be
        # long checks it and leaves the rest for the next step; ``truncated`` says that happened.
        self.deadline = deadline
        self.truncated = False
        self.stop_launching = False  # interrupted: nothing new starts
        # what starts and watches processes: exec.executor, or a simulation's stand-in (ops.simulate)
        self.executor = executor
        self.boot = executor.boot_id()
        self.me = (os.getpid(), executor.process_start(os.getpid()))
        self._specs: dict[tuple, Pipeline] = {}
        self._signals: set[str] = set()
        self._memos: dict[str, dict] = {}
        # what the phases keep between steps (see reaping, advance)
        self.recorded: set[int] = set()  # pids of our wrappers whose try was recorded
        self.gone: set[tuple[int, int]] = set()  # (ti, try) whose session is known empty
        self.unevaluable: set[int] = set()  # runs whose snapshot could not be evaluated (one event each)
        self.views: dict[int, object] = {}  # running runs' task-instance views (advance.RunView)
        self.edges: dict[int, tuple[dict, dict]] = {}  # run id -> (needs, downstream) of its snapshot

    def out_of_time(self) -> bool:
        if self.deadline is not None and time.time() >= self.deadline:
            self.truncated = True
            return True
        return False

    # -- signals between phases and extensions -----------------------------
    def signal(self, name: str) -> None:
        """Ask for the phase that listens for ``name`` (e.g. an asset completed: its consumers)."""
        self._signals.add(name)

    def take_signal(self, name: str) -> bool:
        """Whether ``name`` was signalled since the last look (and forget it)."""
        if name in self._signals:
            self._signals.discard(name)
            return True
        return False

    def memo(self, name: str) -> dict:
        """A cache owned by one extension (by name) that lives as long as this context."""
        return self._memos.setdefault(name, {})

    # -- run snapshots -----------------------------------------------------
    def _spec_key(self, run) -> tuple:
        # keyed by creation time too: prune frees row ids, and SQLite hands the newest
        # deleted one to the next run, which must not inherit the deleted run's spec
        return run.id, run.created

    def cached_spec(self, run) -> Pipeline | None:
        """The run's parsed spec if this context has parsed it already, else None."""
        return self._specs.get(self._spec_key(run))

    def spec_of(self, run) -> Pipeline:
        key = self._spec_key(run)
        p = self._specs.get(key)
        if p is None:
            spec = run.spec if run.spec is not None else self.store.run_spec(run.id)
            p = self._specs[key] = Pipeline.from_dict(loads(spec))
        return p

    def run_label(self, run) -> str:
        return run_label(run, self.spec_of(run).timezone)

    def on_task_success(self, run, ti, task, now: float) -> None:
        """Called inside the transaction that makes ``ti`` succeed."""
        for hook in self.extensions.on_success:
            hook(self, run, ti, task, now)


def run_label(run, tz: str) -> str:
    """How report and tick-log lines name a run: ``pipeline ds``, and the logical time of day
    (the pipeline's zone) when its interval is shorter than a day -- then a ds holds many runs."""
    label = f"{run.pipeline} {run.ds}"
    start, end = run.data_interval_start, run.data_interval_end
    if not (start and end):
        return label
    if 0 < (end - start).total_seconds() < 23 * 3600:  # a DST day is 23h long and still daily
        from zoneinfo import ZoneInfo

        local = run.logical_date.astimezone(ZoneInfo(tz))
        label += local.strftime(" %H:%M:%S" if local.second else " %H:%M")
    return label
