"""A stateful simulator of SourceCraft's CI runs and run-artifacts API.

Routes (under the mount prefix, ``/sourcecraft`` in :func:`build_server`):

- ``GET /repos/{org}/{repo}/cicd/runs?page_size=&page_token=`` → ``{"runs": [Run], "next_page_token": "…"}``
  (``next_page_token`` is empty on the last page; tokens are opaque and bound to the repository);
- ``GET /repos/{org}/{repo}/cicd/runs/{run}`` → a Run;
- ``GET /repos/{org}/{repo}/cicd/artifacts/{run}/{workflow}/{task}/{cube}`` → ``{"artifacts": [Artifact]}``
  exactly as in ``vendor-docs/sourcecraft-get-ci-run-artifacts.txt``.

The Run shape follows the assumptions written in :mod:`cleanup_operator.vendors.sourcecraft`:
``{"id", "slug", "status", "created_at", "started_at", "finished_at"}``. A run is addressed in paths by
its slug (the ``run_id`` given to :meth:`SourceCraftSimulator.add_run`) or by its generated id.

A run's status is computed lazily from :attr:`SourceCraftSimulator.clock` (wall-clock epoch
seconds, as run times are reported; replace it to drive time by hand): ``created`` for the first half of
``pending_seconds``, ``prepared`` for the second half, ``processing`` for ``processing_seconds``, then
the seeded final status. A run seeded with an active status (created, prepared, processing) stays in
it. While a run is active its artifacts read ``registered``; once it ends they read as seeded.
Times a run has not reached yet (``started_at``, ``finished_at``, an artifact's ``obtained_at`` unless
it is ``success``) are ``null``: every key of the documented shape is always present.

Every request needs ``Authorization: Bearer <token>`` with a token in ``tokens``. Every error answer
is ``{"error_code", "message", "request_id", "details"}`` with a fresh ``request_id`` (also sent as
``X-Request-Id`` and kept in :attr:`SourceCraftSimulator.request_ids`). Download URLs look like signed
URLs (``https://storage.example/…?X-Expires=300&X-Signature=<random>``), fresh on every answer and
kept in :attr:`SourceCraftSimulator.issued_download_urls` so tests can prove none leaks.
"""

from __future__ import annotations

import datetime as dt
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import quote

from aiohttp import web

from .faults import Faults

DEFAULT_TOKEN = "sc-token"
ACTIVE = ("created", "prepared", "processing")
FINAL = ("success", "failed", "canceled", "timeout")
ARTIFACT_STATUSES = ("registered", "success", "failed", "missing")

RunsOrder = Literal["newest_first", "oldest_first", "insertion"]


def _iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return dt.datetime.fromtimestamp(epoch, dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _epoch(value: dt.datetime | float) -> float:
    if isinstance(value, dt.datetime):
        return (value if value.tzinfo else value.replace(tzinfo=dt.UTC)).timestamp()
    return float(value)


@dataclass
class SimArtifact:
    local_path: str
    status: str = "success"
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:16])

    def __post_init__(self) -> None:
        if self.status not in ARTIFACT_STATUSES:
            raise ValueError(f"artifact status must be one of {ARTIFACT_STATUSES}, not {self.status!r}")


ArtifactSeed = SimArtifact | tuple[str, str] | str


def _artifact(seed: ArtifactSeed) -> SimArtifact:
    if isinstance(seed, SimArtifact):
        return seed
    if isinstance(seed, tuple):
        return SimArtifact(local_path=seed[0], status=seed[1])
    return SimArtifact(local_path=seed)


