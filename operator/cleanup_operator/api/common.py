"""Shapes shared by every kind: connections, Secret references, durations, conditions, kind metadata."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue
from pydantic.alias_generators import to_camel

from ..schedule import Cron, ScheduleError

# DURATION_PATTERN and parse_duration are re-exported: the reconcilers import them from here.
from .validation import DURATION_PATTERN as DURATION_PATTERN
from .validation import TIMEOUT, DurationRange, cron5_rules
from .validation import parse_duration as parse_duration

GROUP = "cleanup.artifacts.dev"
VERSION = "v1alpha1"
CATEGORY = "cleanup"

#: Annotation whose new value asks for a run (or prune) now. Its value must be a time (Unix seconds, as
#: ``date +%s`` prints, or RFC 3339) no older than the object: a request copied from Git or restored
#: from a backup onto a new object is not acted on again.
REQUESTED_AT = f"{GROUP}/requested-at"
#: Annotation whose new value asks for a harmless re-sync now (Flux's reconcile.fluxcd.io/requestedAt):
#: it never starts a run or a prune. "Retry" in the docs means this one.
RECONCILE_AT = f"{GROUP}/reconcile-at"
#: Annotation that lets a CleanupPolicy adopt a vendor policy that already exists under its key.
ADOPT = f"{GROUP}/adopt"
#: Annotation that lets an admin release the finalizer of a resource whose vendor stays unreachable.
FORCE_DELETE = f"{GROUP}/force-delete"
#: Written by the operator on a StoragePrune (without a schedule) whose one prune, asked for by its
#: creation, has been started: a copy restored from a backup keeps it, and does not prune again.
CREATION_SERVED = f"{GROUP}/creation-prune-started"
#: Annotation approving one dry run (its id) held for approval or over budget: one approval, one run.
APPROVE = f"{GROUP}/approve"
#: Written by the operator on a CleanupPolicy, in the same patch as its finalizer, before the create
#: POST: the identity and body fingerprint of the policy it is about to create (Crossplane's
#: external-create-pending). A policy found after a crash is ours only if it is exactly that body.
#: It gives nobody more than the adopt annotation already does, and it is ignored once
#: ``status.ownedPolicy`` records the answer.
CREATE_PENDING = f"{GROUP}/create-pending"
#: The finalizer guarding the vendor objects a resource owns (Kopf's, renamed to be visibly ours).
FINALIZER = f"{GROUP}/finalizer"
#: The label a Secret needs before the operator reads it (the Secret's owner opts in).
CREDENTIALS_LABEL = f"{GROUP}/credentials"

#: A vendor base URL: scheme, host, optional port and path prefix; no user info, query or fragment
#: (a credential must not ride in the URL, and a query would change what every call means).
BASE_URL_PATTERN = (
    r"^https?://([A-Za-z0-9.\-]+|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?(/[A-Za-z0-9._~!$&'()*+,;=:%/\-]*)?$"
)
BASE_URL_HELP = " A scheme, host, port and path prefix only: no user info, query or fragment."


def Duration(default: str, description: str, bounds: DurationRange) -> Any:
    """A Go-style duration field; annotate it ``Annotated[str, bounds]`` so the bounds are checked."""
    return Field(
        default,
        description=f"{description} A Go-style duration (such as 500ms, 30s, 10m, 1h30m) {bounds.text}.",
        pattern=DURATION_PATTERN,
        max_length=32,
    )


def config(validations: list[dict[str, str]] | None = None) -> ConfigDict:
    """Model config: camelCase on the wire; ``validations`` become the schema's CEL rules."""
    cfg = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")
    if validations:
        rules: list[JsonValue] = [dict(v) for v in validations]
        cfg["json_schema_extra"] = {"x-kubernetes-validations": rules}
    return cfg


class Model(BaseModel):
    """Base for our resource models: camelCase on the wire, snake_case in Python."""

    model_config = config()

    def dump(self) -> dict[str, Any]:
        """The wire form (camelCase, without unset optionals)."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class SecretRef(Model):
    """A Secret in the resource's own namespace holding an access token, or a username and password."""

    name: str = Field(description="Name of a Secret in the same namespace.", min_length=1, max_length=253)
    token_key: str = Field("token", description="Key of the access token (sent as a Bearer token).")
    username_key: str = Field(
        "username", description="Key of the user name, used when no token key is present."
    )
    password_key: str = Field("password", description="Key of the password, used with usernameKey.")


class SecretKeySelector(Model):
    """One key of a Secret in the resource's own namespace."""

    name: str = Field(description="Name of a Secret in the same namespace.", min_length=1, max_length=253)
    key: str = Field(description="Key within the Secret.", min_length=1, max_length=253)


class CASecretRef(Model):
    name: str = Field(
        description="Name of a Secret in the same namespace holding a PEM CA bundle.", min_length=1
    )
    key: str = Field("ca.crt", description="Key of the PEM bundle within the Secret.")


URL_IMMUTABLE = (
    "connection.url is immutable: it names the Artifactory that holds what this resource manages;"
    " create a new resource instead (deleting this one follows its deletionPolicy)"
)


class Connection(Model):
    """How to reach a JFrog Artifactory instance."""

    url: str = Field(
        description="Base URL of the JFrog platform, e.g. https://acme.jfrog.io (without /artifactory)."
        " Immutable: it names the Artifactory that holds the vendor object." + BASE_URL_HELP,
        pattern=BASE_URL_PATTERN,
        max_length=2048,
        json_schema_extra={
            "x-kubernetes-validations": [{"rule": "self == oldSelf", "message": URL_IMMUTABLE}]
        },
    )
    secret_ref: SecretRef = Field(
        description="Credentials: an access token key, or username and password keys."
    )
    ca_secret_ref: CASecretRef | None = Field(
        None, description="Optional CA bundle to trust for the URL's TLS."
    )
    insecure_skip_verify: bool = Field(False, description="Skip TLS verification. Never use in production.")
    timeout: Annotated[str, TIMEOUT] = Duration("30s", "Timeout of each request to the vendor.", TIMEOUT)


