"""Schedules in plain English: ``at 02:00 every day (Europe/Paris)``, ``every 15 minutes``.

Used by ``list``, ``show`` and ``next``; the words follow the parsed fields, so
a description never disagrees with what :mod:`pipectl.timing.cron` accepted.
"""
from __future__ import annotations

import re

from pipectl.timing.clock import UTC, zone
from pipectl.timing.cron import CronSpec, parse_cron

_MONTH_WORDS = ["January", "February", "March", "April", "May", "June", "July", "August",
                "September", "October", "November", "December"]
_DAY_WORDS = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"]


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
    spec = parse_cron(expr)
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
        name = schedule.timezone or tz
        words = describe_cron(schedule.cron)
        return words + (f" ({name})" if name and zone(name) is not UTC else "")
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
