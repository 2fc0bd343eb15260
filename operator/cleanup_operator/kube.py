"""The few Kubernetes API calls the operator makes itself (Secrets, status patches), on httpx.

Kopf watches and posts events; for everything else we reuse the credentials Kopf logged in with
(``ConnectionInfo``) rather than importing the heavy ``kubernetes`` client into the operator process.
"""

from __future__ import annotations

import base64
import ssl
import tempfile
from pathlib import Path
from typing import Any

import httpx

from .api.common import GROUP, VERSION


class KubeError(Exception):
    def __init__(self, message: str, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


class KubeAPI:
    def __init__(self, client: httpx.AsyncClient) -> None:
        self._client = client

    @classmethod
    def from_connection_info(cls, info: Any) -> KubeAPI:
        """Build from a ``kopf.ConnectionInfo`` (server, CA, token or client certificate)."""
        verify: ssl.SSLContext | bool = True
        if info.insecure:
            verify = False
        else:
            ctx = ssl.create_default_context()
            if info.ca_path:
                ctx.load_verify_locations(cafile=str(info.ca_path))
            elif info.ca_data:
                data = info.ca_data
                pem = base64.b64decode(data).decode() if "BEGIN" not in str(data) else str(data)
                ctx.load_verify_locations(cadata=pem)
            verify = ctx
        cert: tuple[str, str] | None = None
        if info.certificate_path or info.certificate_data:
            cert = (
                _materialise(info.certificate_path, info.certificate_data),
                _materialise(info.private_key_path, info.private_key_data),
            )
            if isinstance(verify, ssl.SSLContext):
                verify.load_cert_chain(*cert)
        headers = {}
        if info.token:
            headers["Authorization"] = f"{info.scheme or 'Bearer'} {info.token}"
        auth = httpx.BasicAuth(info.username, info.password) if info.username and info.password else None
        client = httpx.AsyncClient(
            base_url=info.server, headers=headers, auth=auth, verify=verify, timeout=httpx.Timeout(30.0)
        )
        return cls(client)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def get_secret(self, namespace: str, name: str) -> dict[str, str] | None:
        """The decoded data of a Secret, or None when it does not exist. Values are never logged."""
        resp = await self._client.get(f"/api/v1/namespaces/{namespace}/secrets/{name}")
        if resp.status_code == 404:
            return None
        if resp.status_code >= 400:
            raise KubeError(f"reading Secret {namespace}/{name}: HTTP {resp.status_code}", resp.status_code)
        data = resp.json().get("data") or {}
        return {k: base64.b64decode(v).decode(errors="replace") for k, v in data.items()}

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


def _materialise(path: Any, data: Any) -> str:
    if path:
        return str(path)
    raw = data if isinstance(data, bytes) else str(data).encode()
    if b"BEGIN" not in raw:
        raw = base64.b64decode(raw)
    fd = tempfile.NamedTemporaryFile(delete=False, suffix=".pem")  # noqa: SIM115
    fd.write(raw)
    fd.close()
    Path(fd.name).chmod(0o600)
    return fd.name
