"""A simulated JFrog Artifactory: package cleanup policies, their runs, and the prune of unreferenced data.

Faithful to ``vendor-docs/jfrog-*.txt`` and the JFrog sections of ``vendor-api-notes.md``; where no
document fixes a shape it follows the assumptions written down once in the docstring of
:mod:`cleanup_operator.vendors.jfrog` (run summary fields, refusal codes, server-echoed defaults).
PUD ``progress`` follows the status document's definition (see below). Choices of the simulator itself:

- Creating a key that exists answers ``duplicate_key_status`` (409 by default: the key conflicts with
  the stored resource). A change (update, delete) while the policy runs answers
  ``running_refusal_status`` (409) with a JFrog error body saying the policy is running. A fourth
  concurrent run answers 409 (a concurrency limit of the server, not a rate limit, so not 429).
  Stopping a run that is not running answers 409; an unknown run 404.
- A stored policy is echoed (create answer, GET, list) with the fields it was sent and no others,
  plus ``key`` and ``enabled``: an optional field that was never sent (or sent as ``null``) is left
  out, one sent as ``""``/``[]``/``0`` is echoed as sent. JFrog's Terraform provider needs this: it
  reads a missing ``excludedRepos`` as null and an echoed ``[]`` as a change ("inconsistent result
  after apply"). :attr:`JFrogSimulator.echo_empty_defaults` (CLI ``--echo-sample-shape``) echoes
  the vendor-doc sample's shape instead: ``description: ""``, ``cronExp: ""``,
  ``durationInMinutes: 0``, empty lists, ``false``, 0 for unset months conditions and
  ``keepLastNVersions``; ``createdBeforeInDays``/``lastDownloadedBeforeInDays`` and the property
  filters only when set. ``enabled`` in an update body is ignored (enablement only).
- ``POST /artifactory/api/system/usage`` (the usage report JFrog's own clients send) answers 200
  and is a *telemetry* call: no fault applies to it and the call log keeps it out of
  :meth:`~.faults.CallLog.calls` unless asked (see :mod:`.faults`).
- Runs last ``run_duration`` seconds of :attr:`clock` time, their state computed from timestamps on
  each request (no background task). A run deletes ``set_run_result`` numbers (default derived from a
  CRC of the key); a real run consumes them (the next run finds nothing), a dry run reports the same
  numbers and deletes nothing. A stopped run reports the share it reached. Cron schedules and
  ``durationInMinutes`` never trigger or stop runs here.
- ``dryRun`` of ``PUT …/run`` must be ``true`` or ``false`` (400 otherwise, including absent).
- Run summaries of an unknown policy key are an empty list; servers older than 7.117 answer 404.
- PUD: directory ``i`` (``00`` … ``ff``) holds :func:`directory_content` binaries; the prune handles one
  directory every ``prune_seconds_per_directory`` seconds from ``startFromDirectory``; ``progress``
  ("N of 256") counts the directories handled so far, as the status document defines it, so a prune
  from ``80`` reports "0 of 256" at its start and "128 of 256" when it finishes. A real prune
  empties the directories it handled of unreferenced binaries (a later prune finds none there); a dry
  run reports what it would clean and cleans nothing. ``startFromBinary`` and ``binaryOlderThanDays``
  are validated but do not change the counts. ``fail_prune_at_directory`` makes the prune end in
  ``error`` when it reaches that directory. An absent ``dryRun`` in ``POST …/start`` means false.
  ``startedAt``/``lastUpdated`` are formatted in UTC without a zone, like the doc's sample.
"""

from __future__ import annotations

import base64
import binascii
import copy
import datetime as dt
import json
import re
import threading
import time
import zlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from aiohttp import web

from .faults import Faults

__all__ = ["DEFAULT_VERSION", "JFrogSimulator", "directory_content"]

API: Final = "/artifactory/api"
POLICIES: Final = f"{API}/cleanup/packages/policies"
RUNS: Final = f"{API}/cleanup/policies/runs"
PRUNE: Final = f"{API}/system/storage/prune"
USAGE: Final = f"{API}/system/usage"

DEFAULT_VERSION: Final = "7.117.5"
DIRECTORIES: Final = 256
KEY_PATTERN: Final = re.compile(r"^[a-zA-Z0-9_-]+$")
HEX_DIRECTORY: Final = re.compile(r"^[0-9a-f]{2}$")
SHA1: Final = re.compile(r"^[0-9a-f]{40}$")

DAYS_VERSION: Final = (7, 111, 2)
SUMMARIES_VERSION: Final = (7, 117, 0)
PROPERTIES_VERSION: Final = (7, 129, 0)

