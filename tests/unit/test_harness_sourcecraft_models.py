"""Contract tests: the JSON samples of the Harness and SourceCraft vendor documents, read from the
documents at test time, parse with the clients' models and mean what the documents say.

Edge cases of the clients' mapping use ``httpx.MockTransport`` (no sockets); behaviour against a
server lives in ``tests/sim``. The extraction helpers here are reused by the simulator tests.
"""

from __future__ import annotations

import json
import re
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from cleanup_operator.testing.simulators.harness import Variable, parse_document, resolve
from cleanup_operator.vendors import harness, sourcecraft
from cleanup_operator.vendors.errors import (
    AuthError,
    BadResponseError,
    NotFoundError,
    RateLimitedError,
    RejectedError,
    TransientError,
)
from cleanup_operator.vendors.harness import CleanupOutcome, HarnessClient
from cleanup_operator.vendors.http import RateLimiter
from cleanup_operator.vendors.sourcecraft import Artifact, ArtifactStatus, Run, RunStatus, SourceCraftClient

HARNESS_DOC = "harness-artifact-cleanup.md"
SOURCECRAFT_DOC = "sourcecraft-get-ci-run-artifacts.txt"
SIGNED_URL = "https://storage.example/o/r/run-1/a1/out.tar?X-Expires=300&X-Signature=5f3c9d0e1b2a4c6d"
SIGNATURE = "5f3c9d0e1b2a4c6d"


# Extraction from the vendor documents (shared with tests/sim).


def harness_doc_blocks(docs: Path) -> list[str]:
    """The fenced code blocks of the Harness document, in order."""
    text = (docs / HARNESS_DOC).read_text()
    return [m.group(1).strip() for m in re.finditer(r"```[^\n]*\n(.*?)```", text, re.DOTALL)]


def harness_doc_json(docs: Path) -> list[Any]:
    """The blocks that are JSON: the response examples."""
    out = []
    for block in harness_doc_blocks(docs):
        try:
            out.append(json.loads(block))
        except ValueError:
            continue
    return out


def harness_doc_mutation(docs: Path) -> str:
    (mutation,) = [b for b in harness_doc_blocks(docs) if b.startswith("mutation")]
    return mutation


def sourcecraft_doc_bodies(docs: Path) -> list[Any]:
    """The JSON bodies that follow each ``application/json`` in the SourceCraft document."""
    text = (docs / SOURCECRAFT_DOC).read_text()
    decoder = json.JSONDecoder()
    bodies = []
    for m in re.finditer(r"^application/json\s*$", text, re.MULTILINE):
        start = text.index("{", m.end())
        body, _ = decoder.raw_decode(text, start)
        bodies.append(body)
    return bodies


def sourcecraft_doc_success(docs: Path) -> dict[str, Any]:
    (body,) = [b for b in sourcecraft_doc_bodies(docs) if "artifacts" in b]
    return dict(body)


def sourcecraft_doc_error(docs: Path) -> dict[str, Any]:
    (body,) = [b for b in sourcecraft_doc_bodies(docs) if "error_code" in b]
    return dict(body)


def sourcecraft_doc_statuses(docs: Path) -> list[str]:
    text = (docs / SOURCECRAFT_DOC).read_text()
    lists = {m.group(1).strip() for m in re.finditer(r"^Enum: (.+)$", text, re.MULTILINE)}
    (only,) = lists
    return [s.strip() for s in only.split(",")]


def same_shape(doc: Any, actual: Any) -> bool:
    """Whether ``actual`` has the document's keys at every level, with the same kinds (or null).

    An empty object in the document (SourceCraft's ``details``) is a free-form map.
    """
    if isinstance(doc, dict) and not doc:
        return isinstance(actual, dict)
    if isinstance(doc, dict):
        return (
            isinstance(actual, dict)
            and set(doc) == set(actual)
            and all(same_shape(doc[k], actual[k]) for k in doc)
        )
    if isinstance(doc, list):
        return isinstance(actual, list) and all(same_shape(doc[0], a) for a in actual) if doc else True
    return actual is None or isinstance(actual, type(doc))


# Harness: the document's samples.


def test_harness_doc_has_two_response_samples(vendor_docs: Path) -> None:
    samples = harness_doc_json(vendor_docs)
    assert len(samples) == 2
    assert all(set(s) == {"data"} for s in samples)


