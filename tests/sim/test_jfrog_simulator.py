"""The JFrog simulator on the wire (raw HTTP): doc shapes, auth, rules the client cannot send, lazy time."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cleanup_operator.testing.simulators import JFrogSimulator, ManualClock, SimulatorServer
from cleanup_operator.testing.simulators.jfrog import DEFAULT_VERSION, directory_content
from cleanup_operator.testing.tls import SimulatorCA
from cleanup_operator.vendors import jfrog
from cleanup_operator.vendors.http import ClientOptions, make_client
from tests.unit.test_jfrog_models import doc_policy_sample, doc_prune_status_sample

from ..conftest import jfrog as jfrog_simulator

POLICIES = "/artifactory/api/cleanup/packages/policies"
PRUNE = "/artifactory/api/system/storage/prune"
RUNS = "/artifactory/api/cleanup/policies/runs"
AUTH = {"Authorization": "Bearer test-token"}


def minimal(key: str = "docker-old", **top: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "key": key,
        "enabled": False,
        "searchCriteria": {
            "packageTypes": ["docker"],
            "repos": ["docker-local"],
            "includedPackages": ["**"],
            "keepLastNVersions": 2,
        },
    }
    body.update(top)
    return body


def shape(value: Any) -> Any:
    """Keys and value types, recursively: what must match between a doc sample and the simulator."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(v) for v in value[:1]]
    return type(value).__name__


@pytest.fixture
def jsim(sim: SimulatorServer) -> JFrogSimulator:
    """The JFrog simulator on a :class:`ManualClock`: runs and prunes move only when a test says so."""
    simulator = jfrog_simulator(sim)
    simulator.clock = ManualClock()
    return simulator


@pytest.fixture
async def http(
    sim: SimulatorServer, jsim: JFrogSimulator, sim_ca: SimulatorCA
) -> AsyncIterator[httpx.AsyncClient]:
    verify = sim_ca.client_context()
    async with httpx.AsyncClient(base_url=sim.url("jfrog"), headers=AUTH, verify=verify) as client:
        yield client


@pytest.fixture
def clock(jsim: JFrogSimulator) -> ManualClock:
    assert isinstance(jsim.clock, ManualClock)
    return jsim.clock


def error_message(response: httpx.Response) -> str:
    body = response.json()
    [error] = body["errors"]
    assert error["status"] == response.status_code
    return str(error["message"])


# Doc samples come back in the doc's shape ----------------------------------------------------------


async def test_doc_policy_sample_round_trips(
    http: httpx.AsyncClient, jsim: JFrogSimulator, sim: SimulatorServer, vendor_docs: Path, sim_ca_pem: str
) -> None:
    sample = doc_policy_sample(vendor_docs)
    jsim.seed_policy(sample)
    response = await http.get(f"{POLICIES}/key1")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == sample
    assert list(response.json()) == list(sample)  # same keys, same order

    async with make_client(ClientOptions(base_url=sim.url("jfrog"), headers=AUTH, ca_pem=sim_ca_pem)) as raw:
        parsed = await jfrog.JFrogClient(raw).get_policy("key1")
    assert parsed == jfrog.Policy.model_validate(sample)


async def test_created_policy_echoes_only_what_was_sent(http: httpx.AsyncClient) -> None:
    """By default an optional field never sent stays out of every answer; one sent empty comes back."""
    created = await http.post(f"{POLICIES}/docker-old", json=minimal())
    assert created.status_code == 201
    assert created.json() == minimal()
    assert (await http.get(f"{POLICIES}/docker-old")).json() == minimal()
    assert (await http.get(POLICIES)).json() == [minimal()]

    sent = minimal("docker-empty", description="", cronExp="", durationInMinutes=0, skipTrashcan=False)
    sent["searchCriteria"] |= {"excludedRepos": [], "excludedPackages": [], "includeAllProjects": False}
    await http.post(f"{POLICIES}/docker-empty", json=sent)
    assert (await http.get(f"{POLICIES}/docker-empty")).json() == sent

    nulls = minimal("docker-nulls", description=None)
    nulls["searchCriteria"] |= {"excludedRepos": None, "createdBeforeInDays": None}
    await http.post(f"{POLICIES}/docker-nulls", json=nulls)
    assert (await http.get(f"{POLICIES}/docker-nulls")).json() == minimal("docker-nulls")


