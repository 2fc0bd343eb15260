"""The pure rules behind "never act on what nobody asked for": requests, ownership, crash recovery."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cleanup_operator.api.cleanup_policy import CLEANUP_POLICY, CleanupPolicySpec
from cleanup_operator.api.common import CREATE_PENDING
from cleanup_operator.observability import Metrics
from cleanup_operator.reconcile.cleanup_policy import (
    _find_started_run,
    _run_since,
    desired_policy,
    owned_policy,
    pending_create,
    policy_digest,
    same_identity,
)
from cleanup_operator.reconcile.common import request_refusal, request_time
from cleanup_operator.reconcile.storage_prune import progress_fields
from cleanup_operator.runtime import Context, Obj, Outcome, Scheduler
from cleanup_operator.vendors import jfrog

CREATED = "2026-12-01T10:00:00Z"
CREATED_TS = int(dt.datetime(2026, 12, 1, 10, tzinfo=dt.UTC).timestamp())


def obj(created: str = CREATED, status: dict[str, Any] | None = None) -> Obj:
    return Obj.from_body(
        CLEANUP_POLICY,
        {
            "metadata": {"name": "p", "namespace": "ns", "uid": "u1", "creationTimestamp": created},
            "spec": {},
            "status": status or {},
        },
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (str(CREATED_TS), CREATED_TS),
        ("2026-12-01T10:00:00Z", CREATED_TS),
        ("2026-12-01T11:00:00+01:00", CREATED_TS),
        ("now", None),
        ("retry", None),
        ("", None),
        ("2026", 2026),  # Unix seconds: long before any resource, so refused as old
        ("99999999999999999999999", None),
    ],
)
def test_request_time(value: str, expected: int | None) -> None:
    when = request_time(value)
    assert (when.timestamp() if when else None) == expected


def test_a_request_no_older_than_the_object_may_run() -> None:
    assert request_refusal(obj(), str(CREATED_TS), suspended=False) is None
    assert request_refusal(obj(), str(CREATED_TS + 3600), suspended=False) is None


@given(st.integers(min_value=1, max_value=10**8))
def test_a_request_older_than_the_object_never_runs(age: int) -> None:
    message = request_refusal(obj(), str(CREATED_TS - age), suspended=False)
    assert message is not None and "older than this resource" in message


@given(st.text(max_size=20).filter(lambda t: request_time(t) is None))
def test_a_request_that_is_not_a_time_never_runs(value: str) -> None:
    message = request_refusal(obj(), value, suspended=False)
    assert message is not None and "is not a time" in message


def test_a_request_while_suspended_never_runs() -> None:
    message = request_refusal(obj(), str(CREATED_TS + 60), suspended=True)
    assert message is not None and "suspend" in message


def spec(**criteria: Any) -> CleanupPolicySpec:
    base = {"packageTypes": ["docker"], "repos": ["docker-local"], "includedPackages": ["**"]}
    return CleanupPolicySpec.model_validate(
        {
            "connection": {"url": "https://acme.jfrog.io", "secretRef": {"name": "jfrog"}},
            "searchCriteria": {**base, **(criteria or {"createdBeforeInMonths": 6})},
        }
    )


def test_digest_is_what_was_sent_whatever_the_server_echoes() -> None:
    sent = desired_policy(spec(), "k").model_copy(update={"enabled": False})
    echoed = jfrog.Policy.model_validate(
        {
            **sent.payload(),
            "enabled": True,  # enabled afterwards: not part of the body
            "description": "",
            "durationInMinutes": 0,
            "searchCriteria": {
                **sent.payload()["searchCriteria"],
                "excludedRepos": [],
                "keepLastNVersions": 0,
            },
        }
    )
    assert policy_digest(echoed) == policy_digest(sent)
    other = desired_policy(spec(createdBeforeInMonths=7), "k")
    assert policy_digest(other) != policy_digest(sent)


def test_a_create_pending_record_is_read_from_the_annotation_or_old_status() -> None:
    record = '{"digest":"d1","key":"k","since":"2026-12-01T10:00:00Z","url":"https://a"}'
    assert pending_create({CREATE_PENDING: record}, {}) == {
        "url": "https://a",
        "key": "k",
        "digest": "d1",
        "since": "2026-12-01T10:00:00Z",
    }
    assert pending_create({}, {}) is None
    # Status as earlier versions wrote it still counts (an upgrade in the middle of a create).
    assert pending_create({}, {"createPending": {"key": "k", "digest": "d0"}}) == {"key": "k", "digest": "d0"}
    # Anything that is not a whole record is no record: an existing policy stays someone else's.
    for broken in ("", "yes", "{}", '{"key":"k"}', '{"key":"k","digest":7}', "[1]", '{"digest":"d"'):
        assert pending_create({CREATE_PENDING: broken}, {}) is None, broken


def test_ownership_comes_only_from_a_record() -> None:
    assert owned_policy({}) is None
    # The bug this replaces: managed written before a create that then failed.
    assert owned_policy({"managed": True, "policyKey": "k"}) is None
    assert (
        owned_policy({"managed": True, "policyKey": "k", "createPending": {"key": "k"}, "lastSyncedAt": "x"})
        is None
    )
    legacy = owned_policy({"managed": True, "policyKey": "k", "lastSyncedAt": "2026-11-01T00:00:00Z"})
    assert legacy == {"key": "k", "origin": "Created"}
    record = {"ownedPolicy": {"url": "https://a", "key": "k", "origin": "Adopted"}}
    owned = owned_policy(record)
    assert owned is not None
    assert same_identity(owned, "https://a", "k")
    assert not same_identity(owned, "https://a", "other")
    assert not same_identity(owned, "https://b", "k")


def summary(run_id: int, started: str, dry: bool | None = None) -> jfrog.RunSummary:
    return jfrog.RunSummary.model_validate(
        {"runId": run_id, "status": "RUNNING", "startedAt": started, "dry_run": dry}
    )


def test_a_crashed_start_finds_only_a_run_newer_than_its_baseline() -> None:
    runs = [summary(7, "2026-12-01T10:00:05Z"), summary(5, "2026-12-01T09:00:00Z")]
    assert _find_started_run(runs, {"previousRunId": 7, "dryRun": True}) is None
    found = _find_started_run(runs, {"previousRunId": 5, "dryRun": True})
    assert found is not None and found["runId"] == 7
    # The vendor's ids decide, not clocks: a run that claims to be older still counts if it is newer.
    skewed = [summary(8, "2026-12-01T09:55:00Z")]
    found = _find_started_run(skewed, {"previousRunId": 7, "startedAt": "2026-12-01T10:00:00Z"})
    assert found is not None and found["runId"] == 8
    # A run of the other kind (a real cron run while we asked for a dry run) is not ours.
    assert _find_started_run([summary(9, "x", dry=False)], {"previousRunId": 8, "dryRun": True}) is None


def test_a_run_since_the_request_answers_it() -> None:
    runs = [summary(3, "2026-12-01T10:00:10Z", dry=True)]
    assert _run_since(runs, str(CREATED_TS), True) is not None
    assert _run_since(runs, str(CREATED_TS), False) is None
    assert _run_since(runs, str(CREATED_TS + 60), True) is None


def prune_status(progress: str, status: str = "running") -> jfrog.PruneStatus:
    return jfrog.PruneStatus.model_validate({"status": status, "progress": progress})


@pytest.mark.parametrize(
    ("progress", "start", "status", "percent"),
    [
        ("0 of 256", "80", "running", 0),
        ("64 of 256", "80", "running", 50),
        ("128 of 256", "80", "finished", 100),
        ("128 of 256", None, "running", 50),
        ("255 of 256", None, "running", 99),
        ("3 of 256", "ff", "running", 100),
        ("17 of 256", "f0", "finished", 100),
    ],
)
def test_percent_counts_the_directories_to_process(
    progress: str, start: str | None, status: str, percent: int
) -> None:
    assert progress_fields(prune_status(progress, status), start)["percent"] == percent


class Kube:
    """The one API the scheduler's context writes to: status patches, recorded with resourceVersions."""

    def __init__(self) -> None:
        self.patches: list[dict[str, Any]] = []

    async def patch_status(self, plural: str, namespace: str, name: str, status: dict[str, Any]) -> str:
        self.patches.append(status)
        return str(100 + len(self.patches))

    async def aclose(self) -> None:
        pass


