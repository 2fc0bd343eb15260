"""The few Kubernetes API calls the bench and its floor client make, on httpx, from a kubeconfig."""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import yaml

GROUP = "cleanup.artifacts.dev"
VERSION = "v1alpha1"


class _RetryBusy(httpx.AsyncHTTPTransport):
    """The API server answers 429 while a new CRD's storage starts (and under load): wait as told."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        for _ in range(30):
            response = await super().handle_async_request(request)
            if response.status_code != 429:
                return response
            await response.aclose()
            await asyncio.sleep(float(response.headers.get("Retry-After") or 1))
        return response


def client_from_kubeconfig(path: Path, *, limits: int = 64) -> httpx.AsyncClient:
    """A client for the kubeconfig's current context (server, CA data and bearer token)."""
    config = yaml.safe_load(path.read_text())
    context = next(c for c in config["contexts"] if c["name"] == config["current-context"])["context"]
    cluster = next(c for c in config["clusters"] if c["name"] == context["cluster"])["cluster"]
    user = next(u for u in config["users"] if u["name"] == context["user"])["user"]
    ctx = ssl.create_default_context(cadata=base64.b64decode(cluster["certificate-authority-data"]).decode())
    return httpx.AsyncClient(
        base_url=cluster["server"],
        headers={"Authorization": f"Bearer {user['token']}"},
        timeout=httpx.Timeout(60.0),
        transport=_RetryBusy(
            verify=ctx, limits=httpx.Limits(max_connections=limits, max_keepalive_connections=limits)
        ),
    )


def objects_path(namespace: str, plural: str) -> str:
    return f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{plural}"


class Kube:
    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def aclose(self) -> None:
        await self.client.aclose()

    async def create(self, namespace: str, plural: str, body: dict[str, Any]) -> dict[str, Any]:
        resp = await self.client.post(objects_path(namespace, plural), json=body)
        resp.raise_for_status()
        created: dict[str, Any] = resp.json()
        return created

    async def ensure_namespace(self, name: str) -> None:
        resp = await self.client.post("/api/v1/namespaces", json={"metadata": {"name": name}})
        if resp.status_code != 409:
            resp.raise_for_status()

    async def create_secret(self, namespace: str, name: str, data: dict[str, str]) -> None:
        """A Secret labelled for the operator (README: Secrets opt in by label)."""
        body = {
            "metadata": {"name": name, "labels": {f"{GROUP}/credentials": "true"}},
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
        }
        resp = await self.client.post(f"/api/v1/namespaces/{namespace}/secrets", json=body)
        if resp.status_code != 409:
            resp.raise_for_status()

    async def list_objects(self, namespace: str, plural: str) -> tuple[list[dict[str, Any]], str]:
        resp = await self.client.get(objects_path(namespace, plural))
        resp.raise_for_status()
        body = resp.json()
        return list(body.get("items") or []), str(body["metadata"]["resourceVersion"])

    async def watch(
        self, namespace: str, plural: str, resource_version: str
    ) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """Watch events from ``resource_version`` on, reconnecting when the server ends a watch."""
        version = resource_version
        while True:
            params = {
                "watch": "1",
                "resourceVersion": version,
                "allowWatchBookmarks": "true",
                "timeoutSeconds": "600",
            }
            async with self.client.stream(
                "GET",
                objects_path(namespace, plural),
                params=params,
                timeout=httpx.Timeout(60.0, read=700.0),
            ) as resp:
                resp.raise_for_status()
                async for line in resp.aiter_lines():
                    if not line.strip():
                        continue
                    event = json.loads(line)
                    kind, obj = str(event.get("type")), event.get("object") or {}
                    if kind == "ERROR":
                        raise RuntimeError(f"watch of {plural} in {namespace} failed: {obj.get('message')}")
                    version = str((obj.get("metadata") or {}).get("resourceVersion") or version)
                    if kind != "BOOKMARK":
                        yield kind, obj

    async def patch_status(self, namespace: str, plural: str, name: str, status: dict[str, Any]) -> None:
        resp = await self.client.patch(
            f"{objects_path(namespace, plural)}/{name}/status",
            json={"status": status},
            headers={"Content-Type": "application/merge-patch+json"},
        )
        resp.raise_for_status()

    async def events(self, namespace: str) -> list[dict[str, Any]]:
        resp = await self.client.get(f"/api/v1/namespaces/{namespace}/events")
        resp.raise_for_status()
        return list(resp.json().get("items") or [])
