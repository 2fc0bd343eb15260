"""Conditions and the one mapping from errors to what a user sees.

Types (operator-conventions.md): ``Ready`` (overall), ``Synced`` (the last call to the vendor
succeeded), ``Reconciling`` (work in progress, abnormal-true) and ``Stalled`` (a human must act).
"""

from __future__ import annotations

import copy
import datetime as dt
from dataclasses import dataclass
from typing import Any

from ..credentials import CredentialsError
from ..vendors.errors import RateLimitedError, VendorError
from ..vendors.http import Backoff

READY = "Ready"
SYNCED = "Synced"
RECONCILING = "Reconciling"
STALLED = "Stalled"

# Reasons shared by every kind.
SUCCEEDED = "Succeeded"
PROGRESSING = "Progressing"
SUSPENDED = "Suspended"
AUTH_FAILED = "AuthenticationFailed"
INVALID_SPEC = "InvalidSpec"

BACKOFF = Backoff(base=2.0, cap=300.0)


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def iso(t: dt.datetime | None = None) -> str:
    return (t or now()).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def parse_time(text: str | None) -> dt.datetime | None:
    """An RFC 3339 time from status (zone-less means UTC), or None when absent or unreadable."""
    if not text:
        return None
    try:
        t = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=dt.UTC)


@dataclass(frozen=True)
class Failure:
    """What an error means for the resource."""

    reason: str
    message: str
    stalled: bool
    retry_after: float | None = None
    request_id: str | None = None


def classify(exc: BaseException, attempt: int = 0) -> Failure:
    """The single place deciding retry vs. stall for vendor and credential errors."""
    if isinstance(exc, CredentialsError):
        return Failure(exc.reason, str(exc), stalled=True)
    if isinstance(exc, VendorError):
        if exc.retryable:
            delay = BACKOFF.delay(attempt)
            if isinstance(exc, RateLimitedError) and exc.retry_after:
                delay = max(delay, exc.retry_after)
            return Failure(exc.reason, str(exc), stalled=False, retry_after=delay, request_id=exc.request_id)
        return Failure(exc.reason, str(exc), stalled=True, request_id=exc.request_id)
    raise exc


class StatusBuilder:
    """The next status, built from the current one; conditions keep their transition times."""

    def __init__(self, current: dict[str, Any] | None, generation: int | None) -> None:
        self.data: dict[str, Any] = copy.deepcopy(current or {})
        self.generation = generation
        self.data.setdefault("conditions", [])

    def __setitem__(self, key: str, value: Any) -> None:
        if value is None:
            self.data.pop(key, None)
        else:
            self.data[key] = value

    def __getitem__(self, key: str) -> Any:
        return self.data.get(key)

    def update(self, fields: dict[str, Any]) -> None:
        for key, value in fields.items():
            self[key] = value

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def condition(self, type_: str) -> dict[str, Any] | None:
        for cond in self.data["conditions"]:
            if cond.get("type") == type_:
                return dict(cond)
        return None

    def set_condition(self, type_: str, status: bool | str, reason: str, message: str = "") -> None:
        value = status if isinstance(status, str) else ("True" if status else "False")
        conds: list[dict[str, Any]] = self.data["conditions"]
        for i, cond in enumerate(conds):
            if cond.get("type") == type_:
                changed = cond.get("status") != value
                conds[i] = {
                    "type": type_,
                    "status": value,
                    "reason": reason,
                    "message": message,
                    "lastTransitionTime": iso() if changed else cond.get("lastTransitionTime", iso()),
                    "observedGeneration": self.generation,
                }
                return
        conds.append(
            {
                "type": type_,
                "status": value,
                "reason": reason,
                "message": message,
                "lastTransitionTime": iso(),
                "observedGeneration": self.generation,
            }
        )

    def is_true(self, type_: str) -> bool:
        cond = self.condition(type_)
        return bool(cond and cond.get("status") == "True")

    # Common outcomes.

    def ready(self, reason: str, message: str) -> None:
        self.set_condition(READY, True, reason, message)
        self.set_condition(SYNCED, True, reason, message)
        self.set_condition(RECONCILING, False, reason, "")
        self.set_condition(STALLED, False, reason, "")

    def progressing(self, reason: str, message: str, *, synced: bool = True) -> None:
        self.set_condition(READY, False, reason, message)
        self.set_condition(SYNCED, synced, reason, message if not synced else "")
        self.set_condition(RECONCILING, True, reason, message)
        self.set_condition(STALLED, False, reason, "")

    def stalled(self, reason: str, message: str) -> None:
        self.set_condition(READY, False, reason, message)
        self.set_condition(SYNCED, False, reason, message)
        self.set_condition(RECONCILING, False, reason, "")
        self.set_condition(STALLED, True, reason, message)

    def failed(self, failure: Failure, *, keep_ready: bool = False) -> None:
        """A vendor or credential failure: stalled when a human must act, else retrying."""
        if failure.stalled:
            self.stalled(failure.reason, failure.message)
            return
        if not keep_ready:
            self.set_condition(READY, False, failure.reason, failure.message)
        self.set_condition(SYNCED, False, failure.reason, failure.message)
        self.set_condition(RECONCILING, True, failure.reason, f"retrying: {failure.message}")
        self.set_condition(STALLED, False, failure.reason, "")

    def suspended(self) -> None:
        self.set_condition(RECONCILING, False, SUSPENDED, "spec.suspend is true: not reconciling")

    def observe(self) -> None:
        self.data["observedGeneration"] = self.generation

    def result(self) -> dict[str, Any]:
        return self.data


def status_patch(current: dict[str, Any] | None, desired: dict[str, Any]) -> dict[str, Any] | None:
    """The JSON merge patch (RFC 7386) turning ``current`` into ``desired``, or None if equal.

    Objects are diffed key by key, so a key dropped from a nested object (an old run's totals, a
    record that is done) is sent as null: a merge patch would otherwise keep it. Lists are replaced.
    """
    patch = _merge_diff(current or {}, desired)
    return patch or None


def _merge_diff(current: dict[str, Any], desired: dict[str, Any]) -> dict[str, Any]:
    patch: dict[str, Any] = {}
    for key, value in desired.items():
        old = current.get(key)
        if old == value:
            continue
        if isinstance(old, dict) and isinstance(value, dict):
            patch[key] = _merge_diff(old, value)
        else:
            patch[key] = value
    for key in current:
        if key not in desired:
            patch[key] = None
    return patch
