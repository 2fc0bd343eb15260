"""The CEL rules of the CRDs say what the Python checks say: cron schedules, Quartz, durations.

The CEL rules of schedules and cronExp are regular expressions (``matches``) so that the API
server's cost budget allows them; here they run under Python's ``re`` (the expressions use only what
RE2 and ``re`` read alike) against :meth:`Cron.parse`, the reconciler's ``check_quartz`` and the
JFrog simulator's Quartz check. The cluster tier checks the same rules in the real API server.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest
import yaml
from hypothesis import example, given
from hypothesis import strategies as st

from cleanup_operator.api import ALL_KINDS
from cleanup_operator.api.common import CRON5_PATTERN
from cleanup_operator.api.storage_prune import StoragePruneSpec
from cleanup_operator.api.validation import (
    INTERVAL,
    POLL_INTERVAL,
    QUARTZ_FIELDS,
    QUARTZ_PATTERN,
    TIMEOUT,
    cron5_never_fires,
    cron5_syntax,
    parse_duration,
    quartz_in_range,
    quartz_question,
)
from cleanup_operator.reconcile.common import InvalidSpec
from cleanup_operator.schedule import Cron, ScheduleError
from cleanup_operator.testing.simulators.jfrog import _quartz_problem

ROOT = Path(__file__).resolve().parents[2]

# Five-field schedules.

_CRON5_VALUES = st.sampled_from(
    "0 00 1 2 4 7 8 9 11 12 13 23 24 29 30 31 32".split()
    + "59 60 61 007 jan FEB apr Sep nov dec sun MON fri sat xyz".split()
)
_CRON5_PARTS = st.one_of(
    st.just("*"),
    _CRON5_VALUES,
    st.tuples(_CRON5_VALUES, _CRON5_VALUES).map("-".join),
    st.tuples(
        st.one_of(st.just("*"), _CRON5_VALUES), st.sampled_from(["0", "1", "2", "5", "7", "12", "13"])
    ).map("/".join),
    st.tuples(_CRON5_VALUES, _CRON5_VALUES, st.sampled_from(["0", "2", "3", "7"])).map(
        lambda t: f"{t[0]}-{t[1]}/{t[2]}"
    ),
)
_CRON5_FIELD = st.lists(_CRON5_PARTS, min_size=1, max_size=3).map(",".join)
CRON5 = st.one_of(
    st.lists(_CRON5_FIELD, min_size=5, max_size=5).map(" ".join),
    # The shape of the schedules that can never fire: a late day of the month, short months, any weekday.
    st.tuples(
        st.sampled_from(["0", "*/5"]),
        st.sampled_from(["0", "3"]),
        st.lists(
            st.sampled_from(["30", "31", "30-31", "31/2", "030", "29", "1"]), min_size=1, max_size=2
        ).map(",".join),
        st.lists(
            st.sampled_from(
                ["2", "feb", "4", "6", "9", "11", "4-6/2", "9/2", "4/7", "2-2", "2/12", "8", "*/2"]
            ),
            min_size=1,
            max_size=2,
        ).map(",".join),
        st.sampled_from(["*", "*", "*", "1", "mon-fri"]),
    ).map(" ".join),
    st.sampled_from(["@daily", "@hourly", "@weekly", "@monthly", "@yearly", "@annually", "@midnight"]),
)


def cel_cron5_admits(text: str) -> bool:
    """The schedule field's pattern and its three CEL rules (api/validation.py cron5_rules), in Python."""
    if not re.fullmatch(CRON5_PATTERN, text):
        return False
    if text.startswith("@"):
        return re.fullmatch(cron5_never_fires(), text) is None
    if not re.fullmatch(cron5_syntax(), text):
        return False
    names = {n: i + 1 for i, n in enumerate("jan feb mar apr may jun jul aug sep oct nov dec".split())}
    names.update({n: i for i, n in enumerate("sun mon tue wed thu fri sat".split())})

    def value(x: str) -> int:
        return names[x] if x in names else int(x)

    for r in re.findall("[0-9a-z]+-[0-9a-z]+", text.lower()):
        a, b = r.split("-")
        if value(a) > value(b):
            return False
    return re.fullmatch(cron5_never_fires(), text) is None


def python_cron5_admits(text: str) -> bool:
    try:
        StoragePruneSpec.model_validate(
            {"connection": {"url": "https://x", "secretRef": {"name": "s"}}, "schedule": text}
        )
    except ValueError:
        return False
    return True


@given(CRON5)
@example("61 * * * *")
@example("0 0 30 2 *")
@example("0 0 31 4 *")
@example("0 0 31 9/2 *")
@example("0 0 29 2 *")
@example("0 0 30 2 1")
@example("30-10 * * * *")
def test_cron5_cel_rules_agree_with_the_parser(text: str) -> None:
    assert cel_cron5_admits(text) == python_cron5_admits(text), text


