"""CleanupPolicy: a JFrog Artifactory package cleanup policy, declared.

The CEL rules mirror the vendor's own validation (vendor-api-notes.md, "Policy rules") so that a bad
spec is refused at ``kubectl apply`` with the vendor's words, before anything reaches JFrog.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator

from . import validation
from .common import (
    CommonStatus,
    Connection,
    Duration,
    KindInfo,
    Model,
    PendingApproval,
    PrinterColumn,
    Safety,
    Schedule,
    age_column,
    check_schedule,
    config,
    ready_column,
)
from .validation import INTERVAL, POLL_INTERVAL

KEY_RULE = "key must be at least 3 characters of letters, digits, '_' or '-' (^[a-zA-Z0-9_-]+$)"
QUARTZ_PATTERN = validation.QUARTZ_PATTERN
#: The conditions of a policy. Each counts only when set and greater than 0: JFrog echoes 0 for
#: unset ones (its own documented sample carries ``keepLastNVersions: 0`` beside two time conditions).
CONDITIONS = (
    "createdBeforeInMonths",
    "lastDownloadedBeforeInMonths",
    "keepLastNVersions",
    "createdBeforeInDays",
    "lastDownloadedBeforeInDays",
)


def _on(name: str) -> str:
    """CEL: condition ``name`` is in force (set and greater than 0; has() is true for an explicit 0)."""
    return f"(has(self.{name}) && self.{name} > 0)"


TIME_CONDITIONS = " || ".join(_on(n) for n in CONDITIONS if n != "keepLastNVersions")
IMMUTABLE = (
    "{field} is immutable (it names the Artifactory policy this resource manages): create a new resource"
    " instead (deleting this one follows its deletionPolicy)"
)
NAME_AS_KEY = (
    "metadata.name: without spec.policyKey the policy key is the name, which must then be made of"
    " letters, digits, '-' and '_' (so that no two names share a key): set spec.policyKey or use a name"
    " made of letters, digits, '-' and '_'"
)
NAME_TOO_SHORT = (
    "metadata.name: without spec.policyKey the policy key is the name, and a key has at least 3"
    " characters: set spec.policyKey or use a longer name"
)
NAME_HAS_PREFIX = (
    "metadata.name starts with '<projectKey>-': without spec.policyKey the key would be the name as it"
    " is, the same key a resource named without the prefix gets: set spec.policyKey"
)

_cel = validation.cel


def _unchanged(name: str) -> str:
    """CEL transition rule: optional field ``name`` neither appears, disappears nor changes."""
    return f"has(self.{name}) == has(oldSelf.{name}) && (!has(self.{name}) || self.{name} == oldSelf.{name})"


_LIST = {"max_length": 100}
_NAME = {"max_length": 256}


class SearchCriteria(Model):
    """Which packages the policy cleans up: JFrog's searchCriteria, field for field."""

    model_config = config(
        [
            _cel("size(self.packageTypes) >= 1", "packageTypes: you must enter at least one package type"),
            _cel(
                "size(self.repos) >= 1",
                "repos: specifying at least one pattern or explicit repository name is mandatory",
            ),
            _cel(
                "size(self.includedPackages) == 1",
                "includedPackages: only one pattern or explicit name can be entered; to include all"
                ' packages, use "**"',
            ),
            _cel(
                "!has(self.excludedPackages) || self.excludedPackages.all(p, !p.contains('*')"
                " && !p.contains('?'))",
                "excludedPackages: only explicit names (and not patterns) are accepted",
            ),
            _cel(
                _on("keepLastNVersions") + " || " + TIME_CONDITIONS,
                "a policy must use one of the three settings: createdBeforeInMonths,"
                " lastDownloadedBeforeInMonths, or keepLastNVersions (a condition counts when it is"
                " greater than 0)",
            ),
            _cel(
                "!" + _on("keepLastNVersions") + " || !(" + TIME_CONDITIONS + ")",
                "createdBeforeInMonths and lastDownloadedBeforeInMonths can be used together, but they"
                " cannot be used with keepLastNVersions",
            ),
            _cel(
                "!(" + _on("createdBeforeInMonths") + " && " + _on("createdBeforeInDays") + ")",
                "createdBeforeInMonths and createdBeforeInDays cannot be mixed: use months or days",
            ),
            _cel(
                "!(" + _on("lastDownloadedBeforeInMonths") + " && " + _on("lastDownloadedBeforeInDays") + ")",
                "lastDownloadedBeforeInMonths and lastDownloadedBeforeInDays cannot be mixed: use months"
                " or days",
            ),
            _cel(
                "!has(self.includedProperties) || (size(self.includedProperties) == 1"
                " && self.includedProperties.all(k, size(self.includedProperties[k]) == 1))",
                "includedProperties: one property key with one value",
            ),
            _cel(
                "!has(self.excludedProperties) || (size(self.excludedProperties) == 1"
                " && self.excludedProperties.all(k, size(self.excludedProperties[k]) == 1))",
                "excludedProperties: one property key with one value",
            ),
        ]
    )

    package_types: list[str] = Field(
        description="Package types the policy cleans up (docker, maven, npm, …). At least one.",
        json_schema_extra={"items": {"type": "string", "maxLength": 64}, "maxItems": 50},
    )
    repos: list[str] = Field(
        description="Repository names or patterns the policy runs on. At least one.",
        json_schema_extra={"items": {"type": "string", "maxLength": 256}, "maxItems": 100},
    )
    excluded_repos: list[str] | None = Field(
        None,
        description="Repository names or patterns excluded from the policy.",
        json_schema_extra={"items": {"type": "string", "maxLength": 256}, "maxItems": 100},
    )
    included_packages: list[str] = Field(
        description='Exactly one package name or pattern; "**" means all packages.',
        json_schema_extra={"items": {"type": "string", "maxLength": 256}, "maxItems": 10},
    )
    excluded_packages: list[str] | None = Field(
        None,
        description="Explicit package names (no patterns) excluded from the policy.",
        json_schema_extra={"items": {"type": "string", "maxLength": 256}, "maxItems": 100},
    )
    include_all_projects: bool | None = Field(
        None, description="Run on all Artifactory projects. Global (platform admin) policies only."
    )
    included_projects: list[str] | None = Field(
        None,
        description="Projects the policy runs on. Global (platform admin) policies only.",
        json_schema_extra={"items": {"type": "string", "maxLength": 64}, "maxItems": 100},
    )
    created_before_in_months: int | None = Field(
        None, ge=0, description="Delete packages created more than this many months ago (0 = not used)."
    )
    last_downloaded_before_in_months: int | None = Field(
        None,
        ge=0,
        description="Delete packages last downloaded more than this many months ago (0 = not used).",
    )
    created_before_in_days: int | None = Field(
        None, ge=0, description="Like createdBeforeInMonths, in days (Artifactory 7.111.2+; 0 = not used)."
    )
    last_downloaded_before_in_days: int | None = Field(
        None,
        ge=0,
        description="Like lastDownloadedBeforeInMonths, in days (Artifactory 7.111.2+; 0 = not used).",
    )
    keep_last_n_versions: int | None = Field(
        None,
        ge=0,
        description="Keep this many latest versions; excludes the time conditions (0 = not used).",
    )
    included_properties: dict[str, list[str]] | None = Field(
        None,
        description="Only packages with this property (one key, one value; Artifactory 7.129+).",
        json_schema_extra={
            "maxProperties": 10,
            "additionalProperties": {
                "type": "array",
                "maxItems": 10,
                "items": {"type": "string", "maxLength": 256},
            },
        },
    )
    excluded_properties: dict[str, list[str]] | None = Field(
        None,
        description="Skip packages with this property (one key, one value; Artifactory 7.129+).",
        json_schema_extra={
            "maxProperties": 10,
            "additionalProperties": {
                "type": "array",
                "maxItems": 10,
                "items": {"type": "string", "maxLength": 256},
            },
        },
    )


