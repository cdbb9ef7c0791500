"""Which pipeline and which run a reading or operator command means.

Every command that looks at one run (show, logs, explain, graph --date, retry,
mark) resolves it here, so ``--date``, ``--at`` and ``--run-id`` mean the same
thing everywhere, and a sub-daily pipeline's runs are never picked silently.

History outlives the YAML: a pipeline whose spec is broken today still has runs
that executed with their own snapshot. Reading them, and operating on them,
needs that snapshot, not a valid file; only creating new runs does.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import Any

from pipectl.model.errors import Param, UsageError
from pipectl.timing.clock import UTC


class NoRuns(UsageError):
    """Nothing named and nothing to show: reading commands say so and exit 0."""


@dataclass
class Resolved:
    """The pipeline a command works on: ``pipeline`` is the current spec, or, when the
    file is invalid (or gone) but runs exist, the newest snapshot; ``errors`` then holds
    why the current file cannot be used."""
    pipeline: Any
    errors: list[str] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return not self.errors


def snapshot_pipeline(run) -> Any:
    """The pipeline exactly as ``run`` was created with it."""
    from pipectl.model.pipeline import Pipeline
    from pipectl.state.store import loads
    return Pipeline.from_dict(loads(run.spec))


def resolve_pipeline(loaded, store, name: str) -> Resolved:
    """The named pipeline for commands on existing runs.

    A valid spec wins. An invalid or removed one falls back to the last spec the
    state file knows (the newest run's snapshot, else the last valid spec a tick
    saw), so history stays readable; with no history the spec's own error stands.
    """
    from pipectl.cli.args import resolve_pipeline as strict
    if name in loaded.pipelines:
        return Resolved(loaded.pipelines[name])
    invalid = getattr(loaded, "invalid", {}) or {}
    errors = [str(e) for e in invalid.get(name, [])] or ["spec file removed"]
    if store is not None:
        last = store.last_run(name)
        if last is not None:
            return Resolved(snapshot_pipeline(last), errors)
        row = store.pipeline_row(name)
        if row is not None and row.spec and name in invalid:
            from pipectl.model.pipeline import Pipeline
            from pipectl.state.store import loads
            return Resolved(Pipeline.from_dict(loads(row.spec)), errors)
    return Resolved(strict(loaded, name))  # raises: unknown (exit 2) or invalid (exit 1)


def _parse_at(value: str, tz: str, day: date | None) -> datetime:
    """``--at``: an ISO datetime (naive = the pipeline's timezone), or ``HH:MM[:SS]`` on ``--date``'s day."""
    from pipectl.cli.args import parse_date_arg, zone
    text = value.strip()
    if len(text) in (5, 8) and ":" in text and "T" not in text and "-" not in text:
        try:
            clock = time.fromisoformat(text)
        except ValueError:
            raise UsageError("bad ", Param("at"), f" {value!r}: expected an ISO 8601 datetime or HH:MM with ",
                             Param("date")) from None
        if day is None:
            raise UsageError(Param("at"), f" {value} is a time of day: add ", Param("date"), " YYYY-MM-DD")
        return datetime.combine(day, clock, tzinfo=zone(tz)).astimezone(UTC)
    when = parse_date_arg(text, "--at", tz)
    if not isinstance(when, datetime):
        when = datetime.combine(when, time(0), tzinfo=zone(tz)).astimezone(UTC)
    return when


def label(run, tz: str) -> str:
    """A run as a person names it: its logical date in the pipeline's zone, to the minute (second if needed)."""
    from pipectl.cli.args import zone
    dt = run.logical_date.astimezone(zone(tz))
    return dt.strftime("%Y-%m-%d %H:%M" + (":%S" if dt.second else ""))


def find_run(store, pipeline, date_: str | date | None = None, run_id: str | None = None,
             at: str | None = None, latest: bool = True):
    """The one run of ``pipeline`` that ``--run-id``, ``--at`` and ``--date`` name.

    ``--date YYYY-MM-DD`` matching several runs (a pipeline that runs more than once
    a day, or a manual run beside a scheduled one) is a UsageError that lists them:
    picking the newest silently shows the wrong run. Nothing given: the newest run
    (or a UsageError when ``latest`` is False).
    """
    from pipectl.cli.args import parse_date_arg
    name, tz = pipeline.name, pipeline.timezone
    if store is None and not (run_id or date_ or at):
        raise NoRuns(f"{name} has no runs yet")
    if store is None:
        raise UsageError(f"{name} has no runs yet")
    hint = f"see `pipectl runs {name}`"
    if run_id:
        run = store.run_by_run_id(name, run_id)
        if run is None:
            raise UsageError(f"no run {run_id!r} of {name} ({hint})")
        return run
    day: date | None = None
    when: date | datetime | None = None
    if date_:
        when = parse_date_arg(date_, tz=tz) if isinstance(date_, str) else date_
        if not isinstance(when, datetime):
            day = when
    if at:
        when = _parse_at(at, tz, day)
    if isinstance(when, datetime):
        run = store.run_by_date(name, when)
        if run is None:
            raise UsageError(f"no run of {name} at {when.astimezone(UTC).isoformat()} ({hint})")
        return run
    if when is not None:
        rows = store.runs_by_ds(name, when.isoformat())
        if not rows:
            raise UsageError(f"no run of {name} for {when.isoformat()} ({hint})")
        if len(rows) > 1:
            raise ambiguous(name, when.isoformat(), rows, tz)
        return rows[0]
    if not latest:
        raise UsageError("name the run with ", Param("date"), " D, ", Param("at"), " DATETIME or ", Param("run_id"),
                         f" ID ({hint})")
    run = store.last_run(name)
    if run is None:
        raise NoRuns(f"{name} has no runs yet")
    return run


def ambiguous(name: str, ds: str, rows, tz: str) -> UsageError:
    """One line: how many runs share the ds, which ones, and how to pick one."""
    labels = [f"{label(r, tz)} ({r.state})" for r in rows]
    shown = labels if len(labels) <= 8 else [*labels[:3], "…", *labels[-3:]]
    return UsageError(f"{ds} matches {len(rows)} runs of {name}: {', '.join(shown)}; pick one with ",
                      Param("at"), " HH:MM (with ", Param("date"), ") or ", Param("run_id"),
                      f" ID (see `pipectl runs {name}`)")


def history(c, name: str) -> Resolved:
    """:func:`resolve_pipeline` for a command context: opens the state file only when it must."""
    loaded = c.load()
    if name in loaded.pipelines:
        return Resolved(loaded.pipelines[name])
    from pipectl.state.store import existing_store
    store = existing_store(c.config())
    try:
        return resolve_pipeline(loaded, store, name)
    finally:
        if store is not None:
            store.close()
