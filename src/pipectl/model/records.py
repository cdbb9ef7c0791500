"""What the store hands to the other layers: typed, immutable records.

Each record is a NamedTuple built in one place in ``state.store`` from its SQLite row, so no
other layer knows a column name or a column's storage format:

- Logical dates (a run's ``logical_date`` and data interval, a pipeline's ``cursor`` and
  ``anchor``) are aware UTC datetimes. They are stored as ISO text, parsed by the store's
  record builders and formatted back by :func:`iso` (the JSON output's form, byte for byte).
- ``ds`` stays the ``YYYY-MM-DD`` text it is everywhere else (templates, paths, the CLI,
  asset keys): it is a label in the pipeline's timezone, not an instant.
- Runtime instants (``created``, ``start``, ``end``, ``ts``, ``next_try_at``, deadlines)
  stay epoch floats: the engine compares them with the clock's float ``now`` on every step,
  adds timeouts and retry delays to them and takes differences for durations; a datetime
  would be converted back for each of those. Views turn them into ISO text in one place
  (``timing.clock.epoch_iso``).
- States are ``model.states.State`` members (a StrEnum: equal to, and serialized as, the name).
- JSON columns (``params``, ``spec``) stay text: most readers never decode them, and a
  pipeline's spec snapshot can be hundreds of KB.

NamedTuples, not dataclasses: the supervisor builds thousands per second on a big run, and
a NamedTuple is built by tuple.__new__ (about 0.5 us for 17 fields; a frozen slotted
dataclass takes about 7 us). They are immutable, and ``_replace`` gives a changed copy.
"""
# No ``from __future__ import annotations`` here: NamedTuple would compile every string annotation
# into a ForwardRef, which makes importing this module take ~1.5 ms more (3.5 ms instead of 2).
from datetime import datetime
from typing import NamedTuple

from pipectl.model.states import State


class Pipeline(NamedTuple):
    """A pipeline as the state file knows it (not its spec: see model.pipeline.Pipeline)."""

    name: str
    paused: bool
    cursor: datetime | None  # end of the last scheduled data interval
    anchor: datetime | None  # first time a tick saw it: anchors `every:` without start_date
    next_due: float | None  # epoch of the next schedule fire
    valid: bool
    error: str | None
    spec: str | None  # last valid spec, JSON
    path: str | None


class Run(NamedTuple):
    id: int
    run_id: str
    pipeline: str
    logical_date: datetime
    ds: str
    data_interval_start: datetime | None
    data_interval_end: datetime | None
    run_type: str
    state: State
    params: str  # JSON
    priority: int
    batch: str | None
    max_active: int | None
    created: float
    start: float | None
    end: float | None
    seq: int | None
    spec: str | None = None  # the snapshot (JSON); None where the query leaves it out (it can be big)


class TaskInstance(NamedTuple):
    id: int
    run: int
    task: str  # 'name', or 'name[i]' for a mapped instance
    base: str  # 'name'
    map_index: int | None
    item: str | None
    state: State
    try_number: int
    budget_base: int  # try_number when its retry budget was last renewed
    next_try_at: float | None
    exit_code: int | None
    reason: str | None
    start: float | None
    end: float | None
    sensor_started: float | None
    sensor_next: float | None


class Try(NamedTuple):
    id: int
    ti: int
    try_number: int
    state: State  # starting | running | success | failed | lost
    launcher_pid: int | None
    launcher_start: str | None
    pid: int | None
    pid_start: str | None
    boot_id: str | None
    status_path: str | None
    log_path: str | None
    timeout: float | None
    pool: str | None
    start: float | None
    end: float | None
    exit_code: int | None
    reason: str | None
    # of its task instance, where the query joins it
    run: int | None = None
    task: str | None = None
    base: str | None = None


class Event(NamedTuple):
    id: int
    ts: float
    pipeline: str | None
    run: int | None
    task: str | None
    kind: str
    message: str | None


class CatchupSkip(NamedTuple):
    """Missed runs a bounded catch-up left out: logical dates ``first`` to ``last``."""
    pipeline: str
    first: datetime
    last: datetime
    count: int
    capped: bool  # the count stopped at a cap: at least this many
    bound: str  # the spec's bound in its words, e.g. "catchup window 3d"
    message: str
    ts: float


class AssetEvent(NamedTuple):
    id: int
    asset: str
    ds: str
    pipeline: str  # producer
    task: str
    run: int | None
    complete: bool  # the producing run's interval reached the end of ds
    ts: float


class AssetLatest(NamedTuple):
    """Per (asset, ds): the newest event's id and time, and how many events there are."""

    asset: str
    ds: str
    event: int
    ts: float
    n: int


class FileTrigger(NamedTuple):
    id: int
    pipeline: str
    path: str
    size: int
    mtime_ns: int
    run: int | None
    ts: float


class SlaMiss(NamedTuple):
    id: int
    pipeline: str
    run: int
    task: str  # '' for the run's own SLA
    deadline: float
    ts: float
    # of its run
    run_id: str
    ds: str
    logical_date: datetime


class Failure(NamedTuple):
    """A failed task instance with its run and the log of its last try."""

    task: str
    try_number: int
    exit_code: int | None
    reason: str | None
    end: float | None
    pipeline: str
    run_id: str
    ds: str
    logical_date: datetime
    log_path: str | None


class StateCount(NamedTuple):
    pipeline: str
    state: State
    n: int


class FinishedRun(NamedTuple):
    """A pipeline's run that finished last."""

    pipeline: str
    state: State
    start: float | None
    end: float | None
