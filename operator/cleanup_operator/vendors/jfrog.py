"""JFrog Artifactory: package cleanup policies, their runs, and the prune of unreferenced data (PUD).

Kubernetes-free and Kopf-free. Every call goes through :func:`.http.request`, so transport and status
failures arrive as the typed errors of :mod:`.errors`; this module adds a few more specific
subclasses (:class:`PolicyRunning`, :class:`PolicyExists`, :class:`RunLimitReached`,
:class:`PruneAlreadyRunning`).

Contract: ``vendor-docs/jfrog-*.txt`` (in the shared folder beside the repository) and the JFrog sections of ``vendor-api-notes.md``.
Where no public document fixes a shape, this module assumes the following, parses tolerantly
(unknown fields ignored, missing optional fields allowed), and the simulator
(:mod:`cleanup_operator.testing.simulators.jfrog`) follows the same note:

1. **Run summaries** (``GET /artifactory/api/cleanup/policies/runs/summaryReports``): the answer is a
   JSON array of run objects, or an object holding that array under one of ``summaries``,
   ``summaryReports``, ``runs``, ``reports``, ``results`` or ``items``. A run object has ``runId``
   (also read: ``id``), ``policyKey``, ``triggerId``, ``status`` (also read: ``state``), ``dryRun``,
   ``startedAt`` (also read: ``startTime``, ``start``), ``finishedAt`` (also read: ``endedAt``,
   ``endTime``, ``end``), ``packagesDeleted``, ``versionsDeleted`` and ``bytesDeleted`` (also read:
   ``deletedPackages``/``deletedVersions``/``deletedBytes``). Times are ISO 8601 UTC strings such as
   ``2026-01-02T03:04:05.000Z`` (epoch milliseconds are accepted and turned into such strings). The status words are ``RUNNING``,
   ``COMPLETED``, ``STOPPED`` and ``FAILED``; :attr:`RunSummary.state` maps them, and their likely
   synonyms, onto ``Running``/``Succeeded``/``Stopped``/``Failed`` and keeps any other word as is.
   In a dry run the counters say what *would* be deleted. ``triggerId`` is taken to be the run id
   that ``PUT …/run`` returned (as a string); newest run first.
2. **Refusals.** A change (update, delete) to a policy that is running is refused with 409 and a JFrog
   error body whose message says the policy is running; a 400 whose message mentions "running" is
   read the same way (:class:`PolicyRunning`). Creating a key that exists answers 409 (a 400 that
   says "already exists" is read the same way: :class:`PolicyExists`). A fourth concurrent run
   answers 409 with a message saying at most 3 policies run concurrently (:class:`RunLimitReached`);
   a run of a policy that is already running answers 409 (:class:`PolicyRunning`). A disabled
   policy's run answers 400 (:class:`.errors.RejectedError`). Stopping a run that is not running
   answers 409 (:class:`.errors.ConflictError`), an unknown run 404.
3. **Bodies of write calls.** Create answers 201 with the stored policy (200 or 204 accepted), update
   200 (204 accepted), delete 200 without a body, enablement 204 (200 accepted), stop-run 202. These
   bodies are never needed, so a 2xx answer whose body is not JSON still counts as success there.
4. **Server defaults.** The server echoes defaults for fields it was not sent (``excludedRepos: []``,
   ``keepLastNVersions: 0``, ``durationInMinutes: 0``, ``cronExp: ""`` …): 0, empty strings, empty
   lists, ``false`` and absent are the same thing for drift (:func:`normalise_policy`).
5. **Property filters** (``includedProperties``/``excludedProperties``, 7.129+) are objects mapping one
   property key to a list holding one value; a bare string value or a list of ``{"key", "value(s)"}``
   objects is accepted when reading.
6. **PUD.** ``progress`` counts the directory position reached ("N of 256"), so a prune started from
   directory ``80`` ends at "256 of 256". A status answer of 412 is read as "no prune task" whatever
   its text. In a dry run ``totalBinariesCleaned``/``totalBytesCleaned`` report what *would* be
   cleaned (the doc calls a dry run "an estimation of the number of prune-eligible binaries").
   ``error`` is a string; a structured value is kept as its JSON text.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping
from typing import Any, Final, TypeVar
from urllib.parse import quote

import httpx
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic.alias_generators import to_camel

from .errors import BadResponseError, ConflictError, RejectedError, VendorError
from .http import request

__all__ = [
    "DAYS_CONDITIONS",
    "PROPERTY_FILTERS",
    "PRUNE_DIRECTORIES",
    "RUN_SUMMARIES",
    "ArtifactoryVersion",
    "JFrogClient",
    "Policy",
    "PolicyExists",
    "PolicyRunning",
    "PruneAlreadyRunning",
    "PruneDirectory",
    "PruneReport",
    "PruneStatus",
    "PruneTiming",
    "RunLimitReached",
    "RunSummary",
    "SearchCriteria",
    "normalise_policy",
    "parse_version",
    "unsupported_features",
]

VENDOR: Final = "jfrog"
POLICIES: Final = "/artifactory/api/cleanup/packages/policies"
RUNS: Final = "/artifactory/api/cleanup/policies/runs"
PRUNE: Final = "/artifactory/api/system/storage/prune"
SYSTEM_VERSION: Final = "/artifactory/api/system/version"

#: The filestore's top-level directories, ``00`` … ``ff``.
PRUNE_DIRECTORIES: Final = 256

#: Minimum versions of the features a policy may use.
DAYS_CONDITIONS: Final = (7, 111, 2)
RUN_SUMMARIES: Final = (7, 117, 0)
PROPERTY_FILTERS: Final = (7, 129, 0)


# Errors ------------------------------------------------------------------------------------------


class PolicyRunning(ConflictError):
    """The policy is running: Artifactory refuses to change, delete or start it again until it ends."""

    reason = "PolicyRunning"


class PolicyExists(ConflictError):
    """A policy with this key already exists (a create raced another writer)."""

    reason = "AlreadyExists"


class RunLimitReached(ConflictError):
    """At most three policies run at once; try again when one ends."""

    reason = "RunLimitReached"


class PruneAlreadyRunning(ConflictError):
    """412 on ``POST …/prune/start``: a prune task is already running on this Artifactory."""

    reason = "PruneAlreadyRunning"


def _rebrand(exc: VendorError, cls: type[VendorError]) -> VendorError:
    """The same error, as a more specific class (chained by the caller with ``from``)."""
    return cls(
        exc.message,
        vendor=exc.vendor,
        status_code=exc.status_code,
        request_id=exc.request_id,
        details=exc.details,
    )


# Models ------------------------------------------------------------------------------------------


class _Model(BaseModel):
    """camelCase on the wire, snake_case in Python, unknown fields ignored."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    def payload(self) -> dict[str, Any]:
        """The body to send: camelCase, without unset optionals."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


def _as_properties(value: Any) -> Any:
    """Accept ``{"k": ["v"]}``, ``{"k": "v"}`` and ``[{"key": "k", "value(s)": …}]`` (assumption 5)."""
    if value is None:
        return None
    if isinstance(value, list):
        out: dict[str, list[str]] = {}
        for item in value:
            if isinstance(item, Mapping) and "key" in item:
                raw = item.get("values", item.get("value", []))
                out.setdefault(str(item["key"]), []).extend(
                    [str(v) for v in raw] if isinstance(raw, list) else [str(raw)]
                )
            else:
                return value  # let validation report the odd shape
        return out
    if isinstance(value, Mapping):
        return {str(k): ([str(x) for x in v] if isinstance(v, list) else [str(v)]) for k, v in value.items()}
    return value


class SearchCriteria(_Model):
    """A policy's ``searchCriteria``, every field of the vendor doc plus the newer ones."""

    package_types: list[str] = Field(default_factory=list)
    repos: list[str] = Field(default_factory=list)
    excluded_repos: list[str] | None = None
    included_packages: list[str] = Field(default_factory=list)
    excluded_packages: list[str] | None = None
    include_all_projects: bool | None = None
    included_projects: list[str] | None = None
    created_before_in_months: int | None = None
    last_downloaded_before_in_months: int | None = None
    keep_last_n_versions: int | None = None
    #: 7.111.2+
    created_before_in_days: int | None = None
    last_downloaded_before_in_days: int | None = None
    #: 7.129+: one property key with one value each.
    included_properties: dict[str, list[str]] | None = None
    excluded_properties: dict[str, list[str]] | None = None

    @field_validator("included_properties", "excluded_properties", mode="before")
    @classmethod
    def _properties(cls, value: Any) -> Any:
        return _as_properties(value)

    @field_validator(
        "package_types",
        "repos",
        "included_packages",
        "excluded_repos",
        "excluded_packages",
        "included_projects",
        mode="before",
    )
    @classmethod
    def _lists(cls, value: Any) -> Any:
        """A server that echoes ``null`` for a mandatory list still parses (as empty)."""
        return [] if value is None else value

    @property
    def uses_days(self) -> bool:
        return self.created_before_in_days is not None or self.last_downloaded_before_in_days is not None

    @property
    def uses_properties(self) -> bool:
        return bool(self.included_properties) or bool(self.excluded_properties)


