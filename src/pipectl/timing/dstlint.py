"""DST lint: the dates on which a cron schedule's wall time is skipped or repeated.

What happens on each such date is asked of the timetable itself (CronTimetable's
resolution of a wall time), so the lint can never describe a rule the scheduler
does not apply.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from pipectl.timing.clock import UTC, aware, zone
from pipectl.timing.timetable import CronTimetable, _transition

def _transitions(tz, start: datetime, end: datetime) -> list[datetime]:
    """UTC instants in [start, end) at which ``tz`` changes its UTC offset."""
    out = []
    t = start.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    step = timedelta(hours=12)  # shorter than any two transitions apart
    while t < end:
        nxt = t + step
        if t.astimezone(tz).utcoffset() != nxt.astimezone(tz).utcoffset():
            at = _transition(tz, t, nxt)
            if start <= at < end:
                out.append(at)
        t = nxt
    return out


def offset_changes(tz: str | None, start: datetime, end: datetime) -> list[str]:
    """Each change of ``tz``'s UTC offset in [start, end), in words: ``America/New_York:
    2026-03-08 02:00 EST -> 03:00 EDT (clocks go forward 1h)``."""
    tzinfo = zone(tz)
    if tzinfo is UTC:
        return []
    out = []
    for at in _transitions(tzinfo, aware(start), aware(end)):
        before = (at - timedelta(seconds=1)).astimezone(tzinfo)
        after = at.astimezone(tzinfo)
        shift = after.utcoffset() - before.utcoffset()
        wall_before = (at + before.utcoffset()).replace(tzinfo=None)
        way = "forward" if shift > timedelta(0) else "back"
        hours = abs(shift.total_seconds()) / 3600
        out.append(f"{tz}: {wall_before:%Y-%m-%d %H:%M} {before.tzname()} -> {after:%H:%M} {after.tzname()} "
                   f"(clocks go {way} {hours:g}h)")
    return out


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _times_words(times: list[datetime]) -> str:
    words = [f"{t:%H:%M}" for t in times]
    if len(words) > 4:
        return f"{words[0]} to {words[-1]} ({len(words)} fire times)"
    return _join(words)


def dst_notes(expr: str, tz: str | None, start: datetime, end: datetime) -> list[str]:
    """What a DST change does to cron ``expr`` in ``tz`` between ``start`` and ``end``, one line per day.

    A wall time in a skipped hour runs right after the jump (a fixed-time job) or not at all
    (a minute or hour field starting with ``*``); a wall time in a repeated hour runs once, at its
    first occurrence (fixed time), or twice (``*``). The outcome is the evaluator's, not re-derived.
    """
    tzinfo = zone(tz)
    if tzinfo is UTC:
        return []
    tt = CronTimetable(expr, tz)
    notes = []
    for at in _transitions(tzinfo, aware(start), aware(end)):
        before = (at - timedelta(seconds=1)).astimezone(tzinfo).utcoffset()
        after = at.astimezone(tzinfo).utcoffset()
        wall = (at + min(before, after)).replace(tzinfo=None)  # first wall time of the odd stretch
        width = abs(after - before)
        hit = [datetime.combine(d, datetime.min.time()) + timedelta(hours=h, minutes=m)
               for d in sorted({wall.date(), (wall + width).date()}) if tt.spec.day_matches(d)
               for h, m in tt._times]
        hit = sorted(n for n in hit if wall <= n < wall + width)
        if not hit:
            continue
        day = hit[0].date().isoformat()
        name = tt.tz_name
        several = len(hit) > 1
        if after > before:
            fires = sorted({f for n in hit for f in tt._resolve(n)})
            what = f"{_times_words(hit)} {'do' if several else 'does'} not exist on {day} in {name}"
            if fires:
                notes.append(f"{what}: {'run' if several else 'runs'} {'once, ' if several else ''}"
                             f"at {fires[0].astimezone(tzinfo):%H:%M}")
            else:
                notes.append(f"{what}: {'they do' if several else 'it does'} not run (the minute or hour field starts with *)")
        else:
            what = f"{_times_words(hit)} {'occur' if several else 'occurs'} twice on {day} in {name}"
            if tt.spec.wild:
                notes.append(f"{what}: {'each runs' if several else 'runs'} twice "
                             f"(UTC{_offset(before)} and UTC{_offset(after)})")
            else:
                notes.append(f"{what}: {'each runs' if several else 'runs'} once, at the first (UTC{_offset(before)})")
    return notes


def _offset(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    sign = "-" if minutes < 0 else "+"
    h, m = divmod(abs(minutes), 60)
    return f"{sign}{h:02d}:{m:02d}"


def dst_warnings(pipeline, now: datetime, days: int = 365) -> list[str]:
    """DST notes for every cron schedule of ``pipeline`` over the next ``days``, each naming the
    pipeline and, when it has several cron schedules, the expression."""
    from pipectl.model.pipeline import CronSchedule

    crons = [s if isinstance(s, CronSchedule) else CronSchedule(s)
             for s in pipeline.time_schedules if isinstance(s, (str, CronSchedule))]
    out = []
    for s in crons:
        label = pipeline.name if len(crons) == 1 else f"{pipeline.name} ({s.cron})"
        for note in dst_notes(s.cron, s.timezone or pipeline.timezone, now, now + timedelta(days=days)):
            out.append(f"{label}: {note}")
    return out