class OnDemandRun(Model):
    dry_run: bool = Field(
        True,
        description="Runs requested with the requested-at annotation are dry runs unless this is false.",
    )
    poll_interval: Annotated[str, POLL_INTERVAL] = Duration(
        "10s", "How often a running run's summary is read.", POLL_INTERVAL
    )


class CleanupPolicySpec(Model):
    model_config = config(
        [
            _cel(
                "!has(self.policyKey) || self.policyKey.matches('^[a-zA-Z0-9_-]{3,}$')",
                "policyKey: " + KEY_RULE,
            ),
            _cel(
                "!has(self.projectKey) || !has(self.policyKey)"
                " || self.policyKey.startsWith(self.projectKey + '-')",
                "policyKey: a project-level policy key starts with '<projectKey>-'",
            ),
            _cel(
                "!has(self.description) || size(self.description) <= 256",
                "description: at most 256 characters",
            ),
            _cel(
                "!has(self.projectKey) || ((!has(self.searchCriteria.includeAllProjects)"
                " || !self.searchCriteria.includeAllProjects)"
                " && (!has(self.searchCriteria.includedProjects)"
                " || size(self.searchCriteria.includedProjects) == 0))",
                "includeAllProjects and includedProjects are relevant only on the global level, for"
                " platform admins: remove them from a project-level policy",
            ),
            _cel(
                "!has(self.schedule) || !has(self.cronExp) || self.cronExp == ''",
                "cronExp (Artifactory runs it) and schedule (the operator runs it) would both start runs:"
                " set one of them",
            ),
            _cel(
                "!has(self.safety) || !has(self.cronExp) || self.cronExp == ''",
                "cronExp runs inside Artifactory, where nothing can hold a run for its dry run and budget:"
                " with spec.safety, remove cronExp and ask for runs with the requested-at annotation",
            ),
            _cel(_unchanged("policyKey"), IMMUTABLE.format(field="policyKey")),
            _cel(_unchanged("projectKey"), IMMUTABLE.format(field="projectKey")),
        ]
    )

    connection: Connection = Field(description="The Artifactory to manage the policy in.")
    policy_key: str | None = Field(
        None,
        max_length=255,
        description="The policy's key in Artifactory. Default: metadata.name (prefixed with"
        " '<projectKey>-' for project policies), which must then be made of letters, digits, '-' and '_'."
        " Immutable, and cannot be added or removed later.",
    )
    project_key: str | None = Field(
        None,
        max_length=64,
        pattern=r"^[a-z][a-z0-9-]*$",
        description="Makes this a project-level policy of that Artifactory project. Immutable.",
    )
    description: str | None = Field(None, max_length=4096, description="At most 256 characters.")
    cron_exp: str | None = Field(
        None,
        max_length=128,
        description="Quartz cron expression: seconds minutes hours day-of-month month day-of-week [year],"
        " with '?' in exactly one of day-of-month and day-of-week; empty means manual runs only.",
        json_schema_extra={"x-kubernetes-validations": validation.quartz_rules()},  # type: ignore[dict-item]
    )
    duration_in_minutes: int | None = Field(
        None, ge=0, description="Maximum duration of a run in minutes; 0 means no limit."
    )
    enabled: bool = Field(False, description="Whether the policy may run (on its schedule or on demand).")
    skip_trashcan: bool = Field(
        False, description="Delete permanently instead of moving packages to the Trash Can."
    )
    search_criteria: SearchCriteria = Field(description="Which packages the policy cleans up.")
    deletion_policy: Literal["Delete", "Orphan"] = Field(
        "Delete", description="What deleting this resource does to the Artifactory policy."
    )
    management_policy: Literal["Manage", "ObserveOnly"] = Field(
        "Manage",
        description="ObserveOnly never writes to Artifactory: it reports the policy and any difference.",
    )
    suspend: bool = Field(False, description="Stop reconciling without deleting anything.")
    interval: Annotated[str, INTERVAL] = Duration(
        "10m", "How often drift is checked (with jitter).", INTERVAL
    )
    on_demand_run: OnDemandRun = Field(
        default_factory=OnDemandRun, description="How runs requested with the requested-at annotation run."
    )
    schedule: str | None = Schedule(
        "The operator's own schedule for runs (five-field cron, UTC, or @hourly, @daily, @weekly,"
        " @monthly, @yearly): each tick asks for a run as requested-at does, through the same dry run,"
        " budget and approval with spec.safety. The operator must be running at the tick (missed ticks"
        " collapse into one run when it is back). Not with cronExp."
    )
    safety: Safety | None = Field(
        None,
        description="Guard rails for real runs (onDemandRun.dryRun: false): each starts with a dry run,"
        " and the real run follows only within this budget, or after cleanup.artifacts.dev/approve names"
        " that dry run. Not allowed with cronExp (Artifactory's own schedule cannot be held).",
    )

    _schedule = field_validator("schedule")(check_schedule)


