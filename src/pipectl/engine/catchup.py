"""Bounded catch-up: the missed intervals a ``catchup: {window: ...}`` or ``max_catchup_runs``
leaves out are never silent. Each skip is one event (status and show list it) and one row naming
its range (explain finds a date in it), written with the cursor that moves past the range."""
from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from pipectl.timing.clock import ds_of, iso, to_local
from pipectl.timing.durations import format_duration

if TYPE_CHECKING:
    from pipectl.engine.context import StepContext
    from pipectl.model.pipeline import Pipeline
    from pipectl.timing.timetable import CatchupSkip


def catchup_bound(pipeline: "Pipeline") -> str:
    """The spec's bound in its own words: ``catchup window 3d``, ``max_catchup_runs 5``, or both."""
    parts = []
    if pipeline.catchup_window is not None:
        parts.append(f"catchup window {format_duration(pipeline.catchup_window)}")
    if pipeline.max_catchup_runs is not None:
        parts.append(f"max_catchup_runs {pipeline.max_catchup_runs}")
    return ", ".join(parts)


def catchup_words(pipeline: "Pipeline") -> str:
    """What resuming after a gap does, for pause/unpause messages."""
    if not pipeline.catchup:
        return "only the latest missed interval runs"
    if pipeline.catchup_bounded:
        return f"missed intervals run oldest first, bounded by {catchup_bound(pipeline)} (older ones are skipped and recorded)"
    return "every missed interval runs (catchup)"


def _local(dt: datetime, tz: str) -> str:
    return to_local(dt, tz).strftime("%Y-%m-%d %H:%M")


def backfill_hint(pipeline: "Pipeline", first: datetime, last: datetime) -> str:
    return f"pipectl backfill {pipeline.name} --start {ds_of(first, pipeline.timezone)} --end {ds_of(last, pipeline.timezone)}"


def skip_message(pipeline: "Pipeline", skip: "CatchupSkip", bound: str) -> str:
    count = f"{skip.count}+" if skip.capped else str(skip.count)
    noun = "run" if skip.count == 1 and not skip.capped else "runs"
    span = (_local(skip.first, pipeline.timezone) if skip.first == skip.last
            else f"{_local(skip.first, pipeline.timezone)} to {_local(skip.last, pipeline.timezone)}")
    return (f"catch-up skipped {count} missed {noun}, {span} ({bound}); "
            f"`{backfill_hint(pipeline, skip.first, skip.last)}` runs {'it' if noun == 'run' else 'them'}")


def record_skip(ctx: "StepContext", pipeline: "Pipeline", skip: "CatchupSkip") -> str:
    """Inside the caller's transaction, with the cursor's move; returns the tick report's line."""
    now = ctx.clock.now()
    bound = catchup_bound(pipeline)
    message = skip_message(pipeline, skip, bound)
    ctx.store.add_catchup_skip(pipeline.name, now=now, first=iso(skip.first), last=iso(skip.last),
                               count=skip.count, capped=skip.capped, bound=bound, message=message)
    ctx.store.add_event("catchup_skipped", now=now, pipeline=pipeline.name, message=message)
    ctx.log(f"{pipeline.name}: {message}")
    return f"{pipeline.name} {message}"