async def test_sample_shape_switch_echoes_every_field_of_the_doc_sample(
    http: httpx.AsyncClient, jsim: JFrogSimulator, vendor_docs: Path
) -> None:
    """``echo_empty_defaults``: a policy created with only mandatory fields has the doc sample's shape."""
    jsim.echo_empty_defaults = True
    response = await http.post(f"{POLICIES}/docker-old", json=minimal())
    assert response.status_code == 201
    stored = (await http.get(f"{POLICIES}/docker-old")).json()
    assert response.json() == stored == jsim.policy("docker-old")
    sample = doc_policy_sample(vendor_docs)
    assert set(stored) == set(sample)
    assert set(stored["searchCriteria"]) == set(sample["searchCriteria"])
    assert shape(stored["searchCriteria"]) == shape(sample["searchCriteria"]) | {
        "includedPackages": ["str"],
        "excludedPackages": [],
        "includedProjects": [],
    }
    assert stored["durationInMinutes"] == 0
    assert stored["description"] == ""
    assert stored["searchCriteria"]["excludedRepos"] == []
    assert stored["searchCriteria"]["createdBeforeInMonths"] == 0
    assert stored["searchCriteria"]["keepLastNVersions"] == 2
    assert (await http.get(POLICIES)).json() == [stored]
    jsim.echo_empty_defaults = False
    assert (await http.get(f"{POLICIES}/docker-old")).json() == minimal()  # storage kept what was sent


async def test_doc_prune_status_shape(
    http: httpx.AsyncClient, jsim: JFrogSimulator, clock: ManualClock, vendor_docs: Path
) -> None:
    jsim.prune_seconds_per_directory = 1.0
    start = await http.post(f"{PRUNE}/start", json={"dryRun": True})
    assert (start.status_code, start.headers["content-type"].split(";")[0]) == (202, "application/json")
    assert "info" in start.json()
    clock.advance(2.5)
    body = (await http.get(f"{PRUNE}/status")).json()
    sample = doc_prune_status_sample(vendor_docs)
    assert shape(body) == shape(sample)
    assert list(body) == list(sample)
    assert body["progress"] == "2 of 256"
    assert body["status"] == "running"
    assert body["timing"]["durationMillis"] == 2500
    assert body["timing"]["duration"] == "0:00:02.500"
    for timing in (body["timing"], body["lastHandledDirectory"]["timing"]):
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", timing["startedAt"])
        assert re.fullmatch(r"\d+:\d\d:\d\d\.\d{3}", timing["duration"])
        assert timing["lastUpdatedMillis"] == timing["startedAtMillis"] + timing["durationMillis"]
    last = body["lastHandledDirectory"]
    assert (last["name"], last["status"], last["timing"]["durationMillis"]) == ("01", "finished", 1000)
    assert last["binariesProcessed"] == directory_content(1)[0]
    assert body["report"]["totalBinariesProcessed"] == directory_content(0)[0] + directory_content(1)[0]


# Auth and content type ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"Authorization": "Bearer nope"}, 401),
        ({"Authorization": "Basic " + "YWRtaW46d3Jvbmc="}, 401),  # admin:wrong
        ({"Authorization": "Basic !!!"}, 401),
        ({"Authorization": "Bearer no-perms"}, 403),
        ({"Authorization": "Basic YWRtaW46cGFzc3dvcmQ="}, 200),  # admin:password
        ({"Authorization": "Bearer test-token"}, 200),
        ({"Authorization": "Bearer other"}, 200),
    ],
)
async def test_auth(
    sim: SimulatorServer, jsim: JFrogSimulator, sim_ca: SimulatorCA, headers: dict[str, str], status: int
) -> None:
    jsim.forbidden_tokens = {"no-perms"}
    jsim.tokens = {"test-token", "other"}
    verify = sim_ca.client_context()
    async with httpx.AsyncClient(base_url=sim.url("jfrog"), headers=headers, verify=verify) as client:
        response = await client.get(f"{POLICIES}")
    assert response.status_code == status
    assert response.headers["content-type"].startswith("application/json")
    if status == 401:
        assert response.json() == {"errors": [{"status": 401, "message": "Bad credentials"}]}
    if status == 200:
        assert response.json() == []


