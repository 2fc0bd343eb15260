"""Harness FirstGen ``artifactCleanup`` GraphQL mutation.

``POST {url}/gateway/api/graphql?accountId=<account>`` with the ``x-api-key`` header, which the caller
sets on the injected ``httpx.AsyncClient``. The stream id always travels in GraphQL ``variables``,
never inside the query text, so no id can change the shape of the query.

Harness answers business outcomes with HTTP 200 in ``data.artifactCleanup.message`` (see
``vendor-docs/harness-artifact-cleanup.md``):

- ``Cleanup successful for Artifact stream with id: <id>`` → :attr:`CleanupOutcome.SUCCEEDED`;
- ``Clean up not supported for artifact Stream type: <TYPE>`` → :attr:`CleanupOutcome.UNSUPPORTED`
  (permanent: retrying cannot help);
- ``Artifact stream not found for the id: <id>`` → :attr:`CleanupOutcome.NOT_FOUND`, whether it comes
  in ``data`` or (some Harness versions) in ``errors[]``.

Everything else is an exception from :mod:`.errors`: ``errors[]`` about the key or permissions (HTTP
200 or 401/403) → :class:`~.errors.AuthError`; 429 ``{"code": "TOO_MANY_REQUESTS"}`` (no Retry-After)
→ :class:`~.errors.RateLimitedError`; 5xx, timeouts, dropped connections →
:class:`~.errors.TransientError`; bodies of an unexpected shape → :class:`~.errors.BadResponseError`;
other GraphQL errors → :class:`~.errors.RejectedError`.
"""

from __future__ import annotations

import contextlib
import re
from enum import StrEnum
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import (
    AuthError,
    BadResponseError,
    NotFoundError,
    RateLimitedError,
    RejectedError,
    TransientError,
    truncate,
)
from .http import RateLimiter, request

__all__ = [
    "CLEANUP_MUTATION",
    "GRAPHQL_PATH",
    "ArtifactCleanUpPayload",
    "ArtifactCleanupInput",
    "CleanupOutcome",
    "CleanupResult",
    "GraphQLError",
    "GraphQLRequest",
    "GraphQLResponse",
    "HarnessClient",
    "RateLimitBody",
    "classify_message",
]

VENDOR = "harness"
GRAPHQL_PATH = "/gateway/api/graphql"
CLEANUP_MUTATION = (
    "mutation ArtifactCleanup($input: ArtifactCleanupInput!) { artifactCleanup(input: $input) { message } }"
)

SUCCESS_RE = re.compile(
    r"^\s*Cleanup successful for Artifact stream with id:\s*(?P<id>\S*)\s*$", re.IGNORECASE
)
UNSUPPORTED_RE = re.compile(
    r"^\s*Clean up not supported for artifact Stream type:\s*(?P<type>.*?)\s*$", re.IGNORECASE
)
NOT_FOUND_RE = re.compile(r"Artifact stream not found for the id", re.IGNORECASE)
_AUTH_RE = re.compile(
    r"api[ _-]?key|unauthori[sz]ed|unauthenticated|not authori[sz]ed|forbidden|permission|access denied"
    r"|invalid token|token (is )?expired|authenticat",
    re.IGNORECASE,
)
_RATE_RE = re.compile(r"too many requests|too_many_requests|rate limit", re.IGNORECASE)


# The GraphQL envelope.


