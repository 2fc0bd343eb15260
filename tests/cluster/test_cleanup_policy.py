"""CleanupPolicy end to end: real API server, the operator process, the JFrog simulator."""

from __future__ import annotations

import itertools
import re
import time
from typing import Any

import pytest

from cleanup_operator.testing.simulators import Fault, SimulatorServer

from .conftest import (
    CPOL,
    REQUESTED_AT,
    Kube,
    Operator,
    calls,
    condition,
    is_true,
    jfrog,
    last_run,
    now_value,
    policy,
    ready,
    unique,
    wait_until,
)

PLURAL = CPOL


def drift_checks(sim: SimulatorServer, key: str) -> int:
    """GETs of policy ``key``: one per reconcile of a steady policy (a drift check)."""
    return len(sim.calls.calls(vendor="jfrog", method="GET", path=f"/policies/{key}$"))


def wait_drift_checks(sim: SimulatorServer, key: str, more: int, timeout: float = 30.0) -> None:
    """Wait until the operator has checked policy ``key`` ``more`` more times: ``more`` reconciles passed."""
    target = drift_checks(sim, key) + more
    wait_until(lambda: drift_checks(sim, key) >= target, f"{more} more drift checks of {key}", timeout)


def run_puts(sim: SimulatorServer, key: str) -> list[Any]:
    return sim.calls.calls(vendor="jfrog", method="PUT", path=f"/{key}/run$")


def status_section(kube: Kube, name: str) -> str:
    """The Status part of ``kubectl describe`` (Events, which follow it, left out)."""
    described = kube.kubectl("describe", PLURAL, name, "-n", kube.ns).stdout
    match = re.search(r"^Status:\n(.*?)(?=^Events:|\Z)", described, re.M | re.S)
    assert match, described
    return match.group(1)


def described_block(section: str, title: str) -> dict[str, str]:
    """``Field: value`` lines of one block of a describe section (``Last Run:``), by field."""
    match = re.search(rf"^( *){re.escape(title)}:\n((?:\1 +.*\n?)*)", section, re.M)
    assert match, section
    return dict(re.findall(r"^ +([A-Za-z ]+):\s+(.*?)\s*$", match.group(2), re.M))


@pytest.fixture
def secret(kube: Kube) -> None:
    kube.secret("jfrog", token="test-token")


def test_create_enable_and_confirm(kube: Kube, sim: SimulatorServer, secret: None) -> None:
    name = unique("create")
    kube.apply(policy(sim, name))
    obj = kube.wait_for(PLURAL, name, ready, what="Ready")
    status = obj["status"]
    assert status["policyKey"] == name
    assert status["enabled"] is True
    assert status["managed"] is True
    assert {c["type"] for c in status["conditions"]} >= {"Ready", "Synced", "Reconciling", "Stalled"}
    assert condition(obj, "Stalled")["status"] == "False"
    stored = jfrog(sim).policy(name)
    assert stored is not None and stored["enabled"] is True
    assert stored["searchCriteria"]["packageTypes"] == ["docker"]
    # create with enabled=false, enablement, then a GET to confirm
    writes = [c for c in sim.calls.calls(vendor="jfrog", path=f"/{name}") if c.method != "GET"]
    assert [(c.method, c.path.rsplit("/", 1)[-1]) for c in writes] == [("POST", name), ("POST", "enablement")]
    assert writes[0].json["enabled"] is False
    assert writes[1].json == {"enabled": True}
    row = kube.table(PLURAL, name)
    assert list(row) == [
        "NAME",
        "KEY",
        "ENABLED",
        "READY",
        "LAST RUN",
        "DRY RUN PKGS",
        "DRY RUN BYTES",
        "APPROVAL",
        "AGE",
    ], row
    assert (row["NAME"], row["KEY"], row["ENABLED"], row["READY"]) == (name, name, "true", "True"), row
    assert row["LAST RUN"] in ("", "<none>"), row
    kube.wait_event(name, "Created")