class Policy(_Model):
    """A package cleanup policy as ``GET …/policies/{key}`` shows it (vendor-docs sample)."""

    key: str
    description: str | None = None
    cron_exp: str | None = None
    duration_in_minutes: int | None = None
    enabled: bool = False
    skip_trashcan: bool = False
    search_criteria: SearchCriteria = Field(default_factory=SearchCriteria)
    project_key: str | None = None

    @field_validator("enabled", "skip_trashcan", mode="before")
    @classmethod
    def _bool_default(cls, value: Any) -> Any:
        return False if value is None else value


_STATES: Final = {
    "running": "Running",
    "in_progress": "Running",
    "inprogress": "Running",
    "started": "Running",
    "pending": "Running",
    "completed": "Succeeded",
    "complete": "Succeeded",
    "finished": "Succeeded",
    "done": "Succeeded",
    "success": "Succeeded",
    "succeeded": "Succeeded",
    "stopped": "Stopped",
    "cancelled": "Stopped",
    "canceled": "Stopped",
    "aborted": "Stopped",
    "terminated": "Stopped",
    "failed": "Failed",
    "failure": "Failed",
    "error": "Failed",
    "timeout": "Failed",
    "timed_out": "Failed",
}


def _iso_from(value: Any) -> Any:
    """Epoch milliseconds → ISO 8601 UTC; strings and None pass through."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return value
    moment = dt.datetime.fromtimestamp(value / 1000, dt.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class RunSummary(_Model):
    """One run of a policy in the run summary report (shape: assumption 1 of the module docstring)."""

    run_id: int = Field(validation_alias=AliasChoices("runId", "run_id", "id"))
    policy_key: str | None = None
    trigger_id: str | None = None
    status: str | None = Field(None, validation_alias=AliasChoices("status", "state"))
    started_at: str | None = Field(
        None, validation_alias=AliasChoices("startedAt", "started_at", "startTime", "start")
    )
    finished_at: str | None = Field(
        None, validation_alias=AliasChoices("finishedAt", "finished_at", "endedAt", "endTime", "end")
    )
    dry_run: bool | None = None
    packages_deleted: int | None = Field(
        None, validation_alias=AliasChoices("packagesDeleted", "packages_deleted", "deletedPackages")
    )
    versions_deleted: int | None = Field(
        None, validation_alias=AliasChoices("versionsDeleted", "versions_deleted", "deletedVersions")
    )
    bytes_deleted: int | None = Field(
        None, validation_alias=AliasChoices("bytesDeleted", "bytes_deleted", "deletedBytes")
    )

    @field_validator("trigger_id", mode="before")
    @classmethod
    def _trigger_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) else value

    @field_validator("started_at", "finished_at", mode="before")
    @classmethod
    def _times(cls, value: Any) -> Any:
        return _iso_from(value)

    @property
    def state(self) -> str | None:
        """``Running``, ``Succeeded``, ``Stopped`` or ``Failed``; the vendor's own word when unknown."""
        if not self.status:
            return None
        return _STATES.get(self.status.strip().lower().replace("-", "_").replace(" ", "_"), self.status)

    @property
    def done(self) -> bool:
        return self.state in ("Succeeded", "Stopped", "Failed")


