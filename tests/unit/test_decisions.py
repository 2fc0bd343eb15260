"""The destructive decisions, as a table of cases: every ambiguity resolves to "do nothing and say why"."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cleanup_operator.decisions import (
    Act,
    Budget,
    Decision,
    DryRun,
    approval_refusal,
    exceeded_dry_run,
    over_budget,
    policy_deletion,
    policy_ownership,
    policy_writes,
    prune_start,
    prune_stop_on_delete,
    real_run,
    request_refusal,
    request_time,
    run_start,
)

URL = "https://acme.jfrog.io"
OURS = {"url": URL, "key": "k", "origin": "Created"}
LEGACY = {"key": "k", "origin": "Created"}  # recorded before URLs were kept
PENDING = {"url": URL, "key": "k", "digest": "d1"}


def own(**facts: Any) -> Decision:
    args: dict[str, Any] = {
        "url": URL,
        "key": "k",
        "owned": None,
        "pending": None,
        "exists": False,
        "digest": None,
        "adopt": None,
        "adopted_before": False,
        "guarded": True,
    }
    args.update(facts)
    return policy_ownership(**args)


OWNERSHIP_CASES = [
    # Nothing exists: create, once the finalizer guards it.
    ({}, Act.CREATE, "Create"),
    ({"guarded": False}, Act.WAIT, "WaitingForFinalizer"),
    # Ours: manage it, or recreate it when it was deleted in Artifactory.
    ({"owned": OURS, "exists": True}, Act.MANAGE, "Owned"),
    ({"owned": LEGACY, "exists": True}, Act.MANAGE, "Owned"),
    ({"owned": OURS, "exists": False}, Act.CREATE, "Recreate"),
    ({"owned": OURS, "exists": False, "guarded": False}, Act.CREATE, "Recreate"),
    # Ours, but the spec names another policy: touch nothing.
    ({"owned": {**OURS, "key": "old"}, "exists": True}, Act.NOTHING, "IdentityChanged"),
    ({"owned": {**OURS, "url": "https://other"}, "exists": True}, Act.NOTHING, "IdentityChanged"),
    ({"owned": {**OURS, "key": "old"}, "exists": False}, Act.NOTHING, "IdentityChanged"),
    ({"owned": {**OURS, "key": "old"}, "adopt": "k"}, Act.NOTHING, "IdentityChanged"),
    ({"owned": {**LEGACY, "key": "old"}, "exists": True}, Act.NOTHING, "IdentityChanged"),
    # A create whose answer was lost: ours only if exactly what we sent.
    ({"pending": PENDING, "exists": True, "digest": "d1"}, Act.CONFIRM, "CreateConfirmed"),
    ({"pending": PENDING, "exists": True, "digest": "d2"}, Act.NOTHING, "AlreadyExists"),
    ({"pending": PENDING, "exists": True, "digest": None}, Act.NOTHING, "AlreadyExists"),
    ({"pending": PENDING, "exists": True, "digest": "d2", "adopt": "k"}, Act.NOTHING, "AlreadyExists"),
    ({"pending": PENDING, "exists": False}, Act.CREATE, "Create"),
    ({"pending": PENDING, "exists": False, "guarded": False}, Act.WAIT, "WaitingForFinalizer"),
    # A pending create of another policy is not evidence about this one.
    ({"pending": {**PENDING, "key": "x"}, "exists": True, "digest": "d1"}, Act.NOTHING, "AlreadyExists"),
    (
        {"pending": {**PENDING, "url": "https://b"}, "exists": True, "digest": "d1"},
        Act.NOTHING,
        "AlreadyExists",
    ),
    # Someone else's: only an explicit adopt of this key, once.
    ({"exists": True}, Act.NOTHING, "AlreadyExists"),
    ({"exists": True, "adopt": "k"}, Act.ADOPT, "Adopted"),
    ({"exists": True, "adopt": "true"}, Act.ADOPT, "Adopted"),
    ({"exists": True, "adopt": "other"}, Act.NOTHING, "AlreadyExists"),
    ({"exists": True, "adopt": "false"}, Act.NOTHING, "AlreadyExists"),
    ({"exists": True, "adopt": ""}, Act.NOTHING, "AlreadyExists"),
    ({"exists": True, "adopt": "true", "adopted_before": True}, Act.NOTHING, "AlreadyExists"),
    ({"exists": True, "adopt": "k", "adopted_before": True}, Act.NOTHING, "AlreadyExists"),
]


@pytest.mark.parametrize(
    ("facts", "act", "reason"),
    OWNERSHIP_CASES,
)
def test_policy_ownership(facts: dict[str, Any], act: Act, reason: str) -> None:
    decision = own(**facts)
    assert (decision.act, decision.reason) == (act, reason)
    assert decision.message, "every decision says why"


def test_ownership_messages_say_what_to_do() -> None:
    assert 'cleanup.artifacts.dev/adopt: "k"' in own(exists=True).message
    assert "create a new resource" in own(owned={**OURS, "key": "old"}).message
    assert "old" in own(owned={**OURS, "key": "old"}).message


records = st.one_of(
    st.none(),
    st.fixed_dictionaries(
        {"key": st.sampled_from(["k", "x"]), "url": st.sampled_from([URL, "https://b"])},
        optional={"digest": st.sampled_from(["d1", "d2"])},
    ),
)


@given(
    owned=records,
    pending=records,
    exists=st.booleans(),
    digest=st.sampled_from([None, "d1", "d2"]),
    adopt=st.sampled_from([None, "", "true", "false", "k", "x"]),
    adopted_before=st.booleans(),
    guarded=st.booleans(),
)
def test_an_existing_policy_is_written_only_with_a_record_naming_it(
    owned: dict[str, Any] | None,
    pending: dict[str, Any] | None,
    exists: bool,
    digest: str | None,
    adopt: str | None,
    adopted_before: bool,
    guarded: bool,
) -> None:
    decision = own(
        owned=owned,
        pending=pending,
        exists=exists,
        digest=digest,
        adopt=adopt,
        adopted_before=adopted_before,
        guarded=guarded,
    )
    names_it = owned is not None and owned["key"] == "k" and owned["url"] == URL
    if owned is not None and not names_it:
        assert decision.act == Act.NOTHING
    if exists and decision.act in (Act.MANAGE, Act.CONFIRM, Act.ADOPT):
        assert (
            names_it
            or (
                pending is not None
                and pending["key"] == "k"
                and pending["url"] == URL
                and digest is not None
                and digest == pending.get("digest")
            )
            or (adopt in ("k", "true") and not adopted_before and owned is None)
        ), decision
    if not exists and decision.act == Act.CREATE:
        assert guarded or names_it
    assert decision.act != Act.DELETE and decision.act != Act.RUN


DELETION_CASES = [
    ({"owned": True, "exists": True}, Act.DELETE, "Owned"),
    ({"pending": True, "exists": True, "digest_matches": True}, Act.DELETE, "Owned"),
    ({"pending": True, "exists": True, "digest_matches": False}, Act.NOTHING, "NotOurs"),
    ({"exists": True}, Act.NOTHING, "NotOurs"),
    ({"exists": True, "digest_matches": True}, Act.NOTHING, "NotOurs"),
    ({"owned": True, "exists": False}, Act.NOTHING, "AlreadyGone"),
    ({"owned": True, "exists": True, "deletion_policy": "Orphan"}, Act.NOTHING, "Orphan"),
    ({"owned": True, "exists": True, "observe_only": True}, Act.NOTHING, "ObserveOnly"),
]


@pytest.mark.parametrize(
    ("facts", "act", "reason"),
    DELETION_CASES,
)
def test_policy_deletion(facts: dict[str, Any], act: Act, reason: str) -> None:
    decision = deletion(**facts)
    assert (decision.act, decision.reason) == (act, reason) and decision.message


PRUNE_STOP_CASES = [
    (True, "Running", True, Act.STOP, "Owned"),
    (True, "Running", False, Act.NOTHING, "NotOurs"),
    (True, "Running", None, Act.NOTHING, "NotOurs"),
    (True, "Running", "True", Act.NOTHING, "NotOurs"),
    (True, "Pending", True, Act.NOTHING, "NotRunning"),
    (True, "Succeeded", True, Act.NOTHING, "NotRunning"),
    (True, None, True, Act.NOTHING, "NotRunning"),
    (False, "Running", True, Act.NOTHING, "StopOnDeleteOff"),
]


@pytest.mark.parametrize(
    ("stop", "phase", "ours", "act", "reason"),
    PRUNE_STOP_CASES,
)
def test_prune_stop_on_delete(stop: bool, phase: str | None, ours: Any, act: Act, reason: str) -> None:
    decision = prune_stop_on_delete(stop_on_delete=stop, phase=phase, started_by_us=ours)
    assert (decision.act, decision.reason) == (act, reason) and decision.message


def deletion(**facts: Any) -> Decision:
    args: dict[str, Any] = {
        "deletion_policy": "Delete",
        "observe_only": False,
        "owned": False,
        "pending": False,
        "exists": False,
        "digest_matches": False,
    }
    args.update(facts)
    return policy_deletion(**args)


NOW = 1_000_000.0
DRY = DryRun(id="7", succeeded=True, finished_at=NOW - 60, packages=10, versions=20, bytes=1000)


REAL_RUN_CASES = [
    (Budget(), DRY, None, None, Act.RUN, "WithinBudget"),
    (Budget(max_packages=10, max_versions=20, max_bytes=1000), DRY, None, None, Act.RUN, "WithinBudget"),
    (Budget(max_packages=9), DRY, None, None, Act.NOTHING, "BudgetExceeded"),
    (Budget(max_versions=19), DRY, None, None, Act.NOTHING, "BudgetExceeded"),
    (Budget(max_bytes=999), DRY, None, None, Act.NOTHING, "BudgetExceeded"),
    (Budget(max_bytes=0), DRY, None, None, Act.NOTHING, "BudgetExceeded"),
    (Budget(max_packages=9, max_bytes=999), DRY, None, None, Act.NOTHING, "BudgetExceeded"),
    (Budget(manual=True), DRY, None, None, Act.NOTHING, "ApprovalRequired"),
    (Budget(manual=True), DRY, "7", None, Act.RUN, "Approved"),
    (Budget(max_bytes=1), DRY, "7", None, Act.RUN, "Approved"),
    (Budget(manual=True), DRY, "6", None, Act.NOTHING, "ApprovalRequired"),
    (Budget(manual=True), DRY, "7", "7", Act.NOTHING, "ApprovalRequired"),  # one approval, one run
    (Budget(max_bytes=1), DRY, "7", "7", Act.NOTHING, "BudgetExceeded"),
    (Budget(manual=True, approval_max_age=59), DRY, "7", None, Act.NOTHING, "ApprovalExpired"),
    (Budget(manual=True, approval_max_age=60), DRY, "7", None, Act.RUN, "Approved"),
    (Budget(manual=True), DryRun("7", True, None), "7", None, Act.NOTHING, "ApprovalExpired"),
    (Budget(), DryRun("7", False, NOW), None, None, Act.NOTHING, "DryRunFailed"),
    (Budget(manual=True), DryRun("7", False, NOW), "7", None, Act.NOTHING, "DryRunFailed"),
]


@pytest.mark.parametrize(
    ("budget", "dry", "approval", "used", "act", "reason"),
    REAL_RUN_CASES,
)
def test_real_run(
    budget: Budget, dry: DryRun, approval: str | None, used: str | None, act: Act, reason: str
) -> None:
    decision = real_run(budget, dry, approval=approval, used=used, now=NOW)
    assert (decision.act, decision.reason) == (act, reason) and decision.message


def test_budget_messages_give_the_figures_and_how_to_approve() -> None:
    message = real_run(Budget(max_bytes=999), DRY, approval=None, used=None, now=NOW).message
    assert "bytes 1000 > limit 999" in message and "cleanup.artifacts.dev/approve=7" in message
    assert (
        "10 packages, 20 versions, 1000 bytes"
        in real_run(Budget(manual=True), DRY, approval=None, used=None, now=NOW).message
    )
    assert over_budget(Budget(max_packages=10, max_versions=19), DRY) == ["versions 20 > limit 19"]


@given(
    limits=st.tuples(*(st.one_of(st.none(), st.integers(0, 50)) for _ in range(3))),
    figures=st.tuples(*(st.integers(0, 50) for _ in range(3))),
    manual=st.booleans(),
)
def test_no_real_run_over_budget_or_unapproved_without_an_approval(
    limits: tuple[int | None, ...], figures: tuple[int, ...], manual: bool
) -> None:
    budget = Budget(max_packages=limits[0], max_versions=limits[1], max_bytes=limits[2], manual=manual)
    dry = DryRun("1", True, NOW, packages=figures[0], versions=figures[1], bytes=figures[2])
    decision = real_run(budget, dry, approval=None, used=None, now=NOW)
    within = all(limit is None or value <= limit for value, limit in zip(figures, limits, strict=True))
    assert (decision.act == Act.RUN) == (within and not manual)


APPROVAL_CASES = [
    (None, "7", None, False),
    ("", "7", None, False),
    ("7", "7", None, False),
    ("7", None, "7", False),  # already used: nothing more to say
    ("6", "7", None, True),
    ("7", None, None, True),
]


@pytest.mark.parametrize(
    ("approval", "pending", "used", "refused"),
    APPROVAL_CASES,
)
def test_approval_refusal(approval: str | None, pending: str | None, used: str | None, refused: bool) -> None:
    message = approval_refusal(approval, pending, used)
    assert (message is not None) == refused
    if message:
        assert f"approve={approval}" in message


def test_a_real_run_beyond_its_dry_run_is_flagged() -> None:
    assert exceeded_dry_run(DRY, 10, 20, 1000) == []
    assert exceeded_dry_run(DRY, 11, 20, 1000) == ["packages 11 > 10 in dry run 7"]
    assert exceeded_dry_run(DRY, 10, 21, 1001) == [
        "versions 21 > 20 in dry run 7",
        "bytes 1001 > 1000 in dry run 7",
    ]
    assert exceeded_dry_run(DRY, 0, 0, 0) == []


def test_decisions_that_act() -> None:
    assert Decision(Act.RUN, "x").acts and Decision(Act.CREATE, "x").acts
    assert not Decision(Act.NOTHING, "x").acts and not Decision(Act.WAIT, "x").acts


GOLDEN = Path(__file__).with_name("decisions.golden")


def all_messages() -> str:
    """Every case's decision and message: what users read, pinned so a change to it is reviewed."""
    lines = []
    for facts, _, _ in OWNERSHIP_CASES:
        d = own(**facts)
        lines.append(f"ownership {sorted(facts.items())}: {d.act} {d.reason}: {d.message}")
    for facts, _, _ in DELETION_CASES:
        d = deletion(**facts)
        lines.append(f"deletion {sorted(facts.items())}: {d.act} {d.reason}: {d.message}")
    for stop, phase, ours, _, _ in PRUNE_STOP_CASES:
        d = prune_stop_on_delete(stop_on_delete=stop, phase=phase, started_by_us=ours)
        lines.append(f"prune-stop {stop} {phase} {ours!r}: {d.act} {d.reason}: {d.message}")
    for budget, dry, approval, used, _, _ in REAL_RUN_CASES:
        d = real_run(budget, dry, approval=approval, used=used, now=NOW)
        lines.append(f"real-run {budget} {dry} {approval} {used}: {d.act} {d.reason}: {d.message}")
    for approval, pending, used, _ in APPROVAL_CASES:
        lines.append(f"approval {approval} {pending} {used}: {approval_refusal(approval, pending, used)}")
    lines.append(f"exceeded: {exceeded_dry_run(DRY, 11, 21, 1001)}")
    return "\n".join(lines) + "\n"