def test_harness_doc_samples_parse_and_classify(vendor_docs: Path) -> None:
    unsupported, success = harness_doc_json(vendor_docs)
    stream_id = resolve(parse_document(harness_doc_mutation(vendor_docs))[0].selections[0].arguments, {})[
        "input"
    ]["artifactStreamId"]
    assert stream_id == "bOgdZBYQS2-oHZMwEZTeIQ"

    parsed = harness.GraphQLResponse.model_validate(success)
    assert parsed.errors is None
    assert parsed.data is not None and parsed.data.artifact_cleanup is not None
    message = parsed.data.artifact_cleanup.message
    assert message == f"Cleanup successful for Artifact stream with id: {stream_id}"
    result = harness.classify_message(stream_id, message)
    assert result is not None
    assert result.outcome is CleanupOutcome.SUCCEEDED
    assert result.stream_type is None
    assert result.permanent is False

    parsed = harness.GraphQLResponse.model_validate(unsupported)
    assert parsed.data is not None and parsed.data.artifact_cleanup is not None
    result = harness.classify_message("any", parsed.data.artifact_cleanup.message or "")
    assert result is not None
    assert result.outcome is CleanupOutcome.UNSUPPORTED
    assert result.stream_type == "JENKINS"
    assert result.permanent is True


def test_harness_doc_mutation_inline_form_parses(vendor_docs: Path) -> None:
    (op,) = parse_document(harness_doc_mutation(vendor_docs))
    assert op.kind == "mutation"
    (field,) = op.selections
    assert field.name == "artifactCleanup"
    assert field.arguments == {"input": {"artifactStreamId": "bOgdZBYQS2-oHZMwEZTeIQ"}}
    assert [s.name for s in field.selections or []] == ["message"]


def test_client_mutation_uses_a_variable() -> None:
    (op,) = parse_document(harness.CLEANUP_MUTATION)
    assert op.kind == "mutation"
    assert [(d.name, d.type) for d in op.variables] == [("input", "ArtifactCleanupInput!")]
    (field,) = op.selections
    assert field.arguments == {"input": Variable("input")}


def test_not_found_message_classifies() -> None:
    result = harness.classify_message("x1", "Artifact stream not found for the id: x1")
    assert result is not None and result.outcome is CleanupOutcome.NOT_FOUND
    assert harness.classify_message("x1", "Something else entirely") is None


# Harness: the client's mapping, on a mock transport.


def harness_client(
    handler: Callable[[httpx.Request], httpx.Response], limiter: RateLimiter | None = None
) -> HarnessClient:
    client = httpx.AsyncClient(
        base_url="https://harness.test", transport=httpx.MockTransport(handler), headers={"x-api-key": "k"}
    )
    return HarnessClient(client, "acc9", limiter=limiter)


async def test_harness_client_sends_variables_and_reads_doc_sample(vendor_docs: Path) -> None:
    _, success = harness_doc_json(vendor_docs)
    seen: list[httpx.Request] = []

    def handler(req: httpx.Request) -> httpx.Response:
        seen.append(req)
        return httpx.Response(200, json=success)

    result = await harness_client(handler).artifact_cleanup("bOgdZBYQS2-oHZMwEZTeIQ")
    assert result.outcome is CleanupOutcome.SUCCEEDED
    assert result.stream_id == "bOgdZBYQS2-oHZMwEZTeIQ"
    (req,) = seen
    assert req.method == "POST"
    assert req.url.path == "/gateway/api/graphql"
    assert req.url.params["accountId"] == "acc9"
    body = json.loads(req.content)
    assert body["variables"] == {"input": {"artifactStreamId": "bOgdZBYQS2-oHZMwEZTeIQ"}}
    assert "bOgdZBYQS2" not in body["query"]


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (200, {"data": None, "errors": [{"message": "Invalid API key"}]}, AuthError),
        (401, {"errors": [{"message": "Invalid API key"}]}, AuthError),
        (403, {"errors": [{"message": "User not authorized"}]}, AuthError),
        (
            200,
            {"data": None, "errors": [{"message": "Validation error of type FieldUndefined"}]},
            RejectedError,
        ),
        (200, {"data": None, "errors": [{"message": "Internal server error, try again"}]}, TransientError),
        (200, {"data": {"artifactCleanup": {"message": "Something new"}}}, BadResponseError),
        (200, {"data": {"artifactCleanup": None}}, BadResponseError),
        (200, {"data": "weird"}, BadResponseError),
        (200, ["not", "an", "object"], BadResponseError),
        (400, {"errors": [{"message": "Invalid Syntax"}]}, RejectedError),
        (404, None, NotFoundError),
        (502, {"message": "bad gateway"}, TransientError),
        (429, {"code": "TOO_MANY_REQUESTS", "message": "slow down"}, RateLimitedError),
    ],
)
async def test_harness_client_maps_answers(status: int, body: Any, error: type[Exception]) -> None:
    def handler(req: httpx.Request) -> httpx.Response:
        if body is None:
            return httpx.Response(status, text="<html>not here</html>", headers={"content-type": "text/html"})
        return httpx.Response(status, json=body)

    with pytest.raises(error) as info:
        await harness_client(handler).artifact_cleanup("s1")
    assert type(info.value) is error
    assert info.value.vendor == "harness"  # type: ignore[attr-defined]
    assert info.value.status_code == status  # type: ignore[attr-defined]