_LIST_FIELDS: Final = (
    "packageTypes",
    "repos",
    "excludedRepos",
    "includedPackages",
    "excludedPackages",
    "includedProjects",
)
_INT_FIELDS: Final = (
    "createdBeforeInMonths",
    "lastDownloadedBeforeInMonths",
    "keepLastNVersions",
    "createdBeforeInDays",
    "lastDownloadedBeforeInDays",
)
_MONTHS_DEFAULTS: Final = ("createdBeforeInMonths", "lastDownloadedBeforeInMonths", "keepLastNVersions")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Action = Callable[[web.Request, Any], web.Response]


def directory_content(index: int) -> tuple[int, int, int]:
    """Deterministic content of filestore directory ``index``: (binaries, unreferenced, their bytes)."""
    binaries = 1 + (index * 7) % 5
    unreferenced = min(binaries, index % 3)
    return binaries, unreferenced, unreferenced * 1024 * (1 + index % 16)


def default_run_result(key: str) -> tuple[int, int, int]:
    """(packages, versions, bytes) a policy's first run deletes unless ``set_run_result`` says otherwise."""
    packages = 1 + zlib.crc32(key.encode()) % 10
    versions = packages * 3
    return packages, versions, versions * 1_048_576


def _version(text: str) -> tuple[int, int, int]:
    parts = [int(p) for p in re.findall(r"\d+", text.split("-")[0])[:3]]
    parts += [0] * (3 - len(parts))
    return parts[0], parts[1], parts[2]


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"errors": [{"status": status, "message": message}]}, status=status)


def _info(status: int, text: str) -> web.Response:
    return web.json_response({"info": text}, status=status)


