"""Admission rules that need more than a pattern: bounded durations, cron and Quartz schedules.

Each rule exists twice and the two must agree: as CEL (``x-kubernetes-validations``, checked by the
API server at ``kubectl apply``) and as Python (pydantic validators here, :mod:`cleanup_operator.schedule`,
and ``check_quartz`` in the CleanupPolicy reconciler), which the operator applies to what it reads.
tests/unit/test_validation.py and the cluster tier's admission tests hold them to the same answers.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, core_schema

from .. import schedule

DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Seconds in a Go-style duration such as ``1h30m`` or ``15s``."""
    if not re.fullmatch(DURATION_PATTERN, text):
        raise ValueError(f"not a duration: {text!r} (use Go syntax such as 30s, 10m, 1h)")
    return sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(text))


def cel(rule: str, message: str) -> dict[str, str]:
    return {"rule": rule, "message": message}


@dataclass(frozen=True)
class DurationRange:
    """``Annotated[str, DurationRange("1s", "168h")]``: a Go-style duration within bounds.

    The same bounds become a CEL rule (CEL's ``duration()`` parses Go durations) and a pydantic check.
    """

    minimum: str
    maximum: str

    @property
    def text(self) -> str:
        return f"from {self.minimum} to {self.maximum}"

    @property
    def message(self) -> str:
        return f"must be a duration {self.text}"

    def check(self, value: str) -> str:
        seconds = parse_duration(value)
        if not parse_duration(self.minimum) <= seconds <= parse_duration(self.maximum):
            raise ValueError(f"{value!r} {self.message}")
        return value

    def rule(self) -> dict[str, str]:
        return cel(
            f"!self.matches(r'{DURATION_PATTERN}') || (duration(self) >= duration('{self.minimum}')"
            f" && duration(self) <= duration('{self.maximum}'))",
            self.message,
        )

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        return core_schema.no_info_after_validator_function(self.check, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        out = handler(schema)
        out["x-kubernetes-validations"] = [self.rule()]
        return out


#: How often a resource is reconciled: not a hot loop, and at least weekly.
INTERVAL = DurationRange("1s", "168h")
#: How often a running run or prune is polled.
POLL_INTERVAL = DurationRange("500ms", "1h")
#: One HTTP request to a vendor.
TIMEOUT = DurationRange("1s", "5m")


# Regular expressions only: CEL's cost estimate of split/findAll comprehensions over a 128-character
# string is far over the API server's budget, while matches() is linear in the string's length.


def _alt(values: Iterable[str]) -> str:
    return "(" + "|".join(values) + ")"


def _number(lo: int, hi: int) -> str:
    """A regex of the decimal numbers lo..hi, leading zeros allowed (as int() allows them)."""
    return "0*" + _alt(str(n) for n in range(hi, lo - 1, -1))


# Five-field cron (schedule.py): minute hour day-of-month month day-of-week, or an @-macro.

#: (name, lowest, highest, names) of each field, as schedule.py parses them.
CRON5_FIELDS: tuple[tuple[str, int, int, tuple[str, ...]], ...] = (
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day-of-month", 1, 31, ()),
    ("month", 1, 12, tuple(schedule.MONTHS)),
    ("day-of-week", 0, 7, tuple(schedule.DAYS)),
)
_STEP = "(/0*[1-9][0-9]*)?"
#: Month numbers whose longest month has fewer than 30 or 31 days.
_SHORTER_THAN = {30: frozenset({2}), 31: frozenset({2, 4, 6, 9, 11})}

CRON5_RANGE_MESSAGE = (
    "schedule: each field must be in range (minute 0-59, hour 0-23, day-of-month 1-31, month 1-12 or"
    " jan-dec, day-of-week 0-7 or sun-sat), as a value, a range a-b, '*', a list of these, each with"
    " an optional step /n where n > 0"
)
CRON5_ORDER_MESSAGE = "schedule: a range a-b needs a <= b"
CRON5_NEVER_MESSAGE = (
    "schedule: this schedule never fires: no month in it has that day of the month (such as 30 2 or"
    " 31 4); use a day the months have, or restrict the day of the week instead"
)


def _cron5_value(lo: int, hi: int, names: tuple[str, ...]) -> str:
    return _alt([_number(lo, hi), *names]) if names else _number(lo, hi)


def _cron5_field(lo: int, hi: int, names: tuple[str, ...]) -> str:
    value = _cron5_value(lo, hi, names)
    part = rf"(\*|{value}(-{value})?){_STEP}"
    return f"{part}(,{part})*"


def cron5_syntax() -> str:
    """A regex of the five-field schedules whose every value is in its field's range."""
    fields = r"\s+".join(_cron5_field(lo, hi, names) for _, lo, hi, names in CRON5_FIELDS)
    return rf"(?i)^({fields})$"


def _month_token(m: int) -> str:
    return _alt([f"0*{m}", schedule.MONTHS[m - 1]])


def _months_within(allowed: frozenset[int]) -> str:
    """A regex of the month fields whose months are all in ``allowed`` (by schedule.py's own parser)."""
    big_step = "0*(1[2-9]|[2-9][0-9]|[1-9][0-9][0-9]+)"  # any step >= 12 leaves the first month alone
    parts: list[str] = []
    for a in range(1, 13):
        for b in [None, *range(a, 13)]:
            for step in [None, *range(1, 12)]:
                text = str(a) if b is None else f"{a}-{b}"
                if step is not None:
                    text += f"/{step}"
                if not schedule.field_values(text, 3) <= allowed:
                    continue
                regex = _month_token(a) + ("" if b is None else "-" + _month_token(b))
                parts.append(regex if step is None else f"{regex}/0*{step}")
            if schedule.field_values(str(a), 3) <= allowed:
                parts.append(_month_token(a) + ("" if b is None else "-" + _month_token(b)) + "/" + big_step)
    part = _alt(parts)
    return f"{part}(,{part})*"


def cron5_never_fires() -> str:
    """A regex of the schedules that never fire: a day of the month that no month in them has.

    Only a restricted day of the month with an unrestricted day of the week (schedule.py's rule) can
    do that, and only with days 30 or 31 and months that are all shorter.
    """
    alternatives = []
    for day, months in _SHORTER_THAN.items():
        start = _alt(str(d) for d in range(31, day - 1, -1))
        dom_part = f"0*{start}(-0*{start})?{_STEP}"
        dom = f"{dom_part}(,{dom_part})*"
        alternatives.append(rf"\S+\s+\S+\s+{dom}\s+{_months_within(months)}\s+\*")
    return "(?i)^(" + "|".join(alternatives) + ")$"


def cron5_rules() -> list[dict[str, str]]:
    """CEL rules of a five-field cron string (``self``), the same as :meth:`schedule.Cron.parse`."""
    syntax = cron5_syntax()
    names = (
        "{"
        + ", ".join(
            [f"'{n}': {i + 1}" for i, n in enumerate(schedule.MONTHS)]
            + [f"'{n}': {i}" for i, n in enumerate(schedule.DAYS)]
        )
        + "}"
    )

    def value(x: str) -> str:
        return f"({x} in {names} ? {names}[{x}] : int({x}))"

    a, b = "r.split('-')[0]", "r.split('-')[1]"
    return [
        cel(f"self.startsWith('@') || self.matches(r'{syntax}')", CRON5_RANGE_MESSAGE),
        cel(
            f"self.startsWith('@') || !self.matches(r'{syntax}')"
            f" || self.lowerAscii().findAll('[0-9a-z]+-[0-9a-z]+').all(r, {value(a)} <= {value(b)})",
            CRON5_ORDER_MESSAGE,
        ),
        cel(f"!self.matches(r'{cron5_never_fires()}')", CRON5_NEVER_MESSAGE),
    ]


# Quartz (CleanupPolicy cronExp): seconds minutes hours day-of-month month day-of-week [year].

_QUARTZ_CHARS = "0-9*?,/LW#A-Za-z-"
QUARTZ_PATTERN = rf"^\s*[{_QUARTZ_CHARS}]+(\s+[{_QUARTZ_CHARS}]+){{5,6}}\s*$"
#: (name, lowest, highest) of the numeric values of each field (names like MON or JAN are not checked).
QUARTZ_FIELDS: tuple[tuple[str, int, int], ...] = (
    ("seconds", 0, 59),
    ("minutes", 0, 59),
    ("hours", 0, 23),
    ("day-of-month", 1, 31),
    ("month", 1, 12),
    ("day-of-week", 1, 7),
)
QUARTZ_FORMAT_MESSAGE = (
    "cronExp: a Quartz expression of 6 or 7 fields (seconds minutes hours day-of-month month"
    " day-of-week [year]) of digits, letters and * ? , / - #, or empty for manual runs only"
)
QUARTZ_QUESTION_MESSAGE = (
    "cronExp: Quartz needs '?' as the whole day-of-month or day-of-week field, in exactly one of them"
    " and nowhere else (e.g. '0 0 3 ? * SUN' or '0 0 3 1 * ?')"
)


def quartz_range_message(name: str, lo: int, hi: int) -> str:
    return f"cronExp: the {name} field takes values {lo}-{hi}"


def quartz_question() -> str:
    """A regex of the expressions with '?' as the whole day-of-month or day-of-week, and nowhere else."""
    g = f"[{_QUARTZ_CHARS.replace('?', '')}]+"
    return rf"^\s*{g}\s+{g}\s+{g}\s+(\?\s+{g}\s+{g}|{g}\s+{g}\s+\?)(\s+{g})?\s*$"


def quartz_in_range(index: int) -> str:
    """A regex of the expressions whose field ``index`` has all numbers before its first '/' in range."""
    _, lo, hi = QUARTZ_FIELDS[index]
    other = _QUARTZ_CHARS.replace("0-9", "").replace("/", "")
    number = _number(lo, hi)
    checked = f"[{other}]*({number}[{other}]+)*({number})?(/[{_QUARTZ_CHARS}]*)?"
    fields = [checked if i == index else f"[{_QUARTZ_CHARS}]+" for i in range(6)]
    return r"^\s*" + r"\s+".join(fields) + rf"(\s+[{_QUARTZ_CHARS}]+)?\s*$"


def quartz_rules() -> list[dict[str, str]]:
    """CEL rules of a Quartz cron string (``self``), the same as the reconciler's ``check_quartz``."""
    guard = f"self == '' || !self.matches(r'{QUARTZ_PATTERN}') || "
    rules = [
        cel(f"self == '' || self.matches(r'{QUARTZ_PATTERN}')", QUARTZ_FORMAT_MESSAGE),
        cel(guard + f"self.matches(r'{quartz_question()}')", QUARTZ_QUESTION_MESSAGE),
    ]
    for i, (name, lo, hi) in enumerate(QUARTZ_FIELDS):
        rules.append(
            cel(guard + f"self.matches(r'{quartz_in_range(i)}')", quartz_range_message(name, lo, hi))
        )
    return rules
