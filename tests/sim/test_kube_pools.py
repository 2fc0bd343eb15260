"""The operator's own API-server client: long-lived watches never starve its requests.

A loopback server plays the two API-server routes involved (a Secret watch that stays open, as
the real one does for up to ``timeoutSeconds``, and a status patch); the client is the one the
operator builds from Kopf's connection info.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

import kopf
import pytest
from aiohttp import web

from cleanup_operator.kube import KubeAPI

WATCHES = 120  # more than any request pool this client had (100): one watched namespace each


@pytest.fixture
async def api_server() -> AsyncIterator[tuple[str, list[str]]]:
    patched: list[str] = []

    async def watch(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        await resp.prepare(request)
        bookmark = {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "7"}}}
        await resp.write(json.dumps(bookmark).encode() + b"\n")
        await asyncio.sleep(3600)  # an open watch: nothing happens in the namespace
        return resp

    async def patch(request: web.Request) -> web.Response:
        patched.append(request.match_info["name"])
        return web.json_response({"metadata": {"resourceVersion": "8"}})

    app = web.Application()
    app.router.add_get("/api/v1/namespaces/{ns}/secrets", watch)
    app.router.add_patch(
        "/apis/cleanup.artifacts.dev/v1alpha1/namespaces/{ns}/storageprunes/{name}/status", patch
    )
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}", patched
    finally:
        await runner.cleanup()


async def test_status_patches_go_through_while_every_namespace_is_watched(
    api_server: tuple[str, list[str]],
) -> None:
    url, patched = api_server
    kube = KubeAPI.from_connection_info(kopf.ConnectionInfo(server=url, token="t"))
    opened = asyncio.Event()
    count = 0

    async def follow(ns: str) -> None:
        nonlocal count
        async for _ in kube.watch_secrets(ns, "cleanup.artifacts.dev/credentials=true", "1"):
            count += 1
            if count == WATCHES:
                opened.set()

    tasks = [asyncio.create_task(follow(f"ns-{i}")) for i in range(WATCHES)]
    try:
        await asyncio.wait_for(opened.wait(), 10)  # every watch holds a connection now
        # With one bounded pool for both, this waited for a connection until PoolTimeout.
        version = await asyncio.wait_for(
            kube.patch_status("storageprunes", "ns-0", "filestore", {"phase": "Running"}), 5
        )
        assert version == "8" and patched == ["filestore"]
    finally:
        for task in tasks:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*tasks)
        await kube.aclose()