QUANTITY_PATTERN = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$"
_QUANTITY = re.compile(QUANTITY_PATTERN)
_QUANTITY_FACTOR = {
    "": 1,
    **{s: 1024**i for i, s in enumerate(("Ki", "Mi", "Gi", "Ti", "Pi", "Ei"), start=1)},
    **{s: 1000**i for i, s in enumerate(("k", "M", "G", "T", "P", "E"), start=1)},
}


def parse_quantity(text: str) -> int:
    """Bytes in a Kubernetes quantity such as ``50Gi``, ``1.5T`` or ``1000``."""
    match = _QUANTITY.match(text)
    if not match:
        raise ValueError(f"not a quantity: {text!r} (use a number with an optional suffix such as Gi or G)")
    number = text[: match.start(2)] if match.group(2) else text
    return int(float(number) * _QUANTITY_FACTOR[match.group(2) or ""])


#: Five-field cron (minute hour day-of-month month day-of-week), or a @-macro.
CRON5_PATTERN = r"^(@(hourly|daily|weekly|monthly|yearly|annually|midnight)|\S+(\s+\S+){4})$"


def Schedule(description: str) -> Any:
    """A five-field cron field: the pattern, and CEL rules for ranges and schedules that never fire."""
    return Field(
        None,
        pattern=CRON5_PATTERN,
        max_length=128,
        description=description,
        json_schema_extra={"x-kubernetes-validations": cron5_rules()},  # type: ignore[dict-item]
    )


def check_schedule(value: str | None) -> str | None:
    """The pydantic side of the CEL rules: what :meth:`Cron.parse` refuses is refused."""
    if value is not None:
        try:
            Cron.parse(value)
        except ScheduleError as exc:
            raise ValueError(str(exc)) from exc
    return value


APPROVAL_AGE = DurationRange("1m", "720h")


class Safety(Model):
    """Guard rails for real deletions: a dry run first, then the real run only within the budget
    (or after an approval of that exact dry run)."""

    max_packages: int | None = Field(None, ge=0, description="Most packages one real run may delete.")
    max_versions: int | None = Field(None, ge=0, description="Most versions one real run may delete.")
    max_bytes: str | None = Field(
        None,
        pattern=QUANTITY_PATTERN,
        max_length=32,
        description="Most bytes one real run (or prune) may free: a Kubernetes quantity such as 50Gi.",
    )
    approval: Literal["Auto", "Manual"] = Field(
        "Auto",
        description="Auto: a dry run within the budget lets the real run start. Manual: every real run waits"
        " for cleanup.artifacts.dev/approve=<dry run id>.",
    )
    approval_max_age: Annotated[str, APPROVAL_AGE] = Duration(
        "24h", "How long a dry run stays good for an approval.", APPROVAL_AGE
    )


class PendingApproval(Model):
    dry_run_id: str = Field(description="The dry run awaiting cleanup.artifacts.dev/approve=<this id>.")
    reason: str = Field(description="ApprovalRequired or BudgetExceeded.")
    message: str = Field("", description="The figures, the limits and how to approve.")
    since: str | None = Field(None, description="When the real run was held.")


ConditionStatus = Literal["True", "False", "Unknown"]


class Condition(Model):
    """A standard metav1.Condition."""

    type: str = Field(
        description="Condition type: Ready, Synced, Reconciling or Stalled (and kind-specific ones)."
    )
    status: ConditionStatus = Field(description="True, False or Unknown.")
    reason: str = Field(description="CamelCase reason for the last transition.")
    message: str = Field("", description="Human-readable details.")
    last_transition_time: str = Field(description="When status last changed (RFC 3339).")
    observed_generation: int | None = Field(
        None, description="The generation this condition was computed for."
    )


class CommonStatus(Model):
    """Fields every kind's status carries."""

    observed_generation: int | None = Field(None, description="metadata.generation last acted on.")
    conditions: list[Condition] = Field(
        default_factory=list, description="Ready, Synced, Reconciling, Stalled."
    )
    last_handled_requested_at: str | None = Field(
        None, description=f"The last value of the {REQUESTED_AT} annotation that was acted on (or refused)."
    )
    last_refusal: str | None = Field(
        None, description=f"Why the last {REQUESTED_AT} value was refused (not acted on, now or later)."
    )
    last_handled_reconcile_at: str | None = Field(
        None, description=f"The last value of the {RECONCILE_AT} annotation that was acted on."
    )
    last_request_id: str | None = Field(
        None, description="The vendor's request id of the last error, for support."
    )


@dataclass(frozen=True)
class PrinterColumn:
    name: str
    json_path: str
    type: str = "string"
    description: str = ""
    priority: int = 0


def ready_column() -> PrinterColumn:
    return PrinterColumn(
        "Ready", '.status.conditions[?(@.type=="Ready")].status', description="Ready condition"
    )


def age_column() -> PrinterColumn:
    return PrinterColumn("Age", ".metadata.creationTimestamp", type="date")


@dataclass(frozen=True)
class KindInfo:
    """What crdgen needs to know of one kind, next to its models."""

    kind: str
    plural: str
    short_names: tuple[str, ...]
    spec_model: type[Model]
    status_model: type[Model]
    description: str
    printer_columns: tuple[PrinterColumn, ...] = field(default_factory=tuple)
    #: CEL rules on the whole object (the only place ``self.metadata.name`` can be read).
    validations: tuple[dict[str, Any], ...] = ()

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{GROUP}"
