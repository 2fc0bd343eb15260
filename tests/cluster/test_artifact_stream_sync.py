"""ArtifactStreamSync end to end: Harness and SourceCraft simulators, real API server, the operator."""

from __future__ import annotations

import re
import time
from typing import Any

from cleanup_operator.testing.simulators import Fault, SimulatorServer

from .conftest import (
    ASS,
    Kube,
    Operator,
    condition,
    harness,
    hsync,
    is_true,
    scsync,
    sourcecraft,
    unique,
    wait_until,
)

PLURAL = ASS


def streams(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["id"]: s for s in obj["status"].get("streams") or []}


def test_harness_every_message(kube: Kube, sim: SimulatorServer) -> None:
    h = harness(sim)
    h.add_stream("acc1", "docker-1", "DOCKER")
    h.add_stream("acc1", "jenkins-1", "JENKINS")
    kube.secret("harness", apiKey="test-key")
    kube.apply(hsync(sim, "mixed", ["docker-1", "jenkins-1", "ghost-1"]))
    obj = kube.wait_for(
        PLURAL,
        "mixed",
        lambda o: len(streams(o)) == 3 and condition(o, "Ready").get("reason") == "PartialFailure",
        what="PartialFailure",
    )
    st = streams(obj)
    assert st["docker-1"]["state"] == "Succeeded"
    assert st["docker-1"]["message"] == "Cleanup successful for Artifact stream with id: docker-1"
    assert st["docker-1"]["lastSyncedAt"]
    assert st["jenkins-1"]["state"] == "Unsupported"
    assert st["jenkins-1"]["message"] == "Clean up not supported for artifact Stream type: JENKINS"
    assert st["ghost-1"]["state"] == "NotFound"
    assert st["ghost-1"]["message"] == "Artifact stream not found for the id: ghost-1"
    ready = condition(obj, "Ready")
    assert ready["status"] == "False"
    assert "1 of 3 streams succeeded; 1 unsupported, 1 not found, 0 failed" in ready["message"]
    assert obj["status"]["synced"] == "1/3" and obj["status"]["source"] == "harness"
    # Unsupported and not found are permanent until the spec changes; the good stream keeps syncing:
    # over two more syncs of it (interval 2 s), the other two are not tried again.
    synced = h.cleanup_count("docker-1")
    wait_until(lambda: h.cleanup_count("docker-1") >= synced + 2, "two more syncs of docker-1")
    bodies = [c.json for c in sim.calls.calls(vendor="harness", path="/gateway/api/graphql")]
    tried = [b["variables"]["input"]["artifactStreamId"] for b in bodies]
    assert tried.count("jenkins-1") == 1 and tried.count("ghost-1") == 1
    assert all("docker-1" not in b["query"] for b in bodies), "ids pasted into the query text"
    calls = sim.calls.calls(vendor="harness")
    assert all(c.query.get("accountId") == "acc1" for c in calls)
    kube.apply(hsync(sim, "mixed", ["docker-1"]))
    obj = kube.wait_for(
        PLURAL, "mixed", lambda o: is_true(o, "Ready") and o["status"]["synced"] == "1/1", what="Ready"
    )
    row = kube.table(PLURAL, "mixed")
    assert list(row) == ["NAME", "SOURCE", "READY", "SYNCED", "LAST SYNC", "AGE"], row
    assert (row["SOURCE"], row["READY"], row["SYNCED"]) == ("harness", "True", "1/1"), row
    assert re.fullmatch(r"\d+[smhd]\S*", row["LAST SYNC"]), row  # a date column: shown as its age


def test_harness_not_found_in_errors_form(kube: Kube, sim: SimulatorServer) -> None:
    harness(sim).not_found_in_errors = True
    kube.secret("harness", apiKey="test-key")
    kube.apply(hsync(sim, "ghost", ["nope"]))
    obj = kube.wait_for(
        PLURAL, "ghost", lambda o: streams(o).get("nope", {}).get("state") == "NotFound", what="NotFound"
    )
    assert is_true(obj, "Stalled")


