"""The promote phase: queued runs start while their pipeline (or backfill batch) has room."""
from __future__ import annotations

from pipectl.engine.context import StepContext, StepReport
from pipectl.engine.rules import MaxActiveRuns


def promote(ctx: StepContext, report: StepReport | None = None) -> None:
    """queued -> running while the pipeline (or the backfill batch) is under its max_active_runs."""
    store = ctx.store

    def admit(run, limit: int) -> bool:
        with store.tx():
            return bool(store.promote_run(run.id, limit, ctx.clock.now()))

    MaxActiveRuns.promotion(store.active_runs(), lambda r: r.state, ctx.spec_of, admit, stop=ctx.out_of_time)
