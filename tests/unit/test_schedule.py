from __future__ import annotations

import datetime as dt

import pytest

from cleanup_operator.schedule import Cron, ScheduleError

UTC = dt.UTC


def t(s: str) -> dt.datetime:
    return dt.datetime.fromisoformat(s).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("expr", "after", "expected"),
    [
        ("* * * * *", "2026-11-24T10:00:30", "2026-11-24T10:01:00"),
        ("0 4 * * SUN", "2026-11-24T10:00:00", "2026-11-29T04:00:00"),
        ("*/15 * * * *", "2026-11-24T10:07:00", "2026-11-24T10:15:00"),
        ("0 0 1 1 *", "2026-11-24T10:00:00", "2027-01-01T00:00:00"),
        ("@daily", "2026-11-24T10:00:00", "2026-11-25T00:00:00"),
        ("30 2 1-7 * 1", "2026-11-24T10:00:00", "2026-11-30T02:30:00"),  # day-of-month OR day-of-week
        ("0 12 * JAN,dec *", "2026-11-24T10:00:00", "2026-12-01T12:00:00"),
    ],
)
def test_next_after(expr: str, after: str, expected: str) -> None:
    assert Cron.parse(expr).next_after(t(after)) == t(expected)


def test_last_due_collapses_missed_ticks() -> None:
    cron = Cron.parse("0 * * * *")
    assert cron.last_due(t("2026-11-24T01:30:00"), t("2026-11-24T05:10:00")) == t("2026-11-24T05:00:00")
    assert cron.last_due(t("2026-11-24T05:00:00"), t("2026-11-24T05:59:00")) is None


@pytest.mark.parametrize(
    "expr", ["0 3 * *", "61 * * * *", "* * 0 * *", "* * * 13 *", "*/0 * * * *", "x * * * *"]
)
def test_rejects(expr: str) -> None:
    with pytest.raises(ScheduleError):
        Cron.parse(expr)