@pytest.mark.parametrize("text", ["0 0 30 2 *", "0 0 31 4 *", "0 0 31 2,4,6,9,11 *", "0 0 31 apr-apr *"])
def test_schedules_that_never_fire_are_refused_when_parsed(text: str) -> None:
    with pytest.raises(ScheduleError, match="never fires"):
        Cron.parse(text)


@pytest.mark.parametrize("text", ["0 0 29 2 *", "0 0 31 */2 *", "0 0 30 2 1", "0 0 31 4,5 *"])
def test_late_days_that_some_month_has_still_fire(text: str) -> None:
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    assert Cron.parse(text).next_after(start) > start


# Quartz.

_Q_VALUES = st.sampled_from(
    "0 00 1 7 8 12 13 15 23 24 31 32 59 60 MON SUN-SAT".split() + "JAN L 15W LW 6L 6#3 L-3 2024 ü !".split()
)
_Q_FIELD = st.one_of(
    st.sampled_from(["*", "?", "*/5", "0/15", "1-5", "MON-FRI", "?5", "1,15"]),
    _Q_VALUES,
    st.tuples(_Q_VALUES, _Q_VALUES).map("-".join),
    st.tuples(_Q_VALUES, st.sampled_from(["5", "61", "0"])).map("/".join),
)
QUARTZ = st.one_of(
    st.lists(_Q_FIELD, min_size=5, max_size=8).map(" ".join),
    st.tuples(
        st.lists(_Q_FIELD, min_size=3, max_size=3).map(" ".join),
        st.sampled_from(["? * MON", "1 * ?", "? * ?", "1 * MON", "L * ?", "? JAN 6#3"]),
        st.sampled_from(["", " 2024", " *", " ?"]),
    ).map(lambda t: f"{t[0]} {t[1]}{t[2]}"),
    st.sampled_from(["", "   ", "0 15 10 * * ? 2024", "0 0 3 ? * SUN"]),
)


def cel_quartz_admits(text: str) -> bool:
    """cronExp's CEL rules (api/validation.py quartz_rules), in Python."""
    if text == "":
        return True
    if not re.fullmatch(QUARTZ_PATTERN, text):
        return False
    if not re.fullmatch(quartz_question(), text):
        return False
    return all(re.fullmatch(quartz_in_range(i), text) for i in range(len(QUARTZ_FIELDS)))


def operator_quartz_admits(text: str) -> bool:
    from cleanup_operator.reconcile.cleanup_policy import check_quartz

    if text == "":
        return True
    try:
        check_quartz(text)
    except InvalidSpec:
        return False
    return True


@given(QUARTZ)
@example("0 15 10 * * ? 2024")
@example("0 0 3 1 * MON")
@example("0 61 3 ? * *")
@example("? 0 3 ? * SUN")
@example("0 0 3 ? * ?")
def test_quartz_cel_rules_agree_with_check_quartz_and_the_simulator(text: str) -> None:
    cel = cel_quartz_admits(text)
    assert cel == operator_quartz_admits(text), text
    assert cel == (text == "" or _quartz_problem(text) is None), text


# Durations.


@pytest.mark.parametrize(
    ("bounds", "ok", "refused"),
    [
        (INTERVAL, ["1s", "2s", "10m", "1h30m", "168h"], ["0s", "500ms", "168h1s", "200h"]),
        (POLL_INTERVAL, ["500ms", "1s", "15s", "1h"], ["0s", "499ms", "1h0m1s", "2h"]),
        (TIMEOUT, ["1s", "30s", "5m"], ["0s", "999ms", "5m1s", "1h"]),
    ],
)
def test_duration_bounds(bounds, ok, refused) -> None:
    for text in ok:
        assert bounds.check(text) == text
    for text in refused:
        with pytest.raises(ValueError, match=bounds.message):
            bounds.check(text)


def test_duration_rule_is_the_same_bounds_in_cel() -> None:
    rule = INTERVAL.rule()["rule"]
    assert "duration(self) >= duration('1s')" in rule and "duration(self) <= duration('168h')" in rule
    assert parse_duration(INTERVAL.minimum) == 1 and parse_duration(INTERVAL.maximum) == 7 * 24 * 3600


def test_every_example_is_valid_for_the_models() -> None:
    """Bounds must not make a shipped example invalid (examples/ and README's)."""
    models = {info.kind: info.spec_model for info in ALL_KINDS}
    seen = 0
    for path in sorted((ROOT / "examples").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") in models:
                models[doc["kind"]].model_validate(doc["spec"])
                seen += 1
    assert seen >= 3
