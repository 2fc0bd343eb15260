"""SourceCraft CI runs and run artifacts (read-only: SourceCraft has no delete API for artifacts).

Base ``https://api.sourcecraft.tech``; the caller sets ``Authorization: Bearer <token>`` on the
injected ``httpx.AsyncClient``.

``GET /repos/{org}/{repo}/cicd/artifacts/{run}/{workflow}/{task}/{cube}`` follows
``vendor-docs/sourcecraft-get-ci-run-artifacts.txt`` exactly: ``{"artifacts": [Artifact]}`` with
``id``, ``local_path``, ``status`` (registered | success | failed | missing), ``dates``
(``registered_at``, ``obtained_at``, ``updated_at``) and ``download_url``. The download URL is a
temporary credential: :class:`Artifact` keeps it as a :class:`~pydantic.SecretStr` that is left out
of ``repr()``, ``str()`` and ``model_dump()``; only :meth:`Artifact.reveal_download_url` gives it.

Errors (4xx and 5xx) are ``{"error_code", "message", "request_id", "details"}``: 401/403 →
:class:`~.errors.AuthError`, 404 → :class:`~.errors.NotFoundError`, 429 →
:class:`~.errors.RateLimitedError`, other 4xx → :class:`~.errors.RejectedError`, 5xx and transport
failures → :class:`~.errors.TransientError`, unreadable 200 bodies → :class:`~.errors.BadResponseError`.
Each carries ``request_id`` and has ``error_code`` in its message.

Assumptions (no public document fixes the runs shape; ``vendor-api-notes.md`` only names the calls
and the statuses). The simulator follows the same assumptions:

- ``GET /repos/{org}/{repo}/cicd/runs?page_size=N&page_token=T`` answers
  ``{"runs": [Run], "next_page_token": "…"}``; an empty or missing ``next_page_token`` ends the
  listing; a missing ``runs`` list means no runs (protobuf JSON omits empty lists); ``items`` is read
  when ``runs`` is absent. Page tokens are opaque.
- ``GET /repos/{org}/{repo}/cicd/runs/{run}`` answers a Run, bare or wrapped as ``{"run": Run}``.
- A Run has ``id`` and/or ``slug`` (strings or numbers), ``status`` (created | prepared | processing
  | success | failed | canceled | timeout; any case, a ``RUN_STATUS_`` prefix and the spelling
  ``cancelled`` are accepted, anything else reads as ``unknown``) and RFC 3339 ``created_at``,
  ``started_at``, ``finished_at`` (any may be missing or null; an unreadable time reads as missing,
  a time without zone as UTC). Unknown fields are ignored.
- A run is addressed in paths by its slug, or by its id when it has no slug: :attr:`Run.ref`.
- :meth:`SourceCraftClient.latest_run` is the run with the newest ``created_at`` (``started_at``
  when ``created_at`` is missing) over every page; when no run carries a time, the listing's first
  run (lists are assumed newest first).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from enum import StrEnum
from typing import Annotated, Any
from urllib.parse import quote

import httpx
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from .errors import BadResponseError
from .http import request

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "Artifact",
    "ArtifactDates",
    "ArtifactStatus",
    "ArtifactsResponse",
    "ErrorBody",
    "Run",
    "RunStatus",
    "RunsPage",
    "SourceCraftClient",
]

VENDOR = "sourcecraft"
DEFAULT_PAGE_SIZE = 50
MAX_PAGES = 1000


def _tolerant_time(value: Any) -> dt.datetime | None:
    """RFC 3339 text (or epoch seconds) to an aware datetime; anything unreadable to ``None``."""
    if isinstance(value, dt.datetime):
        parsed = value
    elif isinstance(value, str) and value.strip():
        try:
            text = value.strip()
            parsed = dt.datetime.fromisoformat(text[:-1] + "Z" if text.endswith("z") else text)
        except ValueError:
            return None
    elif isinstance(value, int | float) and not isinstance(value, bool):
        try:
            parsed = dt.datetime.fromtimestamp(value, dt.UTC)
        except (OverflowError, OSError, ValueError):
            return None
    else:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=dt.UTC)


Time = Annotated[dt.datetime | None, BeforeValidator(_tolerant_time)]


class _Wire(BaseModel):
    # hide_input_in_errors: a ValidationError must never echo a body (it may hold a download URL).
    model_config = ConfigDict(extra="ignore", frozen=True, hide_input_in_errors=True)


# Artifacts (vendor-docs/sourcecraft-get-ci-run-artifacts.txt).


class ArtifactStatus(StrEnum):
    REGISTERED = "registered"
    SUCCESS = "success"
    FAILED = "failed"
    MISSING = "missing"


class ArtifactDates(_Wire):
    registered_at: Time = None
    obtained_at: Time = None
    updated_at: Time = None


class Artifact(_Wire):
    id: str
    #: Artifacts have no slug; ``local_path`` (as in the CI config) tells them apart within a cube.
    local_path: str = ""
    status: ArtifactStatus
    dates: ArtifactDates | None = None
    #: A temporary credential: masked, out of repr/str and out of ``model_dump()``.
    download_url: SecretStr | None = Field(default=None, repr=False, exclude=True)

    def reveal_download_url(self) -> str | None:
        """The temporary download URL, for an immediate download only: never store or log it."""
        return self.download_url.get_secret_value() if self.download_url is not None else None


class ArtifactsResponse(_Wire):
    artifacts: list[Artifact] = Field(default_factory=list)


class ErrorBody(_Wire):
    """``{"error_code", "message", "request_id", "details"}``: every 4xx and 5xx answer."""

    error_code: str = ""
    message: str = ""
    request_id: str | None = None
    details: dict[str, Any] = Field(default_factory=dict)


# Runs (assumed shape: see the module docstring).


class RunStatus(StrEnum):
    CREATED = "created"
    PREPARED = "prepared"
    PROCESSING = "processing"
    SUCCESS = "success"
    FAILED = "failed"
    CANCELED = "canceled"
    TIMEOUT = "timeout"
    UNKNOWN = "unknown"


ACTIVE_STATUSES = frozenset({RunStatus.CREATED, RunStatus.PREPARED, RunStatus.PROCESSING})
FINISHED_STATUSES = frozenset({RunStatus.SUCCESS, RunStatus.FAILED, RunStatus.CANCELED, RunStatus.TIMEOUT})


class Run(_Wire):
    #: The run's id; the slug when the vendor sends only a slug.
    id: str
    slug: str | None = None
    status: RunStatus = RunStatus.UNKNOWN
    created_at: Time = None
    started_at: Time = None
    finished_at: Time = None

    @model_validator(mode="before")
    @classmethod
    def _identify(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        ident, slug = data.get("id"), data.get("slug")
        ident = str(ident) if isinstance(ident, str | int) and str(ident) else None
        slug = str(slug) if isinstance(slug, str | int) and str(slug) else None
        data["id"], data["slug"] = ident or slug, slug
        return data

    @field_validator("status", mode="before")
    @classmethod
    def _status(cls, value: Any) -> RunStatus:
        if not isinstance(value, str):
            return RunStatus.UNKNOWN
        text = value.strip().lower().removeprefix("run_status_")
        text = "canceled" if text == "cancelled" else text
        try:
            return RunStatus(text)
        except ValueError:
            return RunStatus.UNKNOWN

    @property
    def ref(self) -> str:
        """How paths address the run: its slug, else its id."""
        return self.slug or self.id

    @property
    def is_active(self) -> bool:
        """Created, prepared or processing: artifacts may still change."""
        return self.status in ACTIVE_STATUSES

    @property
    def is_finished(self) -> bool:
        """Success, failed, canceled or timeout. An ``unknown`` status is neither active nor finished."""
        return self.status in FINISHED_STATUSES

    @property
    def sort_time(self) -> dt.datetime | None:
        return self.created_at or self.started_at


class RunsPage(_Wire):
    items: list[Run] = Field(default_factory=list)
    next_page_token: str | None = None


def _error_message(response: httpx.Response, body: Any) -> str | None:
    """``error_code: message`` from a SourceCraft error body."""
    if isinstance(body, dict):
        code, message = body.get("error_code"), body.get("message")
        parts = [str(p) for p in (code, message) if isinstance(p, str) and p]
        if parts:
            return ": ".join(parts)
    return None


def _segment(name: str, value: str) -> str:
    if not value:
        raise ValueError(f"SourceCraft {name} must not be empty")
    return quote(value, safe="")


def _bad_shape(
    where: str, exc: ValidationError | None = None, status_code: int | None = None
) -> BadResponseError:
    """A BadResponseError naming the fields at fault, never their values (they may hold a download URL)."""
    if exc is None:
        detail = "unexpected body"
    else:
        problems = [
            f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}"
            for e in exc.errors(include_url=False, include_input=False, include_context=False)[:5]
        ]
        detail = "; ".join(problems)
    return BadResponseError(
        f"{VENDOR}: {where}: unexpected response shape ({detail})", vendor=VENDOR, status_code=status_code
    )


class SourceCraftClient:
    """Reads CI runs and their artifacts for repositories reachable with the client's token."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self._client = client

    async def _get(self, path: str, where: str, params: dict[str, Any] | None = None) -> tuple[int, Any]:
        response, body = await request(
            self._client,
            "GET",
            path,
            vendor=VENDOR,
            expect=(200,),
            error_message=_error_message,
            request_id_key="request_id",
            params=params,
        )
        if not isinstance(body, dict):
            raise _bad_shape(where, status_code=response.status_code)
        return response.status_code, body

    @staticmethod
    def _repo_path(org: str, repo: str) -> str:
        return f"/repos/{_segment('org', org)}/{_segment('repo', repo)}/cicd"

    async def list_runs(
        self, org: str, repo: str, page_size: int = DEFAULT_PAGE_SIZE, page_token: str | None = None
    ) -> RunsPage:
        """One page of the repository's runs."""
        if page_size < 1:
            raise ValueError("page_size must be at least 1")
        params: dict[str, Any] = {"page_size": page_size}
        if page_token:
            params["page_token"] = page_token
        where = f"list runs of {org}/{repo}"
        status, body = await self._get(f"{self._repo_path(org, repo)}/runs", where, params)
        raw_items = body.get("runs", body.get("items"))
        if raw_items is None:
            raw_items = []
        token = body.get("next_page_token")
        try:
            return RunsPage.model_validate(
                {"items": raw_items, "next_page_token": token if isinstance(token, str) and token else None}
            )
        except ValidationError as exc:
            raise _bad_shape(where, exc, status) from None

    async def iter_runs(
        self, org: str, repo: str, page_size: int = DEFAULT_PAGE_SIZE, max_pages: int = MAX_PAGES
    ) -> AsyncIterator[Run]:
        """Every run of the repository, following ``next_page_token`` to the end."""
        token: str | None = None
        seen: set[str] = set()
        for _ in range(max_pages):
            page = await self.list_runs(org, repo, page_size=page_size, page_token=token)
            for run in page.items:
                yield run
            token = page.next_page_token
            if token is None:
                return
            if token in seen:
                raise BadResponseError(
                    f"{VENDOR}: list runs of {org}/{repo}: a page token came back twice", vendor=VENDOR
                )
            seen.add(token)
        raise BadResponseError(
            f"{VENDOR}: list runs of {org}/{repo}: more than {max_pages} pages", vendor=VENDOR
        )

    async def latest_run(self, org: str, repo: str, page_size: int = DEFAULT_PAGE_SIZE) -> Run | None:
        """The newest run (see the module docstring for how "newest" is read), or ``None`` without runs."""
        first: Run | None = None
        newest: Run | None = None
        async for run in self.iter_runs(org, repo, page_size=page_size):
            if first is None:
                first = run
            when = run.sort_time
            if when is not None and (newest is None or newest.sort_time is None or when > newest.sort_time):
                newest = run
        return newest or first

    async def get_run(self, org: str, repo: str, run: str) -> Run:
        where = f"get run {org}/{repo}/{run}"
        status, body = await self._get(f"{self._repo_path(org, repo)}/runs/{_segment('run', run)}", where)
        inner = body.get("run")
        try:
            return Run.model_validate(inner if isinstance(inner, dict) else body)
        except ValidationError as exc:
            raise _bad_shape(where, exc, status) from None

    async def get_artifacts(
        self, org: str, repo: str, run: str, workflow: str, task: str, cube: str
    ) -> list[Artifact]:
        """The artifacts of one cube of a run, with their temporary download URLs (kept secret)."""
        where = f"get artifacts of {org}/{repo}/{run}/{workflow}/{task}/{cube}"
        path = "/".join(
            (
                f"{self._repo_path(org, repo)}/artifacts",
                _segment("run", run),
                _segment("workflow", workflow),
                _segment("task", task),
                _segment("cube", cube),
            )
        )
        status, body = await self._get(path, where)
        try:
            return list(ArtifactsResponse.model_validate(body).artifacts)
        except ValidationError as exc:
            raise _bad_shape(where, exc, status) from None