async def test_every_answer_is_json(http: httpx.AsyncClient, jsim: JFrogSimulator) -> None:
    answers = [
        await http.get("/artifactory/api/system/version"),
        await http.get(f"{PRUNE}/status"),  # 412
        await http.post(f"{PRUNE}/stop"),  # 412
        await http.post(f"{POLICIES}/ab", json=minimal("ab")),  # 400
        await http.get(f"{POLICIES}/nope"),  # 404
        await http.post(f"{POLICIES}/docker-old", json=minimal()),  # 201
        await http.put(f"{POLICIES}/docker-old/run", params={"dryRun": "true"}),  # 400 disabled
    ]
    assert [a.status_code for a in answers] == [200, 412, 412, 400, 404, 201, 400]
    for answer in answers:
        assert answer.headers["content-type"].split(";")[0] == "application/json"
        answer.json()
    assert answers[0].json() == {"version": DEFAULT_VERSION, "revision": jsim.revision, "addons": jsim.addons}
    assert answers[1].json() == {"info": "No Prune task found"}
    assert answers[2].json() == {"info": "No running Prune task found"}
    assert error_message(answers[4]) == "Policy 'nope' not found"


# Rules only raw HTTP can break -------------------------------------------------------------------


async def test_create_must_be_disabled(http: httpx.AsyncClient, jsim: JFrogSimulator) -> None:
    response = await http.post(f"{POLICIES}/docker-old", json=minimal(enabled=True))
    assert response.status_code == 400
    assert "must be created disabled" in error_message(response)
    assert jsim.policies == {}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("not json", "Invalid JSON in the request body"),
        ([1, 2], "must be a JSON object"),
        (
            {"key": "other-key", "searchCriteria": minimal()["searchCriteria"]},
            "does not match the key in the path",
        ),
        ({"key": "docker-old"}, "searchCriteria is mandatory"),
        (minimal(durationInMinutes="5"), "durationInMinutes must be a whole number"),
        (minimal(enabled="false"), "enabled must be of type bool"),
        (
            minimal(searchCriteria={**minimal()["searchCriteria"], "repos": "docker-local"}),
            "repos must be a list",
        ),
        (
            minimal(searchCriteria={**minimal()["searchCriteria"], "keepLastNVersions": True}),
            "keepLastNVersions must be a whole number",
        ),
        (
            minimal(searchCriteria={**minimal()["searchCriteria"], "keepLastNVersions": -2}),
            "keepLastNVersions must be 0 or more",
        ),
    ],
)
async def test_malformed_bodies(http: httpx.AsyncClient, body: Any, message: str) -> None:
    content = body if isinstance(body, str) else json.dumps(body)
    response = await http.post(
        f"{POLICIES}/docker-old", content=content, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert message in error_message(response)


async def test_update_ignores_enabled_and_keeps_the_key(
    http: httpx.AsyncClient, jsim: JFrogSimulator
) -> None:
    await http.post(f"{POLICIES}/docker-old", json=minimal())
    await http.post(f"{POLICIES}/docker-old/enablement", json={"enabled": True})
    response = await http.put(f"{POLICIES}/docker-old", json=minimal(enabled=False, description="d"))
    assert response.status_code == 200
    stored = jsim.policy("docker-old")
    assert stored is not None
    assert (stored["enabled"], stored["description"]) == (True, "d")
    bad = await http.post(f"{POLICIES}/docker-old/enablement", json={"enabled": "yes"})
    assert bad.status_code == 400


async def test_run_needs_a_dry_run_flag(http: httpx.AsyncClient) -> None:
    await http.post(f"{POLICIES}/docker-old", json=minimal())
    await http.post(f"{POLICIES}/docker-old/enablement", json={"enabled": True})
    for params in ({}, {"dryRun": "maybe"}):
        response = await http.put(f"{POLICIES}/docker-old/run", params=params)
        assert response.status_code == 400
        assert "dryRun" in error_message(response)
    ok = await http.put(f"{POLICIES}/docker-old/run", params={"dryRun": "TRUE"})
    assert (ok.status_code, ok.json()) == (201, {"runId": 1})


async def test_stop_run_needs_the_stop_action(http: httpx.AsyncClient, jsim: JFrogSimulator) -> None:
    jsim.seed_policy(minimal())
    run_id = jsim.set_running("docker-old")
    assert (await http.put(f"{RUNS}/{run_id}", json={"action": "pause"})).status_code == 400
    assert (await http.put(f"{RUNS}/abc", json={"action": "stop"})).status_code == 400
    stopped = await http.put(f"{RUNS}/{run_id}", json={"action": "stop"})
    assert stopped.status_code == 202
    assert jsim.run_summaries("docker-old")[0]["status"] == "STOPPED"


async def test_summary_query_rules(http: httpx.AsyncClient, jsim: JFrogSimulator) -> None:
    missing = await http.get(f"{RUNS}/summaryReports")
    assert missing.status_code == 400
    assert "policyKey" in error_message(missing)
    unknown = await http.get(f"{RUNS}/summaryReports", params={"policyKey": "nobody"})
    assert (unknown.status_code, unknown.json()) == (200, [])
    jsim.version = "7.100.0"
    assert (await http.get(f"{RUNS}/summaryReports", params={"policyKey": "nobody"})).status_code == 404


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"dryRun": "yes"}, "dryRun must be true or false"),
        ({"startFromDirectory": "zz"}, "startFromDirectory"),
        ({"startFromDirectory": "100"}, "startFromDirectory"),
        ({"startFromBinary": "abc"}, "startFromBinary"),
        ({"binaryOlderThanDays": -1}, "binaryOlderThanDays"),
        ({"binaryOlderThanDays": 1.5}, "binaryOlderThanDays"),
    ],
)
async def test_prune_start_rules(
    http: httpx.AsyncClient, jsim: JFrogSimulator, body: Any, message: str
) -> None:
    response = await http.post(f"{PRUNE}/start", json=body)
    assert response.status_code == 400
    assert message in error_message(response)
    assert jsim.prune_starts == 0
    assert (await http.get(f"{PRUNE}/status")).status_code == 412