def test_nothing_changed_means_no_writes_and_no_status_patch(
    kube: Kube, sim: SimulatorServer, secret: None
) -> None:
    name = unique("steady")
    kube.apply(policy(sim, name))
    kube.wait_for(PLURAL, name, ready, what="Ready")
    # The first drift check after Ready: whatever the create left to write is written by then.
    wait_drift_checks(sim, name, 1)
    before = kube.get(PLURAL, name)
    assert before is not None
    start = len(calls(sim, name))
    # Three more reconciles (interval 2 s), each a GET of the unchanged policy, and nothing else.
    wait_drift_checks(sim, name, 3)
    after = kube.get(PLURAL, name)
    assert after is not None
    later = calls(sim, name)[start:]
    assert len(later) >= 3 and {m for m, _ in later} == {"GET"}, later
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"], "status was patched"
    assert before["status"]["lastSyncedAt"] == after["status"]["lastSyncedAt"]


def test_spec_change_updates_and_enablement_is_separate(
    kube: Kube, sim: SimulatorServer, secret: None
) -> None:
    name = unique("update")
    kube.apply(policy(sim, name))
    kube.wait_for(PLURAL, name, ready, what="Ready")
    start = len(sim.calls.calls(vendor="jfrog"))
    kube.apply(policy(sim, name, description="now with a new description", enabled=False))
    obj = kube.wait_for(PLURAL, name, lambda o: ready(o) and o["status"]["enabled"] is False, what="disabled")
    new = [c for c in sim.calls.calls(vendor="jfrog")[start:] if f"/{name}" in c.path and c.method != "GET"]
    kinds = [(c.method, c.path.rsplit("/", 1)[-1]) for c in new]
    assert ("PUT", name) in kinds and ("POST", "enablement") in kinds, kinds
    put = next(c for c in new if c.method == "PUT")
    assert put.json["description"] == "now with a new description"
    assert jfrog(sim).policy(name)["description"] == "now with a new description"
    assert jfrog(sim).policy(name)["enabled"] is False
    assert obj["status"].get("driftCorrections", 0) == 0


def test_drift_is_corrected_counted_and_reported(kube: Kube, sim: SimulatorServer, secret: None) -> None:
    name = unique("drift")
    kube.apply(policy(sim, name))
    kube.wait_for(PLURAL, name, ready, what="Ready")
    tampered = jfrog(sim).policy(name)
    assert tampered is not None
    tampered["description"] = "changed by hand in the UI"
    jfrog(sim).seed_policy(tampered)
    obj = kube.wait_for(
        PLURAL, name, lambda o: o["status"].get("driftCorrections") == 1, what="drift corrected"
    )
    assert jfrog(sim).policy(name)["description"] == "stale images"
    assert is_true(obj, "Ready")
    drift_events = kube.wait_event(name, "DriftCorrected")
    assert "description" in drift_events[0]["message"]


def test_existing_policy_is_not_overwritten_without_adopt(
    kube: Kube, sim: SimulatorServer, secret: None
) -> None:
    name = unique("exists")
    jfrog(sim).seed_policy(
        {
            "key": name,
            "description": "someone else's",
            "enabled": False,
            "searchCriteria": {
                "packageTypes": ["npm"],
                "repos": ["npm-local"],
                "includedPackages": ["**"],
                "keepLastNVersions": 3,
            },
        }
    )
    kube.apply(policy(sim, name))
    obj = kube.wait_for(PLURAL, name, lambda o: is_true(o, "Stalled", "AlreadyExists"), what="AlreadyExists")
    assert condition(obj, "Ready")["status"] == "False"
    assert "cleanup.artifacts.dev/adopt" in condition(obj, "Stalled")["message"]
    assert [m for m, _ in calls(sim, name)] == ["GET"] * len(calls(sim, name)), (
        "wrote to someone else's policy"
    )
    assert jfrog(sim).policy(name)["description"] == "someone else's"
    kube.annotate(PLURAL, name, **{"cleanup.artifacts.dev/adopt": "true"})
    kube.wait_for(PLURAL, name, ready, what="adopted and Ready")
    assert jfrog(sim).policy(name)["description"] == "stale images"
    kube.wait_event(name, "Adopted")


def test_two_resources_one_key_second_is_conflict(kube: Kube, sim: SimulatorServer, secret: None) -> None:
    key = unique("shared")
    kube.apply(policy(sim, "first", policyKey=key))
    kube.wait_for(PLURAL, "first", ready, what="first Ready")
    kube.apply(policy(sim, "second", policyKey=key, description="the second wants it too"))
    obj = kube.wait_for(PLURAL, "second", lambda o: is_true(o, "Stalled", "Conflict"), what="Conflict")
    message = condition(obj, "Stalled")["message"]
    assert f"policy {key} on {sim.url('jfrog')} is claimed by another resource" in message, message
    assert condition(obj, "Ready")["status"] == "False"
    # Over two intervals of the first (its drift checks mark them), the second wrote nothing.
    wait_drift_checks(sim, key, 2)
    assert jfrog(sim).policy(key)["description"] == "stale images"
    assert not any(c.method == "PUT" for c in sim.calls.calls(vendor="jfrog", path=f"/{key}$"))