class LastRun(Model):
    run_id: int | None = Field(None, description="Artifactory's run id.")
    dry_run: bool | None = Field(None, description="Whether the run only reported what it would delete.")
    started_at: str | None = Field(None, description="When the run started.")
    finished_at: str | None = Field(None, description="When the run finished.")
    state: str | None = Field(
        None,
        description="Starting, Running, Succeeded, Failed, Stopped or Refused (the vendor's word when it has one).",
    )
    requested_at: str | None = Field(None, description="The requested-at value this run answers.")
    scheduled_for: str | None = Field(None, description="The spec.schedule tick this run answers.")
    gate: bool | None = Field(
        None, description="This dry run decides whether the real run that was asked for may start."
    )
    allowed_by: str | None = Field(
        None, description="The dry run (its run id) whose figures, or approval, let this real run start."
    )
    previous_run_id: int | None = Field(
        None,
        description="While Starting: the newest run id Artifactory listed before the run was asked for"
        " (after a crash, only a newer run can be this one).",
    )
    message: str | None = Field(None, description="Why the run was refused or failed.")
    packages_deleted: int | None = Field(
        None, description="Packages deleted (or that would be, in a dry run)."
    )
    versions_deleted: int | None = Field(None, description="Versions deleted (or that would be).")
    bytes_deleted: int | None = Field(None, description="Bytes freed (or that would be).")