_VERSION: Final = re.compile(r"^\s*v?(\d+)(?:\.(\d+))?(?:\.(\d+))?")


def parse_version(text: str) -> tuple[int, int, int]:
    """``"7.111.2"`` → ``(7, 111, 2)``; suffixes (``-rc1``) are ignored, missing parts are 0.

    Raises ``ValueError`` for a text that does not start with a number.
    """
    match = _VERSION.match(text)
    if not match:
        raise ValueError(f"not an Artifactory version: {text!r}")
    major, minor, patch = (int(part) if part else 0 for part in match.groups())
    return major, minor, patch


class ArtifactoryVersion(_Model):
    """``GET /artifactory/api/system/version``: the version gates the newer policy features."""

    version: str
    revision: str | None = None
    addons: list[str] = Field(default_factory=list)

    @field_validator("revision", mode="before")
    @classmethod
    def _revision_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) else value

    @field_validator("addons", mode="before")
    @classmethod
    def _addons(cls, value: Any) -> Any:
        return [] if value is None else value

    @property
    def parts(self) -> tuple[int, int, int]:
        """The numeric version; (0, 0, 0) when the server reports something unreadable."""
        try:
            return parse_version(self.version)
        except ValueError:
            return (0, 0, 0)

    def at_least(self, minimum: tuple[int, ...]) -> bool:
        padded = tuple(minimum) + (0,) * (3 - len(minimum))
        return self.parts >= padded[:3]

    @property
    def supports_days_conditions(self) -> bool:
        return self.at_least(DAYS_CONDITIONS)

    @property
    def supports_run_summaries(self) -> bool:
        return self.at_least(RUN_SUMMARIES)

    @property
    def supports_property_filters(self) -> bool:
        return self.at_least(PROPERTY_FILTERS)


