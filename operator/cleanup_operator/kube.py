"""The few Kubernetes API calls the operator makes itself (Secrets, status patches), on httpx.

Kopf watches and posts events; for everything else we reuse the credentials Kopf logged in with
(``ConnectionInfo``) rather than importing the heavy ``kubernetes`` client into the operator process.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import ssl
import tempfile
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from .api.common import GROUP, VERSION

#: Connections (and requests in flight) of the request client; watches have a client of their own.
REQUEST_CONNECTIONS = 8


class KubeError(Exception):
    def __init__(self, message: str, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


@dataclass(frozen=True)
class Secret:
    """The parts of a Secret the operator reads (values stay out of repr, logs and messages)."""

    name: str
    labels: Mapping[str, str]
    data: Mapping[str, str] = field(repr=False)

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> Secret:
        meta = body.get("metadata") or {}
        raw = body.get("data") or {}
        return cls(
            name=str(meta.get("name", "")),
            labels=dict(meta.get("labels") or {}),
            data={k: base64.b64decode(v).decode(errors="replace") for k, v in raw.items()},
        )


class _Transport(httpx.AsyncBaseTransport):
    """The API server unreachable (restarting, a dropped connection) is a :class:`KubeError` like
    any refusal: the caller retries with backoff instead of taking it for a bug of ours.

    With ``slots``, at most that many requests are in the pool at once (each until its response is
    closed); the rest wait here, in a FIFO semaphore. httpcore scans its whole pool (every
    connection, with a ``poll()`` of each idle socket, for every queued request) each time a request
    starts or ends, so a burst of hundreds of status patches queued inside it costs more CPU than
    the patches themselves."""

    def __init__(self, inner: httpx.AsyncBaseTransport, slots: int | None = None) -> None:
        self._inner = inner
        self._slots = asyncio.Semaphore(slots) if slots else None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._slots is None:
            return await self._send(request)
        await self._slots.acquire()
        try:
            resp = await self._send(request)
        except BaseException:
            self._slots.release()
            raise
        return httpx.Response(
            resp.status_code,
            headers=resp.headers,
            stream=_Releasing(resp.stream, self._slots),
            extensions=resp.extensions,
        )

    async def _send(self, request: httpx.Request) -> httpx.Response:
        try:
            return await self._inner.handle_async_request(request)
        except httpx.TransportError as exc:
            raise KubeError(f"API server unreachable ({type(exc).__name__})") from exc

    async def aclose(self) -> None:
        await self._inner.aclose()


class _Releasing(httpx.AsyncByteStream):
    """A response body that gives its request's slot back when closed (read to the end)."""

    def __init__(self, inner: Any, slots: asyncio.Semaphore) -> None:
        self._inner = inner
        self._slots: asyncio.Semaphore | None = slots

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._inner:
            yield chunk

    async def aclose(self) -> None:
        try:
            await self._inner.aclose()
        finally:
            if self._slots is not None:
                self._slots.release()
                self._slots = None


