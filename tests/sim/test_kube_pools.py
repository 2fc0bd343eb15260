"""The operator's own API-server client: long-lived watches never starve its requests, and a
burst of requests waits in front of the connection pool, never inside it.

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

from cleanup_operator.kube import REQUEST_CONNECTIONS, KubeAPI, KubeError

WATCHES = 120  # more than any request pool this client had (100): one watched namespace each


@contextlib.asynccontextmanager
async def serve(app: web.Application) -> AsyncIterator[str]:
    """``app`` on a loopback port; its base URL."""
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


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
    async with serve(app) as url:
        yield url, patched


async def test_status_patches_go_through_while_every_namespace_is_watched(
    api_server: tuple[str, list[str]],
) -> None:
    url, patched = api_server
    kube = KubeAPI.from_connection_info(kopf.ConnectionInfo(server=url, token="t"))
    opened = asyncio.Event()
    count = 0

    async def follow(ns: str) -> None:
        nonlocal count
        path = f"/api/v1/namespaces/{ns}/secrets"
        async for _ in kube.watch_raw(path, "cleanup.artifacts.dev/credentials=true", "1"):
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


async def test_a_burst_of_patches_never_has_more_in_the_pool_than_connections() -> None:
    """500 status patches at once: they wait in front of httpcore's pool (which scans every request
    it holds whenever one starts or ends), never more than REQUEST_CONNECTIONS inside it; every
    patch is answered, and errors (a 500, a dropped connection) give their slot back."""
    in_flight = peak = 0
    answer_after = 0.002

    async def patch(request: web.Request) -> web.StreamResponse:
        nonlocal in_flight, peak
        name = request.match_info["name"]
        in_flight += 1
        peak = max(peak, in_flight)
        try:
            await asyncio.sleep(answer_after)
            if name.endswith("-13"):
                return web.json_response({"message": "boom"}, status=500)
            if name.endswith("-17"):
                assert request.transport is not None
                request.transport.close()  # dropped mid-request: a transport error for the client
                return web.Response()
            return web.json_response({"metadata": {"resourceVersion": name.rsplit("-", 1)[1]}})
        finally:
            in_flight -= 1

    app = web.Application()
    app.router.add_patch(
        "/apis/cleanup.artifacts.dev/v1alpha1/namespaces/{ns}/cleanuppolicies/{name}/status", patch
    )
    async with serve(app) as url:
        kube = KubeAPI.from_connection_info(kopf.ConnectionInfo(server=url, token="t"))
        # httpcore's own queue (private: the client's transport wraps httpx's, which wraps the pool).
        pool = kube._client._transport._inner._pool  # type: ignore[attr-defined]
        queued: list[int] = []

        async def sample() -> None:
            while True:
                queued.append(len(pool._requests))
                await asyncio.sleep(0)

        sampler = asyncio.create_task(sample())
        try:
            names = [f"p-{i}" for i in range(500)]
            results = await asyncio.wait_for(
                asyncio.gather(
                    *(kube.patch_status("cleanuppolicies", "ns", n, {"phase": "x"}) for n in names),
                    return_exceptions=True,
                ),
                60,
            )
            assert 1 < peak <= REQUEST_CONNECTIONS, peak
            assert len(queued) > 100 and max(queued) <= REQUEST_CONNECTIONS, max(queued)
            failed = {n for n, r in zip(names, results, strict=True) if isinstance(r, Exception)}
            assert failed == {n for n in names if n.endswith(("-13", "-17"))}, failed
            assert all(isinstance(r, KubeError) for r in results if isinstance(r, Exception))
            assert {r for r in results if isinstance(r, str)} == {
                n.rsplit("-", 1)[1] for n in names if n not in failed
            }
            # Every slot came back: as many patches as there are connections are in flight at once again
            # (slow answers now, so that they all overlap).
            peak, answer_after = 0, 0.2
            again = [f"q{i}-ok" for i in range(REQUEST_CONNECTIONS * 3)]
            await asyncio.wait_for(
                asyncio.gather(*(kube.patch_status("cleanuppolicies", "ns", n, {}) for n in again)), 10
            )
            assert peak == REQUEST_CONNECTIONS
        finally:
            sampler.cancel()
            await kube.aclose()
