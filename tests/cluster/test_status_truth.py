"""Status tells the truth, and no spec or Secret sends the operator into a loop (issue 11)."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from typing import Any

from cleanup_operator.testing.controlplane import ControlPlane
from cleanup_operator.testing.simulators import SimulatorServer

from .conftest import (
    ASS,
    CPOL,
    SPRUNE,
    Kube,
    Operator,
    condition,
    harness,
    hsync,
    is_true,
    jfrog,
    last_run,
    policy,
    prune,
    ready,
    resync,
    scsync,
    sourcecraft,
    unique,
    wait_until,
)


def test_run_on_a_server_without_run_summaries_says_its_results_cannot_be_read(
    kube: Kube, sim: SimulatorServer
) -> None:
    kube.secret("jfrog", token="test-token")
    jfrog(sim).version = "7.111.2"  # run summaries came with 7.117
    name = unique("oldruns")
    kube.apply(policy(sim, name, interval="1h"))
    kube.wait_for(CPOL, name, ready, what="Ready")
    kube.annotate(CPOL, name, **{"cleanup.artifacts.dev/requested-at": str(int(time.time()))})
    obj = kube.wait_for(CPOL, name, lambda o: last_run(o).get("state") == "Started", what="Started")
    assert "cannot report run results" in last_run(obj)["message"]
    assert last_run(obj)["runId"] >= 1
    assert is_true(obj, "Ready") and not is_true(obj, "Stalled")
    runs = sim.calls.calls(vendor="jfrog", method="PUT", path=f"/{name}/run$")
    assert len(runs) == 1
    reads = len(sim.calls.calls(vendor="jfrog", path="/summaryReports$"))
    resync(kube, CPOL, name)  # a whole reconcile later: a run that cannot be read is not polled
    assert len(sim.calls.calls(vendor="jfrog", path="/summaryReports$")) == reads


def test_a_ca_bundle_that_is_not_pem_stalls_and_says_what_to_fix(
    kube: Kube, sim: SimulatorServer, operator: Operator
) -> None:
    kube.secret("jfrog", token="test-token")
    kube.secret("jfrog-ca", **{"ca.crt": "not a certificate"})
    name = unique("badca")
    manifest = policy(sim, name, interval="10s")
    manifest["spec"]["connection"]["caSecretRef"] = {"name": "jfrog-ca"}
    kube.apply(manifest)
    obj = kube.wait_for(CPOL, name, lambda o: is_true(o, "Stalled", "InvalidSecret"), what="InvalidSecret")
    message = condition(obj, "Stalled")["message"]
    assert f"Secret {kube.ns}/jfrog-ca key 'ca.crt' does not hold a PEM CA bundle" in message
    assert "not a certificate" not in str(obj["status"])
    assert not sim.calls.calls(vendor="jfrog", path=f"/{name}")
    assert f"{name}: reconcile failed unexpectedly" not in operator.logs()


def test_harness_sync_where_every_stream_is_refused_is_not_a_sync(kube: Kube, sim: SimulatorServer) -> None:
    h = harness(sim)
    h.add_stream("acc1", "jenkins-7", "JENKINS")
    kube.secret("harness", apiKey="test-key")
    kube.apply(hsync(sim, "refused", ["jenkins-7", "ghost-7"], interval="1h"))
    obj = kube.wait_for(
        ASS, "refused", lambda o: condition(o, "Ready").get("reason") == "PartialFailure", what="refused"
    )
    status = obj["status"]
    assert "lastSyncedAt" not in status, "nothing was cleaned up: not a successful sync"
    assert status["lastAttemptAt"] and status["synced"] == "0/2"
    resync(kube, ASS, "refused")  # a re-sync later: permanent refusals are not tried again
    mine = {"ghost-7", "jenkins-7"}  # leftovers of earlier tests may still call the simulator
    tried = [c.json["variables"]["input"]["artifactStreamId"] for c in sim.calls.calls(vendor="harness")]
    assert sorted(t for t in tried if t in mine) == ["ghost-7", "jenkins-7"]


def test_a_new_latest_run_never_shows_the_previous_runs_inventory(kube: Kube, sim: SimulatorServer) -> None:
    sc = sourcecraft(sim)
    sc.add_run(
        "acme",
        "web",
        "run-a",
        workflow="build",
        task="package",
        cube="publish",
        artifacts=[("dist/a.tar", "success"), ("dist/a.sig", "missing")],
        created_at=time.time() - 60,
    )
    kube.secret("sourcecraft", token="sc-token")
    kube.apply(scsync(sim, "latest", latestRun=True))
    obj = kube.wait_for(
        ASS, "latest", lambda o: (o["status"].get("inventory") or {}).get("run") == "run-a", what="run-a"
    )
    assert is_true(obj, "ArtifactsMissing")
    sc.add_run(
        "acme",
        "web",
        "run-b",
        workflow="build",
        task="package",
        cube="publish",
        artifacts=[("dist/b.tar", "success")],
        status="success",
        processing_seconds=3600.0,
        created_at=time.time(),
    )
    obj = kube.wait_for(
        ASS, "latest", lambda o: (o["status"].get("inventory") or {}).get("run") == "run-b", what="run-b"
    )
    inventory = obj["status"]["inventory"]
    assert inventory["runStatus"] == "processing"
    assert "totals" not in inventory and "artifacts" not in inventory, inventory
    assert not is_true(obj, "ArtifactsMissing"), condition(obj, "ArtifactsMissing")
    assert obj["status"].get("synced") is None


def test_a_scheduled_prune_waiting_for_its_tick_is_healthy(kube: Kube, sim: SimulatorServer) -> None:
    kube.secret("jfrog", token="test-token")
    kube.apply(prune(sim, "weekly", schedule="0 4 * * 0"))
    obj = kube.wait_for(SPRUNE, "weekly", lambda o: o["status"].get("phase") == "Scheduled", what="Scheduled")
    assert is_true(obj, "Ready", "Scheduled")
    assert condition(obj, "Reconciling")["status"] == "False"
    assert not sim.calls.calls(vendor="jfrog", method="POST", path="/prune/")


def test_a_prune_from_a_later_directory_ends_at_100_percent(kube: Kube, sim: SimulatorServer) -> None:
    kube.secret("jfrog", token="test-token")
    j = jfrog(sim)
    j.prune_seconds_per_directory = 0.05
    kube.apply(prune(sim, "half", startFromDirectory="80", pollInterval="500ms"))
    seen: list[int] = []

    def track(o: dict[str, Any]) -> bool:
        st = o.get("status") or {}
        if st.get("phase") == "Running" and st.get("percent") is not None:
            seen.append(int(st["percent"]))
        return st.get("phase") == "Succeeded"

    obj = kube.wait_for(SPRUNE, "half", track, what="Succeeded")
    assert obj["status"]["percent"] == 100
    assert obj["status"]["progress"] == "128 of 256"
    assert seen and seen[0] < 50, seen  # a prune from 80 does not start half done
    assert seen == sorted(seen)


def test_a_conflict_names_no_object_of_another_namespace(
    kube: Kube, sim: SimulatorServer, control_plane: ControlPlane
) -> None:
    kube.secret("jfrog", token="test-token")
    key = unique("shared")
    kube.apply(policy(sim, "alpha", interval="1h", policyKey=key))
    alpha = kube.wait_for(CPOL, "alpha", ready, what="alpha Ready")
    # The older claimant owns the key; claims are ordered by creationTimestamp (whole seconds), so
    # the second resource must be created in a later second to be the younger one.
    born = dt.datetime.fromisoformat(alpha["metadata"]["creationTimestamp"].replace("Z", "+00:00"))
    wait_until(lambda: time.time() >= born.timestamp() + 1.05, "a second after alpha's creation")
    other_ns = f"e2e-{uuid.uuid4().hex[:8]}"
    control_plane.kubectl("create", "namespace", other_ns)
    try:
        other = Kube(control_plane, other_ns)
        other.secret("jfrog", token="test-token")
        other.apply(policy(sim, "second", interval="1h", policyKey=key))
        obj = other.wait_for(CPOL, "second", lambda o: is_true(o, "Stalled", "Conflict"), what="Conflict")
        message = condition(obj, "Stalled")["message"]
        assert "claimed by another resource" in message
        assert kube.ns not in str(obj["status"]) and "alpha" not in str(obj["status"]), obj["status"]
        assert all(kube.ns not in e.get("message", "") for e in other.events("second"))
    finally:
        control_plane.kubectl("delete", "namespace", other_ns, "--wait=false", check=False)


def test_last_synced_at_follows_checks_within_the_status_report_interval(
    control_plane: ControlPlane, sim: SimulatorServer, isolated: tuple[Kube, Operator], tmp_path: Any
) -> None:
    """lastSyncedAt is the last successful check, to within --status-report-interval: a policy
    that never changes still shows recent checks, with no vendor write and no patch per interval
    (test_nothing_changed_means_no_writes_and_no_status_patch holds it at the default of 1 h)."""
    kube, _ = isolated
    op = Operator(
        control_plane,
        tmp_path / "report.log",
        "--namespace",
        kube.ns,
        "--allowed-hosts",
        "127.0.0.1",
        "--allow-insecure-http",
        "--status-report-interval",
        "3s",
    ).start()
    try:
        kube.secret("jfrog", token="test-token")
        name = unique("report")
        kube.apply(policy(sim, name, interval="1s"))
        first = kube.wait_for(CPOL, name, ready, what="Ready")["status"]["lastSyncedAt"]
        writes = [c for c in sim.calls.calls(vendor="jfrog") if c.method != "GET" and name in c.path]
        seen = kube.watch(
            CPOL, name, lambda o: o["status"]["lastSyncedAt"] > first, timeout=20, what="a newer lastSyncedAt"
        )
        later = [c for c in sim.calls.calls(vendor="jfrog") if c.method != "GET" and name in c.path]
        assert later == writes, "refreshing lastSyncedAt wrote to Artifactory"
        # About one patch per 3 s, not one per 1 s check: the versions seen are few.
        checks = len(sim.calls.calls(vendor="jfrog", method="GET", path=f"/{name}$"))
        assert len(seen) <= 3 and checks >= 3, (len(seen), checks)
    finally:
        op.stop()