def test_harness_bad_key(kube: Kube, sim: SimulatorServer, operator: Operator) -> None:
    harness(sim).add_stream("acc1", "docker-1", "DOCKER")
    kube.secret("harness", apiKey="not-the-key-5678")
    kube.apply(hsync(sim, "badkey", ["docker-1"]))
    obj = kube.wait_for(
        PLURAL, "badkey", lambda o: is_true(o, "Stalled", "AuthenticationFailed"), what="auth"
    )
    assert f"Secret {kube.ns}/harness" in condition(obj, "Stalled")["message"]
    assert "not-the-key-5678" not in str(obj) and "not-the-key-5678" not in operator.logs()
    kube.wait_event("badkey", "AuthenticationFailed")


def test_harness_rate_limit_shared_by_all_resources(kube: Kube, sim: SimulatorServer) -> None:
    h = harness(sim)
    h.rate_limit, h.rate_window = 5, 2.0  # the operator runs with 4 per 2 s per account
    for i in range(24):
        h.add_stream("acc2", f"s{i}", "ECR")
    h.add_api_key("acc2", "test-key")
    kube.secret("harness", apiKey="test-key")
    for n in range(12):
        kube.apply(hsync(sim, f"rl-{n}", [f"s{2 * n}", f"s{2 * n + 1}"], account="acc2", interval="10m"))
    for n in range(12):
        kube.wait_for(PLURAL, f"rl-{n}", lambda o: is_true(o, "Ready"), timeout=120, what="Ready")
    assert h.max_in_window("acc2") <= 5
    assert all(h.cleanup_count(f"s{i}", "acc2") == 1 for i in range(24))


def test_harness_429_backs_off_and_recovers(kube: Kube, sim: SimulatorServer) -> None:
    """Harness answers 429 until the test has seen the resource back off; then it recovers by itself.

    A fault matches the GraphQL path of every account, so calls from resources of earlier tests
    (their namespaces are deleted without waiting) may meet it too: the fault stays until this
    resource's own call (its own account) was refused, and only that account's calls are judged.
    """
    h = harness(sim)
    account = unique("acc429")
    h.add_api_key(account, "test-key")
    h.add_stream(account, "docker-9", "DOCKER")
    h.faults.add(
        Fault(
            "status",
            path="/gateway/api/graphql",
            status=429,
            body={"code": "TOO_MANY_REQUESTS", "message": "Too many requests"},
            times=None,
        )
    )
    kube.secret("harness", apiKey="test-key")
    kube.apply(hsync(sim, "limited", ["docker-9"], account=account, interval="10m"))

    def mine() -> list[int]:
        return [c.status for c in sim.calls.calls(vendor="harness") if c.query.get("accountId") == account]

    obj = kube.wait_for(
        PLURAL,
        "limited",
        lambda o: streams(o)["docker-9"]["state"] == "Failed" and 429 in mine(),
        what="the stream refused with 429",
    )
    assert "Too many requests" in streams(obj)["docker-9"]["message"], obj["status"]
    assert condition(obj, "Ready")["message"].endswith("1 failed; retrying"), obj["status"]
    assert not is_true(obj, "Stalled"), "a rate limit is retried, not for a human to fix"
    h.faults.clear()
    obj = kube.wait_for(PLURAL, "limited", lambda o: is_true(o, "Ready"), timeout=90, what="Ready after 429")
    statuses = mine()
    assert statuses[0] == 429 and statuses[-1] == 200 and set(statuses) == {429, 200}, statuses
    assert h.cleanup_count("docker-9", account) == 1
    assert obj["status"]["synced"] == "1/1"


