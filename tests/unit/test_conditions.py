from __future__ import annotations

import pytest

from cleanup_operator.api.common import parse_duration
from cleanup_operator.credentials import CredentialsError
from cleanup_operator.reconcile.conditions import StatusBuilder, classify, status_patch
from cleanup_operator.vendors.errors import (
    AuthError,
    ConflictError,
    RateLimitedError,
    RejectedError,
    TransientError,
)


def test_transition_time_changes_only_when_status_flips():
    b = StatusBuilder({}, 1)
    b.set_condition("Ready", True, "Synced", "ok")
    first = b.condition("Ready")
    b.data["conditions"][0]["lastTransitionTime"] = "2020-01-01T00:00:00Z"
    b.set_condition("Ready", True, "Synced", "still ok")
    assert b.condition("Ready")["lastTransitionTime"] == "2020-01-01T00:00:00Z"
    assert b.condition("Ready")["message"] == "still ok"
    b.set_condition("Ready", False, "VendorUnavailable", "down")
    assert b.condition("Ready")["lastTransitionTime"] != "2020-01-01T00:00:00Z"
    assert first is not None and first["observedGeneration"] == 1


def test_status_patch_is_none_when_nothing_changed():
    current = {"a": 1, "conditions": [{"type": "Ready", "status": "True"}]}
    assert status_patch(current, dict(current)) is None
    assert status_patch(current, {"a": 2, "conditions": current["conditions"]}) == {"a": 2}
    assert status_patch(current, {"conditions": current["conditions"]}) == {"a": None}


@pytest.mark.parametrize(
    ("exc", "stalled", "reason"),
    [
        (TransientError("down", status_code=503), False, "VendorUnavailable"),
        (RateLimitedError("slow down", status_code=429), False, "RateLimited"),
        (ConflictError("running", status_code=409), False, "VendorBusy"),
        (AuthError("bad token", status_code=401), True, "AuthenticationFailed"),
        (RejectedError("bad key", status_code=400), True, "VendorRejected"),
        (CredentialsError("Secret ns/x not found"), True, "SecretNotFound"),
    ],
)
def test_classify(exc, stalled, reason):
    failure = classify(exc, attempt=3)
    assert failure.stalled is stalled
    assert failure.reason == reason
    assert (failure.retry_after is None) is stalled


def test_classify_honours_retry_after():
    failure = classify(RateLimitedError("x", retry_after=120.0), attempt=0)
    assert failure.retry_after is not None and failure.retry_after >= 120.0


def test_classify_does_not_swallow_bugs():
    with pytest.raises(KeyError):
        classify(KeyError("bug"))


@pytest.mark.parametrize(("text", "seconds"), [("10m", 600), ("15s", 15), ("1h30m", 5400), ("250ms", 0.25)])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


def test_parse_duration_rejects_garbage():
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration("ten minutes")