def test_on_demand_dry_run_runs_once_per_value(kube: Kube, sim: SimulatorServer, secret: None) -> None:
    name = unique("dryrun")
    jfrog(sim).set_run_result(name, packages=4, versions=9, nbytes=123456)
    kube.apply(policy(sim, name))
    kube.wait_for(PLURAL, name, ready, what="Ready")
    requested = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    kube.annotate(PLURAL, name, **{REQUESTED_AT: requested})
    obj = kube.wait_for(
        PLURAL,
        name,
        lambda o: (o["status"].get("lastRun") or {}).get("state") == "Succeeded",
        what="run finished",
    )
    last = obj["status"]["lastRun"]
    assert last["dryRun"] is True
    assert (last["packagesDeleted"], last["versionsDeleted"], last["bytesDeleted"]) == (4, 9, 123456)
    assert last["runId"] >= 1 and last["startedAt"] and last["finishedAt"]
    assert obj["status"]["lastHandledRequestedAt"] == requested
    runs = sim.calls.calls(vendor="jfrog", method="PUT", path=f"/{name}/run$")
    assert len(runs) == 1 and runs[0].query == {"dryRun": "true"}
    assert jfrog(sim).deleted(name) == (0, 0, 0), "a dry run deleted packages"
    # Two more reconciles see the same annotation value: it is not run again.
    wait_drift_checks(sim, name, 2)
    assert len(run_puts(sim, name)) == 1, "ran twice for one value"
    kube.wait_event(name, "RunSucceeded")
    reasons = [e["reason"] for e in kube.events(name)]
    assert reasons.count("RunStarted") == 1 and reasons.count("RunSucceeded") == 1, reasons
    # What a user reads: the run's state and figures in status, and in the LAST RUN column.
    shown = described_block(status_section(kube, name), "Last Run")
    assert shown["State"] == "Succeeded", shown
    assert (shown["Packages Deleted"], shown["Versions Deleted"], shown["Bytes Deleted"]) == (
        "4",
        "9",
        "123456",
    ), shown
    assert shown["Dry Run"] == "true" and shown["Run Id"] == str(last["runId"]), shown
    assert kube.table(PLURAL, name)["LAST RUN"] == "Succeeded"


def test_real_run_when_spec_allows_it(kube: Kube, sim: SimulatorServer, secret: None) -> None:
    name = unique("realrun")
    jfrog(sim).set_run_result(name, packages=2, versions=3, nbytes=1000)
    kube.apply(policy(sim, name, onDemandRun={"dryRun": False, "pollInterval": "1s"}))
    kube.wait_for(PLURAL, name, ready, what="Ready")
    kube.annotate(PLURAL, name, **{REQUESTED_AT: now_value()})
    kube.wait_for(
        PLURAL, name, lambda o: (o["status"].get("lastRun") or {}).get("state") == "Succeeded", what="run"
    )
    assert jfrog(sim).deleted(name) == (2, 3, 1000)
    assert sim.calls.calls(vendor="jfrog", method="PUT", path=f"/{name}/run$")[0].query == {"dryRun": "false"}


def test_disabled_policy_cannot_run_and_says_so(kube: Kube, sim: SimulatorServer, secret: None) -> None:
    name = unique("disabled")
    kube.apply(policy(sim, name, enabled=False))
    kube.wait_for(PLURAL, name, ready, what="Ready")
    kube.annotate(PLURAL, name, **{REQUESTED_AT: now_value()})
    obj = kube.wait_for(
        PLURAL, name, lambda o: (o["status"].get("lastRun") or {}).get("state") == "Refused", what="refused"
    )
    assert "disabled" in obj["status"]["lastRun"]["message"]
    assert not sim.calls.calls(vendor="jfrog", method="PUT", path=f"/{name}/run$")
    kube.wait_event(name, "RunRefused")