def test_sourcecraft_latest_run_across_pages_all_statuses(
    kube: Kube, sim: SimulatorServer, operator: Operator
) -> None:
    sc = sourcecraft(sim)
    sc.add_runs("acme", "web", 120)  # more than one page of the client's page size
    sc.add_run(
        "acme",
        "web",
        "run-newest",
        workflow="build",
        task="package",
        cube="publish",
        artifacts=[
            ("dist/app.tar", "success"),
            ("dist/app.sig", "registered"),
            ("logs/test.xml", "failed"),
            ("dist/doc.zip", "missing"),
        ],
        created_at=time.time() + 5,
    )
    kube.secret("sourcecraft", token="sc-token")
    kube.apply(scsync(sim, "latest", latestRun=True))
    obj = kube.wait_for(PLURAL, "latest", lambda o: is_true(o, "Ready"), what="Ready")
    inv = obj["status"]["inventory"]
    assert inv["run"] == "run-newest" and inv["runStatus"] == "success"
    assert inv["totals"] == {"registered": 1, "success": 1, "failed": 1, "missing": 1}
    assert {a["localPath"]: a["status"] for a in inv["artifacts"]} == {
        "dist/app.tar": "success",
        "dist/app.sig": "registered",
        "logs/test.xml": "failed",
        "dist/doc.zip": "missing",
    }
    assert inv["truncated"] is False
    assert all("downloadUrl" not in a and "download_url" not in a for a in inv["artifacts"])
    pages = sim.calls.calls(vendor="sourcecraft", path="/cicd/runs$")
    assert len(pages) >= 3 and any("page_token" in c.query for c in pages)
    missing = condition(obj, "ArtifactsMissing")
    assert missing["status"] == "True" and "1 missing and 1 failed" in missing["message"]
    kube.wait_event("latest", "ArtifactsMissing")
    # The temporary download URLs are credentials: nowhere in status, events or logs.
    issued = list(sc.issued_download_urls)
    assert issued
    text = str(obj) + str(kube.events("latest")) + operator.logs()
    assert "X-Signature" not in text
    assert not any(url in text or url.split("?")[0] in text for url in issued)


def test_sourcecraft_run_processing_then_finishing(kube: Kube, sim: SimulatorServer) -> None:
    sc = sourcecraft(sim)
    sc.add_run(
        "acme",
        "web",
        "run-7",
        workflow="build",
        task="package",
        cube="publish",
        artifacts=["a.bin", "b.bin"],
        processing_seconds=4,
    )
    kube.secret("sourcecraft", token="sc-token")
    kube.apply(scsync(sim, "processing", run="run-7"))
    obj = kube.wait_for(
        PLURAL,
        "processing",
        lambda o: condition(o, "Reconciling").get("reason") == "RunInProgress",
        what="in progress",
    )
    assert obj["status"]["inventory"]["runStatus"] in ("created", "prepared", "processing")
    obj = kube.wait_for(PLURAL, "processing", lambda o: is_true(o, "Ready"), what="finished")
    assert obj["status"]["inventory"]["totals"]["success"] == 2
    assert obj["status"]["synced"] == "2/2"
    assert condition(obj, "ArtifactsMissing")["status"] == "False"


def test_sourcecraft_error_body_reaches_condition(kube: Kube, sim: SimulatorServer) -> None:
    sc = sourcecraft(sim)
    sc.add_run("acme", "web", "run-1", workflow="build", task="package", cube="publish", artifacts=["a"])
    kube.secret("sourcecraft", token="sc-token")
    kube.apply(scsync(sim, "wrongcube", run="run-1", cube="nope"))
    obj = kube.wait_for(PLURAL, "wrongcube", lambda o: is_true(o, "Stalled"), what="Stalled")
    message = condition(obj, "Stalled")["message"]
    request_id = obj["status"]["lastRequestId"]
    assert request_id and request_id in message
    assert "HTTP 404" in message and sc.request_ids and request_id in sc.request_ids


def test_sourcecraft_bad_token(kube: Kube, sim: SimulatorServer) -> None:
    sourcecraft(sim).add_run("acme", "web", "run-1", workflow="build", task="package", cube="publish")
    kube.secret("sourcecraft", token="expired")
    kube.apply(scsync(sim, "badtoken", run="run-1"))
    obj = kube.wait_for(
        PLURAL, "badtoken", lambda o: is_true(o, "Stalled", "AuthenticationFailed"), what="auth"
    )
    assert "expired" not in str(obj)


def test_sourcecraft_inventory_capped_at_100(kube: Kube, sim: SimulatorServer) -> None:
    sc = sourcecraft(sim)
    sc.add_run(
        "acme",
        "web",
        "big",
        workflow="build",
        task="package",
        cube="publish",
        artifacts=[f"out/{i}.bin" for i in range(130)],
    )
    kube.secret("sourcecraft", token="sc-token")
    kube.apply(scsync(sim, "big", run="big"))
    obj = kube.wait_for(PLURAL, "big", lambda o: is_true(o, "Ready"), what="Ready")
    inv = obj["status"]["inventory"]
    assert len(inv["artifacts"]) == 100 and inv["truncated"] is True
    assert inv["totals"]["success"] == 130 and obj["status"]["synced"] == "130/130"
