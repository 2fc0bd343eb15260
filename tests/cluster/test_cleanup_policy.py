"""CleanupPolicy end to end: real API server, the operator process, the JFrog simulator."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest

from cleanup_operator.testing.simulators import Fault, SimulatorServer

from .conftest import Kube, condition, is_true, jfrog

PLURAL = "cleanuppolicies"


def policy(sim: SimulatorServer, name: str, **spec: Any) -> dict[str, Any]:
    criteria = spec.pop("searchCriteria", None) or {
        "packageTypes": ["docker"],
        "repos": ["docker-local"],
        "includedPackages": ["**"],
        "createdBeforeInMonths": 6,
    }
    body = {
        "connection": {"url": sim.url("jfrog"), "secretRef": {"name": "jfrog"}},
        "description": "stale images",
        "enabled": True,
        "interval": "2s",
        "searchCriteria": criteria,
        "onDemandRun": {"pollInterval": "1s"},
    }
    body.update(spec)
    return {
        "apiVersion": "cleanup.artifacts.dev/v1alpha1",
        "kind": "CleanupPolicy",
        "metadata": {"name": name},
        "spec": body,
    }


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def calls(sim: SimulatorServer, key: str, method: str | None = None) -> list[tuple[str, str]]:
    """(method, path) of the JFrog calls naming policy ``key``."""
    return [(c.method, c.path) for c in sim.calls.calls(vendor="jfrog", method=method, path=f"/{key}(/|$)")]


def ready(obj: dict[str, Any]) -> bool:
    return is_true(obj, "Ready") and obj["status"].get("observedGeneration") == obj["metadata"]["generation"]


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
    out = kube.kubectl("get", PLURAL, name, "-n", kube.ns).stdout
    assert "KEY" in out and "ENABLED" in out and "READY" in out and "LAST RUN" in out
    assert name in out and "true" in out and "True" in out
    events = {e["reason"] for e in kube.events(name)}
    assert "Created" in events


def test_nothing_changed_means_no_writes_and_no_status_patch(
    kube: Kube, sim: SimulatorServer, secret: None
) -> None:
    name = unique("steady")
    kube.apply(policy(sim, name))
    obj = kube.wait_for(PLURAL, name, ready, what="Ready")
    time.sleep(1.0)
    before = kube.get(PLURAL, name)
    assert before is not None
    start = len(calls(sim, name))
    time.sleep(6.5)  # three intervals of 2s
    after = kube.get(PLURAL, name)
    assert after is not None
    later = calls(sim, name)[start:]
    assert later, "the drift check never ran"
    assert {m for m, _ in later} == {"GET"}, later
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"], "status was patched"
    assert obj["status"]["lastSyncedAt"] == after["status"]["lastSyncedAt"]


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
    drift_events = [e for e in kube.events(name) if e["reason"] == "DriftCorrected"]
    assert drift_events and "description" in drift_events[0]["message"]


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
    assert "Adopted" in {e["reason"] for e in kube.events(name)}


def test_two_resources_one_key_second_is_conflict(kube: Kube, sim: SimulatorServer, secret: None) -> None:
    key = unique("shared")
    kube.apply(policy(sim, "first", policyKey=key))
    kube.wait_for(PLURAL, "first", ready, what="first Ready")
    kube.apply(policy(sim, "second", policyKey=key, description="the second wants it too"))
    obj = kube.wait_for(PLURAL, "second", lambda o: is_true(o, "Stalled", "Conflict"), what="Conflict")
    assert f"{kube.ns}/first" in condition(obj, "Stalled")["message"]
    time.sleep(3)
    assert jfrog(sim).policy(key)["description"] == "stale images"
    assert not any(c.method == "PUT" for c in sim.calls.calls(vendor="jfrog", path=f"/{key}$"))


def test_on_demand_dry_run_runs_once_per_value(kube: Kube, sim: SimulatorServer, secret: None) -> None:
    name = unique("dryrun")
    jfrog(sim).set_run_result(name, packages=4, versions=9, nbytes=123456)
    kube.apply(policy(sim, name))
    kube.wait_for(PLURAL, name, ready, what="Ready")
    requested = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    kube.annotate(PLURAL, name, **{"cleanup.artifacts.dev/requested-at": requested})
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
    time.sleep(4)
    assert len(sim.calls.calls(vendor="jfrog", method="PUT", path=f"/{name}/run$")) == 1, (
        "ran twice for one value"
    )
    reasons = [e["reason"] for e in kube.events(name)]
    assert "RunStarted" in reasons and "RunSucceeded" in reasons
    described = kube.kubectl("describe", PLURAL, name, "-n", kube.ns).stdout
    assert "Last Run" in described and "RunSucceeded" in described
    print(kube.kubectl("get", PLURAL, "-n", kube.ns).stdout)
    print(described)


def test_real_run_when_spec_allows_it(kube: Kube, sim: SimulatorServer, secret: None) -> None:
    name = unique("realrun")
    jfrog(sim).set_run_result(name, packages=2, versions=3, nbytes=1000)
    kube.apply(policy(sim, name, onDemandRun={"dryRun": False, "pollInterval": "1s"}))
    kube.wait_for(PLURAL, name, ready, what="Ready")
    kube.annotate(PLURAL, name, **{"cleanup.artifacts.dev/requested-at": str(int(time.time()))})
    kube.wait_for(
        PLURAL, name, lambda o: (o["status"].get("lastRun") or {}).get("state") == "Succeeded", what="run"
    )
    assert jfrog(sim).deleted(name) == (2, 3, 1000)
    assert sim.calls.calls(vendor="jfrog", method="PUT", path=f"/{name}/run$")[0].query == {"dryRun": "false"}


def test_disabled_policy_cannot_run_and_says_so(kube: Kube, sim: SimulatorServer, secret: None) -> None:
    name = unique("disabled")
    kube.apply(policy(sim, name, enabled=False))
    kube.wait_for(PLURAL, name, ready, what="Ready")
    kube.annotate(PLURAL, name, **{"cleanup.artifacts.dev/requested-at": str(int(time.time()))})
    obj = kube.wait_for(
        PLURAL, name, lambda o: (o["status"].get("lastRun") or {}).get("state") == "Refused", what="refused"
    )
    assert "disabled" in obj["status"]["lastRun"]["message"]
    assert not sim.calls.calls(vendor="jfrog", method="PUT", path=f"/{name}/run$")
    assert "RunRefused" in {e["reason"] for e in kube.events(name)}


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
    time.sleep(5)  # more intervals of 2s while stalled: one event for the transition, not one per retry
    auth_events = [e for e in kube.events(name) if e["reason"] == "AuthenticationFailed"]
    assert sum(e.get("count", 1) for e in auth_events) == 1, auth_events
    # rotate the Secret: the operator recovers by itself
    kube.secret("jfrog", token="test-token")
    kube.annotate(PLURAL, name, **{"cleanup.artifacts.dev/reconcile-at": str(int(time.time()))})
    kube.wait_for(PLURAL, name, ready, timeout=90, what="Ready after rotation")


def test_vendor_outage_backs_off_and_recovers(kube: Kube, sim: SimulatorServer, secret: None) -> None:
    name = unique("outage")
    faults = sim.simulator("jfrog").faults
    faults.add(
        Fault(
            "status",
            path=f"/{name}$",
            status=503,
            body={"errors": [{"status": 503, "message": "down"}]},
            times=2,
        )
    )
    faults.add(Fault("drop", path=f"/{name}$", times=1))
    kube.apply(policy(sim, name))
    kube.wait_for(PLURAL, name, ready, timeout=90, what="Ready after outage")
    failed = [c for c in sim.calls.calls(vendor="jfrog", path=f"/{name}$") if c.status in (0, 503)]
    assert len(failed) >= 2


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


def test_delete_already_gone_counts_as_deleted(kube: Kube, sim: SimulatorServer, secret: None) -> None:
    name = unique("vanished")
    kube.apply(policy(sim, name, interval="10m"))
    kube.wait_for(PLURAL, name, ready, what="Ready")
    jfrog(sim).reset()
    kube.delete(PLURAL, name)
    kube.wait_gone(PLURAL, name)


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


def _crash_after_marker(kube: Kube, name: str, requested: str, started_at: str) -> None:
    """What status looks like when the operator died after recording a request, before the run id."""
    patch = {
        "status": {
            "lastRun": {
                "requestedAt": requested,
                "dryRun": True,
                "state": "Starting",
                "startedAt": started_at,
            }
        }
    }
    kube.kubectl(
        "patch",
        "-n",
        kube.ns,
        f"{PLURAL}.cleanup.artifacts.dev",
        name,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps(patch),
    )
    kube.annotate(PLURAL, name, **{"cleanup.artifacts.dev/requested-at": requested})


def test_crash_after_run_started_finds_it_instead_of_starting_another(
    isolated: Any, sim: SimulatorServer
) -> None:
    kube, op = isolated
    kube.secret("jfrog", token="test-token")
    name = unique("crash")
    op.start()
    kube.apply(policy(sim, name, interval="10m"))
    kube.wait_for(PLURAL, name, ready, what="Ready")
    op.stop()
    # The run did start in Artifactory just before the crash.
    marker = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 2))
    run_id = jfrog(sim).set_running(name, seconds=1.0, dry_run=True)
    _crash_after_marker(kube, name, "after-crash", marker)
    op.start()
    obj = kube.wait_for(
        PLURAL,
        name,
        lambda o: (
            (o["status"].get("lastRun") or {}).get("runId") == run_id
            and o["status"]["lastRun"].get("state") == "Succeeded"
        ),
        what="found run",
    )
    assert obj["status"]["lastHandledRequestedAt"] == "after-crash"
    assert not sim.calls.calls(vendor="jfrog", method="PUT", path=f"/{name}/run$"), "started a second run"


def test_crash_before_run_started_starts_it_once(isolated: Any, sim: SimulatorServer) -> None:
    kube, op = isolated
    kube.secret("jfrog", token="test-token")
    name = unique("crash2")
    op.start()
    kube.apply(policy(sim, name, interval="10m"))
    kube.wait_for(PLURAL, name, ready, what="Ready")
    op.stop()
    _crash_after_marker(kube, name, "never-started", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    op.start()
    kube.wait_for(
        PLURAL, name, lambda o: (o["status"].get("lastRun") or {}).get("state") == "Succeeded", what="run"
    )
    assert len(sim.calls.calls(vendor="jfrog", method="PUT", path=f"/{name}/run$")) == 1


def test_delete_stops_a_running_run_first(kube: Kube, sim: SimulatorServer, secret: None) -> None:
    name = unique("stoprun")
    jfrog(sim).run_duration = 30.0
    kube.apply(policy(sim, name, interval="10m"))
    kube.wait_for(PLURAL, name, ready, what="Ready")
    kube.annotate(PLURAL, name, **{"cleanup.artifacts.dev/requested-at": str(int(time.time()))})
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
    time.sleep(3)
    assert not calls(sim, name)
    assert jfrog(sim).policy(name) is None
    kube.apply(policy(sim, name, suspend=False))
    kube.wait_for(PLURAL, name, ready, what="Ready after resume")
    assert jfrog(sim).policy(name) is not None


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
