"""SourceCraftClient against the SourceCraft simulator: pagination, runs, artifacts, errors, faults."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from cleanup_operator.testing.simulators import Fault, ManualClock, SimulatorServer, SourceCraftSimulator
from cleanup_operator.vendors.errors import (
    AuthError,
    BadResponseError,
    NotFoundError,
    RateLimitedError,
    RejectedError,
    TransientError,
    VendorError,
)
from cleanup_operator.vendors.http import ClientOptions, make_client
from cleanup_operator.vendors.sourcecraft import ArtifactStatus, RunStatus, SourceCraftClient
from tests.unit.test_harness_sourcecraft_models import (
    same_shape,
    sourcecraft_doc_error,
    sourcecraft_doc_success,
)

from ..conftest import sourcecraft

T0 = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
ALL_FOUR = [
    ("a/registered.bin", "registered"),
    ("b/ok.tar", "success"),
    ("c/bad.log", "failed"),
    ("d/gone.zip", "missing"),
]


#: "Now" for the simulator: a day after T0, so runs seeded at T0 have long finished.
NOW = T0 + dt.timedelta(days=1)


@pytest.fixture
def ssim(sim: SimulatorServer) -> SourceCraftSimulator:
    """The SourceCraft simulator on a :class:`ManualClock` at :data:`NOW`: runs move only when told."""
    simulator = sourcecraft(sim)
    simulator.clock = ManualClock(NOW.timestamp())
    return simulator


@pytest.fixture
def clock(ssim: SourceCraftSimulator) -> ManualClock:
    assert isinstance(ssim.clock, ManualClock)
    return ssim.clock


def _http(
    sim: SimulatorServer, ca_pem: str, token: str = "sc-token", timeout: float = 5.0
) -> httpx.AsyncClient:
    opts = ClientOptions(
        base_url=sim.url("sourcecraft"),
        headers={"Authorization": f"Bearer {token}"},
        ca_pem=ca_pem,
        timeout=timeout,
    )
    return make_client(opts)


@pytest.fixture
async def http(sim: SimulatorServer, sim_ca_pem: str) -> AsyncIterator[httpx.AsyncClient]:
    async with _http(sim, sim_ca_pem) as client:
        yield client


@pytest.fixture
def client(http: httpx.AsyncClient) -> SourceCraftClient:
    return SourceCraftClient(http)


# Runs.


async def test_pagination_across_pages(
    sim: SimulatorServer, ssim: SourceCraftSimulator, client: SourceCraftClient
) -> None:
    ssim.add_runs("org", "repo", 7, start=T0)
    first = await client.list_runs("org", "repo", page_size=3)
    assert [r.ref for r in first.items] == ["run-7", "run-6", "run-5"]
    assert first.next_page_token

    runs = [r.ref async for r in client.iter_runs("org", "repo", page_size=3)]
    assert runs == [f"run-{i}" for i in range(7, 0, -1)]
    pages = sim.calls.calls(vendor="sourcecraft", path=r"/cicd/runs$")
    assert len(pages) == 1 + 3
    tokens = [c.query.get("page_token") for c in pages[1:]]
    assert tokens[0] is None and all(tokens[1:])
    assert all(c.query["page_size"] == "3" for c in pages)


async def test_last_page_has_no_token(ssim: SourceCraftSimulator, client: SourceCraftClient) -> None:
    ssim.add_runs("org", "repo", 4, start=T0)
    page = await client.list_runs("org", "repo", page_size=4)
    assert len(page.items) == 4
    assert page.next_page_token is None


async def test_latest_run_compares_creation_times(
    ssim: SourceCraftSimulator, client: SourceCraftClient
) -> None:
    ssim.runs_order = "insertion"
    for slug, minutes in (("r-a", 1), ("r-c", 3), ("r-b", 2)):
        ssim.add_run("org", "repo", slug, created_at=T0 + dt.timedelta(minutes=minutes))
    latest = await client.latest_run("org", "repo", page_size=1)
    assert latest is not None
    assert latest.ref == "r-c"
    assert latest.created_at == T0 + dt.timedelta(minutes=3)


async def test_latest_run_of_empty_repo_is_none(
    ssim: SourceCraftSimulator, client: SourceCraftClient
) -> None:
    ssim.add_repo("org", "empty")
    assert await client.latest_run("org", "empty") is None


async def test_get_run_by_slug_and_id(ssim: SourceCraftSimulator, client: SourceCraftClient) -> None:
    seeded = ssim.add_run("org", "repo", "run-1", created_at=T0, status="failed", processing_seconds=90)
    run = await client.get_run("org", "repo", "run-1")
    assert (run.id, run.slug, run.ref) == (seeded.id, "run-1", "run-1")
    assert run.status is RunStatus.FAILED
    assert run.is_finished and not run.is_active
    assert run.created_at == T0
    assert run.finished_at == T0 + dt.timedelta(seconds=90)
    assert (await client.get_run("org", "repo", seeded.id)).slug == "run-1"


async def test_run_progresses_then_finishes(
    ssim: SourceCraftSimulator, client: SourceCraftClient, clock: ManualClock
) -> None:
    """created → prepared (half of pending) → processing → the seeded status, by the clock alone."""
    ssim.add_run("org", "repo", "live", artifacts=ALL_FOUR, pending_seconds=4, processing_seconds=3)

    async def artifact_states() -> set[ArtifactStatus]:
        return {
            a.status for a in await client.get_artifacts("org", "repo", "live", "build", "build", "default")
        }

    seen: list[RunStatus] = []
    for step in (0, 1.5, 0.5, 1.5, 0.5, 2.5, 0.5):  # exact in binary: no rounding at the edges
        clock.advance(step)
        run = await client.get_run("org", "repo", "live")
        seen.append(run.status)
        if not run.is_finished:
            assert await artifact_states() == {ArtifactStatus.REGISTERED}
            assert run.finished_at is None
    created, prepared, processing, success = (
        RunStatus.CREATED,
        RunStatus.PREPARED,
        RunStatus.PROCESSING,
        RunStatus.SUCCESS,
    )
    assert seen == [created, created, prepared, prepared, processing, processing, success]
    assert run.created_at == NOW
    assert run.started_at == NOW + dt.timedelta(seconds=4)
    assert run.finished_at == NOW + dt.timedelta(seconds=7)
    assert await artifact_states() == set(ArtifactStatus)


async def test_run_seeded_active_stays_active(ssim: SourceCraftSimulator, client: SourceCraftClient) -> None:
    ssim.add_run("org", "repo", "stuck", created_at=T0, status="processing")
    run = await client.get_run("org", "repo", "stuck")
    assert run.status is RunStatus.PROCESSING and run.is_active
    assert run.started_at == T0 and run.finished_at is None


# Artifacts.


async def test_all_four_artifact_statuses(ssim: SourceCraftSimulator, client: SourceCraftClient) -> None:
    seeded = ssim.add_run(
        "org", "repo", "run-1", workflow="wf", task="tk", cube="cb", artifacts=ALL_FOUR, created_at=T0
    )
    artifacts = await client.get_artifacts("org", "repo", "run-1", "wf", "tk", "cb")
    assert [(a.local_path, a.status.value) for a in artifacts] == ALL_FOUR
    assert [a.id for a in artifacts] == [a.id for a in seeded.cubes[("wf", "tk", "cb")]]
    by_status = {a.status: a for a in artifacts}
    ok_dates, missing_dates = by_status[ArtifactStatus.SUCCESS].dates, by_status[ArtifactStatus.MISSING].dates
    assert ok_dates is not None and missing_dates is not None
    assert (ok_dates.registered_at, ok_dates.obtained_at) == (T0, T0)
    assert (missing_dates.registered_at, missing_dates.obtained_at) == (T0, None)

    urls = [a.reveal_download_url() for a in artifacts]
    assert urls == ssim.issued_download_urls[-4:]
    assert all(
        u is not None and u.startswith("https://storage.example/") and "X-Signature=" in u for u in urls
    )
    text = repr(artifacts) + str(artifacts) + str([a.model_dump() for a in artifacts])
    assert not any(u and u.split("X-Signature=")[1] in text for u in urls)


async def test_download_urls_are_fresh_each_time(
    ssim: SourceCraftSimulator, client: SourceCraftClient
) -> None:
    ssim.add_run("org", "repo", "run-1", artifacts=["out.tar"], created_at=T0)
    one = (await client.get_artifacts("org", "repo", "run-1", "build", "build", "default"))[0]
    two = (await client.get_artifacts("org", "repo", "run-1", "build", "build", "default"))[0]
    assert one.id == two.id
    assert one.reveal_download_url() != two.reveal_download_url()


async def test_several_cubes(ssim: SourceCraftSimulator, client: SourceCraftClient) -> None:
    ssim.add_run("org", "repo", "run-1", artifacts=["a"], created_at=T0)
    ssim.add_cube("org", "repo", "run-1", "build", "build", "docs", [("site.zip", "failed")])
    (docs,) = await client.get_artifacts("org", "repo", "run-1", "build", "build", "docs")
    assert (docs.local_path, docs.status) == ("site.zip", ArtifactStatus.FAILED)


async def test_simulator_answers_match_doc_shapes(
    vendor_docs: Path, ssim: SourceCraftSimulator, http: httpx.AsyncClient
) -> None:
    ssim.add_run("org", "repo", "run-1", artifacts=ALL_FOUR, created_at=T0)
    ok = await http.get("/repos/org/repo/cicd/artifacts/run-1/build/build/default")
    assert ok.status_code == 200
    assert ok.headers["content-type"].startswith("application/json")
    assert len(ok.json()["artifacts"]) == 4
    assert same_shape(sourcecraft_doc_success(vendor_docs), ok.json())

    missing = await http.get("/repos/org/repo/cicd/artifacts/run-1/build/build/nope")
    assert missing.status_code == 404
    assert same_shape(sourcecraft_doc_error(vendor_docs), missing.json())
    # The document's details: "[additional] Type: string".
    assert missing.json()["details"] == {"resource": "cube"}
    assert missing.headers["x-request-id"] == missing.json()["request_id"]


# Errors.


@pytest.mark.parametrize(
    ("path", "resource"),
    [
        (("nobody", "repo", "run-1", "build", "build", "default"), "repository nobody/repo"),
        (("org", "repo", "run-9", "build", "build", "default"), "run run-9"),
        (("org", "repo", "run-1", "deploy", "build", "default"), "workflow deploy"),
        (("org", "repo", "run-1", "build", "lint", "default"), "task lint"),
        (("org", "repo", "run-1", "build", "build", "docs"), "cube docs"),
    ],
)
async def test_unknown_things_are_not_found_with_request_id(
    ssim: SourceCraftSimulator, client: SourceCraftClient, path: tuple[str, ...], resource: str
) -> None:
    ssim.add_run("org", "repo", "run-1", artifacts=["a"], created_at=T0)
    with pytest.raises(NotFoundError) as info:
        await client.get_artifacts(*path)
    exc = info.value
    assert exc.status_code == 404
    assert exc.request_id == ssim.request_ids[-1]
    assert f"NOT_FOUND: {resource} not found" in str(exc)
    assert f"[request_id {exc.request_id}]" in str(exc)
    assert exc.retryable is False


async def test_unknown_repo_and_run(ssim: SourceCraftSimulator, client: SourceCraftClient) -> None:
    with pytest.raises(NotFoundError) as info:
        await client.latest_run("org", "nothing")
    assert info.value.request_id == ssim.request_ids[-1]
    ssim.add_repo("org", "repo")
    with pytest.raises(NotFoundError, match="run run-1 not found"):
        await client.get_run("org", "repo", "run-1")


async def test_bad_token_is_an_auth_error(
    sim: SimulatorServer, ssim: SourceCraftSimulator, sim_ca_pem: str
) -> None:
    ssim.add_runs("org", "repo", 1)
    async with _http(sim, sim_ca_pem, token="wrong") as http:
        with pytest.raises(AuthError) as info:
            await SourceCraftClient(http).latest_run("org", "repo")
    assert info.value.status_code == 401
    assert info.value.request_id == ssim.request_ids[-1]
    assert "UNAUTHENTICATED" in str(info.value)


async def test_invalid_page_token_is_rejected(ssim: SourceCraftSimulator, client: SourceCraftClient) -> None:
    ssim.add_runs("org", "repo", 3)
    ssim.add_runs("org", "other", 3)
    page = await client.list_runs("org", "other", page_size=1)
    assert page.next_page_token is not None
    for token in ("made-up", page.next_page_token):  # a token is bound to its repository
        with pytest.raises(RejectedError, match="INVALID_ARGUMENT: invalid page_token"):
            await client.list_runs("org", "repo", page_size=1, page_token=token)


async def test_unknown_route_has_an_error_body(http: httpx.AsyncClient) -> None:
    response = await http.get("/repos/org/repo/nothing-here")
    assert response.status_code == 404
    assert set(response.json()) == {"error_code", "message", "request_id", "details"}


# Faults.


def _error_body(code: str) -> dict[str, object]:
    return {"error_code": code, "message": "injected", "request_id": "req-injected", "details": {}}


@pytest.mark.parametrize(
    ("fault", "error", "request_id"),
    [
        (
            Fault("status", path="/cicd/artifacts/", status=500, body=_error_body("INTERNAL")),
            TransientError,
            "req-injected",
        ),
        (Fault("status", path="/cicd/artifacts/", status=503, body=None), TransientError, None),
        (
            Fault("status", path="/cicd/artifacts/", status=429, body=_error_body("RESOURCE_EXHAUSTED")),
            RateLimitedError,
            "req-injected",
        ),
        (
            Fault("status", path="/cicd/artifacts/", status=401, body=_error_body("UNAUTHENTICATED")),
            AuthError,
            "req-injected",
        ),
        (
            Fault("status", path="/cicd/artifacts/", status=403, body=_error_body("PERMISSION_DENIED")),
            AuthError,
            "req-injected",
        ),
        (Fault("drop", path="/cicd/artifacts/"), TransientError, None),
        (Fault("malformed", path="/cicd/artifacts/"), BadResponseError, None),
        (Fault("content_type", path="/cicd/artifacts/"), BadResponseError, None),
    ],
)
async def test_faults_map_to_errors(
    ssim: SourceCraftSimulator,
    client: SourceCraftClient,
    fault: Fault,
    error: type[VendorError],
    request_id: str | None,
) -> None:
    ssim.add_run("org", "repo", "run-1", artifacts=["a"], created_at=T0)
    ssim.faults.add(fault)
    with pytest.raises(error) as info:
        await client.get_artifacts("org", "repo", "run-1", "build", "build", "default")
    assert type(info.value) is error
    assert info.value.request_id == request_id
    if request_id:
        assert fault.body is not None and fault.body["error_code"] in str(info.value)
    # The fault fired once; the next call succeeds.
    assert len(await client.get_artifacts("org", "repo", "run-1", "build", "build", "default")) == 1


async def test_latency_beyond_timeout_is_transient(
    sim: SimulatorServer, ssim: SourceCraftSimulator, sim_ca_pem: str
) -> None:
    ssim.add_runs("org", "repo", 1)
    ssim.faults.add(Fault("latency", path="/cicd/runs", delay=0.4))
    async with _http(sim, sim_ca_pem, timeout=0.1) as http:
        with pytest.raises(TransientError, match="timed out"):
            await SourceCraftClient(http).latest_run("org", "repo")
    # Let the slow answer finish on the server, so it cannot leak into the next test's call log.
    async with asyncio.timeout(2):
        while True:
            if sim.calls.calls(vendor="sourcecraft"):
                return
            await asyncio.sleep(0.02)
