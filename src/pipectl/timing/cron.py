"""Cron expressions: parsing into a :class:`CronSpec`, and which calendar days match.

Five fields (minute hour day-of-month month day-of-week) or a nickname, with
lists, ranges, steps and month/day names; errors name the field at fault. The
day rule is cronie's: when day-of-month or day-of-week starts with ``*`` both
must match, otherwise either one. Which instants fire on a matching day, DST
included, is :class:`pipectl.timing.timetable.CronTimetable`'s business.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from functools import lru_cache

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