def test_messages_are_pinned() -> None:
    """Regenerate with UPDATE_GOLDEN=1 after a deliberate change, and review the diff."""
    text = all_messages()
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.write_text(text)
    assert GOLDEN.read_text() == text


CREATED = "2026-12-01T10:00:00Z"
CREATED_TS = 1796119200  # 2026-12-01T10:00:00Z

REQUEST_CASES = [
    (str(CREATED_TS), False, None),
    (str(CREATED_TS + 1), False, None),
    ("2026-12-01T10:00:00Z", False, None),
    ("2026-12-01T10:00:00.999Z", False, None),
    (str(CREATED_TS - 1), False, "older than this resource"),
    ("2026-12-01T09:59:59Z", False, "older than this resource"),
    ("now", False, "is not a time"),
    ("", False, "is not a time"),
    ("2026-13-01T00:00:00Z", False, "is not a time"),
    ("99999999999999999999", False, "is not a time"),
    (str(CREATED_TS + 60), True, "spec.suspend is true"),
    ("2026-12-01T11:00:00+01:00", False, None),
    ("2026-12-01T10:59:59+01:00", False, "older than this resource"),
    ("2026-12-01T09:59:59", False, "older than this resource"),  # no zone: UTC
    ("2026-12-01T10:00:00", False, None),
    ("2026-12-01", False, "older than this resource"),  # a date: its midnight
    ("2026-12-02", False, None),
    ("2026-1", False, "is not a time"),
]