def _dotted(version: tuple[int, ...]) -> str:
    return ".".join(str(p) for p in version)


def unsupported_features(policy: Policy, version: ArtifactoryVersion) -> list[str]:
    """Messages for each feature ``policy`` uses that ``version`` lacks (empty when all is supported)."""
    criteria = policy.search_criteria
    problems: list[str] = []
    if criteria.uses_days and not version.supports_days_conditions:
        problems.append(
            f"createdBeforeInDays/lastDownloadedBeforeInDays need Artifactory {_dotted(DAYS_CONDITIONS)}+;"
            f" this server is {version.version}: use the months conditions"
        )
    if criteria.uses_properties and not version.supports_property_filters:
        problems.append(
            f"includedProperties/excludedProperties need Artifactory {_dotted(PROPERTY_FILTERS)}+;"
            f" this server is {version.version}"
        )
    return problems


class PruneTiming(_Model):
    started_at_millis: int | None = None
    started_at: str | None = None
    duration_millis: int | None = None
    duration: str | None = None
    last_updated_millis: int | None = None
    last_updated: str | None = None


class PruneReport(_Model):
    total_binaries_processed: int = 0
    total_binaries_cleaned: int = 0
    total_bytes_cleaned: int = 0


class PruneDirectory(_Model):
    name: str
    status: str | None = None
    binaries_processed: int = 0
    binaries_cleaned: int = 0
    bytes_cleaned: int = 0
    timing: PruneTiming | None = None


_PROGRESS: Final = re.compile(r"^\s*(\d+)\s*of\s*(\d+)\s*$")