async def test_harness_client_not_found_in_errors() -> None:
    def handler(req: httpx.Request) -> httpx.Response:
        body = {
            "data": {"artifactCleanup": None},
            "errors": [{"message": "Artifact stream not found for the id: s1", "path": ["artifactCleanup"]}],
        }
        return httpx.Response(200, json=body)

    result = await harness_client(handler).artifact_cleanup("s1")
    assert result.outcome is CleanupOutcome.NOT_FOUND
    assert result.message == "Artifact stream not found for the id: s1"


@pytest.mark.parametrize("penalty", [None, 0.3])
async def test_harness_client_429_penalizes_the_limiter(penalty: float | None) -> None:
    """After a 429 the shared limiter holds callers back: for ``penalty``, else for its whole window."""
    limiter = RateLimiter(5, 0.3)

    def handler(req: httpx.Request) -> httpx.Response:
        return httpx.Response(429, json={"code": "TOO_MANY_REQUESTS", "message": "slow down"})

    client = harness_client(handler, limiter)
    client.penalty = penalty
    with pytest.raises(RateLimitedError) as info:
        await client.artifact_cleanup("s1")
    assert info.value.retry_after is None
    assert "TOO_MANY_REQUESTS: slow down" in str(info.value)
    started = time.monotonic()
    await limiter.acquire()
    assert time.monotonic() - started >= 0.25


async def test_harness_client_refuses_empty_ids() -> None:
    with pytest.raises(ValueError):
        await harness_client(lambda r: httpx.Response(200)).artifact_cleanup("")
    with pytest.raises(ValueError):
        HarnessClient(httpx.AsyncClient(), "")


# SourceCraft: the document's samples.


def test_sourcecraft_doc_has_success_and_error_bodies(vendor_docs: Path) -> None:
    bodies = sourcecraft_doc_bodies(vendor_docs)
    assert len(bodies) == 2
    assert set(sourcecraft_doc_error(vendor_docs)) == {"error_code", "message", "request_id", "details"}


def test_sourcecraft_doc_success_parses(vendor_docs: Path) -> None:
    body = sourcecraft_doc_success(vendor_docs)
    parsed = sourcecraft.ArtifactsResponse.model_validate(body)
    (art,) = parsed.artifacts
    assert art.id == "example"
    assert art.local_path == "example"
    assert art.status is ArtifactStatus.REGISTERED
    assert art.dates is not None and art.dates.registered_at is not None
    assert art.dates.registered_at.isoformat() == "2025-01-01T00:00:00+00:00"
    assert art.reveal_download_url() == "example"
    # The models cover exactly the document's fields.
    (doc_art,) = body["artifacts"]
    assert set(Artifact.model_fields) == set(doc_art)
    assert set(sourcecraft.ArtifactDates.model_fields) == set(doc_art["dates"])


def test_sourcecraft_doc_statuses_match_enum(vendor_docs: Path) -> None:
    assert [s.value for s in ArtifactStatus] == sourcecraft_doc_statuses(vendor_docs)


def test_sourcecraft_doc_error_parses(vendor_docs: Path) -> None:
    body = sourcecraft_doc_error(vendor_docs)
    err = sourcecraft.ErrorBody.model_validate(body)
    assert (err.error_code, err.message, err.request_id, err.details) == ("example", "example", "example", {})
    assert set(sourcecraft.ErrorBody.model_fields) == set(body)


