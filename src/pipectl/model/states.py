"""The states of runs, task instances and tries, and the transitions between them.

Every module names states through these constants, so the state machine lives in
one place and the store can check each write against it.
"""
from __future__ import annotations

from enum import StrEnum

TRIGGER_RULES = ("all_success", "all_done", "all_failed", "one_failed", "one_success", "none_failed",
                 "none_failed_min_one_success", "none_skipped")

class State(StrEnum):
    """Every state a run, a task instance or a try can be in. A StrEnum, so a member equals,
    hashes, formats and serializes (json) exactly as its name string does."""

    PENDING = "pending"
    QUEUED = "queued"
    STARTING = "starting"  # tries only: claimed, its process not yet known to run
    RUNNING = "running"
    UP_FOR_RETRY = "up_for_retry"
    SUCCESS = "success"
    FAILED = "failed"
    UPSTREAM_FAILED = "upstream_failed"
    SKIPPED = "skipped"
    LOST = "lost"  # tries only: its process vanished without a result


def state(text: str) -> State | str:
    """The member named ``text`` (a dict lookup: records are built by the thousand); an unknown
    name, which only a newer pipectl could have written, stays a plain string."""
    return _BY_NAME.get(text, text)


_BY_NAME: dict[str, State] = {m.value: m for m in State}

# the old constant names, kept as aliases of the members
PENDING = State.PENDING
RUNNING = State.RUNNING
UP_FOR_RETRY = State.UP_FOR_RETRY
SUCCESS = State.SUCCESS
FAILED = State.FAILED
UPSTREAM_FAILED = State.UPSTREAM_FAILED
SKIPPED = State.SKIPPED
QUEUED = State.QUEUED
STARTING = State.STARTING
LOST = State.LOST

# task instance states
TI_STATES = (PENDING, RUNNING, UP_FOR_RETRY, SUCCESS, FAILED, UPSTREAM_FAILED, SKIPPED)
TI_FINISHED = frozenset({SUCCESS, FAILED, UPSTREAM_FAILED, SKIPPED})
TI_ACTIVE = (PENDING, RUNNING, UP_FOR_RETRY)

# run states
RUN_STATES = (QUEUED, RUNNING, SUCCESS, FAILED)

# tries: a try is live (its process may exist) while starting or running
TRY_LIVE = (STARTING, RUNNING)

# The state machine. Every change of a task instance's or a run's state is one of these
# transitions, and ``Store.ti_transition`` / ``Store.run_transition`` apply it as ONE
# conditional UPDATE from the listed states (plus the guard named beside it). A writer
# whose read went stale (a tick, a reaper, an operator command racing another) changes
# nothing and is told so, instead of overwriting a state it never saw.
#   name: (from states, to states)
TI_TRANSITIONS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    # dispatch starts a try. Guard: no live try of this task instance.
    "claim": ((PENDING, UP_FOR_RETRY), (RUNNING,)),
    # the try holding it ended (exit, timeout, lost). Guard: the task instance is at that try.
    "finish": ((RUNNING,), (SUCCESS, UP_FOR_RETRY, FAILED, SKIPPED)),
    # its try was claimed but never started (launcher killed). Guard: at that try.
    "requeue": ((RUNNING,), (UP_FOR_RETRY,)),
    # a trigger rule decided it without running it
    "settle": ((PENDING,), (UPSTREAM_FAILED, SKIPPED)),
    # a sensor poke or a foreach command decided it (never a process of its own)
    "check": ((PENDING,), (SUCCESS, FAILED, SKIPPED)),
    # retry, backfill re-run: a finished one runs again. Guard: no live try.
    "reset": ((SUCCESS, FAILED, UPSTREAM_FAILED, SKIPPED), (PENDING,)),
    # mark: by hand, never while it runs (its try would overwrite the mark). Guard: no live try.
    "mark": ((PENDING, UP_FOR_RETRY, SUCCESS, FAILED, UPSTREAM_FAILED, SKIPPED), (SUCCESS, FAILED, SKIPPED)),
}
RUN_TRANSITIONS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    # under max_active_runs. Guard: fewer than the limit running in its (pipeline, batch).
    "promote": ((QUEUED,), (RUNNING,)),
    # the engine ends it. Guard: every task instance finished, no live try.
    "finish": ((RUNNING,), (SUCCESS, FAILED)),
    # retry, backfill re-run
    "reopen": ((SUCCESS, FAILED), (QUEUED,)),
    # a mark changed a finished run's task instances. Guard: every task instance finished.
    "resettle": ((SUCCESS, FAILED), (SUCCESS, FAILED)),
    # prune deletes it. Guard: every task instance finished, no live try.
    "prune": ((SUCCESS, FAILED), ()),
}
