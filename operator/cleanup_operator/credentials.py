"""Secrets to vendor client options, with a short cache. Values never reach a log, event or message."""

from __future__ import annotations

import hashlib
import ssl
import time

from .api.common import Connection, SecretKeySelector, parse_duration
from .kube import KubeAPI
from .vendors.http import ClientOptions

CACHE_TTL = 30.0


class CredentialsError(Exception):
    """A Secret is missing or lacks the keys we need; the message names the Secret and keys only."""

    reason = "SecretNotFound"


class InvalidSecretError(CredentialsError):
    reason = "InvalidSecret"


class Credentials:
    def __init__(self, kube: KubeAPI, ttl: float = CACHE_TTL) -> None:
        self._kube = kube
        self._ttl = ttl
        self._cache: dict[tuple[str, str], tuple[float, dict[str, str] | None]] = {}

    async def secret(self, namespace: str, name: str) -> dict[str, str]:
        key = (namespace, name)
        now = time.monotonic()
        hit = self._cache.get(key)
        if hit is not None and now - hit[0] < self._ttl:
            data = hit[1]
        else:
            data = await self._kube.get_secret(namespace, name)
            self._cache[key] = (now, data)
        if data is None:
            raise CredentialsError(f"Secret {namespace}/{name} not found")
        return data

    def forget(self, namespace: str, name: str) -> None:
        """Drop a cached Secret (after an auth failure, so a rotated Secret is read again at once)."""
        self._cache.pop((namespace, name), None)

    async def key(self, namespace: str, ref: SecretKeySelector) -> str:
        data = await self.secret(namespace, ref.name)
        value = data.get(ref.key)
        if not value:
            raise InvalidSecretError(f"Secret {namespace}/{ref.name} has no key {ref.key!r}")
        return value.strip()

    async def jfrog_options(self, namespace: str, conn: Connection) -> ClientOptions:
        data = await self.secret(namespace, conn.secret_ref.name)
        ref = conn.secret_ref
        headers: dict[str, str] = {}
        auth: tuple[str, str] | None = None
        if data.get(ref.token_key):
            headers["Authorization"] = f"Bearer {data[ref.token_key].strip()}"
        elif data.get(ref.username_key) and data.get(ref.password_key):
            auth = (data[ref.username_key].strip(), data[ref.password_key])
        else:
            raise InvalidSecretError(
                f"Secret {namespace}/{ref.name} has neither key {ref.token_key!r} nor keys"
                f" {ref.username_key!r} and {ref.password_key!r}"
            )
        ca_pem = None
        if conn.ca_secret_ref is not None:
            ca = await self.secret(namespace, conn.ca_secret_ref.name)
            ca_pem = ca.get(conn.ca_secret_ref.key)
            if not ca_pem:
                raise InvalidSecretError(
                    f"Secret {namespace}/{conn.ca_secret_ref.name} has no key {conn.ca_secret_ref.key!r}"
                )
            try:
                ssl.create_default_context(cadata=ca_pem)
            except (ssl.SSLError, ValueError):
                raise InvalidSecretError(
                    f"Secret {namespace}/{conn.ca_secret_ref.name} key {conn.ca_secret_ref.key!r} does not hold"
                    " a PEM CA bundle: put the CA certificate(s) that signed the vendor's certificate there"
                ) from None
        return ClientOptions(
            base_url=conn.url,
            headers=headers,
            auth=auth,
            ca_pem=ca_pem,
            insecure_skip_verify=conn.insecure_skip_verify,
            timeout=parse_duration(conn.timeout),
        )


def fingerprint(opts: ClientOptions) -> str:
    """A stable key for pooling clients per endpoint and credentials (a hash: never the secret itself)."""
    h = hashlib.sha256()
    for part in (
        opts.base_url,
        repr(sorted(opts.headers.items())),
        repr(opts.auth),
        opts.ca_pem or "",
        str(opts.insecure_skip_verify),
        str(opts.timeout),
    ):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()