def test_download_url_never_shows(vendor_docs: Path) -> None:
    body = sourcecraft_doc_success(vendor_docs)
    body["artifacts"][0]["download_url"] = SIGNED_URL
    art = sourcecraft.ArtifactsResponse.model_validate(body).artifacts[0]
    for text in (repr(art), str(art), str(art.model_dump()), art.model_dump_json(), repr([art])):
        assert SIGNATURE not in text
        assert "storage.example" not in text
    assert "download_url" not in art.model_dump()
    assert "download_url" not in art.model_dump(mode="json")
    assert art.reveal_download_url() == SIGNED_URL


def test_run_parses_tolerantly() -> None:
    run = Run.model_validate(
        {"id": 42, "status": "PROCESSING", "created_at": "2025-01-01T00:00:00", "extra": {"x": 1}}
    )
    assert (run.id, run.slug, run.ref) == ("42", None, "42")
    assert run.status is RunStatus.PROCESSING
    assert run.is_active and not run.is_finished
    assert run.created_at is not None and run.created_at.tzinfo is not None

    run = Run.model_validate({"slug": "r-7", "status": "RUN_STATUS_CANCELLED", "finished_at": "garbage"})
    assert (run.id, run.slug, run.ref) == ("r-7", "r-7", "r-7")
    assert run.status is RunStatus.CANCELED
    assert run.is_finished and not run.is_active
    assert run.finished_at is None

    run = Run.model_validate({"id": "u1", "slug": "s1", "status": "paused", "started_at": 1735689600})
    assert run.ref == "s1"
    assert run.status is RunStatus.UNKNOWN
    assert not run.is_active and not run.is_finished
    assert run.started_at is not None and run.started_at.year == 2025

    with pytest.raises(ValueError):
        Run.model_validate({"status": "success"})


# SourceCraft: the client's mapping, on a mock transport.


def sourcecraft_client(handler: Callable[[httpx.Request], httpx.Response]) -> SourceCraftClient:
    return SourceCraftClient(
        httpx.AsyncClient(base_url="https://sc.test", transport=httpx.MockTransport(handler))
    )


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, RejectedError),
        (401, AuthError),
        (403, AuthError),
        (404, NotFoundError),
        (429, RateLimitedError),
        (503, TransientError),
    ],
)
async def test_sourcecraft_doc_error_maps(vendor_docs: Path, status: int, error: type[Exception]) -> None:
    body = sourcecraft_doc_error(vendor_docs)

    def handler(req: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json=body)

    with pytest.raises(error) as info:
        await sourcecraft_client(handler).get_artifacts("o", "r", "run", "w", "t", "c")
    exc = info.value
    assert type(exc) is error
    assert exc.request_id == "example"  # type: ignore[attr-defined]
    assert exc.status_code == status  # type: ignore[attr-defined]
    assert "example: example" in str(exc)
    assert "[request_id example]" in str(exc)


async def test_sourcecraft_bad_artifact_never_leaks_the_url() -> None:
    def handler(req: httpx.Request) -> httpx.Response:
        art = {"id": "a", "local_path": "p", "status": "exploded", "download_url": SIGNED_URL}
        return httpx.Response(200, json={"artifacts": [art]})

    with pytest.raises(BadResponseError) as info:
        await sourcecraft_client(handler).get_artifacts("o", "r", "run", "w", "t", "c")
    text = "".join(traceback.format_exception(info.value))
    assert "artifacts.0.status" in str(info.value)
    assert SIGNATURE not in text
    assert "storage.example" not in text


async def test_sourcecraft_paths_are_quoted() -> None:
    seen: list[str] = []

    def handler(req: httpx.Request) -> httpx.Response:
        seen.append(req.url.raw_path.decode())
        return httpx.Response(200, json={})

    assert await sourcecraft_client(handler).get_artifacts("o", "r", "a/b", "w f", "t", "c") == []
    assert seen == ["/repos/o/r/cicd/artifacts/a%2Fb/w%20f/t/c"]
    with pytest.raises(ValueError):
        await sourcecraft_client(handler).get_run("o", "", "x")


async def test_sourcecraft_repeated_page_token_is_a_bad_response() -> None:
    def handler(req: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, json={"runs": [{"id": "1", "status": "success"}], "next_page_token": "same"}
        )

    with pytest.raises(BadResponseError):
        await sourcecraft_client(handler).latest_run("o", "r")
