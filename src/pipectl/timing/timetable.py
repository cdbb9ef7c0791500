"""Timetables: when a schedule fires, exact across DST, and which intervals are due.

Cron times are wall-clock times in the schedule's timezone and behave like
Debian's cron (cronie) on DST days (SPEC §3):

- a *fixed-time* job (neither the minute nor the hour field starts with ``*``)
  whose wall time falls in a skipped hour runs once, at the instant right after
  the jump; if its wall time occurs twice it runs at the first occurrence only;
- a *wildcard* job (minute or hour field starts with ``*``) runs at every real
  instant whose wall time matches: both copies of a repeated hour, nothing for a
  skipped one;
- ``every:`` intervals follow real elapsed time from their anchor.

croniter is deliberately not used here. Tested against croniter 7.0 (see
tests/test_sched_croniter.py) it runs fixed-time jobs in a repeated hour twice
(``30 1 * * *`` in America/New_York fires at 05:30Z and 06:30Z on 2026-11-01),
and asked for the next fire from inside the second copy of the hour it returns
that second copy again. A matcher that enumerates wall-clock candidates per
calendar day and resolves each with zoneinfo ``fold`` is smaller than the
wrapping needed to fix that, and it keeps ``pipectl tick`` import-light.
"""
from __future__ import annotations

from bisect import bisect_right
from datetime import date, datetime, timedelta

from pipectl.timing.clock import EPOCH, UTC, aware, zone
from pipectl.timing.cron import parse_cron



class Timetable:
    """Fire instants of a schedule. Every instant returned is an aware UTC datetime."""

    def next_after(self, t: datetime) -> datetime | None:  # pragma: no cover - abstract
        raise NotImplementedError

    def latest_at_or_before(self, t: datetime) -> datetime | None:  # pragma: no cover - abstract
        raise NotImplementedError

    def previous_before(self, t: datetime) -> datetime | None:
        """Latest fire instant strictly before ``t``."""
        return self.latest_at_or_before(aware(t) - timedelta(microseconds=1))

    def fires_at(self, t: datetime) -> bool:
        return self.latest_at_or_before(t) == t


# Nothing fires for 400 years: give up (only reachable with exotic expressions).
_SCAN_DAYS = 146_097


class CronTimetable(Timetable):
    def __init__(self, expr: str, tz: str | None):
        self.spec = parse_cron(expr)
        self.tz_name = tz or "UTC"
        self.tz = zone(tz)
        self._times = [(h, m) for h in self.spec.hours for m in self.spec.minutes]
        self._days: dict[date, list[datetime]] = {}

    def __repr__(self) -> str:
        return f"CronTimetable({self.spec.expr!r}, {self.tz_name!r})"

    # Fires whose wall-clock candidate lies on local calendar day d, sorted.
    def _day(self, d: date) -> list[datetime]:
        got = self._days.get(d)
        if got is not None:
            return got
        if len(self._days) > 1024:
            self._days.clear()
        out: list[datetime] = []
        if self.spec.day_matches(d):
            out = self._compute_day(d)
        self._days[d] = out
        return out

    def _compute_day(self, d: date) -> list[datetime]:
        tz = self.tz
        y, mo, dd = d.year, d.month, d.day
        if tz is UTC:
            return [datetime(y, mo, dd, h, m, tzinfo=UTC) for h, m in self._times]
        start = datetime(y, mo, dd, tzinfo=tz)
        nxt = d + timedelta(days=1)
        end = datetime(nxt.year, nxt.month, nxt.day, tzinfo=tz)
        off = start.utcoffset()
        plain = (
            off == end.utcoffset()
            and off == start.replace(fold=1).utcoffset()
            and off == end.replace(fold=1).utcoffset()
            and end.astimezone(UTC) - start.astimezone(UTC) == timedelta(days=1)
        )
        if plain:
            base = datetime(y, mo, dd, tzinfo=UTC) - off
            return [base + timedelta(hours=h, minutes=m) for h, m in self._times]
        found: set[datetime] = set()
        for h, m in self._times:
            found.update(self._resolve(datetime(y, mo, dd, h, m)))
        return sorted(found)

    def _resolve(self, naive: datetime) -> list[datetime]:
        tz = self.tz
        first = naive.replace(tzinfo=tz, fold=0).astimezone(UTC)
        second = naive.replace(tzinfo=tz, fold=1).astimezone(UTC)
        if first == second:
            return [first]
        if first.astimezone(tz).replace(tzinfo=None) == naive:
            # Repeated wall time: fold=0 is the earlier instant.
            return [first, second] if self.spec.wild else [first]
        # Skipped wall time.
        if self.spec.wild:
            return []
        return [_transition(tz, second, first)]

    def next_after(self, t: datetime) -> datetime | None:
        t = aware(t).astimezone(UTC)
        d = t.astimezone(self.tz).date() - timedelta(days=1)
        for _ in range(_SCAN_DAYS):
            if d.month not in self.spec.months:
                d = _first_of_next_month(d)
                continue
            fires = self._day(d)
            i = bisect_right(fires, t)
            if i < len(fires):
                best = fires[i]
                # A fire mapped from a gap at midnight may belong to the next day's list.
                later = self._day(d + timedelta(days=1))
                j = bisect_right(later, t)
                if j < len(later) and later[j] < best:
                    best = later[j]
                return best
            d += timedelta(days=1)
        return None

    def latest_at_or_before(self, t: datetime) -> datetime | None:
        t = aware(t).astimezone(UTC)
        d = t.astimezone(self.tz).date() + timedelta(days=1)
        for _ in range(_SCAN_DAYS):
            if d.month not in self.spec.months:
                d = d.replace(day=1) - timedelta(days=1)
                continue
            fires = self._day(d)
            i = bisect_right(fires, t)
            if i > 0:
                best = fires[i - 1]
                earlier = self._day(d - timedelta(days=1))
                j = bisect_right(earlier, t)
                if j > 0 and earlier[j - 1] > best:
                    best = earlier[j - 1]
                return best
            d -= timedelta(days=1)
        return None


