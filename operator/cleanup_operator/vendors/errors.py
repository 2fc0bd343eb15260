"""One error tree for every vendor client.

The reconcilers map these to conditions and the Kopf wiring maps them to ``TemporaryError`` /
``PermanentError``: one mapping each, in one place (``reconcile.conditions.classify``).

Messages never carry secrets, tokens or URL query strings: :func:`redact_url` is applied before a
URL reaches a message, and response bodies are truncated.
"""

from __future__ import annotations

import re
from typing import Any

MAX_BODY_IN_MESSAGE = 300


class VendorError(Exception):
    """Base of every error a vendor client raises."""

    #: Whether retrying later can succeed without a human changing anything.
    retryable: bool = False
    #: A CamelCase reason used in conditions.
    reason: str = "VendorError"

    def __init__(
        self,
        message: str,
        *,
        vendor: str = "",
        status_code: int | None = None,
        request_id: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.vendor = vendor
        self.status_code = status_code
        self.request_id = request_id
        self.details = details or {}

    def __str__(self) -> str:
        parts = [self.message]
        if self.status_code is not None:
            parts.append(f"(HTTP {self.status_code})")
        if self.request_id:
            parts.append(f"[request_id {self.request_id}]")
        return " ".join(parts)


class TransientError(VendorError):
    """5xx, timeouts, dropped connections: back off with jitter and try again."""

    retryable = True
    reason = "VendorUnavailable"


class TLSError(VendorError):
    """The vendor's certificate is not trusted (or TLS cannot be agreed): a human must fix the CA."""

    reason = "TLSVerificationFailed"


class BadResponseError(TransientError):
    """The vendor answered with a body we cannot read (malformed JSON, wrong content type)."""

    reason = "BadVendorResponse"


class RateLimitedError(TransientError):
    """429: the vendor asks us to slow down."""

    reason = "RateLimited"

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.retry_after = retry_after


class AuthError(VendorError):
    """401/403: the credentials are wrong or lack permission; a human must fix the Secret."""

    reason = "AuthenticationFailed"


class RejectedError(VendorError):
    """400 and other validation refusals: the vendor refuses the spec; a human must change it."""

    reason = "VendorRejected"


class NotFoundError(VendorError):
    """404 or the vendor's 'not found' answer."""

    reason = "NotFound"


class ConflictError(VendorError):
    """The vendor refuses now but may accept later (a policy that is running, a task already running)."""

    retryable = True
    reason = "VendorBusy"


_QUERY = re.compile(r"\?[^\s\"']*")


def redact_url(url: str) -> str:
    """Drop the query string (which may carry tokens or signatures) from a URL or a text holding URLs."""
    return _QUERY.sub("?<redacted>", url)


def truncate(text: str, limit: int = MAX_BODY_IN_MESSAGE) -> str:
    text = redact_url(text.strip())
    return text if len(text) <= limit else text[: limit - 1] + "…"