def test_vendor_validation_error_stalls_with_vendor_message(
    kube: Kube, sim: SimulatorServer, secret: None
) -> None:
    name = unique("old-server")
    jfrog(sim).version = "7.90.1"  # no days conditions before 7.111.2
    criteria = {
        "packageTypes": ["docker"],
        "repos": ["docker-local"],
        "includedPackages": ["**"],
        "createdBeforeInDays": 30,
    }
    kube.apply(policy(sim, name, searchCriteria=criteria))
    obj = kube.wait_for(PLURAL, name, lambda o: is_true(o, "Stalled"), what="Stalled")
    assert condition(obj, "Stalled")["reason"] == "UnsupportedByServer"
    assert "7.111.2" in condition(obj, "Stalled")["message"]
    assert not [c for c in calls(sim, name) if c[0] != "GET"]


def test_rejected_by_vendor_400(kube: Kube, sim: SimulatorServer, secret: None) -> None:
    name = unique("rejected")
    sim.simulator("jfrog").faults.add(
        Fault(
            "status",
            path=f"/policies/{name}$",
            method="POST",
            status=400,
            body={
                "errors": [{"status": 400, "message": "Repository docker-local is not a local repository"}]
            },
            times=None,
        )
    )
    kube.apply(policy(sim, name))
    obj = kube.wait_for(
        PLURAL, name, lambda o: is_true(o, "Stalled", "VendorRejected"), what="VendorRejected"
    )
    assert "is not a local repository" in condition(obj, "Stalled")["message"]


def test_bad_credentials_stall_naming_the_secret_not_its_value(
    kube: Kube, sim: SimulatorServer, operator: Any
) -> None:
    name = unique("badauth")
    kube.secret("jfrog", token="wrong-token-value-1234")
    kube.apply(policy(sim, name))
    obj = kube.wait_for(
        PLURAL, name, lambda o: is_true(o, "Stalled", "AuthenticationFailed"), what="auth failure"
    )
    message = condition(obj, "Stalled")["message"]
    assert f"Secret {kube.ns}/jfrog" in message
    assert "wrong-token-value-1234" not in str(obj)
    assert all("wrong-token-value-1234" not in e.get("message", "") for e in kube.events(name))
    assert "wrong-token-value-1234" not in operator.logs()
    # A refused credential is not tried again each interval (2 s): it backs off from 15-30 s.
    refused = [c for c in sim.calls.calls(vendor="jfrog") if c.status == 401]
    # Rotating the Secret is enough: its watch retries the stalled policy at once (sooner than the
    # backoff's first retry, and with no annotation to poke it).
    kube.secret("jfrog", token="test-token")
    obj = kube.wait_for(PLURAL, name, ready, timeout=12, what="Ready after rotation")
    calls_401 = [c for c in sim.calls.calls(vendor="jfrog") if c.status == 401]
    assert calls_401 == refused, "a refused token was sent again while stalled"
    auth_events = kube.wait_event(name, "AuthenticationFailed")
    assert sum(e.get("count", 1) for e in auth_events) == 1, auth_events


def test_vendor_outage_backs_off_and_recovers(kube: Kube, sim: SimulatorServer, secret: None) -> None:
    """During the outage the user sees Synced False and Reconciling True (VendorUnavailable), retries
    spaced by the documented backoff (each wait at least 1, 2, 4 s: base 2 s with equal jitter), and
    Ready without anyone acting once Artifactory answers again."""
    name = unique("outage")
    faults = jfrog(sim).faults
    faults.add(Fault("drop", path=f"/{name}$", times=1))
    faults.add(
        Fault(
            "status",
            path=f"/{name}$",
            status=503,
            body={"errors": [{"status": 503, "message": "down for maintenance"}]},
            times=None,
        )
    )
    kube.apply(policy(sim, name))

    def failed() -> list[Any]:
        return [c for c in sim.calls.calls(vendor="jfrog", path=f"/{name}$") if c.status in (0, 503)]

    obj = kube.wait_for(
        PLURAL,
        name,
        lambda o: condition(o, "Synced").get("status") == "False" and len(failed()) >= 2,
        what="Synced False during the outage",
    )
    synced, reconciling = condition(obj, "Synced"), condition(obj, "Reconciling")
    assert synced["reason"] == reconciling["reason"] == "VendorUnavailable", obj["status"]["conditions"]
    assert reconciling["status"] == "True" and reconciling["message"].startswith("retrying: ")
    assert condition(obj, "Stalled")["status"] == "False", "an outage is not for a human to fix"
    assert condition(obj, "Ready")["status"] == "False"
    assert not obj["status"].get("managed")
    wait_until(lambda: len(failed()) >= 4, "four failed attempts", timeout=40)
    at = [c.at for c in failed()[:4]]
    gaps = [later - earlier for earlier, later in itertools.pairwise(at)]
    assert all(gap >= 2**i for i, gap in enumerate(gaps)), gaps
    assert gaps[2] > gaps[0], gaps
    faults.clear()
    obj = kube.wait_for(PLURAL, name, ready, timeout=60, what="Ready after outage")
    assert condition(obj, "Synced")["status"] == "True" and condition(obj, "Reconciling")["status"] == "False"
    assert jfrog(sim).policy(name) is not None
    writes = [(m, p.rsplit("/", 1)[-1]) for m, p in calls(sim, name) if m != "GET"]
    assert writes == [("POST", name), ("POST", "enablement")], "the outage made a duplicate write"


