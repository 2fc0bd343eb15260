"""StoragePrune: JFrog's prune of unreferenced data (PUD), started and followed as a resource."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator

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
)
from .validation import POLL_INTERVAL

Phase = Literal["Scheduled", "Pending", "Waiting", "Running", "Succeeded", "Stopped", "Failed"]


class StoragePruneSpec(Model):
    connection: Connection = Field(
        description="The Artifactory whose filestore is pruned (admin credentials)."
    )
    dry_run: bool = Field(True, description="Only report what would be deleted. Deleting binaries is opt-in.")
    binary_older_than_days: int = Field(1, ge=0, description="Prune only binaries older than this many days.")
    start_from_directory: str | None = Field(
        None,
        pattern=r"^[0-9a-f]{2}$",
        description="Filestore directory to start from: two hex digits, 00 to ff.",
    )
    start_from_binary: str | None = Field(
        None, pattern=r"^[0-9a-f]{40}$", description="SHA-1 of the binary to start from (40 hex digits)."
    )
    schedule: str | None = Schedule(
        "Five-field cron schedule (UTC): minute hour day-of-month month day-of-week, or @hourly,"
        " @daily, @weekly, @monthly, @yearly. Without it the prune runs once."
    )
    suspend: bool = Field(False, description="Start no new prune (a running one is still followed).")
    stop_on_delete: bool = Field(True, description="Stop a running prune when this resource is deleted.")
    poll_interval: Annotated[str, POLL_INTERVAL] = Duration(
        "15s", "How often a running prune's status is read.", POLL_INTERVAL
    )
    history_limit: int = Field(5, ge=0, le=50, description="How many finished runs status.history keeps.")
    safety: Safety | None = Field(
        None,
        description="Guard rails for a real prune (dryRun: false): each starts with a dry-run prune, and the"
        " real one follows only within this budget (maxBytes; maxPackages counts binaries here), or after"
        " cleanup.artifacts.dev/approve names that dry run.",
    )

    _schedule = field_validator("schedule")(check_schedule)


class PruneReport(Model):
    binaries_processed: int = Field(0, description="Binaries examined so far.")
    binaries_cleaned: int = Field(0, description="Binaries deleted (or that would be, in a dry run).")
    bytes_cleaned: int = Field(0, description="Bytes reclaimed (or that would be).")
    reclaimed: str = Field("0 B", description="bytesCleaned, human-readable.")


class PruneRun(Model):
    """One finished prune, as kept in status.history."""

    phase: Phase = Field(description="How the run ended.")
    dry_run: bool | None = Field(None, description="Whether the run was a dry run.")
    started_at: str | None = Field(None, description="When the run started.")
    finished_at: str | None = Field(None, description="When the run was seen to end.")
    duration: str | None = Field(None, description="How long it ran.")
    binaries_cleaned: int = Field(0, description="Binaries deleted (or that would be).")
    bytes_cleaned: int = Field(0, description="Bytes reclaimed (or that would be).")
    error: str | None = Field(None, description="The vendor's error text, when it failed.")


class RealPending(Model):
    allowed_by: str = Field(description="The dry run (its Artifactory start time, ms) that allowed it.")


class GatingDryRun(Model):
    id: str = Field(description="The dry run's id for approvals: Artifactory's start time in milliseconds.")
    phase: str | None = Field(None, description="How the dry run ended.")
    started_at: str | None = Field(None, description="When it started.")
    finished_at: str | None = Field(None, description="When it was seen finished.")
    binaries_cleaned: int = Field(0, description="Binaries it would delete.")
    bytes_cleaned: int = Field(0, description="Bytes it would reclaim.")
    reclaimed: str | None = Field(None, description="The same, human-readable.")


class PruneBaseline(Model):
    started_at_millis: int | None = Field(None, description="Artifactory's start time of that prune.")
    none: bool | None = Field(None, description="True when Artifactory showed no prune at all.")


class StoragePruneStatus(CommonStatus):
    phase: Phase | None = Field(
        None,
        description="Scheduled (waiting for the first tick), Pending (a start asked for, not yet confirmed),"
        " Waiting, Running, Succeeded, Stopped or Failed.",
    )
    progress: str | None = Field(None, description='Directories processed: "N of 256".')
    percent: int | None = Field(None, description="Progress as a percentage.")
    report: PruneReport | None = Field(None, description="Counters of the current or last run.")
    last_handled_directory: str | None = Field(None, description="The filestore directory last handled.")
    started_at: str | None = Field(None, description="When the current or last run started.")
    duration: str | None = Field(None, description="How long the current or last run has run.")
    dry_run: bool | None = Field(None, description="Whether the current or last run is a dry run.")
    error: str | None = Field(None, description="The vendor's error text when the run failed.")
    started_by_us: bool | None = Field(None, description="Whether this resource started the current run.")
    run_started_for: str | None = Field(
        None, description="The request (creation, tick or annotation) the run serves."
    )
    pending_since: str | None = Field(
        None, description="When the start of the pending run was recorded, before asking Artifactory."
    )
    pending_baseline: PruneBaseline | None = Field(
        None,
        description="The prune Artifactory showed before ours was asked for: after a crash, only a newer"
        " prune can be ours (the vendor's clock is compared with itself, never with ours).",
    )
    unconfirmed: bool | None = Field(
        None,
        description="The prune followed began while ours was being started but Artifactory never confirmed"
        " ours: it is followed, not claimed, and not stopped on delete.",
    )
    last_schedule_time: str | None = Field(None, description="The last schedule tick acted on.")
    gate: bool | None = Field(None, description="The prune in progress is the dry run gating a real one.")
    allowed_by: str | None = Field(
        None, description="The dry run whose figures or approval allowed this prune."
    )
    real_pending: RealPending | None = Field(
        None, description="A real prune allowed by a dry run, about to start."
    )
    last_dry_run: GatingDryRun | None = Field(
        None, description="The last dry-run prune that gated a real one: what it would reclaim."
    )
    pending_approval: PendingApproval | None = Field(
        None, description="A real prune held after its dry run, until approved (or a new request)."
    )
    last_approved_dry_run: str | None = Field(
        None, description="The dry run id the last approval started a real prune for (used once)."
    )
    last_handled_approval: str | None = Field(
        None, description="The last value of the cleanup.artifacts.dev/approve annotation acted on."
    )
    history: list[PruneRun] = Field(default_factory=list, description="Finished runs, newest first.")


STORAGE_PRUNE = KindInfo(
    kind="StoragePrune",
    plural="storageprunes",
    short_names=("sprune",),
    spec_model=StoragePruneSpec,
    status_model=StoragePruneStatus,
    description="A prune of unreferenced binaries in a JFrog Artifactory filestore, with live progress.",
    printer_columns=(
        PrinterColumn("Phase", ".status.phase"),
        PrinterColumn("Progress", ".status.progress"),
        PrinterColumn("Reclaimed", ".status.report.reclaimed"),
        PrinterColumn("Dry Run", ".spec.dryRun", type="boolean"),
        PrinterColumn(
            "Dry Run Reclaims",
            ".status.lastDryRun.reclaimed",
            description="What the gating dry run would reclaim",
        ),
        PrinterColumn(
            "Approval", ".status.pendingApproval.reason", description="A real prune held for approval"
        ),
        age_column(),
    ),
)
