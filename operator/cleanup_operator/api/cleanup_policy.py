"""CleanupPolicy: a JFrog Artifactory package cleanup policy, declared.

The CEL rules mirror the vendor's own validation (vendor-api-notes.md, "Policy rules") so that a bad
spec is refused at ``kubectl apply`` with the vendor's words, before anything reaches JFrog.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .common import (
    CommonStatus,
    Connection,
    Duration,
    KindInfo,
    Model,
    PrinterColumn,
    age_column,
    config,
    ready_column,
)

KEY_RULE = "key must be at least 3 characters of letters, digits, '_' or '-' (^[a-zA-Z0-9_-]+$)"
QUARTZ_PATTERN = r"^\s*[0-9*?,/LW#A-Za-z-]+(\s+[0-9*?,/LW#A-Za-z-]+){5,6}\s*$"
TIME_CONDITIONS = (
    "has(self.createdBeforeInMonths) || has(self.lastDownloadedBeforeInMonths)"
    " || has(self.createdBeforeInDays) || has(self.lastDownloadedBeforeInDays)"
)


def _cel(rule: str, message: str) -> dict[str, str]:
    return {"rule": rule, "message": message}


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
                "has(self.keepLastNVersions) || " + TIME_CONDITIONS,
                "a policy must use one of the three settings: createdBeforeInMonths,"
                " lastDownloadedBeforeInMonths, or keepLastNVersions",
            ),
            _cel(
                "!has(self.keepLastNVersions) || !(" + TIME_CONDITIONS + ")",
                "createdBeforeInMonths and lastDownloadedBeforeInMonths can be used together, but they"
                " cannot be used with keepLastNVersions",
            ),
            _cel(
                "!(has(self.createdBeforeInMonths) && has(self.createdBeforeInDays))",
                "createdBeforeInMonths and createdBeforeInDays cannot be mixed: use months or days",
            ),
            _cel(
                "!(has(self.lastDownloadedBeforeInMonths) && has(self.lastDownloadedBeforeInDays))",
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
        None, ge=0, description="Delete packages created more than this many months ago."
    )
    last_downloaded_before_in_months: int | None = Field(
        None, ge=0, description="Delete packages last downloaded more than this many months ago."
    )
    created_before_in_days: int | None = Field(
        None, ge=0, description="Like createdBeforeInMonths, in days (Artifactory 7.111.2+)."
    )
    last_downloaded_before_in_days: int | None = Field(
        None, ge=0, description="Like lastDownloadedBeforeInMonths, in days (Artifactory 7.111.2+)."
    )
    keep_last_n_versions: int | None = Field(
        None, ge=0, description="Keep this many latest versions; excludes the time conditions."
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
    poll_interval: str = Duration("10s", "How often a running run's summary is read.")


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
                "!has(self.cronExp) || self.cronExp == '' || self.cronExp.matches(r'" + QUARTZ_PATTERN + "')",
                "cronExp: a Quartz expression of 6 or 7 fields (seconds minutes hours day-of-month"
                " month day-of-week [year]), or empty for manual runs only",
            ),
            _cel(
                "!has(self.projectKey) || ((!has(self.searchCriteria.includeAllProjects)"
                " || !self.searchCriteria.includeAllProjects)"
                " && (!has(self.searchCriteria.includedProjects)"
                " || size(self.searchCriteria.includedProjects) == 0))",
                "includeAllProjects and includedProjects are relevant only on the global level, for"
                " platform admins: remove them from a project-level policy",
            ),
        ]
    )

    connection: Connection = Field(description="The Artifactory to manage the policy in.")
    policy_key: str | None = Field(
        None,
        max_length=255,
        description="The policy's key in Artifactory. Default: derived from metadata.name"
        " (prefixed with '<projectKey>-' for project policies).",
    )
    project_key: str | None = Field(
        None,
        max_length=64,
        pattern=r"^[a-z][a-z0-9-]*$",
        description="Makes this a project-level policy of that Artifactory project.",
    )
    description: str | None = Field(None, max_length=4096, description="At most 256 characters.")
    cron_exp: str | None = Field(
        None,
        max_length=128,
        description="Quartz cron expression (seconds first, '?' allowed); empty means manual runs only.",
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
    interval: str = Duration("10m", "How often drift is checked (with jitter).")
    on_demand_run: OnDemandRun = Field(
        default_factory=OnDemandRun, description="How runs requested with the requested-at annotation run."
    )


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
    message: str | None = Field(None, description="Why the run was refused or failed.")
    packages_deleted: int | None = Field(
        None, description="Packages deleted (or that would be, in a dry run)."
    )
    versions_deleted: int | None = Field(None, description="Versions deleted (or that would be).")
    bytes_deleted: int | None = Field(None, description="Bytes freed (or that would be).")


class CleanupPolicyStatus(CommonStatus):
    policy_key: str | None = Field(None, description="The key of the policy in Artifactory.")
    managed: bool | None = Field(
        None,
        description="Whether this resource created or adopted the policy (and so may change or delete it).",
    )
    enabled: bool | None = Field(None, description="Whether the policy is enabled in Artifactory.")
    last_synced_at: str | None = Field(None, description="When Artifactory last matched the spec.")
    drift_corrections: int = Field(0, description="How many times drift in Artifactory was corrected.")
    differences: list[str] | None = Field(None, description="Fields that differ from the spec (ObserveOnly).")
    last_run: LastRun | None = Field(None, description="The last run this resource requested.")


CLEANUP_POLICY = KindInfo(
    kind="CleanupPolicy",
    plural="cleanuppolicies",
    short_names=("cpol",),
    spec_model=CleanupPolicySpec,
    status_model=CleanupPolicyStatus,
    description="A JFrog Artifactory package cleanup policy, managed declaratively.",
    printer_columns=(
        PrinterColumn("Key", ".status.policyKey"),
        PrinterColumn("Enabled", ".status.enabled", type="boolean"),
        ready_column(),
        PrinterColumn("Last Run", ".status.lastRun.state"),
        age_column(),
    ),
)