class PruneStatus(_Model):
    """``GET …/storage/prune/status`` when a prune ran at least once (vendor-docs sample)."""

    status: str
    dry_run: bool = False
    timing: PruneTiming | None = None
    progress: str | None = None
    report: PruneReport | None = None
    last_handled_directory: PruneDirectory | None = None
    #: Present only when ``status`` is ``error``.
    error: str | None = None

    @field_validator("error", mode="before")
    @classmethod
    def _error_text(cls, value: Any) -> Any:
        if value is None or isinstance(value, str):
            return value
        return json.dumps(value, sort_keys=True)

    @field_validator("status", mode="before")
    @classmethod
    def _status_word(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @property
    def directories_done(self) -> int:
        """N of ``progress`` ("N of 256"); 0 when absent or unreadable."""
        match = _PROGRESS.match(self.progress or "")
        return int(match.group(1)) if match else 0

    @property
    def directories_total(self) -> int:
        match = _PROGRESS.match(self.progress or "")
        return int(match.group(2)) if match else PRUNE_DIRECTORIES

    @property
    def running(self) -> bool:
        return self.status == "running"


# Drift -------------------------------------------------------------------------------------------

_UNORDERED: Final = ("packageTypes", "repos", "excludedRepos", "excludedPackages", "includedProjects")


def _normal_criteria(criteria: SearchCriteria) -> dict[str, Any]:
    raw = criteria.model_dump(by_alias=True, mode="json")
    out: dict[str, Any] = {}
    for name, value in raw.items():
        if value is None or value is False or value == 0 or value == [] or value == {}:
            continue  # server-echoed defaults mean "not set" (assumption 4)
        if name in _UNORDERED:
            items = [str(v).strip() for v in value]
            if name == "packageTypes":
                items = [v.lower() for v in items]
            value = sorted(set(items))
        elif name in ("includedProperties", "excludedProperties"):
            value = {k: sorted(set(v)) for k, v in sorted(value.items())}
        out[name] = value
    return out


def normalise_policy(policy: Policy) -> dict[str, Any]:
    """A comparable form of ``policy``: equal for a desired policy and the server's echo of it.

    Server defaults (``durationInMinutes: 0``, ``keepLastNVersions: 0``, empty lists, empty strings,
    ``false``) are dropped, lists whose order carries no meaning are sorted, package types are
    lowercased and cron whitespace is collapsed. ``key`` and ``enabled`` are always present. Not a
    payload: only for comparison.
    """
    out: dict[str, Any] = {"key": policy.key, "enabled": policy.enabled}
    if policy.project_key:
        out["projectKey"] = policy.project_key
    if policy.description:
        out["description"] = policy.description
    cron = " ".join((policy.cron_exp or "").split())
    if cron:
        out["cronExp"] = cron
    if policy.duration_in_minutes:
        out["durationInMinutes"] = policy.duration_in_minutes
    if policy.skip_trashcan:
        out["skipTrashcan"] = True
    criteria = _normal_criteria(policy.search_criteria)
    if criteria:
        out["searchCriteria"] = criteria
    return out


# Client ------------------------------------------------------------------------------------------


def _segment(value: str | int) -> str:
    return quote(str(value), safe="")


_M = TypeVar("_M", bound=_Model)


def _model(cls: type[_M], body: Any, where: str) -> _M:
    try:
        return cls.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid"}
        at = ".".join(str(p) for p in first["loc"]) or "body"
        raise BadResponseError(
            f"{VENDOR}: {where} answered an unexpected shape ({cls.__name__}: {at}: {first['msg']})",
            vendor=VENDOR,
        ) from exc


def _items(body: Any, keys: tuple[str, ...]) -> list[Any] | None:
    """A JSON array, or the array held under one of ``keys`` of an object."""
    if isinstance(body, list):
        return body
    if isinstance(body, dict):
        for key in keys:
            if isinstance(body.get(key), list):
                return list(body[key])
    return None


def _mentions(exc: VendorError, *words: str) -> bool:
    """Whether the vendor's own words (not the ``jfrog: METHOD /path:`` prefix, which holds the key)
    contain one of ``words``."""
    text = exc.message.split(": ", 2)[-1].lower()
    return any(w in text for w in words)


class JFrogClient:
    """Artifactory REST calls for cleanup policies, their runs and the PUD.

    ``http`` is built by the caller with :func:`.http.make_client` (base URL = the platform URL
    without ``/artifactory``; credentials in its headers or auth) and shared across reconciles.
    """

    def __init__(self, http: httpx.AsyncClient) -> None:
        self._http = http

    async def _call(
        self, method: str, path: str, *, expect: tuple[int, ...] = (200, 201, 202, 204), **kwargs: Any
    ) -> tuple[httpx.Response, Any]:
        return await request(self._http, method, path, vendor=VENDOR, expect=expect, **kwargs)

    async def _write(self, method: str, path: str, *, expect: tuple[int, ...], **kwargs: Any) -> Any:
        """A call whose answer body is not needed: an unreadable 2xx body is still success (assumption 3)."""
        try:
            _, body = await self._call(method, path, expect=expect, **kwargs)
        except BadResponseError as exc:
            if exc.status_code is not None and 200 <= exc.status_code < 300:
                return None
            raise
        return body

    # System

    async def version(self) -> ArtifactoryVersion:
        _, body = await self._call("GET", SYSTEM_VERSION, expect=(200,))
        return _model(ArtifactoryVersion, body, f"GET {SYSTEM_VERSION}")

    # Policies

    async def list_policies(self, project_key: str | None = None) -> list[Policy]:
        params = {"projectKey": project_key} if project_key else None
        _, body = await self._call("GET", POLICIES, expect=(200,), params=params)
        items = _items(body, ("policies", "items", "results"))
        if items is None:
            raise BadResponseError(f"{VENDOR}: GET {POLICIES} answered no list of policies", vendor=VENDOR)
        return [_model(Policy, item, f"GET {POLICIES}") for item in items]

    async def get_policy(self, key: str) -> Policy:
        """The policy; :class:`.errors.NotFoundError` when there is none with this key."""
        path = f"{POLICIES}/{_segment(key)}"
        _, body = await self._call("GET", path, expect=(200,))
        return _model(Policy, body, f"GET {path}")

    async def create_policy(self, policy: Policy) -> None:
        """Create ``policy`` disabled (Artifactory refuses ``enabled: true`` on create).

        Enabling is the caller's next step, through :meth:`set_enabled`. Raises
        :class:`PolicyExists` when the key is taken, :class:`.errors.RejectedError` on validation errors.
        """
        path = f"{POLICIES}/{_segment(policy.key)}"
        body = policy.payload()
        body["enabled"] = False
        try:
            await self._write("POST", path, expect=(200, 201, 204), json=body)
        except (ConflictError, RejectedError) as exc:
            if isinstance(exc, ConflictError) or _mentions(exc, "already exist"):
                raise _rebrand(exc, PolicyExists) from exc
            raise

    async def update_policy(self, policy: Policy) -> None:
        """Replace the policy's body (``enabled`` changes only through :meth:`set_enabled`).

        Raises :class:`PolicyRunning` while the policy runs, :class:`.errors.NotFoundError` when it is
        gone, :class:`.errors.RejectedError` on validation errors.
        """
        path = f"{POLICIES}/{_segment(policy.key)}"
        try:
            await self._write("PUT", path, expect=(200, 204), json=policy.payload())
        except (ConflictError, RejectedError) as exc:
            raise self._running_refusal(exc) from exc

    async def delete_policy(self, key: str) -> None:
        """Raises :class:`.errors.NotFoundError` when there is no such policy (the caller decides
        whether that is fine) and :class:`PolicyRunning` while it runs."""
        path = f"{POLICIES}/{_segment(key)}"
        try:
            await self._write("DELETE", path, expect=(200, 202, 204))
        except (ConflictError, RejectedError) as exc:
            raise self._running_refusal(exc) from exc

    async def set_enabled(self, key: str, enabled: bool) -> None:
        path = f"{POLICIES}/{_segment(key)}/enablement"
        try:
            await self._write("POST", path, expect=(200, 202, 204), json={"enabled": enabled})
        except (ConflictError, RejectedError) as exc:
            raise self._running_refusal(exc) from exc

    @staticmethod
    def _running_refusal(exc: VendorError) -> VendorError:
        if isinstance(exc, ConflictError) and not isinstance(exc, PolicyRunning):
            return _rebrand(exc, PolicyRunning)
        if isinstance(exc, RejectedError) and _mentions(exc, "running"):
            return _rebrand(exc, PolicyRunning)
        return exc

    # Runs

    async def run_policy(self, key: str, dry_run: bool) -> int:
        """Start a run now and return its id.

        Raises :class:`.errors.RejectedError` for a disabled policy, :class:`PolicyRunning` when it
        already runs, :class:`RunLimitReached` when three policies run already.
        """
        path = f"{POLICIES}/{_segment(key)}/run"
        params = {"dryRun": "true" if dry_run else "false"}
        try:
            _, body = await self._call("PUT", path, expect=(200, 201, 202), params=params)
        except (ConflictError, RejectedError) as exc:
            if _mentions(exc, "concurrent", "at most 3", "maximum number of running"):
                raise _rebrand(exc, RunLimitReached) from exc
            if isinstance(exc, ConflictError) or _mentions(exc, "already running"):
                raise _rebrand(exc, PolicyRunning) from exc
            raise
        run_id = body.get("runId") if isinstance(body, dict) else None
        if isinstance(run_id, str) and run_id.isdigit():
            run_id = int(run_id)
        if not isinstance(run_id, int) or isinstance(run_id, bool):
            raise BadResponseError(f"{VENDOR}: PUT {path} answered no runId", vendor=VENDOR)
        return run_id

    async def stop_run(self, run_id: int) -> None:
        """Ask a run to stop (202).

        Raises :class:`.errors.NotFoundError` for an unknown run and :class:`.errors.ConflictError`
        for a run that is no longer running.
        """
        path = f"{RUNS}/{_segment(run_id)}"
        await self._write("PUT", path, expect=(200, 202, 204), json={"action": "stop"})

    async def run_summaries(self, policy_key: str, trigger_id: str | int | None = None) -> list[RunSummary]:
        """The policy's runs, newest first (Artifactory 7.117+; older servers answer 404 →
        :class:`.errors.NotFoundError`)."""
        path = f"{RUNS}/summaryReports"
        params: dict[str, str] = {"policyKey": policy_key}
        if trigger_id is not None:
            params["triggerId"] = str(trigger_id)
        _, body = await self._call("GET", path, expect=(200,), params=params)
        if body is None:
            return []
        items = _items(body, ("summaries", "summaryReports", "runs", "reports", "results", "items"))
        if items is None:
            raise BadResponseError(f"{VENDOR}: GET {path} answered no list of run summaries", vendor=VENDOR)
        return [_model(RunSummary, item, f"GET {path}") for item in items]

    # Prune unreferenced data

    async def prune_start(
        self,
        dry_run: bool,
        start_from_directory: str | None = None,
        start_from_binary: str | None = None,
        binary_older_than_days: int | None = None,
    ) -> str:
        """Start a prune; returns the server's ``info`` text. :class:`PruneAlreadyRunning` on 412."""
        path = f"{PRUNE}/start"
        body: dict[str, Any] = {"dryRun": dry_run}
        if start_from_directory is not None:
            body["startFromDirectory"] = start_from_directory
        if start_from_binary is not None:
            body["startFromBinary"] = start_from_binary
        if binary_older_than_days is not None:
            body["binaryOlderThanDays"] = binary_older_than_days
        response, answer = await self._call("POST", path, expect=(200, 202, 204, 412), json=body)
        info = str(answer.get("info") or "") if isinstance(answer, dict) else ""
        if response.status_code == 412:
            raise PruneAlreadyRunning(
                f"{VENDOR}: POST {path}: {info or 'a prune task is already running'}",
                vendor=VENDOR,
                status_code=412,
            )
        return info

    async def prune_status(self) -> PruneStatus | None:
        """The prune's status; ``None`` when no prune ever ran (412 "No Prune task found")."""
        path = f"{PRUNE}/status"
        response, body = await self._call("GET", path, expect=(200, 412))
        if response.status_code == 412:
            return None
        return _model(PruneStatus, body, f"GET {path}")

    async def prune_stop(self) -> bool:
        """Stop the running prune; ``False`` when none runs (412 "No running Prune task found")."""
        path = f"{PRUNE}/stop"
        try:
            response, _ = await self._call("POST", path, expect=(200, 202, 204, 412))
        except BadResponseError as exc:
            if exc.status_code is not None and 200 <= exc.status_code < 300:
                return True
            raise
        return response.status_code != 412