class PolicyIdentity(Model):
    url: str | None = Field(None, description="The Artifactory URL (lower case, without a trailing slash).")
    key: str = Field(description="The policy key.")


class OwnedPolicy(PolicyIdentity):
    origin: Literal["Created", "Adopted"] = Field(
        description="Created: Artifactory confirmed our create. Adopted: an explicit adopt annotation named it."
    )


class CreatePending(PolicyIdentity):
    digest: str = Field(description="Fingerprint of the policy body sent with the create.")
    since: str | None = Field(None, description="When the create was recorded, before it was sent.")


class CleanupPolicyStatus(CommonStatus):
    policy_key: str | None = Field(None, description="The key of the policy in Artifactory.")
    managed: bool | None = Field(
        None,
        description="Whether this resource created or adopted the policy (and so may change or delete it).",
    )
    owned_policy: OwnedPolicy | None = Field(
        None,
        description="The Artifactory policy this resource owns: only it is ever updated, run or deleted.",
    )
    create_pending: CreatePending | None = Field(
        None,
        description="A create sent to Artifactory but not yet confirmed (cleared by a 2xx or a refusal).",
    )
    adopted_policy: PolicyIdentity | None = Field(
        None, description="The policy this resource adopted; an adopt annotation is used once."
    )
    enabled: bool | None = Field(None, description="Whether the policy is enabled in Artifactory.")
    last_synced_at: str | None = Field(
        None,
        description="When Artifactory was last seen to match the spec: set by every write, and by a"
        " check that changes nothing at most once per the operator's --status-report-interval"
        " (default 1h), so an unchanged policy is not patched every interval.",
    )
    drift_corrections: int = Field(0, description="How many times drift in Artifactory was corrected.")
    differences: list[str] | None = Field(None, description="Fields that differ from the spec (ObserveOnly).")
    last_run: LastRun | None = Field(None, description="The last run this resource requested.")
    last_dry_run: LastRun | None = Field(
        None, description="The last dry run that gated a real run (spec.safety): what it would delete."
    )
    pending_approval: PendingApproval | None = Field(
        None, description="A real run held after its dry run, until approved (or a new request)."
    )
    last_approved_dry_run: str | None = Field(
        None, description="The dry run id the last approval started a real run for (used once)."
    )
    last_handled_approval: str | None = Field(
        None, description="The last value of the cleanup.artifacts.dev/approve annotation acted on."
    )
    last_schedule_time: str | None = Field(None, description="The last spec.schedule tick acted on.")


CLEANUP_POLICY = KindInfo(
    kind="CleanupPolicy",
    plural="cleanuppolicies",
    short_names=("cpol",),
    spec_model=CleanupPolicySpec,
    status_model=CleanupPolicyStatus,
    description="A JFrog Artifactory package cleanup policy, managed declaratively.",
    validations=(
        # On create only (optionalOldSelf): the name, spec.policyKey's presence and spec.projectKey
        # never change afterwards, and objects made before these rules keep working.
        {
            "rule": "oldSelf.hasValue() || has(self.spec.policyKey)"
            " || self.metadata.name.matches('^[a-zA-Z0-9_-]+$')",
            "message": NAME_AS_KEY,
            "optionalOldSelf": True,
        },
        {
            "rule": "oldSelf.hasValue() || has(self.spec.policyKey) || has(self.spec.projectKey)"
            " || size(self.metadata.name) >= 3",
            "message": NAME_TOO_SHORT,
            "optionalOldSelf": True,
        },
        {
            "rule": "oldSelf.hasValue() || has(self.spec.policyKey) || !has(self.spec.projectKey)"
            " || !self.metadata.name.startsWith(self.spec.projectKey + '-')",
            "message": NAME_HAS_PREFIX,
            "optionalOldSelf": True,
        },
    ),
    printer_columns=(
        PrinterColumn("Key", ".status.policyKey"),
        PrinterColumn("Enabled", ".status.enabled", type="boolean"),
        ready_column(),
        PrinterColumn("Last Run", ".status.lastRun.state"),
        PrinterColumn(
            "Dry Run Pkgs",
            ".status.lastDryRun.packagesDeleted",
            type="integer",
            description="Packages the last gating dry run would delete",
        ),
        PrinterColumn(
            "Dry Run Bytes",
            ".status.lastDryRun.bytesDeleted",
            type="integer",
            description="Bytes the last gating dry run would free",
        ),
        PrinterColumn(
            "Approval", ".status.pendingApproval.reason", description="A real run held for approval"
        ),
        age_column(),
    ),
)