class Boom:
    kind = CLEANUP_POLICY

    async def reconcile(self, obj: Obj) -> Outcome:
        raise KeyError("token=secret-value")

    async def finalize(self, obj: Obj) -> Outcome | None:
        return None


def body(rv: str, status: dict[str, Any], generation: int = 1, **annotations: str) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "p",
            "namespace": "ns",
            "uid": "u1",
            "generation": generation,
            "resourceVersion": rv,
            "annotations": annotations,
        },
        "spec": {},
        "status": status,
    }


async def test_an_unexpected_error_is_said_in_status_without_its_text() -> None:
    kube = Kube()
    ctx = Context(kube, events=lambda o, e: None, metrics=Metrics())  # type: ignore[arg-type]
    sched = Scheduler(ctx)
    sched.observe(Boom(), body("5", {}))
    task = asyncio.create_task(sched.run())
    for _ in range(100):
        if kube.patches:
            break
        await asyncio.sleep(0.01)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    conditions = {c["type"]: c for c in kube.patches[0]["conditions"]}
    assert conditions["Ready"]["status"] == "False" and conditions["Ready"]["reason"] == "InternalError"
    assert "KeyError" in conditions["Ready"]["message"]
    assert "secret-value" not in str(kube.patches)


async def test_a_watch_event_older_than_our_write_does_not_bring_back_old_status() -> None:
    kube = Kube()
    ctx = Context(kube, events=lambda o, e: None, metrics=Metrics())  # type: ignore[arg-type]
    seen: list[dict[str, Any]] = []

    class Rec:
        kind = CLEANUP_POLICY

        async def reconcile(self, o: Obj) -> Outcome:
            seen.append(dict(o.status))
            return Outcome({**o.status, "lastRun": {"state": "Running", "runId": 1}}, None)

        async def finalize(self, o: Obj) -> Outcome | None:
            return None

    sched = Scheduler(ctx)
    rec = Rec()
    sched.observe(rec, body("5", {"lastRun": {"state": "Starting"}}))
    task = asyncio.create_task(sched.run())
    for _ in range(100):
        if kube.patches:
            break
        await asyncio.sleep(0.01)
    # An event from before our patch (rv 6 < 101) with a change that reruns the object.
    sched.observe(rec, body("6", {"lastRun": {"state": "Starting"}}, **{"cleanup.artifacts.dev/adopt": "x"}))
    for _ in range(100):
        if len(seen) == 2:
            break
        await asyncio.sleep(0.01)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert seen[1]["lastRun"] == {"state": "Running", "runId": 1}


