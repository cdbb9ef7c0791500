"""A tick as cron runs it: the scheduler's pass (engine.tick), then what a full pass
publishes: the ``metrics_file`` of pipectl.toml, rewritten atomically, so no second
cron line is needed for node_exporter's textfile collector. A no-op tick (answered
before any of this is imported, or found to have nothing to do) leaves it alone; a
metrics file that cannot be written is reported in the tick's log and never fails
the tick."""
from __future__ import annotations

from pipectl.engine.tick import TickResult, tick as scheduler_tick


def tick(config, clock, *, wait: bool = False, log=None) -> TickResult:
    result = scheduler_tick(config, clock, wait=wait, log=log)
    if config.metrics_file and not result.busy and not result.fast:
        result.metrics_error = write_metrics(config)
    return result


def write_metrics(config) -> str | None:
    """Rewrite the metrics file; the reason when it could not be written."""
    import sqlite3

    from pipectl.ops.metrics import collect, publish
    from pipectl.state.store import open_store
    try:
        store = open_store(config, create=False)
        try:
            text = collect(config, store)
        finally:
            store.close()
        publish(config, text, config.metrics_file)
    except (OSError, sqlite3.Error) as e:
        return f"cannot write metrics_file {config.metrics_file}: {getattr(e, 'strerror', None) or e}"
    return None