@pytest.mark.parametrize(("value", "suspended", "refused"), REQUEST_CASES)
def test_request_refusal(value: str, suspended: bool, refused: str | None) -> None:
    message = request_refusal(value, created=CREATED, suspended=suspended)
    assert (message is None) == (refused is None)
    if refused:
        assert message is not None and refused in message and repr(value) in message


def test_a_creation_time_we_cannot_read_does_not_refuse_a_time() -> None:
    assert request_refusal(str(CREATED_TS), created="", suspended=False) is None
    assert request_refusal(str(CREATED_TS), created="garbage", suspended=False) is None
    zoneless = request_time("2026-12-01T10:00:00")
    assert zoneless is not None and zoneless.timestamp() == CREATED_TS


WRITE_CASES = [
    ([], True, []),
    (["enabled"], True, [Act.ENABLE]),
    (["enabled"], False, [Act.DISABLE]),
    (["description"], True, [Act.UPDATE]),
    (["searchCriteria.repos", "enabled"], False, [Act.UPDATE, Act.DISABLE]),
]


@pytest.mark.parametrize(("diffs", "enable", "acts"), WRITE_CASES)
def test_policy_writes(diffs: list[str], enable: bool, acts: list[Act]) -> None:
    assert policy_writes(diffs, enable=enable) == acts


