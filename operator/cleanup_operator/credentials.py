"""Secrets to vendor client options. Values never reach a log, event, status or message.

Only Secrets labelled ``cleanup.artifacts.dev/credentials: "true"`` are read (Argo CD's habit with
``argocd.argoproj.io/secret-type``): whoever may write one of our resources must not be able to
make the operator send any other Secret of the namespace anywhere. The labelled Secrets of each
namespace are kept current by a label-selector watch, so a rotated Secret is used from the next
vendor call on; while a watch is not in step with the server, each read goes to the API server.

Every URL is checked against the operator's :class:`EndpointPolicy` before any Secret is read.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import ssl
from collections.abc import Callable
from typing import Any

from .api.common import CREDENTIALS_LABEL, CASecretRef, Connection, SecretKeySelector, parse_duration
from .endpoints import EndpointPolicy, EndpointRefused
from .kube import KubeAPI, KubeError, Secret
from .vendors.http import ClientOptions

log = logging.getLogger(__name__)

SELECTOR = f"{CREDENTIALS_LABEL}=true"

__all__ = [
    "CREDENTIALS_LABEL",
    "Credentials",
    "CredentialsError",
    "EndpointNotAllowedError",
    "InvalidSecretError",
    "SecretNotAllowedError",
    "fingerprint",
]


class CredentialsError(Exception):
    """A Secret is missing or lacks the keys we need; the message names the Secret and keys only."""

    reason = "SecretNotFound"


class InvalidSecretError(CredentialsError):
    reason = "InvalidSecret"


class SecretNotAllowedError(CredentialsError):
    reason = "SecretNotAllowed"


class EndpointNotAllowedError(CredentialsError):
    """The operator's flags refuse the URL (no Secret was read); only the operator's
    administrators, or a different URL, can change that."""

    def __init__(self, refused: EndpointRefused) -> None:
        super().__init__(str(refused))
        self.reason = refused.reason


class SecretWatch:
    """The labelled Secrets of one namespace, mirrored by list + watch (resumed from its
    resourceVersion, listed again after a 410 or an error)."""

    def __init__(self, kube: KubeAPI, namespace: str, on_change: Callable[[str], None] | None = None) -> None:
        self._kube = kube
        self.namespace = namespace
        self._on_change = on_change
        self.secrets: dict[str, Secret] = {}
        #: True while ``secrets`` mirrors the server: after a list, and while its watch runs.
        self.synced = False
        self.task = asyncio.create_task(self._run(), name=f"secret watch {namespace}")

    async def _run(self) -> None:
        try:
            await self._kube.mirror(
                f"/api/v1/namespaces/{self.namespace}/secrets",
                SELECTOR,
                listed=self._listed,
                changed=self._changed,
                lost=self._lost,
            )
        finally:
            self.synced = False

    def _listed(self, items: list[dict[str, Any]]) -> None:
        self.secrets = {s.name: s for s in map(Secret.from_body, items)}
        self.synced = True

    def _changed(self, kind: str, body: dict[str, Any]) -> None:
        if kind == "DELETED":  # deleted, or no longer labelled
            self.secrets.pop(str((body.get("metadata") or {}).get("name", "")), None)
            return
        secret = Secret.from_body(body)
        self.secrets[secret.name] = secret
        if self._on_change is not None:
            self._on_change(self.namespace)

    def _lost(self, exc: Exception) -> None:
        self.synced = False
        log.warning(
            "watching labelled Secrets in %s: %s; reading them directly meanwhile",
            self.namespace,
            exc if isinstance(exc, KubeError) else type(exc).__name__,
        )


class Credentials:
    def __init__(self, kube: KubeAPI, endpoints: EndpointPolicy | None = None, *, watch: bool = True) -> None:
        self._kube = kube
        self.endpoints = endpoints if endpoints is not None else EndpointPolicy()
        self._watch = watch
        self._watches: dict[str, SecretWatch] = {}
        #: Called with a namespace when one of its labelled Secrets appears or changes (the
        #: scheduler retries what waited on credentials there at once).
        self.on_change: Callable[[str], None] | None = None

    def _watch_of(self, namespace: str) -> SecretWatch | None:
        if not self._watch:
            return None
        watch = self._watches.get(namespace)
        if watch is None or watch.task.done():
            watch = self._watches[namespace] = SecretWatch(self._kube, namespace, self._changed)
        return watch

    def _changed(self, namespace: str) -> None:
        if self.on_change is not None:
            self.on_change(namespace)

    def forget(self, namespace: str) -> None:
        """Stop watching ``namespace``'s Secrets (the operator no longer serves it)."""
        watch = self._watches.pop(namespace, None)
        if watch is not None:
            watch.task.cancel()

    async def aclose(self) -> None:
        watches, self._watches = list(self._watches.values()), {}
        for w in watches:
            w.task.cancel()
        for w in watches:
            with contextlib.suppress(asyncio.CancelledError):
                await w.task

    def check(self, url: str, *, insecure_skip_verify: bool = False) -> None:
        try:
            self.endpoints.check(url, insecure_skip_verify=insecure_skip_verify)
        except EndpointRefused as exc:
            raise EndpointNotAllowedError(exc) from None

    async def secret(self, namespace: str, name: str) -> dict[str, str]:
        watch = self._watch_of(namespace)
        if watch is not None and watch.synced and name in watch.secrets:
            return dict(watch.secrets[name].data)
        found = await self._kube.get_secret(namespace, name)
        if found is None:
            raise CredentialsError(f"Secret {namespace}/{name} not found")
        if found.labels.get(CREDENTIALS_LABEL) != "true":
            raise SecretNotAllowedError(
                f'Secret {namespace}/{name} is not labelled {CREDENTIALS_LABEL}: "true": the operator'
                " reads only Secrets labelled for it; label it if it is meant for this resource"
            )
        return dict(found.data)

    async def key(self, namespace: str, ref: SecretKeySelector) -> str:
        data = await self.secret(namespace, ref.name)
        value = data.get(ref.key)
        if not value:
            raise InvalidSecretError(f"Secret {namespace}/{ref.name} has no key {ref.key!r}")
        return value.strip()

    async def ca(self, namespace: str, ref: CASecretRef | None) -> str | None:
        """The PEM bundle ``ref`` names, checked to be one (None when no CA is given)."""
        if ref is None:
            return None
        pem = (await self.secret(namespace, ref.name)).get(ref.key)
        if not pem:
            raise InvalidSecretError(f"Secret {namespace}/{ref.name} has no key {ref.key!r}")
        try:
            ssl.create_default_context(cadata=pem)
        except (ssl.SSLError, ValueError):
            raise InvalidSecretError(
                f"Secret {namespace}/{ref.name} key {ref.key!r} does not hold a PEM CA bundle: put the"
                " CA certificate(s) that signed the vendor's certificate there"
            ) from None
        return pem

    async def jfrog_options(self, namespace: str, conn: Connection) -> ClientOptions:
        self.check(conn.url, insecure_skip_verify=conn.insecure_skip_verify)
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
        return ClientOptions(
            base_url=conn.url,
            headers=headers,
            auth=auth,
            ca_pem=await self.ca(namespace, conn.ca_secret_ref),
            insecure_skip_verify=conn.insecure_skip_verify,
            timeout=parse_duration(conn.timeout),
        )

    async def keyed_options(
        self,
        namespace: str,
        url: str,
        ref: SecretKeySelector,
        ca_ref: CASecretRef | None,
        header: tuple[str, str],
    ) -> ClientOptions:
        """Options for an API keyed by one Secret value: ``header`` is (name, format with {})."""
        self.check(url)
        value = await self.key(namespace, ref)
        name, template = header
        return ClientOptions(
            base_url=url,
            headers={name: template.format(value)},
            ca_pem=await self.ca(namespace, ca_ref),
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