@dataclass
class SimRun:
    slug: str
    created_at: float
    status: str = "success"
    pending_seconds: float = 0.0
    processing_seconds: float = 0.0
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    #: (workflow, task, cube) → artifacts.
    cubes: dict[tuple[str, str, str], list[SimArtifact]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.status not in ACTIVE + FINAL:
            raise ValueError(f"run status must be one of {ACTIVE + FINAL}, not {self.status!r}")

    def phase(self, now: float) -> tuple[str, float | None, float | None]:
        """``(status, started_at, finished_at)`` at ``now``."""
        if self.status in ACTIVE:
            started = self.created_at + self.pending_seconds if self.status == "processing" else None
            return self.status, started, None
        elapsed = now - self.created_at
        started = self.created_at + self.pending_seconds
        finished = started + self.processing_seconds
        if elapsed < self.pending_seconds / 2:
            return "created", None, None
        if elapsed < self.pending_seconds:
            return "prepared", None, None
        if elapsed < self.pending_seconds + self.processing_seconds:
            return "processing", started, None
        return self.status, started, finished

    def as_json(self, now: float) -> dict[str, Any]:
        status, started, finished = self.phase(now)
        return {
            "id": self.id,
            "slug": self.slug,
            "status": status,
            "created_at": _iso(self.created_at),
            "started_at": _iso(started),
            "finished_at": _iso(finished),
        }


class SourceCraftSimulator:
    vendor = "sourcecraft"

    def __init__(self) -> None:
        self.faults = Faults()
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        """Back to the defaults: token ``sc-token``, no repositories, newest runs first, 20 per page."""
        with self._lock:
            self.tokens: set[str] = {DEFAULT_TOKEN}
            #: (org, repo) → runs by slug, in insertion order.
            self.repos: dict[tuple[str, str], dict[str, SimRun]] = {}
            self.runs_order: RunsOrder = "newest_first"
            self.default_page_size = 20
            self.max_page_size = 100
            self.download_base = "https://storage.example"
            self.url_ttl_seconds = 300
            self.issued_download_urls: list[str] = []
            self.request_ids: list[str] = []
            #: Wall-clock epoch seconds: "now" for run phases and seeding defaults.
            self.clock: Callable[[], float] = time.time
            self._page_tokens: dict[str, tuple[tuple[str, str], int]] = {}

    # Seeding (from any thread).

    def add_repo(self, org: str, repo: str) -> None:
        with self._lock:
            self.repos.setdefault((org, repo), {})

    def add_run(
        self,
        org: str,
        repo: str,
        run_id: str,
        workflow: str = "build",
        task: str = "build",
        cube: str = "default",
        artifacts: Sequence[ArtifactSeed] = (),
        status: str = "success",
        processing_seconds: float = 0.0,
        pending_seconds: float = 0.0,
        created_at: dt.datetime | float | None = None,
    ) -> SimRun:
        """Seed a run (slug ``run_id``) with one cube of artifacts; ``created_at`` defaults to now.

        ``artifacts`` items are :class:`SimArtifact`, ``(local_path, status)`` or a bare local path
        (status ``success``).
        """
        run = SimRun(
            slug=run_id,
            created_at=self.clock() if created_at is None else _epoch(created_at),
            status=status,
            pending_seconds=pending_seconds,
            processing_seconds=processing_seconds,
        )
        run.cubes[(workflow, task, cube)] = [_artifact(a) for a in artifacts]
        with self._lock:
            self.repos.setdefault((org, repo), {})[run_id] = run
        return run

    def add_cube(
        self,
        org: str,
        repo: str,
        run_id: str,
        workflow: str,
        task: str,
        cube: str,
        artifacts: Sequence[ArtifactSeed],
    ) -> None:
        """Add (or replace) one cube's artifacts in a seeded run."""
        with self._lock:
            run = self.repos[(org, repo)][run_id]
            run.cubes[(workflow, task, cube)] = [_artifact(a) for a in artifacts]

    def add_runs(self, org: str, repo: str, count: int, start: dt.datetime | None = None) -> list[SimRun]:
        """``count`` finished runs ``run-1`` … ``run-N``, one minute apart (``run-N`` newest)."""
        base = _epoch(start) if start is not None else self.clock() - 60 * (count + 1)
        return [
            self.add_run(org, repo, f"run-{i}", created_at=base + 60 * i, artifacts=[f"out/{i}.tar"])
            for i in range(1, count + 1)
        ]

    # HTTP.

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/repos/{org}/{repo}/cicd/runs", self._list_runs)
        app.router.add_get("/repos/{org}/{repo}/cicd/runs/{run}", self._get_run)
        app.router.add_get(
            "/repos/{org}/{repo}/cicd/artifacts/{run}/{workflow}/{task}/{cube}", self._artifacts
        )
        app.router.add_route("*", "/{tail:.*}", self._unknown)

    def _error(self, status: int, code: str, message: str, **details: str) -> web.Response:
        request_id = uuid.uuid4().hex
        self.request_ids.append(request_id)
        body = {"error_code": code, "message": message, "request_id": request_id, "details": details}
        return web.json_response(body, status=status, headers={"X-Request-Id": request_id})

    def _authorized(self, request: web.Request) -> bool:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        return scheme.lower() == "bearer" and token.strip() in self.tokens

    def _unauthenticated(self) -> web.Response:
        return self._error(401, "UNAUTHENTICATED", "missing or invalid access token")

    def _repo(self, request: web.Request) -> tuple[tuple[str, str], dict[str, SimRun] | None]:
        key = (request.match_info["org"], request.match_info["repo"])
        return key, self.repos.get(key)

    def _authorized_repo(
        self, request: web.Request
    ) -> tuple[tuple[str, str], dict[str, SimRun]] | web.Response:
        """The repository a request names, or the error answer (401 first, then 404)."""
        if not self._authorized(request):
            return self._unauthenticated()
        key, runs = self._repo(request)
        if runs is None:
            return self._error(
                404, "NOT_FOUND", f"repository {key[0]}/{key[1]} not found", resource="repository"
            )
        return key, runs

    def _run(self, runs: dict[str, SimRun], ref: str) -> SimRun | None:
        run = runs.get(ref)
        if run is None:
            run = next((r for r in runs.values() if r.id == ref), None)
        return run

    async def _unknown(self, request: web.Request) -> web.Response:
        with self._lock:
            if not self._authorized(request):
                return self._unauthenticated()
            return self._error(404, "NOT_FOUND", f"no route for {request.method} {request.path}")

    async def _list_runs(self, request: web.Request) -> web.Response:
        with self._lock:
            found = self._authorized_repo(request)
            if isinstance(found, web.Response):
                return found
            key, runs = found
            raw_size = request.query.get("page_size", "")
            try:
                size = int(raw_size) if raw_size else self.default_page_size
            except ValueError:
                size = -1
            if size < 1:
                return self._error(
                    400, "INVALID_ARGUMENT", "page_size must be a positive integer", field="page_size"
                )
            size = min(size, self.max_page_size)
            offset = 0
            token = request.query.get("page_token", "")
            if token:
                bound = self._page_tokens.get(token)
                if bound is None or bound[0] != key:
                    return self._error(400, "INVALID_ARGUMENT", "invalid page_token", field="page_token")
                offset = bound[1]
            ordered = list(runs.values())
            if self.runs_order != "insertion":
                ordered.sort(key=lambda r: r.created_at, reverse=self.runs_order == "newest_first")
            now = self.clock()
            page = [r.as_json(now) for r in ordered[offset : offset + size]]
            next_token = ""
            if offset + size < len(ordered):
                next_token = secrets.token_urlsafe(12)
                self._page_tokens[next_token] = (key, offset + size)
        return web.json_response({"runs": page, "next_page_token": next_token})

    async def _get_run(self, request: web.Request) -> web.Response:
        with self._lock:
            found = self._authorized_repo(request)
            if isinstance(found, web.Response):
                return found
            _, runs = found
            ref = request.match_info["run"]
            run = self._run(runs, ref)
            if run is None:
                return self._error(404, "NOT_FOUND", f"run {ref} not found", resource="run")
            body = run.as_json(self.clock())
        return web.json_response(body)

    async def _artifacts(self, request: web.Request) -> web.Response:
        with self._lock:
            found = self._authorized_repo(request)
            if isinstance(found, web.Response):
                return found
            key, runs = found
            info = request.match_info
            run = self._run(runs, info["run"])
            if run is None:
                return self._error(404, "NOT_FOUND", f"run {info['run']} not found", resource="run")
            workflow, task, cube = info["workflow"], info["task"], info["cube"]
            cubes = run.cubes
            if not any(w == workflow for w, _, _ in cubes):
                return self._error(404, "NOT_FOUND", f"workflow {workflow} not found", resource="workflow")
            if not any((w, t) == (workflow, task) for w, t, _ in cubes):
                return self._error(404, "NOT_FOUND", f"task {task} not found", resource="task")
            if (workflow, task, cube) not in cubes:
                return self._error(404, "NOT_FOUND", f"cube {cube} not found", resource="cube")
            now = self.clock()
            status, _, finished = run.phase(now)
            active = status in ACTIVE
            items = [
                self._artifact_json(key, run, a, active=active, finished=finished)
                for a in cubes[(workflow, task, cube)]
            ]
        return web.json_response({"artifacts": items})

    def _artifact_json(
        self, key: tuple[str, str], run: SimRun, art: SimArtifact, *, active: bool, finished: float | None
    ) -> dict[str, Any]:
        status = "registered" if active else art.status
        obtained = finished if status == "success" else None
        url = (
            f"{self.download_base}/{quote(key[0])}/{quote(key[1])}/{quote(run.slug)}/{art.id}/"
            f"{quote(art.local_path)}?X-Expires={self.url_ttl_seconds}&X-Signature={secrets.token_hex(16)}"
        )
        self.issued_download_urls.append(url)
        return {
            "id": art.id,
            "local_path": art.local_path,
            "dates": {
                "registered_at": _iso(run.created_at),
                "obtained_at": _iso(obtained),
                "updated_at": _iso(finished if finished is not None else run.created_at),
            },
            "status": status,
            "download_url": url,
        }