class _Wire(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore", frozen=True)


class ArtifactCleanupInput(_Wire):
    """``ArtifactCleanupInput { artifactStreamId: String! }``."""

    artifact_stream_id: str = Field(alias="artifactStreamId", min_length=1)


class GraphQLRequest(_Wire):
    """The JSON body of a GraphQL POST."""

    query: str
    variables: dict[str, Any] = Field(default_factory=dict)
    operation_name: str | None = Field(default=None, alias="operationName")

    def wire(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_none=True)


class ArtifactCleanUpPayload(_Wire):
    """``ArtifactCleanUpPayload { message: String }``."""

    message: str | None = None


class CleanupData(_Wire):
    artifact_cleanup: ArtifactCleanUpPayload | None = Field(default=None, alias="artifactCleanup")


class GraphQLError(_Wire):
    """One entry of ``errors[]``; ``locations``, ``path`` and ``extensions`` are kept when present."""

    message: str = ""
    path: list[Any] | None = None
    extensions: dict[str, Any] | None = None


class GraphQLResponse(_Wire):
    """``{"data": {"artifactCleanup": {"message": …}}, "errors": […]}``, either part optional."""

    data: CleanupData | None = None
    errors: list[GraphQLError] | None = None


class RateLimitBody(_Wire):
    """Harness's 429 body: ``{"code": "TOO_MANY_REQUESTS", "message": …}``."""

    code: str | None = None
    message: str | None = None


# Results.


class CleanupOutcome(StrEnum):
    SUCCEEDED = "Succeeded"
    UNSUPPORTED = "Unsupported"
    NOT_FOUND = "NotFound"


class CleanupResult(_Wire):
    """What Harness said about one artifact stream. ``stream_type`` is set for ``Unsupported`` only."""

    stream_id: str
    outcome: CleanupOutcome
    message: str
    stream_type: str | None = None

    @property
    def permanent(self) -> bool:
        """Whether repeating the same request can only give the same answer."""
        return self.outcome is not CleanupOutcome.SUCCEEDED


def classify_message(stream_id: str, message: str) -> CleanupResult | None:
    """The outcome a Harness message stands for, or ``None`` for a message we do not know."""
    if SUCCESS_RE.match(message):
        return CleanupResult(stream_id=stream_id, outcome=CleanupOutcome.SUCCEEDED, message=message)
    unsupported = UNSUPPORTED_RE.match(message)
    if unsupported:
        return CleanupResult(
            stream_id=stream_id,
            outcome=CleanupOutcome.UNSUPPORTED,
            message=message,
            stream_type=unsupported.group("type") or None,
        )
    if NOT_FOUND_RE.search(message):
        return CleanupResult(stream_id=stream_id, outcome=CleanupOutcome.NOT_FOUND, message=message)
    return None


def _error_message(response: httpx.Response, body: Any) -> str | None:
    """``errors[].message`` joined, or ``code: message`` of the 429 body."""
    if isinstance(body, dict):
        errors = body.get("errors")
        if isinstance(errors, list) and errors:
            return "; ".join(str(e.get("message", e)) if isinstance(e, dict) else str(e) for e in errors)
        code, message = body.get("code"), body.get("message")
        if isinstance(code, str) and isinstance(message, str):
            return f"{code}: {message}"
        if isinstance(message, str):
            return message
    return None


class HarnessClient:
    """Runs ``artifactCleanup`` for one Harness account.

    ``limiter`` is shared by every client of the same account (Harness documents 30 GraphQL requests
    per minute per account on some tiers); after a 429 it is penalised for ``penalty`` seconds
    (default: the limiter's whole window, after which Harness's own window has surely cleared).
    """

    def __init__(
        self,
        client: httpx.AsyncClient,
        account_id: str,
        limiter: RateLimiter | None = None,
        *,
        penalty: float | None = None,
    ) -> None:
        if not account_id:
            raise ValueError("a Harness account id is required")
        self._client = client
        self.account_id = account_id
        self.limiter = limiter
        self.penalty = penalty

    async def artifact_cleanup(self, stream_id: str) -> CleanupResult:
        """Sync one artifact stream with its source; see the module docstring for the outcomes."""
        if not stream_id:
            raise ValueError("an artifact stream id is required")
        body = GraphQLRequest(
            query=CLEANUP_MUTATION,
            variables={"input": ArtifactCleanupInput(artifact_stream_id=stream_id).model_dump(by_alias=True)},
            operation_name="ArtifactCleanup",
        )
        try:
            async with self.limiter.slot() if self.limiter is not None else contextlib.nullcontext():
                response, raw = await request(
                    self._client,
                    "POST",
                    GRAPHQL_PATH,
                    vendor=VENDOR,
                    params={"accountId": self.account_id},
                    json=body.wire(),
                    expect=(200, 400, 404),
                    error_message=_error_message,
                )
        except RateLimitedError as exc:
            self._penalize(exc.retry_after)
            raise
        return self._interpret(stream_id, response.status_code, raw)

    def _penalize(self, retry_after: float | None) -> None:
        if self.limiter is None:
            return
        seconds = retry_after or self.penalty
        self.limiter.penalize(seconds if seconds is not None else self.limiter.window)

    def _interpret(self, stream_id: str, status: int, raw: Any) -> CleanupResult:
        where = f"{VENDOR}: artifactCleanup({stream_id})"
        try:
            parsed = GraphQLResponse.model_validate(raw)
        except ValidationError as exc:
            if status == 200:
                raise BadResponseError(
                    f"{where}: the answer is not a GraphQL response",
                    vendor=VENDOR,
                    status_code=status,
                ) from exc
            parsed = GraphQLResponse()

        if parsed.errors:
            return self._from_errors(stream_id, status, parsed.errors)
        if status != 200:
            text = f"{where}: HTTP {status} without GraphQL errors"
            if status == 404:
                raise NotFoundError(text, vendor=VENDOR, status_code=status)
            raise RejectedError(text, vendor=VENDOR, status_code=status)

        payload = parsed.data.artifact_cleanup if parsed.data else None
        if payload is None or payload.message is None:
            raise BadResponseError(
                f"{where}: no data.artifactCleanup.message in the answer",
                vendor=VENDOR,
                status_code=status,
            )
        result = classify_message(stream_id, payload.message)
        if result is None:
            raise BadResponseError(
                f"{where}: unknown answer: {truncate(payload.message)}", vendor=VENDOR, status_code=status
            )
        return result

    def _from_errors(self, stream_id: str, status: int, errors: list[GraphQLError]) -> CleanupResult:
        messages = [e.message for e in errors]
        for message in messages:
            if NOT_FOUND_RE.search(message):
                return CleanupResult(stream_id=stream_id, outcome=CleanupOutcome.NOT_FOUND, message=message)
        joined = truncate("; ".join(messages) or "GraphQL errors without a message")
        text = f"{VENDOR}: artifactCleanup({stream_id}): {joined}"
        kw: dict[str, Any] = {"vendor": VENDOR, "status_code": status}
        if any(_AUTH_RE.search(m) for m in messages):
            raise AuthError(text, **kw)
        if any(_RATE_RE.search(m) for m in messages):
            self._penalize(None)
            raise RateLimitedError(text, **kw)
        if any(re.search(r"internal|unavailable|try again|timed? ?out", m, re.IGNORECASE) for m in messages):
            raise TransientError(text, **kw)
        raise RejectedError(text, **kw)