def test_update_refused_while_running_is_retried(kube: Kube, sim: SimulatorServer, secret: None) -> None:
    name = unique("busy")
    kube.apply(policy(sim, name))
    kube.wait_for(PLURAL, name, ready, what="Ready")
    jfrog(sim).set_running(name, seconds=4)
    kube.apply(policy(sim, name, description="changed while running"))
    obj = kube.wait_for(
        PLURAL,
        name,
        lambda o: condition(o, "Reconciling").get("reason") == "PolicyRunning",
        what="PolicyRunning",
    )
    assert condition(obj, "Reconciling")["status"] == "True"
    kube.wait_for(
        PLURAL,
        name,
        lambda o: ready(o) and jfrog(sim).policy(name)["description"] == "changed while running",
        timeout=60,
        what="updated after the run",
    )


def test_delete_removes_policy_orphan_keeps_it(kube: Kube, sim: SimulatorServer, secret: None) -> None:
    gone, kept = unique("gone"), unique("kept")
    kube.apply(policy(sim, gone))
    kube.apply(policy(sim, kept, deletionPolicy="Orphan"))
    kube.wait_for(PLURAL, gone, ready, what="Ready")
    kube.wait_for(PLURAL, kept, ready, what="Ready")
    kube.delete(PLURAL, gone)
    kube.delete(PLURAL, kept)
    kube.wait_gone(PLURAL, gone)
    kube.wait_gone(PLURAL, kept)
    assert jfrog(sim).policy(gone) is None
    assert jfrog(sim).policy(kept) is not None
    assert len(sim.calls.calls(vendor="jfrog", method="DELETE", path=f"/{gone}$")) == 1
    assert not sim.calls.calls(vendor="jfrog", method="DELETE", path=f"/{kept}$")


@pytest.mark.parametrize("gone", ["before-the-delete", "during-the-delete"])
def test_delete_already_gone_counts_as_deleted(
    kube: Kube, sim: SimulatorServer, secret: None, gone: str
) -> None:
    """The policy vanished from Artifactory (deleted by hand): the resource goes, nothing is re-created."""
    name = unique("vanished")
    kube.apply(policy(sim, name, interval="10m"))
    kube.wait_for(PLURAL, name, ready, what="Ready")
    j = jfrog(sim)
    if gone == "before-the-delete":
        j.reset()
    else:  # found by the finalizer's GET, gone by its DELETE
        j.faults.add(
            Fault(
                "status",
                path=f"/policies/{name}$",
                method="DELETE",
                status=404,
                body={"errors": [{"status": 404, "message": f"Policy {name} not found"}]},
            )
        )
    mine_path = f"/{name}(/|$)"
    start = len(sim.calls.calls(vendor="jfrog", path=mine_path))
    kube.delete(PLURAL, name)
    kube.wait_gone(PLURAL, name, timeout=30)
    mine = [
        (c.method, c.path.rsplit("/", 1)[-1], c.status)
        for c in sim.calls.calls(vendor="jfrog", path=mine_path)[start:]
    ]
    if gone == "before-the-delete":
        assert mine == [("GET", name, 404)], mine
    else:
        assert mine[0] == ("GET", name, 200) and mine[-1] == ("DELETE", name, 404), mine
        assert [m for m, *_ in mine].count("DELETE") == 1, mine
    assert ("POST", name) not in [(m, p) for m, p, _ in mine], "re-created a policy on its way out"
    assert not [e for e in kube.events(name) if e["type"] == "Warning"], "an already-gone policy is no error"