def test_status_patch_removes_nested_keys_a_merge_patch_would_keep() -> None:
    from cleanup_operator.reconcile.conditions import status_patch

    current = {"inventory": {"run": "a", "totals": {"missing": 1}}, "lastRun": {"runId": 3, "state": "Done"}}
    desired = {"inventory": {"run": "b"}, "lastRun": {"state": "Refused"}}
    assert status_patch(current, desired) == {
        "inventory": {"run": "b", "totals": None},
        "lastRun": {"runId": None, "state": "Refused"},
    }
    assert status_patch(desired, dict(desired)) is None


async def test_the_finalizer_wakes_only_an_object_waiting_for_it_and_only_once() -> None:
    kube = Kube()
    ctx = Context(kube, events=lambda o, e: None, metrics=Metrics())  # type: ignore[arg-type]
    runs: list[bool] = []

    class Waits:
        kind = CLEANUP_POLICY

        async def reconcile(self, o: Obj) -> Outcome:
            runs.append(o.guarded)
            return Outcome(dict(o.status), None, wake_on_finalizer=not o.guarded)

        async def finalize(self, o: Obj) -> Outcome | None:
            return None

    def with_finalizer(rv: str, status: dict[str, Any]) -> dict[str, Any]:
        b = body(rv, status)
        b["metadata"]["finalizers"] = ["cleanup.artifacts.dev/finalizer"]
        return b

    sched = Scheduler(ctx)
    rec = Waits()
    sched.observe(rec, body("5", {}))
    task = asyncio.create_task(sched.run())
    for _ in range(50):
        await asyncio.sleep(0.01)
    sched.observe(rec, with_finalizer("6", {}))  # the finalizer arrives: run again, now guarded
    for _ in range(50):
        await asyncio.sleep(0.01)
    sched.observe(rec, with_finalizer("7", {"x": 1}))  # a status-only event: nothing to do
    for _ in range(50):
        await asyncio.sleep(0.01)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert runs == [False, True]