async def test_prune_start_without_body(
    http: httpx.AsyncClient, jsim: JFrogSimulator, clock: ManualClock
) -> None:
    response = await http.post(f"{PRUNE}/start")
    assert response.status_code == 202
    status = jsim.prune_status()
    assert status is not None and status["dryRun"] is False and status["progress"] == "0 of 256"
    assert "lastHandledDirectory" not in status  # nothing handled yet
    assert "error" not in status


# Time is computed lazily from the clock ------------------------------------------------------------


async def test_run_state_follows_the_clock(
    http: httpx.AsyncClient, jsim: JFrogSimulator, clock: ManualClock
) -> None:
    jsim.run_duration = 10.0
    jsim.seed_policy(minimal(enabled=True))
    jsim.set_run_result("docker-old", packages=10, versions=40, nbytes=1000)
    await http.put(f"{POLICIES}/docker-old/run", params={"dryRun": "false"})
    clock.advance(5.0)
    [half] = (await http.get(f"{RUNS}/summaryReports", params={"policyKey": "docker-old"})).json()
    assert (half["status"], half["packagesDeleted"], half["versionsDeleted"]) == ("RUNNING", 5, 20)
    assert "finishedAt" not in half
    assert jsim.deleted("docker-old") == (0, 0, 0)
    clock.advance(5.0)
    [done] = (await http.get(f"{RUNS}/summaryReports", params={"policyKey": "docker-old"})).json()
    assert (done["status"], done["packagesDeleted"], done["bytesDeleted"], done["dryRun"]) == (
        "COMPLETED",
        10,
        1000,
        False,
    )
    assert done["triggerId"] == "1" and done["policyKey"] == "docker-old"
    assert done["finishedAt"] > done["startedAt"]
    assert jsim.deleted("docker-old") == (10, 40, 1000)
    summary = jfrog.RunSummary.model_validate(done)
    assert (summary.state, summary.run_id) == ("Succeeded", 1)


async def test_stopped_run_reports_its_share(
    http: httpx.AsyncClient, jsim: JFrogSimulator, clock: ManualClock
) -> None:
    jsim.seed_policy(minimal(enabled=True))
    jsim.set_run_result("docker-old", packages=10, versions=10, nbytes=100)
    run_id = jsim.set_running("docker-old", seconds=4.0)
    clock.advance(1.0)
    await http.put(f"{RUNS}/{run_id}", json={"action": "stop"})
    clock.advance(10.0)
    [summary] = jsim.run_summaries("docker-old")
    assert (summary["status"], summary["packagesDeleted"], summary["bytesDeleted"]) == ("STOPPED", 2, 25)
    assert jsim.deleted("docker-old") == (2, 2, 25)


async def test_prune_progress_follows_the_clock(jsim: JFrogSimulator, clock: ManualClock) -> None:
    jsim.prune_seconds_per_directory = 0.5
    jsim.start_prune(dry_run=False, start_from_directory="fc")
    assert jsim.prune_starts == 0  # seeded, not started through the API
    clock.advance(1.0)
    status = jsim.prune_status()
    assert status is not None
    assert (status["status"], status["progress"], status["lastHandledDirectory"]["name"]) == (
        "running",
        "2 of 256",  # directories processed so far (fc, fd), not the position reached
        "fd",
    )
    clock.advance(100.0)
    status = jsim.prune_status()
    assert status is not None
    assert (status["status"], status["progress"]) == ("finished", "4 of 256")
    assert status["timing"]["durationMillis"] == 2000  # 4 directories at 0.5 s each, not the time asked at
    assert status["report"]["totalBytesCleaned"] == sum(directory_content(i)[2] for i in range(0xFC, 256))
    assert jsim.cleaned_directories == ["fc", "fd", "fe", "ff"]