def test_unreachable_vendor_blocks_delete_until_force(kube: Kube, sim: SimulatorServer, secret: None) -> None:
    name = unique("blocked")
    kube.apply(policy(sim, name, interval="10m"))
    kube.wait_for(PLURAL, name, ready, what="Ready")
    sim.simulator("jfrog").faults.add(
        Fault("status", path=f"/{name}$", method="DELETE", status=503, body={}, times=None)
    )
    kube.delete(PLURAL, name)
    obj = kube.wait_for(
        PLURAL,
        name,
        lambda o: condition(o, "Ready").get("reason") == "DeletionBlocked",
        what="DeletionBlocked",
    )
    assert "force-delete" in condition(obj, "Ready")["message"]
    kube.annotate(PLURAL, name, **{"cleanup.artifacts.dev/force-delete": "true"})
    kube.wait_gone(PLURAL, name)
    assert jfrog(sim).policy(name) is not None


def test_observe_only_never_writes_and_reports_differences(
    kube: Kube, sim: SimulatorServer, secret: None
) -> None:
    name = unique("observe")
    jfrog(sim).seed_policy(
        {
            "key": name,
            "description": "managed elsewhere",
            "enabled": True,
            "searchCriteria": {
                "packageTypes": ["docker"],
                "repos": ["docker-local"],
                "includedPackages": ["**"],
                "createdBeforeInMonths": 6,
            },
        }
    )
    kube.apply(policy(sim, name, managementPolicy="ObserveOnly"))
    obj = kube.wait_for(PLURAL, name, ready, what="observed")
    assert obj["status"]["differences"] == ["description"]
    assert obj["status"]["enabled"] is True
    kube.delete(PLURAL, name)
    kube.wait_gone(PLURAL, name)
    assert {c[0] for c in calls(sim, name)} == {"GET"}
    assert jfrog(sim).policy(name)["description"] == "managed elsewhere"


def test_crash_after_run_started_finds_it_instead_of_starting_another(
    isolated: tuple[Kube, Operator], sim: SimulatorServer
) -> None:
    """SIGKILL after Artifactory started the run, before the operator saw its id (a held answer)."""
    kube, op = isolated
    kube.secret("jfrog", token="test-token")
    name = unique("crash")
    j = jfrog(sim)
    j.run_duration = 2.0
    j.set_run_result(name, packages=3, versions=5, nbytes=4096)
    op.start()
    kube.apply(policy(sim, name, interval="10m"))
    kube.wait_for(PLURAL, name, ready, what="Ready")
    j.faults.add(Fault("late", path=f"/{name}/run$", method="PUT", delay=6.0))
    requested = now_value()
    kube.annotate(PLURAL, name, **{REQUESTED_AT: requested})
    summaries = wait_until(lambda: j.run_summaries(name), "the run started in Artifactory")
    run_id = summaries[0]["runId"]
    # What the operator wrote before its call: the request, and no run id yet.
    marker = last_run(kube.wait_for(PLURAL, name, lambda o: last_run(o).get("state") == "Starting"))
    assert marker["requestedAt"] == requested and "runId" not in marker
    op.kill()
    j.faults.clear()
    op.start()
    obj = kube.wait_for(
        PLURAL,
        name,
        lambda o: last_run(o).get("runId") == run_id and last_run(o).get("state") == "Succeeded",
        what="the run found and followed",
    )
    assert obj["status"]["lastHandledRequestedAt"] == requested
    run = last_run(obj)
    assert (run["packagesDeleted"], run["versionsDeleted"], run["bytesDeleted"]) == (3, 5, 4096)
    kube.wait_event(name, "RunFound")
    # The held answer is logged once given (to a dead operator): one PUT in all, one run in Artifactory.
    wait_until(lambda: run_puts(sim, name), "the held run answer")
    assert len(run_puts(sim, name)) == 1, "started a second run"
    assert [r["runId"] for r in j.run_summaries(name)] == [run_id]