def test_run_start() -> None:
    assert run_start(enabled=True).act == Act.RUN
    refused = run_start(enabled=False)
    assert (refused.act, refused.reason) == (Act.NOTHING, "RunRefused") and "disabled" in refused.message


PRUNE_START_CASES = [
    (True, False, False, Act.START, "Requested"),
    (False, False, False, Act.WAIT, "WaitingForFinalizer"),
    (False, True, True, Act.WAIT, "WaitingForFinalizer"),
    (True, True, False, Act.WAIT, "WaitingForOtherPrune"),
    (True, True, True, Act.WAIT, "WaitingForOtherPrune"),
    (True, False, True, Act.FOLLOW, "AlreadyRunning"),
]


@pytest.mark.parametrize(("guarded", "other", "running", "act", "reason"), PRUNE_START_CASES)
def test_prune_start(guarded: bool, other: bool, running: bool, act: Act, reason: str) -> None:
    decision = prune_start(guarded=guarded, other_runner=other, vendor_running=running)
    assert (decision.act, decision.reason) == (act, reason) and decision.message


def more_messages() -> str:
    lines = [
        f"request {v} {s}: {request_refusal(v, created=CREATED, suspended=s)}" for v, s, _ in REQUEST_CASES
    ]
    lines += [f"run-start {e}: {run_start(enabled=e)}" for e in (True, False)]
    lines += [
        f"prune-start {g} {o} {r}: {prune_start(guarded=g, other_runner=o, vendor_running=r)}"
        for g, o, r, _, _ in PRUNE_START_CASES
    ]
    return "\n".join(lines) + "\n"


GOLDEN_MORE = Path(__file__).with_name("decisions-requests.golden")


def test_request_and_start_messages_are_pinned() -> None:
    """Regenerate with UPDATE_GOLDEN=1 after a deliberate change, and review the diff."""
    text = more_messages()
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN_MORE.write_text(text)
    assert GOLDEN_MORE.read_text() == text
