"""Five-field cron schedules (minute hour day-of-month month day-of-week), in UTC.

Enough of cron for spec.schedule: ``*``, lists, ranges, steps, month and weekday names, the
``@hourly``-style macros, and Vixie cron's rule that a restricted day-of-month and day-of-week
match when either matches.

A schedule that can never fire (a day-of-month no month in it has, such as ``0 0 30 2 *``) is
refused when parsed; the CRD's CEL rules (api/validation.py) refuse the same schedules at apply.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
MONTHS = "jan feb mar apr may jun jul aug sep oct nov dec".split()
DAYS = "sun mon tue wed thu fri sat".split()
_MONTHS = {m: i + 1 for i, m in enumerate(MONTHS)}
_DAYS = {d: i for i, d in enumerate(DAYS)}
_RANGES = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))
#: The longest each month can be (February has 29 days in leap years).
MONTH_DAYS = {1: 31, 2: 29, 3: 31, 4: 30, 5: 31, 6: 30, 7: 31, 8: 31, 9: 30, 10: 31, 11: 30, 12: 31}


class ScheduleError(ValueError):
    pass


def _field(text: str, lo: int, hi: int, names: dict[str, int]) -> frozenset[int]:
    values: set[int] = set()
    for part in text.lower().split(","):
        step = 1
        if "/" in part:
            part, step_text = part.split("/", 1)
            if not step_text.isdigit() or int(step_text) == 0:
                raise ScheduleError(f"bad step in {text!r}")
            step = int(step_text)
        if part == "*":
            start, end = lo, hi
        elif "-" in part:
            a, b = part.split("-", 1)
            start, end = _value(a, names), _value(b, names)
        else:
            start = _value(part, names)
            end = hi if step > 1 else start
        if not (lo <= start <= hi and lo <= end <= hi and start <= end):
            raise ScheduleError(f"{text!r} is outside {lo}-{hi}")
        values.update(range(start, end + 1, step))
    return frozenset(values)


def field_values(text: str, index: int) -> frozenset[int]:
    """The values field ``index`` (0 = minute … 4 = day-of-week) of a schedule takes for ``text``."""
    lo, hi = _RANGES[index]
    return _field(text, lo, hi, ({}, {}, {}, _MONTHS, _DAYS)[index])


def _value(text: str, names: dict[str, int]) -> int:
    if text in names:
        return names[text]
    if not (text.isascii() and text.isdigit()):
        raise ScheduleError(f"not a number or name: {text!r}")
    return int(text)


@dataclass(frozen=True)
class Cron:
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    day_restricted: bool
    weekday_restricted: bool

    @classmethod
    def parse(cls, expr: str) -> Cron:
        expr = MACROS.get(expr.strip().lower(), expr)
        fields = expr.split()
        if len(fields) != 5:
            raise ScheduleError(
                f"{expr!r}: a schedule has 5 fields (minute hour day-of-month month day-of-week)"
            )
        m, h, d, mo, w = (
            _field(f, lo, hi, names)
            for f, (lo, hi), names in zip(fields, _RANGES, ({}, {}, {}, _MONTHS, _DAYS), strict=True)
        )
        weekdays = frozenset(x % 7 for x in w)
        cron = cls(m, h, d, mo, weekdays, fields[2] != "*", fields[4] != "*")
        if cron.day_restricted and not cron.weekday_restricted and min(d) > max(MONTH_DAYS[x] for x in mo):
            raise ScheduleError(f"{expr!r} never fires: no month in it has day {min(d)}")
        return cron

    def _day_matches(self, t: dt.datetime) -> bool:
        dom = t.day in self.days
        dow = (t.isoweekday() % 7) in self.weekdays
        if self.day_restricted and self.weekday_restricted:
            return dom or dow
        return dom and dow

    def next_after(self, t: dt.datetime) -> dt.datetime:
        """The first tick strictly after ``t``."""
        t = t.replace(second=0, microsecond=0) + dt.timedelta(minutes=1)
        limit = t + dt.timedelta(days=366 * 5)
        while t < limit:
            if t.month not in self.months or not self._day_matches(t):
                t = (t + dt.timedelta(days=1)).replace(hour=0, minute=0)
                continue
            if t.hour not in self.hours:
                t = (t + dt.timedelta(hours=1)).replace(minute=0)
                continue
            if t.minute not in self.minutes:
                t += dt.timedelta(minutes=1)
                continue
            return t
        raise ScheduleError("the schedule never fires")

    def last_due(self, since: dt.datetime, now: dt.datetime) -> dt.datetime | None:
        """The latest tick in (since, now], or None: missed ticks collapse into one run."""
        since = max(since, now - dt.timedelta(days=2))  # bound the walk; missed ticks collapse anyway
        tick = self.next_after(since)
        if tick > now:
            return None
        while True:
            nxt = self.next_after(tick)
            if nxt > now:
                return tick
            tick = nxt