def _first_of_next_month(d: date) -> date:
    return date(d.year + (d.month == 12), d.month % 12 + 1, 1)


def _transition(tz, lo: datetime, hi: datetime) -> datetime:
    """First instant in (lo, hi] whose UTC offset is the post-gap one (1 s resolution)."""
    after = hi.astimezone(tz).utcoffset()
    a, b = int(lo.timestamp()), int(hi.timestamp())
    while b - a > 1:
        mid = (a + b) // 2
        if datetime.fromtimestamp(mid, tz).utcoffset() == after:
            b = mid
        else:
            a = mid
    return datetime.fromtimestamp(b, UTC)


class EveryTimetable(Timetable):
    """``anchor + k * every`` for k >= 0, in real elapsed time."""

    def __init__(self, every: float, anchor: datetime):
        if not every or every <= 0:
            raise ValueError(f"bad interval {every!r}: must be positive")
        self.step = timedelta(seconds=every)
        self.anchor = aware(anchor).astimezone(UTC)

    def __repr__(self) -> str:
        return f"EveryTimetable({self.step.total_seconds()!r}, {self.anchor.isoformat()})"

    def next_after(self, t: datetime) -> datetime | None:
        t = aware(t).astimezone(UTC)
        if t < self.anchor:
            return self.anchor
        return self.anchor + ((t - self.anchor) // self.step + 1) * self.step

    def latest_at_or_before(self, t: datetime) -> datetime | None:
        t = aware(t).astimezone(UTC)
        if t < self.anchor:
            return None
        return self.anchor + ((t - self.anchor) // self.step) * self.step


class UnionTimetable(Timetable):
    """A pipeline listing several time schedules fires whenever any of them does."""

    def __init__(self, parts: list[Timetable]):
        self.parts = parts

    def next_after(self, t: datetime) -> datetime | None:
        got = [x for x in (p.next_after(t) for p in self.parts) if x is not None]
        return min(got) if got else None

    def latest_at_or_before(self, t: datetime) -> datetime | None:
        got = [x for x in (p.latest_at_or_before(t) for p in self.parts) if x is not None]
        return max(got) if got else None


def timetable(schedule, pipeline_tz: str | None, anchor: datetime | None = None) -> Timetable:
    """Timetable of a CronSchedule, EverySchedule, cron string, or a list of them.

    Cron runs in ``schedule.timezone`` or else ``pipeline_tz``. An interval is
    anchored at ``anchor`` (start_date's instant, or when a tick first saw the
    pipeline); without one it is aligned to the Unix epoch, which only previews use.
    Asset and file schedules have no timetable: a list skips them, alone they
    raise TypeError, as does a list holding none with one.
    """
    from pipectl.model.pipeline import CronSchedule, EverySchedule
    if isinstance(schedule, (tuple, list)):
        parts = [timetable(s, pipeline_tz, anchor) for s in schedule
                 if isinstance(s, (str, CronSchedule, EverySchedule))]
        if not parts:
            raise TypeError("no cron or interval schedule")
        return parts[0] if len(parts) == 1 else UnionTimetable(parts)
    if isinstance(schedule, str):
        return CronTimetable(schedule, pipeline_tz)
    if isinstance(schedule, CronSchedule):
        return CronTimetable(schedule.cron, schedule.timezone or pipeline_tz)
    if isinstance(schedule, EverySchedule):
        return EveryTimetable(schedule.every, anchor if anchor is not None else EPOCH)
    raise TypeError(f"{type(schedule).__name__} has no timetable")


def fire_times(expr: str, tz: str | None, after: datetime, count: int) -> list[datetime]:
    """The next ``count`` fire instants (UTC) of cron ``expr`` in ``tz`` strictly after ``after``."""
    tt = CronTimetable(expr, tz)
    out: list[datetime] = []
    t = after
    for _ in range(count):
        try:
            t = tt.next_after(t)
        except (OverflowError, ValueError):  # past year 9999: the calendar ends
            break
        if t is None:
            break
        out.append(t)
    return out


def due_intervals(
    tt: Timetable,
    cursor: datetime | None,
    start: datetime | None,
    end: datetime | None,
    now: datetime,
    catchup: bool,
    limit: int | None = None,
) -> list[tuple[datetime, datetime]]:
    """Data intervals ``[fire_k, fire_k+1)`` that are due, oldest first.

    Due means: ``fire_k+1 <= now``; ``fire_k >= start`` and ``>= cursor`` (the
    end of the last scheduled interval) when given; ``fire_k <= end`` when given.
    Without ``catchup`` only the most recent such interval. With ``catchup`` but
    neither ``cursor`` nor ``start`` there is no beginning to catch up from, so
    also only the most recent one. ``limit`` caps a catch-up list (oldest kept).
    """
    now = aware(now).astimezone(UTC)
    lower = max((x for x in (cursor, start) if x is not None), default=None)
    if catchup and lower is not None:
        out: list[tuple[datetime, datetime]] = []
        s = lower if tt.fires_at(lower) else tt.next_after(lower)
        while s is not None and (end is None or s <= end):
            e = tt.next_after(s)
            if e is None or e > now:
                break
            out.append((s, e))
            if limit is not None and len(out) >= limit:
                break
            s = e
        return out
    last_end = tt.latest_at_or_before(now)
    if last_end is None:
        return []
    s = tt.previous_before(last_end)
    if s is not None and end is not None and s > end:
        s = tt.latest_at_or_before(end)
    if s is None or (lower is not None and s < lower):
        return []
    e = tt.next_after(s)
    return [(s, e)] if e is not None and e <= now else []



class CatchupSkip:
    """The missed intervals a bounded catch-up leaves out: ``count`` of them, the first starting at
    ``first`` and the last at ``last``; the catch-up resumes at ``resume``. ``count`` stops at
    ``COUNT_CAP`` (``capped``): counting a year of minutely intervals would cost the tick seconds."""

    COUNT_CAP = 100_000
    __slots__ = ("first", "last", "resume", "count", "capped")

    def __init__(self, first: datetime, last: datetime, resume: datetime, count: int, capped: bool):
        self.first, self.last, self.resume, self.count, self.capped = first, last, resume, count, capped


def bounded_catchup(
    tt: Timetable,
    lower: datetime | None,
    now: datetime,
    window: float | None,
    max_runs: int | None,
) -> CatchupSkip | None:
    """What a catch-up bounded by ``window`` (seconds: keep the intervals that end after
    ``now - window``) and ``max_runs`` (keep the newest N) skips of the intervals due since
    ``lower``; None when it skips nothing. The most recent closed interval is always kept, so a
    bound never runs less than ``catchup: false`` would."""
    if lower is None:
        return None
    now = aware(now).astimezone(UTC)
    last_end = tt.latest_at_or_before(now)
    newest = tt.previous_before(last_end) if last_end is not None else None
    first = lower if tt.fires_at(lower) else tt.next_after(lower)
    if newest is None or first is None or first >= newest:
        return None
    resume = first
    if window is not None:
        # the interval holding the threshold is the oldest that ends after it
        edge = tt.latest_at_or_before(now - timedelta(seconds=window))
        if edge is not None and edge > resume:
            resume = edge
    if max_runs is not None:
        s = newest
        for _ in range(max_runs - 1):
            p = tt.previous_before(s)
            if p is None or p < first:
                break
            s = p
        if s > resume:
            resume = s
    resume = min(resume, newest)
    if resume <= first:
        return None
    count, s, last = 0, first, first
    while s is not None and s < resume and count < CatchupSkip.COUNT_CAP:
        count, last = count + 1, s
        s = tt.next_after(s)
    capped = s is not None and s < resume
    if capped:
        last = tt.previous_before(resume) or last
    return CatchupSkip(first, last, resume, count, capped)