def test_crash_before_run_started_starts_it_once(
    isolated: tuple[Kube, Operator], sim: SimulatorServer
) -> None:
    """SIGKILL after the request was recorded, while its call had not reached Artifactory.

    The run call never gets through (the connection drops before Artifactory sees it) until the
    operator is killed; the restarted operator finds no run and starts exactly one.
    """
    kube, op = isolated
    kube.secret("jfrog", token="test-token")
    name = unique("crash2")
    j = jfrog(sim)
    j.run_duration = 1.0
    op.start()
    kube.apply(policy(sim, name, interval="10m"))
    kube.wait_for(PLURAL, name, ready, what="Ready")
    j.faults.add(Fault("drop", path=f"/{name}/run$", method="PUT", times=None))
    requested = now_value()
    kube.annotate(PLURAL, name, **{REQUESTED_AT: requested})
    wait_until(lambda: run_puts(sim, name), "a run call that did not get through")
    kube.wait_for(PLURAL, name, lambda o: last_run(o).get("state") == "Starting", what="Starting")
    op.kill()
    j.faults.clear()
    assert not j.run_summaries(name), "the dropped call started a run"
    dropped = len(run_puts(sim, name))
    op.start()
    obj = kube.wait_for(PLURAL, name, lambda o: last_run(o).get("state") == "Succeeded", what="run")
    assert obj["status"]["lastHandledRequestedAt"] == requested
    after = run_puts(sim, name)[dropped:]
    assert [c.status for c in after] == [201] and after[0].query == {"dryRun": "true"}, after
    assert [r["runId"] for r in j.run_summaries(name)] == [last_run(obj)["runId"]]


def test_delete_stops_a_running_run_first(kube: Kube, sim: SimulatorServer, secret: None) -> None:
    name = unique("stoprun")
    jfrog(sim).run_duration = 30.0
    kube.apply(policy(sim, name, interval="10m"))
    kube.wait_for(PLURAL, name, ready, what="Ready")
    kube.annotate(PLURAL, name, **{REQUESTED_AT: now_value()})
    kube.wait_for(
        PLURAL, name, lambda o: (o["status"].get("lastRun") or {}).get("state") == "Running", what="running"
    )
    kube.delete(PLURAL, name)
    kube.wait_gone(PLURAL, name)
    methods = [
        (c.method, c.path.rsplit("/", 2)[-2])
        for c in sim.calls.calls(vendor="jfrog")
        if c.method in ("PUT", "DELETE") and ("/runs/" in c.path or c.path.endswith(f"/{name}"))
    ]
    assert methods[-2:] == [("PUT", "runs"), ("DELETE", "policies")], methods
    assert jfrog(sim).policy(name) is None


def test_suspend_stops_all_vendor_calls(kube: Kube, sim: SimulatorServer, secret: None) -> None:
    name = unique("suspended")
    kube.apply(policy(sim, name, suspend=True))
    obj = kube.wait_for(
        PLURAL, name, lambda o: o.get("status", {}).get("observedGeneration") == 1, what="observed"
    )
    assert condition(obj, "Reconciling")["reason"] == "Suspended"
    # A spec change while suspended is reconciled (its generation observed) without a vendor call.
    kube.apply(policy(sim, name, suspend=True, description="edited while suspended"))
    obj = kube.wait_for(
        PLURAL, name, lambda o: o.get("status", {}).get("observedGeneration") == 2, what="edit observed"
    )
    assert condition(obj, "Reconciling")["reason"] == "Suspended"
    assert not calls(sim, name)
    assert jfrog(sim).policy(name) is None
    kube.apply(policy(sim, name, suspend=False))
    kube.wait_for(PLURAL, name, ready, what="Ready after resume")
    assert (jfrog(sim).policy(name) or {}).get("description") == "stale images"


def test_missing_secret_stalls_then_recovers_when_created(kube: Kube, sim: SimulatorServer) -> None:
    name = unique("nosecret")
    kube.apply(policy(sim, name, interval="10m"))
    obj = kube.wait_for(
        PLURAL, name, lambda o: is_true(o, "Stalled", "SecretNotFound"), what="SecretNotFound"
    )
    assert f"Secret {kube.ns}/jfrog not found" in condition(obj, "Stalled")["message"]
    assert not calls(sim, name)
    kube.secret("jfrog", token="test-token")
    kube.wait_for(PLURAL, name, ready, timeout=75, what="Ready once the Secret exists")
