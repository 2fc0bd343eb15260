"""ArtifactStreamSync: keep an artifact inventory in step with its source (Harness or SourceCraft)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator

from .common import (
    BASE_URL_HELP,
    BASE_URL_PATTERN,
    CASecretRef,
    CommonStatus,
    Duration,
    KindInfo,
    Model,
    PrinterColumn,
    Schedule,
    SecretKeySelector,
    age_column,
    check_schedule,
    config,
    ready_column,
)
from .validation import INTERVAL


class HarnessSource(Model):
    url: str = Field(
        "https://app.harness.io",
        pattern=BASE_URL_PATTERN,
        max_length=2048,
        description="Harness base URL." + BASE_URL_HELP,
    )
    account_id: str = Field(min_length=1, max_length=128, description="Harness account id.")
    api_key_secret_ref: SecretKeySelector = Field(
        description="Secret key holding the Harness API key (x-api-key)."
    )
    ca_secret_ref: CASecretRef | None = Field(
        None, description="Optional CA bundle to trust for the URL's TLS (a private Harness)."
    )
    artifact_stream_ids: list[str] = Field(
        min_length=1,
        description="Artifact stream ids (UUIDs) to clean up. One or more, each once.",
        json_schema_extra={
            "items": {"type": "string", "minLength": 1, "maxLength": 128},
            "maxItems": 200,
            # A set: the API server refuses an id listed twice (it would be cleaned up twice a sync).
            "x-kubernetes-list-type": "set",
        },
    )


class SourceCraftSource(Model):
    model_config = config(
        [
            {
                "rule": "has(self.run) != (has(self.latestRun) && self.latestRun)",
                "message": "set either run or latestRun: true, not both and not neither",
            }
        ]
    )

    url: str = Field(
        "https://api.sourcecraft.tech",
        pattern=BASE_URL_PATTERN,
        max_length=2048,
        description="SourceCraft API base URL." + BASE_URL_HELP,
    )
    org: str = Field(min_length=1, max_length=128, description="Organization slug.")
    repo: str = Field(min_length=1, max_length=128, description="Repository slug.")
    run: str | None = Field(None, min_length=1, max_length=128, description="CI run slug.")
    latest_run: bool | None = Field(None, description="Use the repository's newest run.")
    workflow: str = Field(
        min_length=1, max_length=128, description="Workflow name as defined in the CI config."
    )
    task: str = Field(min_length=1, max_length=128, description="Task name as defined in the CI config.")
    cube: str = Field(min_length=1, max_length=128, description="Cube name as defined in the CI config.")
    token_secret_ref: SecretKeySelector = Field(
        description="Secret key holding a personal access token (Bearer)."
    )
    ca_secret_ref: CASecretRef | None = Field(
        None, description="Optional CA bundle to trust for the URL's TLS."
    )


class ArtifactStreamSyncSpec(Model):
    model_config = config(
        [
            {
                "rule": "has(self.harness) != has(self.sourceCraft)",
                "message": "exactly one source: set either harness or sourceCraft",
            }
        ]
    )

    harness: HarnessSource | None = Field(None, description="Clean up Harness artifact streams.")
    source_craft: SourceCraftSource | None = Field(
        None, description="Inventory a SourceCraft CI run's artifacts."
    )
    interval: Annotated[str, INTERVAL] = Duration(
        "10m", "How often to sync (with jitter), unless a schedule is set.", INTERVAL
    )
    schedule: str | None = Schedule(
        "Five-field cron schedule (UTC) instead of interval: minute hour day-of-month month day-of-week,"
        " or @hourly, @daily, @weekly, @monthly, @yearly."
    )
    suspend: bool = Field(False, description="Stop syncing without deleting anything.")

    _schedule = field_validator("schedule")(check_schedule)


StreamState = Literal["Succeeded", "Unsupported", "NotFound", "Failed"]
ArtifactStatus = Literal["registered", "success", "failed", "missing"]


class StreamResult(Model):
    id: str = Field(description="Artifact stream id.")
    state: StreamState = Field(description="Succeeded, Unsupported, NotFound or Failed.")
    message: str = Field("", description="Harness's message.")
    last_synced_at: str | None = Field(None, description="When this stream was last cleaned up.")


class ArtifactDates(Model):
    registered_at: str | None = None
    obtained_at: str | None = None
    updated_at: str | None = None


class InventoryArtifact(Model):
    """An artifact without its download URL, which is a temporary credential and never stored."""

    id: str = Field(description="Artifact id.")
    local_path: str = Field(description="Path as defined in the CI configuration.")
    status: ArtifactStatus = Field(description="registered, success, failed or missing.")
    dates: ArtifactDates | None = Field(None, description="Registration, acquisition and update times.")


class InventoryTotals(Model):
    registered: int = 0
    success: int = 0
    failed: int = 0
    missing: int = 0


class Inventory(Model):
    run: str | None = Field(None, description="The run the inventory is of.")
    run_status: str | None = Field(None, description="The run's status in SourceCraft.")
    totals: InventoryTotals = Field(default_factory=InventoryTotals, description="Artifacts by status.")
    artifacts: list[InventoryArtifact] = Field(default_factory=list, description="At most 100 artifacts.")
    truncated: bool = Field(False, description="Whether artifacts was capped at 100.")


class ArtifactStreamSyncStatus(CommonStatus):
    source: str | None = Field(None, description="harness or sourceCraft.")
    synced: str | None = Field(None, description="Streams succeeded or artifacts present, as 'N/M'.")
    last_synced_at: str | None = Field(None, description="When the source was last synced.")
    last_attempt_at: str | None = Field(
        None, description="When a sync last failed in a way retrying cannot fix."
    )
    streams: list[StreamResult] | None = Field(None, description="Per-stream results (Harness).")
    inventory: Inventory | None = Field(None, description="The run's artifacts (SourceCraft).")


ARTIFACT_STREAM_SYNC = KindInfo(
    kind="ArtifactStreamSync",
    plural="artifactstreamsyncs",
    short_names=("ass", "streamsync"),
    spec_model=ArtifactStreamSyncSpec,
    status_model=ArtifactStreamSyncStatus,
    description="Keeps an artifact inventory in step with its source: Harness artifact streams or SourceCraft CI runs.",
    printer_columns=(
        PrinterColumn("Source", ".status.source"),
        ready_column(),
        PrinterColumn("Synced", ".status.synced"),
        PrinterColumn("Last Sync", ".status.lastSyncedAt", type="date"),
        age_column(),
    ),
)
