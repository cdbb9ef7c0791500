"""Schedules: cron and interval evaluation, exact across DST, and their descriptions.

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

import re
from bisect import bisect_right
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

UTC = timezone.utc

NICKNAMES = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}

_MONTH_NAMES = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
_DAY_NAMES = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
_MONTH_WORDS = ["January", "February", "March", "April", "May", "June", "July", "August",
                "September", "October", "November", "December"]
_DAY_WORDS = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"]

# (name, low, high, names -> value)
_FIELDS = (
    ("minute", 0, 59, None),
    ("hour", 0, 23, None),
    ("day-of-month", 1, 31, None),
    ("month", 1, 12, {n: i + 1 for i, n in enumerate(_MONTH_NAMES)}),
    ("day-of-week", 0, 7, {n: i for i, n in enumerate(_DAY_NAMES)}),
)
# February may have 29 days: a day-of-month that exists in no listed month never fires.
_MAX_DAYS = (0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_NUM = re.compile(r"[0-9]+\Z")


class _FieldError(ValueError):
    pass


@dataclass(frozen=True)
class CronSpec:
    """A parsed 5-field cron expression (nicknames expanded)."""

    expr: str
    fields: tuple[str, ...]  # the five field texts as written (after nickname expansion)
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    doms: frozenset[int]
    months: frozenset[int]
    dows: frozenset[int]  # 0 = Sunday; 7 folded into 0
    dom_star: bool
    dow_star: bool
    wild: bool  # minute or hour field starts with '*': cronie's "wildcard job"

    def day_matches(self, d: date) -> bool:
        if d.month not in self.months:
            return False
        dom_ok = d.day in self.doms
        dow_ok = (d.isoweekday() % 7) in self.dows
        # cronie: if either field starts with '*' both must match, else either one.
        if self.dom_star or self.dow_star:
            return dom_ok and dow_ok
        return dom_ok or dow_ok


def _parse_field(text: str, name: str, lo: int, hi: int, names: dict | None) -> set[int]:
    def bad() -> _FieldError:
        return _FieldError(f"{name} field '{text}' is not valid")

    def number(s: str) -> int:
        if _NUM.match(s):
            v = int(s)
            if not lo <= v <= hi:
                raise _FieldError(f"{name} field '{text}' out of range {lo}-{hi}")
            return v
        if names and s.lower() in names:
            return names[s.lower()]
        raise bad()

    out: set[int] = set()
    for part in text.split(","):
        base, slash, step_text = part.partition("/")
        step = 1
        if slash:
            if not _NUM.match(step_text):
                raise bad()
            step = int(step_text)
            if step == 0:
                raise _FieldError(f"{name} field '{text}' has a step of 0")
        if base == "*":
            a, b = lo, hi
        elif "-" in base:
            x, _, y = base.partition("-")
            a, b = number(x), number(y)
            if a > b:
                raise _FieldError(f"{name} field '{text}' has a backwards range '{base}'")
        elif base:
            a = number(base)
            # "5/15" means 5-59/15, as in cronsim and croniter
            b = hi if slash else a
        else:
            raise bad()
        out.update(range(a, b + 1, step))
    return out


@lru_cache(maxsize=256)
def _parse(expr: str) -> CronSpec:
    """Parse or raise ValueError with the user-facing message."""
    if not isinstance(expr, str):
        raise ValueError(f"bad cron expression {expr!r}: expected a string")
    text = expr.strip()
    prefix = f"bad cron expression '{expr}': "
    if text.startswith("@"):
        if text.lower() not in NICKNAMES:
            raise ValueError(prefix + f"unknown nickname '{text}' (use one of {', '.join(NICKNAMES)})")
        text = NICKNAMES[text.lower()]
    parts = text.split()
    if len(parts) != 5:
        raise ValueError(prefix + f"expected 5 fields, got {len(parts)}")
    try:
        values = [_parse_field(p, *f) for p, f in zip(parts, _FIELDS)]
    except _FieldError as e:
        raise ValueError(prefix + str(e)) from None
    minutes, hours, doms, months, dows = values
    dows = {0 if v == 7 else v for v in dows}
    dom_star, dow_star = parts[2].startswith("*"), parts[4].startswith("*")
    if (dom_star or dow_star) and not any(min(doms) <= _MAX_DAYS[m] for m in months):
        raise ValueError(prefix + f"day-of-month field '{parts[2]}' never occurs in month field '{parts[3]}'")
    return CronSpec(
        expr=expr, fields=tuple(parts), minutes=tuple(sorted(minutes)), hours=tuple(sorted(hours)),
        doms=frozenset(doms), months=frozenset(months), dows=frozenset(dows),
        dom_star=dom_star, dow_star=dow_star,
        wild=parts[0].startswith("*") or parts[1].startswith("*"),
    )


def parse_cron(expr: str) -> CronSpec:
    """Parsed expression; ValueError (message as ``cron_error``) when invalid."""
    return _parse(expr)


def cron_error(expr: str) -> str | None:
    """None when ``expr`` is a valid cron expression, else one message naming the field at fault."""
    try:
        _parse(expr)
    except ValueError as e:
        return str(e)
    return None


def timezone_error(name: str) -> str | None:
    """None when ``name`` is a known IANA timezone."""
    try:
        _zone(name)
    except ValueError as e:
        return str(e)
    return None


@lru_cache(maxsize=64)
def _zone(name: str | None) -> ZoneInfo | timezone:
    if name in (None, "", "UTC", "Etc/UTC", "Z"):
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise ValueError(f"unknown timezone '{name}'") from None


def to_local(dt: datetime, tz: str | None) -> datetime:
    """The aware instant ``dt`` shown in timezone ``tz``."""
    return dt.astimezone(_zone(tz))


def ds_of(logical_date: datetime, tz: str | None) -> str:
    """``ds``: the logical date's calendar date in the pipeline's timezone."""
    return to_local(logical_date, tz).date().isoformat()


def _aware(t: datetime) -> datetime:
    if t.tzinfo is None or t.utcoffset() is None:
        raise ValueError(f"naive datetime {t.isoformat()}: expected an aware instant")
    return t


# ---------------------------------------------------------------------------
# timetables


class Timetable:
    """Fire instants of a schedule. Every instant returned is an aware UTC datetime."""

    def next_after(self, t: datetime) -> datetime | None:  # pragma: no cover - abstract
        raise NotImplementedError

    def latest_at_or_before(self, t: datetime) -> datetime | None:  # pragma: no cover - abstract
        raise NotImplementedError

    def previous_before(self, t: datetime) -> datetime | None:
        """Latest fire instant strictly before ``t``."""
        return self.latest_at_or_before(_aware(t) - timedelta(microseconds=1))

    def fires_at(self, t: datetime) -> bool:
        return self.latest_at_or_before(t) == t


# Nothing fires for 400 years: give up (only reachable with exotic expressions).
_SCAN_DAYS = 146_097


class CronTimetable(Timetable):
    def __init__(self, expr: str, tz: str | None):
        self.spec = _parse(expr)
        self.tz_name = tz or "UTC"
        self.tz = _zone(tz)
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
        t = _aware(t).astimezone(UTC)
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
        t = _aware(t).astimezone(UTC)
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
        self.anchor = _aware(anchor).astimezone(UTC)

    def __repr__(self) -> str:
        return f"EveryTimetable({self.step.total_seconds()!r}, {self.anchor.isoformat()})"

    def next_after(self, t: datetime) -> datetime | None:
        t = _aware(t).astimezone(UTC)
        if t < self.anchor:
            return self.anchor
        return self.anchor + ((t - self.anchor) // self.step + 1) * self.step

    def latest_at_or_before(self, t: datetime) -> datetime | None:
        t = _aware(t).astimezone(UTC)
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


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


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
        return EveryTimetable(schedule.every, anchor if anchor is not None else _EPOCH)
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
    now = _aware(now).astimezone(UTC)
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


# ---------------------------------------------------------------------------
# descriptions


def _join(items: list[str], word: str = "and") -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + f" {word} " + items[-1]


def _runs(values: list[int]) -> list[tuple[int, int]]:
    runs: list[list[int]] = []
    for v in values:
        if runs and v == runs[-1][1] + 1:
            runs[-1][1] = v
        else:
            runs.append([v, v])
    return [(a, b) for a, b in runs]


def _phrase(values: list[int], fmt, word: str = "and") -> str:
    """'Monday through Friday', '1, 15 and 20 through 25'."""
    items: list[str] = []
    for a, b in _runs(values):
        if b - a >= 2:
            items.append(f"{fmt(a)} through {fmt(b)}")
        else:
            items.extend(fmt(v) for v in range(a, b + 1))
    return _join(items, word)


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _star_step(text: str) -> int | None:
    m = re.fullmatch(r"\*/([0-9]+)", text)
    return int(m.group(1)) if m else None


def _plural(n: int, unit: str) -> str:
    return f"{unit}" if n == 1 else f"{n} {unit}s"


def _time_words(spec: CronSpec) -> tuple[str, bool]:
    """Phrase for minute+hour, and whether it names clock times (then 'every day' reads well)."""
    mtext, htext = spec.fields[0], spec.fields[1]
    mins, hours = list(spec.minutes), list(spec.hours)
    all_m, all_h = len(mins) == 60 and mtext.startswith("*"), len(hours) == 24 and htext.startswith("*")
    mstep, hstep = _star_step(mtext), _star_step(htext)
    if not spec.wild and len(mins) * len(hours) <= 6:
        return "at " + _join([f"{h:02d}:{m:02d}" for h in hours for m in mins]), True

    if all_m:
        mpart = "every minute"
    elif mstep and 60 % mstep == 0:
        mpart = f"every {_plural(mstep, 'minute')}"
    else:
        # "*/7" restarts at each hour (..., 49, 56, 0): listing the minutes says so.
        mpart = ("at minute " if len(mins) == 1 else "at minutes ") + _phrase(mins, str)
    every_like = mpart.startswith("every")

    if all_h:
        if every_like:
            return mpart, False
        return mpart + " of every hour", False
    if hstep and 24 % hstep == 0:
        hpart = f"every {_ordinal(hstep)} hour" if hstep > 1 else "every hour"
        return mpart + (" during " if every_like else " of ") + hpart, False
    hours_txt = ("hour " if len(hours) == 1 else "hours ") + _phrase(hours, str)
    if hstep:
        hours_txt = f"every {_ordinal(hstep)} hour ({_phrase(hours, str)})"
    return mpart + (" during " if every_like else " of ") + hours_txt, False


def _day_words(spec: CronSpec) -> str:
    domtext, dowtext = spec.fields[2], spec.fields[4]
    dom_all = domtext == "*" or (spec.dom_star and len(spec.doms) == 31)
    dow_all = dowtext == "*" or (spec.dow_star and len(spec.dows) == 7)
    step = _star_step(domtext)
    if step and step > 1:
        dom_words = f"every {_ordinal(step)} day of the month"
    else:
        doms = sorted(spec.doms)
        dom_words = ("day " if len(doms) == 1 else "days ") + _phrase(doms, str) + " of the month"
    # Monday first reads naturally; Sunday (0) goes last.
    keys = sorted((v - 1) % 7 for v in spec.dows)
    dow_words = _phrase(keys, lambda k: _DAY_WORDS[(k + 1) % 7])
    if dom_all and dow_all:
        return ""
    if dow_all:
        return "on " + dom_words
    if dom_all:
        return "on " + dow_words
    if spec.dom_star or spec.dow_star:
        return f"on {dom_words} if it is a " + _phrase(keys, lambda k: _DAY_WORDS[(k + 1) % 7], "or")
    return f"on {dom_words} or on {dow_words}"


def describe_cron(expr: str) -> str:
    """Plain-English wording of a valid cron expression; ValueError when invalid."""
    spec = _parse(expr)
    time_words, clock = _time_words(spec)
    months = sorted(spec.months)
    month_words = "" if len(months) == 12 else "in " + _phrase(months, lambda m: _MONTH_WORDS[m - 1])
    dom_all = spec.fields[2] == "*" or (spec.dom_star and len(spec.doms) == 31)
    dow_all = spec.fields[4] == "*" or (spec.dow_star and len(spec.dows) == 7)
    if dow_all and len(spec.doms) == 1 and len(months) == 1 and not dom_all:
        day_words, month_words = f"on {_MONTH_WORDS[months[0] - 1]} {next(iter(spec.doms))}", ""
    else:
        day_words = _day_words(spec)
        if not day_words and clock:
            day_words = "every day"
    return " ".join(w for w in (time_words, day_words, month_words) if w)


def _every_words(seconds: float) -> str:
    if seconds == int(seconds):
        s = int(seconds)
        for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
            if s and s % size == 0:
                return "every " + _plural(s // size, unit)
    return f"every {seconds:g} seconds"


def describe(schedule, tz: str | None = None) -> str:
    """Plain-English wording of any model schedule, a list of them, or None ('manual only').

    ``tz`` is the pipeline's timezone; a cron schedule's own timezone wins. A
    timezone other than UTC is named in parentheses.
    """
    from pipectl.model.pipeline import AssetSchedule, CronSchedule, EverySchedule, FileSchedule
    if schedule is None:
        return "manual only"
    if isinstance(schedule, (tuple, list)):
        if not schedule:
            return "manual only"
        return ", or ".join(describe(s, tz) for s in schedule)
    if isinstance(schedule, str):
        schedule = CronSchedule(schedule)
    if isinstance(schedule, CronSchedule):
        zone = schedule.timezone or tz
        words = describe_cron(schedule.cron)
        return words + (f" ({zone})" if zone and _zone(zone) is not UTC else "")
    if isinstance(schedule, EverySchedule):
        return _every_words(schedule.every)
    if isinstance(schedule, AssetSchedule):
        names = list(schedule.assets)
        if len(names) == 1:
            return f"when {names[0]} is updated"
        if schedule.mode == "any":
            return f"when {_join(names, 'or')} is updated"
        return f"when {_join(names)} are updated"
    if isinstance(schedule, FileSchedule):
        return f"on new files matching {schedule.file}"
    raise TypeError(f"unknown schedule {schedule!r}")
