"""Helpers every reconciler uses: spec parsing, claims, JFrog clients, error outcomes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import ValidationError

from .. import decisions
from ..api.common import (
    RECONCILE_AT,
    REQUESTED_AT,
    Connection,
    Model,
    Safety,
    parse_duration,
    parse_quantity,
)
from ..credentials import CredentialsError, EndpointNotAllowedError
from ..runtime import Context, Event, Obj, Outcome, spread_later
from ..vendors.http import Backoff
from ..vendors.jfrog import JFrogClient
from .conditions import INVALID_SPEC, Failure, StatusBuilder, classify

M = TypeVar("M", bound=Model)

#: Seconds between checks of a Secret that is missing or lacks its keys (a change to a labelled
#: Secret retries at once: runtime.Scheduler.secret_changed).
SECRET_RECHECK = 30.0
#: Refused credentials or an untrusted certificate: the same call is retried ever more rarely
#: (30 s doubling up to an hour), since only a human can cure it; a changed Secret retries at once.
REFUSED_BACKOFF = Backoff(base=30.0, cap=3600.0)


class InvalidSpec(Exception):
    """The spec passed the API server's checks but not ours (an older CRD, a Quartz detail)."""


def parse_spec(model: type[M], obj: Obj) -> M:
    try:
        return model.model_validate(obj.spec)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:5])
        raise InvalidSpec(problems) from exc


def claim_owner(ctx: Context, plural: str, key: str) -> tuple[str, ...] | None:
    """The oldest object claiming ``key`` (creationTimestamp, then namespace/name): it alone may act."""
    index = ctx.indexes.get(plural)
    if index is None or key not in index:
        return None
    values: list[tuple[str, ...]] = list(index[key])
    return min(values) if values else None


def jfrog_claim_url(spec: Mapping[str, Any]) -> str | None:
    url = (spec.get("connection") or {}).get("url")
    return str(url).rstrip("/").lower() if url else None


async def jfrog_client(ctx: Context, namespace: str, conn: Connection) -> JFrogClient:
    opts = await ctx.credentials.jfrog_options(namespace, conn)
    return JFrogClient(ctx.client_for(opts))


def invalid_spec_outcome(obj: Obj, exc: InvalidSpec) -> Outcome:
    b = obj.builder()
    b.stalled(INVALID_SPEC, f"spec is invalid: {exc}")
    b.observe()
    return Outcome(b.result(), None)


def failure_outcome(
    b: StatusBuilder, exc: Exception, attempt: int, *, secret: str | None, keep_ready: bool = False
) -> tuple[Failure, float | None]:
    """Record a vendor or credential failure on ``b``; return it and when to try again."""
    failure = classify(exc, attempt)
    if failure.reason == "AuthenticationFailed" and secret:
        failure = Failure(
            failure.reason,
            f"the vendor refused the credentials in Secret {secret}: {failure.message}",
            stalled=True,
        )
    b.failed(failure, keep_ready=keep_ready)
    if failure.request_id:
        b["lastRequestId"] = failure.request_id
    if failure.reason in ("AuthenticationFailed", "TLSVerificationFailed"):
        return failure, REFUSED_BACKOFF.delay(attempt)
    if isinstance(exc, EndpointNotAllowedError):
        return failure, None  # only a new spec (or the operator's flags, with a restart) changes it
    if isinstance(exc, CredentialsError):
        # A missing Secret or key is checked again soon (no vendor call is made): creating the
        # Secret is enough, with no need to wait a whole interval or poke the resource.
        return failure, SECRET_RECHECK
    return failure, failure.retry_after


def interval_of(text: str) -> float:
    return spread_later(parse_duration(text))


def was_stalled_with(obj: Obj, reason: str) -> bool:
    """Whether the object already shows Stalled for ``reason`` (post an event only on the transition)."""
    return any(
        c.get("type") == "Stalled" and c.get("status") == "True" and c.get("reason") == reason
        for c in obj.status.get("conditions") or []
    )


REQUEST_REFUSED = "RequestRefused"
request_time = decisions.request_time


def new_request(obj: Obj, b: StatusBuilder) -> str | None:
    """The requested-at value not yet handled, if any."""
    requested = obj.annotations.get(REQUESTED_AT)
    if requested and requested != b.get("lastHandledRequestedAt"):
        return requested
    return None


def request_refusal(obj: Obj, value: str, *, suspended: bool) -> str | None:
    """Why a new requested-at value must not start anything (:func:`decisions.request_refusal`)."""
    return decisions.request_refusal(value, created=obj.created, suspended=suspended)


def refuse_request(
    b: StatusBuilder, events: list[Event], value: str, message: str, reason: str = REQUEST_REFUSED
) -> None:
    """Record a request as handled without acting on it, and say why (event and condition)."""
    b["lastHandledRequestedAt"] = value
    events.append(Event("Warning", reason, message))


def note_reconcile_request(obj: Obj, b: StatusBuilder) -> None:
    """Record the reconcile-at value this reconcile answers (Flux's lastHandledReconcileAt)."""
    value = obj.annotations.get(RECONCILE_AT)
    if value:
        b["lastHandledReconcileAt"] = value


def waiting_for_finalizer(b: StatusBuilder) -> bool:
    """Whether this reconcile stopped short of creating anything until our finalizer is on."""
    return (b.condition("Reconciling") or {}).get("reason") == "WaitingForFinalizer"


def budget_of(safety: Safety | None) -> decisions.Budget:
    """spec.safety as the decision module's budget (for a prune, maxPackages counts binaries)."""
    if safety is None:
        return decisions.Budget()
    return decisions.Budget(
        max_packages=safety.max_packages,
        max_versions=safety.max_versions,
        max_bytes=parse_quantity(safety.max_bytes) if safety.max_bytes else None,
        manual=safety.approval == "Manual",
        approval_max_age=parse_duration(safety.approval_max_age),
    )