class KubeAPI:
    """The few API-server calls the operator makes itself (Kopf makes the rest).

    Requests and watch streams go through separate clients: a watch holds its connection for
    minutes (one per watched namespace), and in a bounded request pool enough of them would leave
    status patches waiting for a connection (``PoolTimeout``) for as long as the watches last.
    """

    def __init__(self, client: httpx.AsyncClient, watch_client: httpx.AsyncClient | None = None) -> None:
        self._client = client
        self._watch_client = watch_client or client

    @classmethod
    def from_connection_info(cls, info: Any) -> KubeAPI:
        """Build from a ``kopf.ConnectionInfo`` (server, CA, token or client certificate)."""
        verify = tls_context(info)

        def client(limits: httpx.Limits, slots: int | None = None) -> httpx.AsyncClient:
            return httpx.AsyncClient(
                base_url=info.server,
                headers={"Authorization": f"{info.scheme or 'Bearer'} {info.token}"} if info.token else {},
                auth=httpx.BasicAuth(info.username, info.password)
                if info.username and info.password
                else None,
                transport=_Transport(httpx.AsyncHTTPTransport(verify=verify, limits=limits), slots),
                timeout=httpx.Timeout(30.0),
            )

        return cls(
            # Every request connection kept alive (a burst of status patches otherwise closes and
            # re-opens TLS connections, a handshake each on both sides), few of them, and no more
            # requests in the pool than connections (see _Transport): a loopback or in-cluster API
            # server answers a patch in milliseconds, so a few connections carry thousands a second.
            client(
                httpx.Limits(
                    max_connections=REQUEST_CONNECTIONS, max_keepalive_connections=REQUEST_CONNECTIONS
                ),
                REQUEST_CONNECTIONS,
            ),
            # One connection per watch, as many as there are watched namespaces.
            client(httpx.Limits(max_connections=None, max_keepalive_connections=0)),
        )

    async def aclose(self) -> None:
        await self._client.aclose()
        if self._watch_client is not self._client:
            await self._watch_client.aclose()

    async def get_secret(self, namespace: str, name: str) -> Secret | None:
        """A Secret's labels and decoded data, or None when it does not exist. Values are never logged."""
        resp = await self._client.get(f"/api/v1/namespaces/{namespace}/secrets/{name}")
        if resp.status_code == 404:
            return None
        if resp.status_code >= 400:
            raise KubeError(f"reading Secret {namespace}/{name}: HTTP {resp.status_code}", resp.status_code)
        return Secret.from_body(resp.json())

    async def list_raw(self, path: str, label_selector: str) -> tuple[list[dict[str, Any]], str]:
        """The objects at ``path`` (a collection) matching ``label_selector``, and the list's
        resourceVersion."""
        resp = await self._client.get(path, params={"labelSelector": label_selector})
        if resp.status_code >= 400:
            raise KubeError(f"listing {_what(path)}: HTTP {resp.status_code}", resp.status_code)
        body = resp.json()
        return list(body.get("items") or []), str((body.get("metadata") or {}).get("resourceVersion") or "")

    async def watch_raw(
        self, path: str, label_selector: str, resource_version: str, timeout_seconds: int = 300
    ) -> AsyncIterator[tuple[str, dict[str, Any] | None, str]]:
        """Watch events (type, object or None for a bookmark, resourceVersion) of the collection at
        ``path`` after ``resource_version``, until the server ends the watch. A 410 (too old)
        raises :class:`KubeError` with status 410: list again."""
        params = {
            "watch": "1",
            "labelSelector": label_selector,
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(timeout_seconds),
        }
        async with self._watch_client.stream(
            "GET", path, params=params, timeout=httpx.Timeout(30.0, read=timeout_seconds + 30.0)
        ) as resp:
            if resp.status_code >= 400:
                raise KubeError(f"watching {_what(path)}: HTTP {resp.status_code}", resp.status_code)
            async for line in resp.aiter_lines():
                if not line.strip():
                    continue
                event = json.loads(line)
                kind, body = event.get("type"), event.get("object") or {}
                if kind == "ERROR":
                    raise KubeError(f"watching {_what(path)}: {body.get('reason')}", body.get("code"))
                version = str((body.get("metadata") or {}).get("resourceVersion") or resource_version)
                yield str(kind), (None if kind == "BOOKMARK" else body), version

    async def mirror(
        self,
        path: str,
        label_selector: str,
        *,
        listed: Callable[[list[dict[str, Any]]], None],
        changed: Callable[[str, dict[str, Any]], None],
        lost: Callable[[Exception], None],
    ) -> None:
        """Keep a mirror of a collection, forever (cancel to stop): list (``listed`` with every
        object), then watch from the list's resourceVersion (``changed`` with each ADDED, MODIFIED
        or DELETED; DELETED also when an object stops matching the selector), resumed where the
        server ended it. After a 410 it lists again at once; after any other error, ``lost`` is
        called and it lists again after a back-off (1 s doubling to 30 s)."""
        delay = 1.0
        while True:
            try:
                items, version = await self.list_raw(path, label_selector)
                listed(items)
                delay = 1.0
                while True:
                    async for kind, body, seen in self.watch_raw(path, label_selector, version):
                        version = seen  # resume from here when the server ends the watch
                        if body is not None:  # None: a bookmark, only the resourceVersion moves on
                            changed(kind, body)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the mirror must outlive any error
                if isinstance(exc, KubeError) and exc.status_code == 410:
                    continue
                lost(exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    async def get_object(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        """One of our objects as the API server holds it now, or None when it is gone."""
        resp = await self._client.get(f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{plural}/{name}")
        if resp.status_code == 404:
            return None
        if resp.status_code >= 400:
            raise KubeError(f"reading {plural}/{namespace}/{name}: HTTP {resp.status_code}", resp.status_code)
        body: dict[str, Any] = resp.json()
        return body

    async def annotate(self, plural: str, namespace: str, name: str, annotations: dict[str, str]) -> None:
        """A JSON merge patch of ``metadata.annotations`` on one of our objects."""
        resp = await self._client.patch(
            f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{plural}/{name}",
            json={"metadata": {"annotations": annotations}},
            headers={"Content-Type": "application/merge-patch+json"},
        )
        if resp.status_code >= 400:
            raise KubeError(
                f"annotating {plural}/{namespace}/{name}: HTTP {resp.status_code}", resp.status_code
            )

    async def patch_metadata(
        self,
        plural: str,
        namespace: str,
        name: str,
        resource_version: str | None,
        *,
        finalizers: tuple[str, ...] | None = None,
        annotations: dict[str, str | None] | None = None,
    ) -> bool:
        """One merge patch of ``metadata.finalizers`` and/or annotations (None removes one), on the
        version we saw only when one is given (the resourceVersion in the patch is a precondition);
        False when the object changed or is gone."""
        meta: dict[str, Any] = {} if resource_version is None else {"resourceVersion": resource_version}
        if finalizers is not None:
            meta["finalizers"] = list(finalizers)
        if annotations is not None:
            meta["annotations"] = annotations
        resp = await self._client.patch(
            f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{plural}/{name}",
            json={"metadata": meta},
            headers={"Content-Type": "application/merge-patch+json"},
        )
        if resp.status_code in (404, 409):
            return False
        if resp.status_code >= 400:
            raise KubeError(
                f"patching the metadata of {plural}/{namespace}/{name}: HTTP {resp.status_code}",
                resp.status_code,
            )
        return True

    async def patch_status(
        self, plural: str, namespace: str, name: str, status: dict[str, Any]
    ) -> str | None:
        """A JSON merge patch of ``status`` on the status subresource; the new resourceVersion."""
        resp = await self._client.patch(
            f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{plural}/{name}/status",
            json={"status": status},
            headers={"Content-Type": "application/merge-patch+json"},
        )
        if resp.status_code == 404:
            return None  # deleted meanwhile
        if resp.status_code >= 400:
            raise KubeError(
                f"patching status of {plural}/{namespace}/{name}: HTTP {resp.status_code}", resp.status_code
            )
        try:
            version = resp.json().get("metadata", {}).get("resourceVersion")
        except ValueError:
            return None
        return str(version) if version else None

    # Leases (coordination.k8s.io/v1), for leader election (leader.py). A conflict (409: someone
    # else created or updated it first) is an answer, not an error: None.

    async def get_lease(self, namespace: str, name: str) -> dict[str, Any] | None:
        resp = await self._client.get(f"{_LEASES.format(namespace=namespace)}/{name}")
        if resp.status_code == 404:
            return None
        return _lease_answer(resp, f"reading Lease {namespace}/{name}")

    async def create_lease(self, namespace: str, body: dict[str, Any]) -> dict[str, Any] | None:
        resp = await self._client.post(_LEASES.format(namespace=namespace), json=body)
        if resp.status_code == 409:
            return None
        return _lease_answer(resp, f"creating Lease {namespace}/{body['metadata']['name']}")

    async def replace_lease(self, namespace: str, name: str, body: dict[str, Any]) -> dict[str, Any] | None:
        """PUT with the body's resourceVersion: None when the Lease changed since it was read."""
        resp = await self._client.put(f"{_LEASES.format(namespace=namespace)}/{name}", json=body)
        if resp.status_code == 409:
            return None
        return _lease_answer(resp, f"updating Lease {namespace}/{name}")


_LEASES = "/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"


def _what(path: str) -> str:
    """``/api/v1/namespaces/ns/secrets`` → ``secrets in ns``; ``/api/v1/namespaces`` → ``namespaces``."""
    parts = path.strip("/").split("/")
    if len(parts) >= 2 and parts[-3:-2] == ["namespaces"]:
        return f"{parts[-1]} in {parts[-2]}"
    return parts[-1]


def _lease_answer(resp: httpx.Response, what: str) -> dict[str, Any]:
    if resp.status_code >= 400:
        raise KubeError(f"{what}: HTTP {resp.status_code}", resp.status_code)
    body: dict[str, Any] = resp.json()
    return body


def tls_context(info: Any) -> ssl.SSLContext:
    """TLS for the API server: only the cluster CA we were given (not the system store as well),
    and a client certificate loaded from memory, whose key never stays on disk."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if info.insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    elif info.ca_path:
        ctx.load_verify_locations(cafile=str(info.ca_path))
    elif info.ca_data:
        ctx.load_verify_locations(cadata=_pem(info.ca_data).decode())
    else:
        ctx.load_default_certs()  # no CA in the kubeconfig: the server has a publicly trusted one
    if info.certificate_path or info.certificate_data:
        _load_client_certificate(ctx, info)
    return ctx


def _pem(data: Any) -> bytes:
    raw = data if isinstance(data, bytes) else str(data).encode()
    return raw if b"BEGIN" in raw else base64.b64decode(raw)


def _load_client_certificate(ctx: ssl.SSLContext, info: Any) -> None:
    """``ssl`` loads a key only from a file: inline data goes through a private temporary
    directory that is removed as soon as the context holds the key."""
    if info.certificate_path and (info.private_key_path or not info.private_key_data):
        ctx.load_cert_chain(str(info.certificate_path), str(info.private_key_path or info.certificate_path))
        return
    with tempfile.TemporaryDirectory(prefix="cleanup-operator-") as tmp:
        Path(tmp).chmod(0o700)
        cert = Path(info.certificate_path) if info.certificate_path else Path(tmp) / "client.crt"
        if not info.certificate_path:
            cert.write_bytes(_pem(info.certificate_data))
        key = Path(info.private_key_path) if info.private_key_path else Path(tmp) / "client.key"
        if not info.private_key_path:
            fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(_pem(info.private_key_data))
        ctx.load_cert_chain(str(cert), str(key))