async def test_prune_progress_counts_processed_directories(
    http: httpx.AsyncClient, jsim: JFrogSimulator, clock: ManualClock, vendor_docs: Path
) -> None:
    """progress is "the number of directories that have been processed thus far" (the status document)."""
    doc = (vendor_docs / "jfrog-pud-status.txt").read_text()
    assert "The number of directories that have been processed thus far" in doc
    jsim.prune_seconds_per_directory = 1.0
    assert (await http.post(f"{PRUNE}/start", json={"startFromDirectory": "80"})).status_code == 202
    started = (await http.get(f"{PRUNE}/status")).json()
    assert (started["status"], started["progress"]) == ("running", "0 of 256")
    clock.advance(64.5)
    half = (await http.get(f"{PRUNE}/status")).json()
    assert (half["status"], half["progress"], half["lastHandledDirectory"]["name"]) == (
        "running",
        "64 of 256",
        "bf",
    )
    clock.advance(1000.0)
    done = (await http.get(f"{PRUNE}/status")).json()
    assert (done["status"], done["progress"], done["lastHandledDirectory"]["name"]) == (
        "finished",
        "128 of 256",  # 80 … ff
        "ff",
    )
    assert done["timing"]["durationMillis"] == 128_000


async def test_prune_progress_of_an_error_counts_from_the_start_directory(
    http: httpx.AsyncClient, jsim: JFrogSimulator, clock: ManualClock
) -> None:
    jsim.prune_seconds_per_directory = 1.0
    jsim.fail_prune_at_directory = "83"
    await http.post(f"{PRUNE}/start", json={"startFromDirectory": "80"})
    clock.advance(1000.0)
    status = (await http.get(f"{PRUNE}/status")).json()
    assert (status["status"], status["progress"], status["lastHandledDirectory"]["name"]) == (
        "error",
        "3 of 256",  # 80, 81, 82 processed; 83 failed
        "83",
    )


def test_wall_skew_shifts_reported_wall_times(jsim: JFrogSimulator, clock: ManualClock) -> None:
    jsim.seed_policy(minimal(enabled=True))
    jsim.set_running("docker-old", seconds=1.0)
    jsim.start_prune()
    [plain] = jsim.run_summaries("docker-old")
    plain_prune = jsim.prune_status()
    jsim.reset()
    jsim.clock = clock
    jsim.wall_skew = -3600.0
    jsim.seed_policy(minimal(enabled=True))
    jsim.set_running("docker-old", seconds=1.0)
    jsim.start_prune()
    [skewed] = jsim.run_summaries("docker-old")
    skewed_prune = jsim.prune_status()
    assert plain_prune is not None and skewed_prune is not None
    shift = dt.datetime.fromisoformat(plain["startedAt"]) - dt.datetime.fromisoformat(skewed["startedAt"])
    assert 3590 < shift.total_seconds() < 3610
    millis = plain_prune["timing"]["startedAtMillis"] - skewed_prune["timing"]["startedAtMillis"]
    assert 3_590_000 < millis < 3_610_000


# Helpers and reset --------------------------------------------------------------------------------


def test_snapshots_are_copies(jsim: JFrogSimulator) -> None:
    jsim.seed_policy(minimal())
    snapshot = jsim.policies
    snapshot["docker-old"]["description"] = "changed"
    snapshot.clear()
    assert jsim.policy("docker-old") == minimal()
    with pytest.raises(KeyError):
        jsim.set_running("missing")


def test_reset_restores_defaults(jsim: JFrogSimulator) -> None:
    faults = jsim.faults
    jsim.version = "7.90.0"
    jsim.run_duration = 99.0
    jsim.seed_policy(minimal())
    jsim.start_prune()
    jsim.reset()
    assert (jsim.version, jsim.run_duration, jsim.max_concurrent_runs) == (DEFAULT_VERSION, 1.0, 3)
    assert jsim.prune_seconds_per_directory == 0.05
    assert jsim.policies == {}
    assert jsim.prune_status() is None
    assert jsim.faults is faults  # the server's middleware holds this object
