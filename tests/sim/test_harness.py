"""HarnessClient against the Harness simulator: every documented answer, rate limiting, faults."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from cleanup_operator.testing.simulators import Fault, HarnessSimulator, ManualClock, SimulatorServer
from cleanup_operator.testing.tls import SimulatorCA
from cleanup_operator.vendors.errors import (
    AuthError,
    BadResponseError,
    RateLimitedError,
    TransientError,
    VendorError,
)
from cleanup_operator.vendors.harness import CleanupOutcome, HarnessClient
from cleanup_operator.vendors.http import ClientOptions, RateLimiter, make_client
from tests.unit.test_harness_sourcecraft_models import harness_doc_json, harness_doc_mutation

from ..conftest import harness

GRAPHQL = "/harness/gateway/api/graphql"


@pytest.fixture
def hsim(sim: SimulatorServer) -> HarnessSimulator:
    """The Harness simulator on a :class:`ManualClock`: its rate window moves only when told."""
    simulator = harness(sim)
    simulator.clock = ManualClock()
    return simulator


@pytest.fixture
def clock(hsim: HarnessSimulator) -> ManualClock:
    assert isinstance(hsim.clock, ManualClock)
    return hsim.clock


def _http(
    sim: SimulatorServer, ca_pem: str, key: str = "test-key", timeout: float = 5.0
) -> httpx.AsyncClient:
    return make_client(
        ClientOptions(base_url=sim.url("harness"), headers={"x-api-key": key}, ca_pem=ca_pem, timeout=timeout)
    )


@pytest.fixture
async def http(sim: SimulatorServer, sim_ca_pem: str) -> AsyncIterator[httpx.AsyncClient]:
    async with _http(sim, sim_ca_pem) as client:
        yield client


@pytest.fixture
def client(http: httpx.AsyncClient) -> HarnessClient:
    return HarnessClient(http, "acc1")


async def settle(sim: SimulatorServer, count: int) -> None:
    """Let a request the client gave up on finish on the server, so it cannot leak into the next test."""
    async with asyncio.timeout(2):
        while True:
            if len(sim.calls.calls(vendor="harness")) >= count:
                return
            await asyncio.sleep(0.02)


# The documented outcomes.


async def test_success_sends_variables(
    sim: SimulatorServer, hsim: HarnessSimulator, client: HarnessClient
) -> None:
    hsim.add_stream("acc1", "s-ecr", "ECR")
    result = await client.artifact_cleanup("s-ecr")
    assert result.outcome is CleanupOutcome.SUCCEEDED
    assert result.message == "Cleanup successful for Artifact stream with id: s-ecr"
    assert result.stream_id == "s-ecr"
    assert hsim.cleanup_count("s-ecr") == 1

    (call,) = sim.calls.calls(vendor="harness")
    assert (call.method, call.path, call.query, call.status) == ("POST", GRAPHQL, {"accountId": "acc1"}, 200)
    assert call.json["variables"] == {"input": {"artifactStreamId": "s-ecr"}}
    assert "s-ecr" not in call.json["query"]
    assert "$input" in call.json["query"]


async def test_unsupported_type(hsim: HarnessSimulator, client: HarnessClient) -> None:
    hsim.add_stream("acc1", "s-jenkins", "JENKINS")
    result = await client.artifact_cleanup("s-jenkins")
    assert result.outcome is CleanupOutcome.UNSUPPORTED
    assert result.stream_type == "JENKINS"
    assert result.message == "Clean up not supported for artifact Stream type: JENKINS"
    assert hsim.cleanup_count("s-jenkins") == 0


@pytest.mark.parametrize("in_errors", [False, True])
async def test_not_found_both_forms(
    sim: SimulatorServer, hsim: HarnessSimulator, client: HarnessClient, in_errors: bool
) -> None:
    hsim.not_found_in_errors = in_errors
    result = await client.artifact_cleanup("nope")
    assert result.outcome is CleanupOutcome.NOT_FOUND
    assert result.message == "Artifact stream not found for the id: nope"
    assert [c.status for c in sim.calls.calls(vendor="harness")] == [200]


async def test_not_found_in_errors_answer_shape(
    sim: SimulatorServer, hsim: HarnessSimulator, sim_ca_pem: str
) -> None:
    hsim.not_found_in_errors = True
    async with _http(sim, sim_ca_pem) as http:
        response = await http.post(
            "/gateway/api/graphql",
            params={"accountId": "acc1"},
            json={
                "query": "mutation($input: ArtifactCleanupInput!) { artifactCleanup(input: $input) { message } }",
                "variables": {"input": {"artifactStreamId": "gone"}},
            },
        )
    assert response.status_code == 200
    assert response.json() == {
        "data": {"artifactCleanup": None},
        "errors": [{"message": "Artifact stream not found for the id: gone", "path": ["artifactCleanup"]}],
    }


@pytest.mark.parametrize("status", [401, 200])
async def test_bad_key_is_an_auth_error(
    sim: SimulatorServer, hsim: HarnessSimulator, status: int, sim_ca_pem: str
) -> None:
    hsim.auth_error_status = status
    hsim.add_stream("acc1", "s1", "ECR")
    async with _http(sim, sim_ca_pem, key="wrong") as http:
        with pytest.raises(AuthError) as info:
            await HarnessClient(http, "acc1").artifact_cleanup("s1")
    assert info.value.status_code == status
    assert "Invalid API key" in str(info.value)
    assert info.value.retryable is False
    assert hsim.cleanup_count("s1") == 0


async def test_key_of_another_account_is_refused(hsim: HarnessSimulator, http: httpx.AsyncClient) -> None:
    hsim.add_api_key("acc2", "other-key")
    hsim.add_stream("acc2", "s1", "ECR")
    with pytest.raises(AuthError):
        await HarnessClient(http, "acc2").artifact_cleanup("s1")
    assert hsim.cleanup_count("s1", account="acc2") == 0


async def test_streams_are_per_account(hsim: HarnessSimulator, sim: SimulatorServer, sim_ca_pem: str) -> None:
    hsim.add_api_key("acc2", "key2")
    hsim.add_stream("acc2", "s1", "NEXUS")
    async with _http(sim, sim_ca_pem, key="key2") as http:
        assert (await HarnessClient(http, "acc2").artifact_cleanup("s1")).outcome is CleanupOutcome.SUCCEEDED
    async with _http(sim, sim_ca_pem) as http:
        assert (await HarnessClient(http, "acc1").artifact_cleanup("s1")).outcome is CleanupOutcome.NOT_FOUND
    assert (hsim.cleanup_count("s1", "acc2"), hsim.cleanup_count("s1", "acc1")) == (1, 0)


# The simulator answers the documented samples exactly.


@pytest.mark.parametrize(("stream_type", "sample"), [("DOCKER", 1), ("JENKINS", 0)])
async def test_doc_mutation_gets_doc_answer(
    vendor_docs: Path, hsim: HarnessSimulator, http: httpx.AsyncClient, stream_type: str, sample: int
) -> None:
    hsim.add_stream("acc1", "bOgdZBYQS2-oHZMwEZTeIQ", stream_type)
    response = await http.post(
        "/gateway/api/graphql",
        params={"accountId": "acc1"},
        json={"query": harness_doc_mutation(vendor_docs)},
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == harness_doc_json(vendor_docs)[sample]


async def test_variable_inside_an_input_literal(hsim: HarnessSimulator, http: httpx.AsyncClient) -> None:
    hsim.add_stream("acc1", "s9", "CUSTOM")
    response = await http.post(
        "/gateway/api/graphql",
        params={"accountId": "acc1"},
        json={
            "query": "mutation Sync($id: String!) { done: artifactCleanup(input: {artifactStreamId: $id}) "
            "{ message __typename } }",
            "variables": {"id": "s9"},
            "operationName": "Sync",
        },
    )
    assert response.json() == {
        "data": {
            "done": {
                "message": "Cleanup successful for Artifact stream with id: s9",
                "__typename": "ArtifactCleanUpPayload",
            }
        }
    }


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (
            {
                "query": "mutation($input: ArtifactCleanupInput!) { artifactCleanup(input: $input) { message } }"
            },
            "NonNull",
        ),
        ({"query": '{ artifactCleanup(input: {artifactStreamId: "x"}) { message } }'}, "type 'Query'"),
        ({"query": 'mutation { artifactCleanup(input: {artifactStreamId: "x"}) }'}, "Subselection required"),
        ({"query": 'mutation { artifactCleanup(input: {artifactStreamId: "x"}) { uuid } }'}, "'uuid'"),
        ({"query": "mutation { artifactCleanup(input: $nope) { message } }"}, "Undefined variable 'nope'"),
        (
            {"query": 'mutation { artifactCleanup(input: {artifactStreamId: "x"} { message } }'},
            "Invalid Syntax",
        ),
    ],
)
async def test_graphql_errors_are_rejected(
    hsim: HarnessSimulator, http: httpx.AsyncClient, body: dict[str, str], fragment: str
) -> None:
    hsim.add_stream("acc1", "x", "ECR")
    response = await http.post("/gateway/api/graphql", params={"accountId": "acc1"}, json=body)
    assert response.status_code == 200
    answer = response.json()
    assert answer["data"] is None or answer["data"] == {"artifactCleanup": None}
    assert fragment in answer["errors"][0]["message"]
    assert hsim.cleanup_count("x") == 0


async def test_body_without_query_is_400(http: httpx.AsyncClient) -> None:
    response = await http.post("/gateway/api/graphql", params={"accountId": "acc1"}, content=b"mutation {}")
    assert response.status_code == 400
    assert response.json()["errors"][0]["message"].startswith("The request body must be JSON")


# Rate limiting.


async def test_rate_limit_answers_429_without_retry_after(
    hsim: HarnessSimulator, http: httpx.AsyncClient, clock: ManualClock
) -> None:
    hsim.rate_limit, hsim.rate_window = 2, 30.0
    hsim.add_stream("acc1", "s1", "ECR")
    client = HarnessClient(http, "acc1")
    for _ in range(2):
        assert (await client.artifact_cleanup("s1")).outcome is CleanupOutcome.SUCCEEDED
    with pytest.raises(RateLimitedError) as info:
        await client.artifact_cleanup("s1")
    assert info.value.status_code == 429
    assert info.value.retry_after is None
    assert "TOO_MANY_REQUESTS" in str(info.value)
    response = await http.post("/gateway/api/graphql", params={"accountId": "acc1"}, json={"query": "{x}"})
    assert response.status_code == 429
    assert "retry-after" not in response.headers
    assert response.json()["code"] == "TOO_MANY_REQUESTS"
    assert hsim.rate_limited_count() == 2
    assert hsim.cleanup_count("s1") == 2
    clock.advance(29.0)  # refused calls count in the window too: still full
    with pytest.raises(RateLimitedError):
        await client.artifact_cleanup("s1")
    clock.advance(1.0)  # the first two accepted calls have left the window
    assert (await client.artifact_cleanup("s1")).outcome is CleanupOutcome.SUCCEEDED
    assert hsim.cleanup_count("s1") == 3


async def test_burst_without_limiter_is_refused(hsim: HarnessSimulator, client: HarnessClient) -> None:
    """The control for the next test: the simulator does catch a client that does not pace itself."""
    hsim.rate_limit, hsim.rate_window = 5, 1.0
    hsim.add_stream("acc1", "s1", "ECR")
    results = await asyncio.gather(*(client.artifact_cleanup("s1") for _ in range(8)), return_exceptions=True)
    refused = [r for r in results if isinstance(r, RateLimitedError)]
    assert len(refused) == 3
    assert hsim.max_in_window() == 8
    assert hsim.cleanup_count("s1") == 5


@pytest.mark.looptime(start=0)
async def test_limiter_guided_burst_stays_within_the_window(
    sim: SimulatorServer, hsim: HarnessSimulator, sim_ca: SimulatorCA
) -> None:
    """Real HTTP to the simulator's thread, on one fake clock: the client's limiter and the
    simulator's rate window both read this loop's (looptime) time, so the loop's load or the
    machine's cannot race them, and the 0.5 s windows pass without a real sleep."""
    loop = asyncio.get_running_loop()
    hsim.clock = loop.time  # the simulator counts arrivals on the test's clock
    hsim.rate_limit, hsim.rate_window = 5, 0.5
    for i in range(12):
        hsim.add_stream("acc1", f"s{i}", "ECR")
    # No client timeout: under looptime, a timer of its own would fire while the real I/O waits.
    async with httpx.AsyncClient(
        base_url=sim.url("harness"),
        headers={"x-api-key": "test-key"},
        timeout=None,
        verify=sim_ca.client_context(),
    ) as http:
        client = HarnessClient(http, "acc1", limiter=RateLimiter(5, 0.5))
        results = await asyncio.gather(*(client.artifact_cleanup(f"s{i}") for i in range(12)))
    assert [r.outcome for r in results] == [CleanupOutcome.SUCCEEDED] * 12
    assert hsim.rate_limited_count() == 0
    assert hsim.max_in_window() == 5
    assert all(hsim.cleanup_count(f"s{i}") == 1 for i in range(12))
    assert loop.time() >= 1.0  # three rounds of five, five and two: two whole windows waited


