"""Operator-wide rules for where Secrets may be sent, which a resource's author cannot override.

Whoever may write one of our resources chooses its URL; without these rules they could make the
operator send any labelled Secret of their namespace to any host (a confused deputy). The rules are
checked before any Secret is read, so a refused URL never sees a credential.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from urllib.parse import urlsplit


class EndpointRefused(Exception):
    """The operator's flags refuse this URL; the message names the flag that would allow it.

    ``reason`` is one of the constants below (the condition reason a resource shows).
    """

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


HOST_NOT_ALLOWED = "HostNotAllowed"
INSECURE_HTTP = "InsecureHTTPNotAllowed"
INSECURE_TLS = "InsecureTLSNotAllowed"
INVALID_URL = "InvalidURL"


@dataclass(frozen=True)
class EndpointPolicy:
    """``--allowed-hosts``, ``--allow-insecure-http`` and ``--allow-insecure-tls``.

    ``allowed_hosts`` holds globs of hosts (``*.jfrog.io``), optionally with a port (``127.0.0.1:*``,
    ``[::1]:8443``; the scheme's default port when the URL has none); an empty tuple allows no host.
    """

    allowed_hosts: tuple[str, ...] = ()
    allow_insecure_http: bool = False
    allow_insecure_tls: bool = False

    def host_allowed(self, host: str, port: int) -> bool:
        host = host.lower().rstrip(".")
        for pattern in self.allowed_hosts:
            want_host, want_port = _split(pattern.lower())
            if fnmatch.fnmatchcase(host, want_host) and (
                want_port is None or fnmatch.fnmatchcase(str(port), want_port)
            ):
                return True
        return False

    def check(self, url: str, *, insecure_skip_verify: bool = False) -> None:
        """Raise :class:`EndpointRefused` unless a Secret may be sent to ``url``."""
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            raise EndpointRefused(f"URL {url!r} cannot be read", INVALID_URL) from None
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise EndpointRefused("the URL must be https://host[:port][/path]", INVALID_URL)
        if parts.username or parts.password or parts.query or parts.fragment:
            raise EndpointRefused(
                "the URL must be a scheme, host, port and path prefix only (no user info, query or fragment)",
                INVALID_URL,
            )
        effective = port if port is not None else (443 if parts.scheme == "https" else 80)
        if not self.host_allowed(parts.hostname, effective):
            where = parts.hostname if port is None else f"{parts.hostname}:{port}"
            raise EndpointRefused(
                f"host {where} is not in the operator's --allowed-hosts: ask the operator's"
                " administrators to allow it (chart value allowedHosts)",
                HOST_NOT_ALLOWED,
            )
        if parts.scheme == "http" and not self.allow_insecure_http:
            raise EndpointRefused(
                "plain http sends credentials unencrypted: use https, or run the operator with"
                " --allow-insecure-http (chart value allowInsecureHttp)",
                INSECURE_HTTP,
            )
        if insecure_skip_verify and not self.allow_insecure_tls:
            raise EndpointRefused(
                "insecureSkipVerify is refused: trust the server's CA with caSecretRef, or run the"
                " operator with --allow-insecure-tls (chart value allowInsecureTls)",
                INSECURE_TLS,
            )


def _split(pattern: str) -> tuple[str, str | None]:
    """``host``, ``host:port``, ``[v6]`` or ``[v6]:port`` (globs in either part) as (host, port)."""
    if pattern.startswith("["):
        host, _, rest = pattern[1:].partition("]")
        return host, rest[1:] if rest.startswith(":") else None
    if pattern.count(":") == 1:
        host, _, port = pattern.partition(":")
        return host, port
    return pattern, None