def _iso(wall: float) -> str:
    return dt.datetime.fromtimestamp(wall, dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _clock_text(wall: float) -> str:
    return dt.datetime.fromtimestamp(wall, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")


def _duration_text(seconds: float) -> str:
    millis = max(0, round(seconds * 1000))
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, ms = divmod(rest, 1000)
    return f"{hours}:{minutes:02d}:{secs:02d}.{ms:03d}"


class _Invalid(Exception):
    """A validation refusal: 400 with the JFrog error body."""


@dataclass
class _Run:
    run_id: int
    policy_key: str
    dry_run: bool
    started: float
    started_wall: float
    #: None: runs until stopped.
    duration: float | None
    packages: int
    versions: int
    bytes: int
    fails: bool = False
    stopped_at: float | None = None
    settled: bool = False

    def end(self) -> float | None:
        return None if self.duration is None else self.started + self.duration

    def status(self, now: float) -> str:
        if self.stopped_at is not None:
            return "STOPPED"
        end = self.end()
        if end is not None and now >= end:
            return "FAILED" if self.fails else "COMPLETED"
        return "RUNNING"

    def counts(self, now: float) -> tuple[int, int, int]:
        """What the run deleted (or would have, when dry) by ``now``."""
        status = self.status(now)
        if status == "FAILED":
            return 0, 0, 0
        if status == "COMPLETED":
            share = 1.0
        elif self.duration is None or self.duration <= 0:
            share = 0.0
        else:
            share = min(1.0, ((self.stopped_at or now) - self.started) / self.duration)
        return int(self.packages * share), int(self.versions * share), int(self.bytes * share)

    def summary(self, now: float) -> dict[str, Any]:
        status = self.status(now)
        packages, versions, nbytes = self.counts(now)
        out: dict[str, Any] = {
            "runId": self.run_id,
            "policyKey": self.policy_key,
            "triggerId": str(self.run_id),
            "status": status,
            "dryRun": self.dry_run,
            "startedAt": _iso(self.started_wall),
            "packagesDeleted": packages,
            "versionsDeleted": versions,
            "bytesDeleted": nbytes,
        }
        if status != "RUNNING":
            finished = self.stopped_at if self.stopped_at is not None else self.end()
            assert finished is not None
            out["finishedAt"] = _iso(self.started_wall + (finished - self.started))
        return out


@dataclass
class _Prune:
    dry_run: bool
    start_index: int
    started: float
    started_wall: float
    pace: float
    fail_index: int | None
    error_message: str
    cleaned_before: frozenset[int]
    content: Callable[[int], tuple[int, int, int]]
    stopped_at: float | None = None
    settled: bool = False

    def _handled(self, now: float) -> int:
        total = DIRECTORIES - self.start_index
        if self.pace <= 0:
            return total
        elapsed = (self.stopped_at if self.stopped_at is not None else now) - self.started
        return max(0, min(total, int(elapsed // self.pace)))

    def _fail_slot(self) -> int | None:
        if self.fail_index is None or self.fail_index < self.start_index:
            return None
        return self.fail_index - self.start_index

    def state(self, now: float) -> tuple[str, int]:
        """(status, directories handled successfully)."""
        handled = self._handled(now)
        slot = self._fail_slot()
        if slot is not None and handled > slot:
            return "error", slot
        if handled >= DIRECTORIES - self.start_index:
            return "finished", handled
        if self.stopped_at is not None:
            return "stopped", handled
        return "running", handled

    def directory(self, index: int) -> tuple[int, int, int]:
        binaries, unreferenced, nbytes = self.content(index)
        if index in self.cleaned_before:
            return binaries, 0, 0
        return binaries, unreferenced, nbytes

    def handled_indexes(self, now: float) -> range:
        _, handled = self.state(now)
        return range(self.start_index, self.start_index + handled)

    def _timing(self, start: float, end: float) -> dict[str, Any]:
        started_ms = round((self.started_wall + (start - self.started)) * 1000)
        duration_ms = max(0, round((end - start) * 1000))
        return {
            "startedAtMillis": started_ms,
            "startedAt": _clock_text(started_ms / 1000),
            "durationMillis": duration_ms,
            "duration": _duration_text(duration_ms / 1000),
            "lastUpdatedMillis": started_ms + duration_ms,
            "lastUpdated": _clock_text((started_ms + duration_ms) / 1000),
        }

    def body(self, now: float) -> dict[str, Any]:
        status, handled = self.state(now)
        pace = max(self.pace, 0.0)
        if status == "finished":
            end = self.started + handled * pace
        elif status == "error":
            end = self.started + (handled + 1) * pace
        elif status == "stopped":
            assert self.stopped_at is not None
            end = self.stopped_at
        else:
            end = now
        processed = cleaned = cleaned_bytes = 0
        for index in range(self.start_index, self.start_index + handled):
            binaries, unreferenced, nbytes = self.directory(index)
            processed += binaries
            cleaned += unreferenced
            cleaned_bytes += nbytes
        out: dict[str, Any] = {
            "status": status,
            "dryRun": self.dry_run,
            "timing": self._timing(self.started, end),
            # The document: "the number of directories that have been processed thus far" (a count,
            # not the position reached): a prune from 80 starts at "0 of 256", finishes at "128 of 256".
            "progress": f"{handled} of {DIRECTORIES}",
            "report": {
                "totalBinariesProcessed": processed,
                "totalBinariesCleaned": cleaned,
                "totalBytesCleaned": cleaned_bytes,
            },
        }
        if status == "error":
            index = self.start_index + handled
            begin = self.started + handled * pace
            out["lastHandledDirectory"] = {
                "name": f"{index:02x}",
                "status": "error",
                "binariesProcessed": 0,
                "binariesCleaned": 0,
                "bytesCleaned": 0,
                "timing": self._timing(begin, end),
            }
            out["error"] = self.error_message.format(directory=f"{index:02x}")
        elif handled > 0:
            index = self.start_index + handled - 1
            binaries, unreferenced, nbytes = self.directory(index)
            begin = self.started + (handled - 1) * pace
            out["lastHandledDirectory"] = {
                "name": f"{index:02x}",
                "status": "finished",
                "binariesProcessed": binaries,
                "binariesCleaned": unreferenced,
                "bytesCleaned": nbytes,
                "timing": self._timing(begin, begin + pace),
            }
        return out


class JFrogSimulator:
    """Stateful Artifactory at ``/artifactory/api/…``; every knob may be set by a test between requests.

    The server runs in another thread: state lives behind ``self._lock``; the helpers below take it.
    """

    vendor = "jfrog"

    def __init__(self) -> None:
        self.faults = Faults()
        self._lock = threading.Lock()
        self._configure()
        self._forget()

    # Configuration and state

    def _configure(self) -> None:
        #: ``GET /artifactory/api/system/version``; gates days conditions, summaries, property filters.
        self.version: str = DEFAULT_VERSION
        self.revision: str = "71705900"
        self.addons: list[str] = ["build", "docker", "npm", "pypi", "replication"]
        #: Accepted bearer tokens and basic-auth users.
        self.tokens: set[str] = {"test-token"}
        self.users: dict[str, str] = {"admin": "password"}
        #: Tokens that authenticate but lack permission: 403.
        self.forbidden_tokens: set[str] = set()
        #: Seconds a policy run lasts.
        self.run_duration: float = 1.0
        self.max_concurrent_runs: int = 3
        #: Keys of policies whose runs end FAILED (deleting nothing).
        self.failing_policies: set[str] = set()
        #: Success status of create (real servers: 201, some 200/204).
        self.create_status: int = 201
        self.duplicate_key_status: int = 409
        self.running_refusal_status: int = 409
        #: Seconds the prune spends per filestore directory.
        self.prune_seconds_per_directory: float = 0.05
        #: A directory name (``"7f"``) where the prune ends with status ``error``.
        self.fail_prune_at_directory: str | None = None
        self.prune_error_message: str = (
            "Failed to prune directory {directory}: I/O error reading the filestore"
        )
        self.prune_directory_content: Callable[[int], tuple[int, int, int]] = directory_content
        #: Echo the vendor-doc sample's shape (server defaults for unset fields) instead of leaving
        #: unset optional fields out of policy answers (module docstring).
        self.echo_empty_defaults: bool = False
        #: Monotonic seconds; replace to drive time by hand.
        self.clock: Callable[[], float] = time.monotonic
        #: Seconds added to every wall-clock time the simulator reports (run and prune start times,
        #: and the times derived from them), to test a server clock that is off.
        self.wall_skew: float = 0.0

    def _forget(self) -> None:
        with self._lock:
            self._policies: dict[str, dict[str, Any]] = {}
            self._runs: dict[int, _Run] = {}
            self._next_run = 1
            self._remaining: dict[str, tuple[int, int, int]] = {}
            self._deleted: dict[str, tuple[int, int, int]] = {}
            self._prune: _Prune | None = None
            self._cleaned: set[int] = set()
            #: Prune starts accepted through the API.
            self.prune_starts = 0

    def reset(self) -> None:
        """Defaults and empty state (the ``faults`` object stays: the server's middleware holds it)."""
        self._configure()
        self._forget()

    # Helpers for tests (thread-safe)

    def seed_policy(self, policy: Mapping[str, Any]) -> dict[str, Any]:
        """Store ``policy`` as is, without validation; returns what ``GET`` answers for it."""
        stored = copy.deepcopy(dict(policy))
        stored.setdefault("enabled", False)
        with self._lock:
            self._policies[str(stored["key"])] = stored
            return self._echo(stored)

    @property
    def policies(self) -> dict[str, dict[str, Any]]:
        """Every policy by key, as ``GET`` answers it (copies)."""
        with self._lock:
            return {key: self._echo(p) for key, p in self._policies.items()}

    def policy(self, key: str) -> dict[str, Any] | None:
        """The policy as ``GET`` answers it (a copy), None when missing."""
        with self._lock:
            found = self._policies.get(key)
            return self._echo(found) if found is not None else None

    def set_run_result(self, key: str, packages: int, versions: int, nbytes: int) -> None:
        """What the next runs of ``key`` delete (a real run consumes it)."""
        with self._lock:
            self._remaining[key] = (packages, versions, nbytes)

    def set_running(self, key: str, seconds: float | None = None, dry_run: bool = False) -> int:
        """Start a run of ``key`` directly (no enabled or limit checks); ``seconds=None``: until stopped."""
        with self._lock:
            if key not in self._policies:
                raise KeyError(key)
            return self._start_run(key, dry_run, seconds).run_id

    def run_summaries(self, key: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            now = self.clock()
            self._settle(now)
            runs = [r for r in self._runs.values() if key is None or r.policy_key == key]
            return [r.summary(now) for r in sorted(runs, key=lambda r: -r.run_id)]

    def deleted(self, key: str) -> tuple[int, int, int]:
        """(packages, versions, bytes) that real runs of ``key`` deleted so far."""
        with self._lock:
            self._settle(self.clock())
            return self._deleted.get(key, (0, 0, 0))

    def start_prune(self, dry_run: bool = False, start_from_directory: str = "00") -> None:
        """Seed a running prune as if someone else had started it (not counted in ``prune_starts``)."""
        with self._lock:
            now = self.clock()
            self._settle(now)
            self._begin_prune(dry_run, int(start_from_directory, 16), now)

    def prune_status(self) -> dict[str, Any] | None:
        """The body ``GET …/prune/status`` would answer; None for its 412."""
        with self._lock:
            now = self.clock()
            self._settle(now)
            return self._prune.body(now) if self._prune is not None else None

    @property
    def cleaned_directories(self) -> list[str]:
        """Directories a real prune emptied of unreferenced binaries."""
        with self._lock:
            self._settle(self.clock())
            return [f"{i:02x}" for i in sorted(self._cleaned)]

    # Internals (call with the lock held)

    def _echo(self, stored: Mapping[str, Any]) -> dict[str, Any]:
        """A stored policy as the server answers it (a copy), in the shape :attr:`echo_empty_defaults` picks."""
        out = copy.deepcopy(dict(stored))
        if self.echo_empty_defaults:
            _fill_defaults(out)
        return out

    def _wall(self) -> float:
        """The server's wall-clock time: the host's, shifted by :attr:`wall_skew`."""
        return time.time() + self.wall_skew

    def _start_run(self, key: str, dry_run: bool, duration: float | None) -> _Run:
        now = self.clock()
        if key not in self._remaining:
            self._remaining[key] = default_run_result(key)
        packages, versions, nbytes = self._remaining[key]
        run = _Run(
            run_id=self._next_run,
            policy_key=key,
            dry_run=dry_run,
            started=now,
            started_wall=self._wall(),
            duration=duration,
            packages=packages,
            versions=versions,
            bytes=nbytes,
            fails=key in self.failing_policies,
        )
        self._runs[run.run_id] = run
        self._next_run += 1
        return run

    def _settle(self, now: float) -> None:
        """Book what ended runs and prunes deleted (state is computed lazily from timestamps)."""
        for run in self._runs.values():
            if run.settled or run.status(now) == "RUNNING":
                continue
            run.settled = True
            if run.dry_run:
                continue
            gone = run.counts(now)
            left = self._remaining.get(run.policy_key, (0, 0, 0))
            self._remaining[run.policy_key] = (
                max(0, left[0] - gone[0]),
                max(0, left[1] - gone[1]),
                max(0, left[2] - gone[2]),
            )
            done = self._deleted.get(run.policy_key, (0, 0, 0))
            self._deleted[run.policy_key] = (done[0] + gone[0], done[1] + gone[1], done[2] + gone[2])
        prune = self._prune
        if prune is not None and not prune.settled and prune.state(now)[0] != "running":
            prune.settled = True
            if not prune.dry_run:
                self._cleaned.update(prune.handled_indexes(now))

    def _running(self, now: float) -> list[_Run]:
        return [r for r in self._runs.values() if r.status(now) == "RUNNING"]

    def _begin_prune(self, dry_run: bool, start_index: int, now: float) -> None:
        fail = self.fail_prune_at_directory
        self._prune = _Prune(
            dry_run=dry_run,
            start_index=start_index,
            started=now,
            started_wall=self._wall(),
            pace=self.prune_seconds_per_directory,
            fail_index=int(fail, 16) if fail else None,
            error_message=self.prune_error_message,
            cleaned_before=frozenset(self._cleaned),
            content=self.prune_directory_content,
        )

    # HTTP

    def add_routes(self, app: web.Application) -> None:
        r = app.router
        r.add_get(f"{API}/system/version", self._wrap(self._version))
        r.add_post(USAGE, self._wrap(self._usage))
        r.add_get(POLICIES, self._wrap(self._list))
        r.add_get(POLICIES + "/{key}", self._wrap(self._get))
        r.add_post(POLICIES + "/{key}", self._wrap(self._create))
        r.add_put(POLICIES + "/{key}", self._wrap(self._update))
        r.add_delete(POLICIES + "/{key}", self._wrap(self._delete))
        r.add_post(POLICIES + "/{key}/enablement", self._wrap(self._enablement))
        r.add_put(POLICIES + "/{key}/run", self._wrap(self._run))
        r.add_get(RUNS + "/summaryReports", self._wrap(self._summaries))
        r.add_put(RUNS + "/{runId}", self._wrap(self._stop_run))
        r.add_post(PRUNE + "/start", self._wrap(self._prune_start))
        r.add_get(PRUNE + "/status", self._wrap(self._prune_status))
        r.add_post(PRUNE + "/stop", self._wrap(self._prune_stop))

    def is_telemetry(self, method: str, path: str) -> bool:
        """The usage reports JFrog's clients send: logged as telemetry, never faulted."""
        return method == "POST" and path.rstrip("/").endswith(USAGE)

    def _wrap(self, action: Action) -> Handler:
        """Authenticate, read the JSON body, then run ``action`` under the lock."""

        async def handler(request: web.Request) -> web.StreamResponse:
            denied = self._authenticate(request.headers.get("Authorization", ""))
            if denied is not None:
                return denied
            body: Any = None
            raw = await request.read()  # cached: the call-log middleware read it first
            if raw.strip():
                try:
                    body = json.loads(raw)
                except ValueError:
                    return _error(400, "Invalid JSON in the request body")
            with self._lock:
                self._settle(self.clock())
                try:
                    return action(request, body)
                except _Invalid as exc:
                    return _error(400, str(exc))

        return handler

    def _authenticate(self, header: str) -> web.Response | None:
        with self._lock:
            tokens, forbidden, users = set(self.tokens), set(self.forbidden_tokens), dict(self.users)
        scheme, _, credentials = header.partition(" ")
        credentials = credentials.strip()
        if scheme.lower() == "bearer":
            if credentials in forbidden:
                return _error(403, "Forbidden: the token lacks the permissions this call needs")
            if credentials in tokens:
                return None
        elif scheme.lower() == "basic":
            try:
                user, _, password = base64.b64decode(credentials, validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                return _error(401, "Bad credentials")
            if user in users and users[user] == password:
                return None
        return _error(401, "Bad credentials")

    def _version(self, request: web.Request, body: Any) -> web.Response:
        return web.json_response(
            {"version": self.version, "revision": self.revision, "addons": list(self.addons)}
        )

    def _usage(self, request: web.Request, body: Any) -> web.Response:
        """``POST …/system/usage`` ({"productId", "features": [{"featureId"}]}): accepted, kept nowhere."""
        return web.json_response({}, status=200)

    # Policies

    def _list(self, request: web.Request, body: Any) -> web.Response:
        project = request.query.get("projectKey")
        found = [p for p in self._policies.values() if not project or p.get("projectKey") == project]
        return web.json_response([self._echo(p) for p in found])

    def _get(self, request: web.Request, body: Any) -> web.Response:
        key = request.match_info["key"]
        if key not in self._policies:
            return _not_found(key)
        return web.json_response(self._echo(self._policies[key]))

    def _create(self, request: web.Request, body: Any) -> web.Response:
        key = request.match_info["key"]
        policy = self._validate(key, body, creating=True)
        if key in self._policies:
            return _error(self.duplicate_key_status, f"Policy with key '{key}' already exists")
        self._policies[key] = policy
        if self.create_status == 204:
            return web.Response(status=204)
        return web.json_response(self._echo(policy), status=self.create_status)

    def _update(self, request: web.Request, body: Any) -> web.Response:
        key = request.match_info["key"]
        if key not in self._policies:
            return _not_found(key)
        policy = self._validate(key, body, creating=False)
        if self._policy_running(key):
            return _error(
                self.running_refusal_status,
                f"Policy '{key}' is currently running and cannot be updated; try again when the run ends",
            )
        policy["enabled"] = self._policies[key].get("enabled", False)
        self._policies[key] = policy
        return web.json_response(self._echo(policy))

    def _delete(self, request: web.Request, body: Any) -> web.Response:
        key = request.match_info["key"]
        if key not in self._policies:
            return _not_found(key)
        if self._policy_running(key):
            return _error(
                self.running_refusal_status,
                f"Policy '{key}' is currently running and cannot be deleted; stop the run or try again later",
            )
        del self._policies[key]
        return web.Response(status=200)

    def _enablement(self, request: web.Request, body: Any) -> web.Response:
        key = request.match_info["key"]
        if key not in self._policies:
            return _not_found(key)
        if not isinstance(body, dict) or not isinstance(body.get("enabled"), bool):
            raise _Invalid('The request body must be {"enabled": true|false}')
        self._policies[key]["enabled"] = body["enabled"]
        return web.Response(status=204)

    def _policy_running(self, key: str) -> bool:
        now = self.clock()
        return any(r.policy_key == key for r in self._running(now))

    # Runs

    def _run(self, request: web.Request, body: Any) -> web.Response:
        key = request.match_info["key"]
        if key not in self._policies:
            return _not_found(key)
        dry = request.query.get("dryRun", "").lower()
        if dry not in ("true", "false"):
            raise _Invalid("The dryRun query parameter must be true or false")
        if not self._policies[key].get("enabled"):
            raise _Invalid(f"Policy '{key}' is disabled: a disabled policy cannot run; enable it first")
        if self._policy_running(key):
            return _error(409, f"Policy '{key}' is already running")
        running = self._running(self.clock())
        if len(running) >= self.max_concurrent_runs:
            return _error(
                409,
                f"At most {self.max_concurrent_runs} cleanup policies can run concurrently;"
                f" {len(running)} are running. Try again later",
            )
        run = self._start_run(key, dry == "true", self.run_duration)
        return web.json_response({"runId": run.run_id}, status=201)

    def _stop_run(self, request: web.Request, body: Any) -> web.Response:
        text = request.match_info["runId"]
        if not text.isdigit():
            raise _Invalid(f"Invalid run id '{text}'")
        if not isinstance(body, dict) or body.get("action") != "stop":
            raise _Invalid('Unsupported action: the request body must be {"action": "stop"}')
        run = self._runs.get(int(text))
        if run is None:
            return _error(404, f"Run {text} not found")
        now = self.clock()
        status = run.status(now)
        if status != "RUNNING":
            return _error(409, f"Run {text} is not running (status {status})")
        run.stopped_at = now
        return web.json_response({"info": f"Run {text} is stopping"}, status=202)

    def _summaries(self, request: web.Request, body: Any) -> web.Response:
        if _version(self.version) < SUMMARIES_VERSION:
            return _error(404, "Not Found")
        key = request.query.get("policyKey")
        if not key:
            raise _Invalid("The policyKey query parameter is mandatory")
        trigger = request.query.get("triggerId")
        now = self.clock()
        runs = sorted(
            (
                r
                for r in self._runs.values()
                if r.policy_key == key and (not trigger or str(r.run_id) == trigger)
            ),
            key=lambda r: -r.run_id,
        )
        return web.json_response([r.summary(now) for r in runs])

    # Prune unreferenced data

    def _prune_start(self, request: web.Request, body: Any) -> web.Response:
        if body is None:
            body = {}
        if not isinstance(body, dict):
            raise _Invalid("The request body must be a JSON object")
        dry = body.get("dryRun", False)
        if not isinstance(dry, bool):
            raise _Invalid("dryRun must be true or false")
        start = body.get("startFromDirectory")
        if start is not None and (not isinstance(start, str) or not HEX_DIRECTORY.match(start.lower())):
            raise _Invalid("startFromDirectory must be a filestore directory name, 00 to ff")
        binary = body.get("startFromBinary")
        if binary is not None and (not isinstance(binary, str) or not SHA1.match(binary.lower())):
            raise _Invalid("startFromBinary must be the SHA-1 checksum of a binary (40 hex characters)")
        days = body.get("binaryOlderThanDays", 1)
        if isinstance(days, bool) or not isinstance(days, int) or days < 0:
            raise _Invalid("binaryOlderThanDays must be a whole number of days, 0 or more")
        now = self.clock()
        if self._prune is not None and self._prune.state(now)[0] == "running":
            return _info(412, "Prune task is already running")
        self._begin_prune(dry, int(start, 16) if start else 0, now)
        self.prune_starts += 1
        return _info(202, f"Prune unreferenced data {'dry run ' if dry else ''}started")

    def _prune_status(self, request: web.Request, body: Any) -> web.Response:
        if self._prune is None:
            return _info(412, "No Prune task found")
        return web.json_response(self._prune.body(self.clock()))

    def _prune_stop(self, request: web.Request, body: Any) -> web.Response:
        now = self.clock()
        if self._prune is None or self._prune.state(now)[0] != "running":
            return _info(412, "No running Prune task found")
        self._prune.stopped_at = now
        return _info(202, "Prune task stopped")

    # Validation

    def _validate(self, key: str, body: Any, *, creating: bool) -> dict[str, Any]:
        """The server's rules (vendor-api-notes.md, "Policy rules"); returns the stored form."""
        if not isinstance(body, dict):
            raise _Invalid("The request body must be a JSON object describing the policy")
        body_key = body.get("key", key)
        if body_key != key:
            raise _Invalid(
                f"Policy key in the body ('{body_key}') does not match the key in the path ('{key}')"
            )
        if len(key) < 3 or not KEY_PATTERN.match(key):
            raise _Invalid("Policy key must be at least 3 characters of letters, digits, '_' or '-'")
        project = body.get("projectKey")
        if project is not None and not isinstance(project, str):
            raise _Invalid("projectKey must be a string")
        if project and not key.startswith(f"{project}-"):
            raise _Invalid(f"A project-level policy key must start with the project key: '{project}-'")
        description = _typed(body, "description", str)
        if description is not None and len(description) > 256:
            raise _Invalid("Description must not exceed 256 characters")
        cron = _typed(body, "cronExp", str)
        if cron and (problem := _quartz_problem(cron)):
            raise _Invalid(f"Invalid cron expression '{cron}': {problem}")
        duration = _typed(body, "durationInMinutes", int)
        if duration is not None and duration < 0:
            raise _Invalid("durationInMinutes must be 0 or more")
        enabled = _typed(body, "enabled", bool)
        skip = _typed(body, "skipTrashcan", bool)
        criteria = body.get("searchCriteria")
        if not isinstance(criteria, dict):
            raise _Invalid("searchCriteria is mandatory")
        stored_criteria = self._validate_criteria(criteria, project=bool(project))
        if creating and enabled:
            raise _Invalid("A policy must be created disabled (enabled: false); enable it afterwards")
        policy: dict[str, Any] = {"key": key}
        for name, value in (("description", description), ("cronExp", cron), ("durationInMinutes", duration)):
            if value is not None:
                policy[name] = value
        policy["enabled"] = bool(enabled)
        if skip is not None:
            policy["skipTrashcan"] = skip
        policy["searchCriteria"] = stored_criteria
        if project:
            policy["projectKey"] = project
        return policy

    def _validate_criteria(self, criteria: dict[str, Any], *, project: bool) -> dict[str, Any]:
        lists = {name: _string_list(criteria, name) for name in _LIST_FIELDS}
        ints = {name: _typed(criteria, name, int) for name in _INT_FIELDS}
        include_all = _typed(criteria, "includeAllProjects", bool)
        props = {name: _properties(criteria, name) for name in ("includedProperties", "excludedProperties")}
        for name, value in ints.items():
            if value is not None and value < 0:
                raise _Invalid(f"{name} must be 0 or more")
        if not lists["packageTypes"]:
            raise _Invalid("You must enter at least one package type")
        if not lists["repos"]:
            raise _Invalid(
                "Specifying at least one repository pattern or explicit repository name is mandatory"
            )
        if len(lists["includedPackages"] or []) != 1:
            raise _Invalid(
                "includedPackages is mandatory and takes only one pattern or explicit name; to include all"
                ' packages, use "**"'
            )
        patterns = [p for p in lists["excludedPackages"] or [] if any(c in p for c in "*?")]
        if patterns:
            raise _Invalid(f"excludedPackages accepts only explicit names (and not patterns): {patterns[0]}")
        version = _version(self.version)
        for name in ("createdBeforeInDays", "lastDownloadedBeforeInDays"):
            if ints[name] is not None and version < DAYS_VERSION:
                raise _Invalid(
                    f"{name} is not supported by Artifactory {self.version}; it needs 7.111.2 or later"
                )
        for name, value in props.items():
            if value is not None and version < PROPERTIES_VERSION:
                raise _Invalid(
                    f"{name} is not supported by Artifactory {self.version}; it needs 7.129 or later"
                )
        for months, days in (
            ("createdBeforeInMonths", "createdBeforeInDays"),
            ("lastDownloadedBeforeInMonths", "lastDownloadedBeforeInDays"),
        ):
            if ints[months] and ints[days]:
                raise _Invalid(f"{months} and {days} cannot be used together: use months or days")
        time_conditions = [n for n in _INT_FIELDS if n != "keepLastNVersions" and ints[n]]
        keep = ints["keepLastNVersions"]
        if not time_conditions and not keep:
            raise _Invalid(
                "A policy must use one of the three settings: createdBeforeInMonths,"
                " lastDownloadedBeforeInMonths, or keepLastNVersions"
            )
        if keep and time_conditions:
            raise _Invalid(
                "createdBeforeInMonths and lastDownloadedBeforeInMonths can be used together, but they"
                " cannot be used with keepLastNVersions"
            )
        for name, value in props.items():
            if value is not None and (len(value) != 1 or any(len(v) != 1 for v in value.values())):
                raise _Invalid(f"{name} takes one property key with one value")
        if project and (include_all or lists["includedProjects"]):
            raise _Invalid(
                "includeAllProjects and includedProjects are relevant only on the global level,"
                " for platform admins"
            )
        # What was sent, in the documented order; unset (absent or null) fields stay out.
        stored: dict[str, Any] = {}
        for name, value in (
            *((n, lists[n]) for n in ("packageTypes", "repos", "excludedRepos", "includedPackages")),
            ("excludedPackages", lists["excludedPackages"]),
            ("includeAllProjects", include_all),
            ("includedProjects", lists["includedProjects"]),
            *ints.items(),
            *props.items(),
        ):
            if value is not None:
                stored[name] = value
        return stored


_QUARTZ_FIELD: Final = re.compile(r"[0-9*?,/LW#A-Za-z-]+")
_QUARTZ_RANGES: Final = (
    ("Seconds", 0, 59),
    ("Minutes", 0, 59),
    ("Hours", 0, 23),
    ("Day-of-Month", 1, 31),
    ("Month", 1, 12),
    ("Day-of-Week", 1, 7),
)


def _quartz_problem(cron: str) -> str | None:
    """Quartz's CronExpression rules (docs/vendor-rules.md says which are checked and why)."""
    fields = cron.split()
    if len(fields) not in (6, 7):
        return "a Quartz expression has 6 or 7 fields"
    if not all(_QUARTZ_FIELD.fullmatch(f) for f in fields):
        return "illegal characters in a field"
    if sum("?" in f for f in fields) != 1 or (fields[3] == "?") == (fields[5] == "?"):
        return "'?' can only be specified for Day-of-Month -OR- Day-of-Week, and one of them needs it"
    for text, (name, lo, hi) in zip(fields, _QUARTZ_RANGES, strict=False):
        if any(not lo <= int(n) <= hi for n in re.findall(r"[0-9]+", text.split("/")[0])):
            return f"{name} values must be between {lo} and {hi}"
    return None


def _not_found(key: str) -> web.Response:
    return _error(404, f"Policy '{key}' not found")


def _typed(body: Mapping[str, Any], name: str, kind: type[Any]) -> Any:
    """``body[name]`` when it is of ``kind`` (or null/absent); 400 otherwise. Booleans are not ints."""
    value = body.get(name)
    if value is None:
        return None
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise _Invalid(f"{name} must be a whole number")
    if not isinstance(value, kind):
        raise _Invalid(f"{name} must be of type {kind.__name__}")
    return value


def _string_list(body: Mapping[str, Any], name: str) -> list[str] | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _Invalid(f"{name} must be a list of strings")
    return list(value)


def _properties(body: Mapping[str, Any], name: str) -> dict[str, list[str]] | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, dict) or not all(
        isinstance(v, list) and all(isinstance(x, str) for x in v) for v in value.values()
    ):
        raise _Invalid(f"{name} must map a property key to a list of values")
    return {str(k): list(v) for k, v in value.items()}


def _fill_defaults(policy: dict[str, Any]) -> None:
    """The defaults of the vendor-doc sample's shape, for fields the server was not sent."""
    for name, default in (
        ("description", ""),
        ("cronExp", ""),
        ("durationInMinutes", 0),
        ("enabled", False),
        ("skipTrashcan", False),
    ):
        policy.setdefault(name, default)
    criteria = policy.setdefault("searchCriteria", {})
    if isinstance(criteria, dict):
        for name in ("excludedRepos", "excludedPackages", "includedProjects"):
            criteria.setdefault(name, [])
        criteria.setdefault("includeAllProjects", False)
        for name in _MONTHS_DEFAULTS:
            criteria.setdefault(name, 0)