# Faults.


@pytest.mark.parametrize(
    ("fault", "error", "status"),
    [
        (
            Fault("status", status=503, body={"errors": [{"message": "Service Unavailable"}]}),
            TransientError,
            503,
        ),
        (Fault("status", status=500, body=None), TransientError, 500),
        (
            Fault("status", status=429, body={"code": "TOO_MANY_REQUESTS", "message": "slow"}),
            RateLimitedError,
            429,
        ),
        (Fault("status", status=401, body={"errors": [{"message": "Invalid API key"}]}), AuthError, 401),
        (Fault("status", status=403, body={"errors": [{"message": "Forbidden"}]}), AuthError, 403),
        (Fault("drop"), TransientError, None),
        (Fault("malformed"), BadResponseError, 200),
        (Fault("content_type"), BadResponseError, 200),
    ],
)
async def test_faults_map_to_errors(
    hsim: HarnessSimulator, client: HarnessClient, fault: Fault, error: type[VendorError], status: int | None
) -> None:
    hsim.add_stream("acc1", "s1", "ECR")
    hsim.faults.add(fault)
    with pytest.raises(error) as info:
        await client.artifact_cleanup("s1")
    assert type(info.value) is error
    assert info.value.status_code == status
    # The fault fired once; the next call succeeds.
    assert (await client.artifact_cleanup("s1")).outcome is CleanupOutcome.SUCCEEDED


async def test_latency_beyond_timeout_is_transient(
    sim: SimulatorServer, hsim: HarnessSimulator, sim_ca_pem: str
) -> None:
    hsim.add_stream("acc1", "s1", "ECR")
    hsim.faults.add(Fault("latency", delay=0.4))
    async with _http(sim, sim_ca_pem, timeout=0.1) as http:
        with pytest.raises(TransientError, match="timed out"):
            await HarnessClient(http, "acc1").artifact_cleanup("s1")
    await settle(sim, 1)


async def test_latency_within_timeout_succeeds(hsim: HarnessSimulator, client: HarnessClient) -> None:
    hsim.add_stream("acc1", "s1", "ECR")
    hsim.faults.add(Fault("latency", delay=0.1))
    started = time.monotonic()
    assert (await client.artifact_cleanup("s1")).outcome is CleanupOutcome.SUCCEEDED
    assert time.monotonic() - started >= 0.1


async def test_call_log_keeps_no_api_key(
    sim: SimulatorServer, hsim: HarnessSimulator, client: HarnessClient
) -> None:
    await client.artifact_cleanup("s1")
    assert "test-key" not in json.dumps([c.__dict__ for c in sim.calls.calls()], default=str)
