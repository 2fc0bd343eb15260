"""One loopback HTTP server hosting every simulated vendor, each under its own path prefix.

``http://127.0.0.1:<port>/jfrog`` is an Artifactory base URL, ``/harness`` a Harness base URL and
``/sourcecraft`` a SourceCraft API base URL. More instances of a vendor can be mounted under other
prefixes (two Artifactories, say). Control endpoints under ``/_sim`` let a standalone user inject
faults and read the call log; tests use the Python objects directly.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Protocol

from aiohttp import web

from .faults import CallLog, Fault, Faults, instrument


class VendorSimulator(Protocol):
    """What the server needs of a simulated vendor."""

    vendor: str
    faults: Faults

    def add_routes(self, app: web.Application) -> None: ...

    def reset(self) -> None: ...


class SimulatorServer:
    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self.calls = CallLog()
        self._mounts: dict[str, VendorSimulator] = {}
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def mount(self, prefix: str, simulator: VendorSimulator) -> VendorSimulator:
        """Serve ``simulator`` under ``/<prefix>``; call before :meth:`start`."""
        if self._runner is not None:
            raise RuntimeError("mount simulators before starting the server")
        self._mounts[prefix.strip("/")] = simulator
        return simulator

    def url(self, prefix: str) -> str:
        return f"http://{self.host}:{self.port}/{prefix.strip('/')}"

    def simulator(self, prefix: str) -> VendorSimulator:
        return self._mounts[prefix.strip("/")]

    def reset(self) -> None:
        """Forget all state, faults and calls (between tests)."""
        for sim in self._mounts.values():
            sim.reset()
            sim.faults.clear()
        self.calls.clear()

    def _build(self) -> web.Application:
        root = web.Application()
        for prefix, sim in self._mounts.items():
            sub = web.Application(middlewares=[instrument(sim.vendor, sim.faults, self.calls)])  # type: ignore[list-item]
            sim.add_routes(sub)
            root.add_subapp(f"/{prefix}", sub)
        root.router.add_post("/_sim/faults/{prefix}", self._add_fault)
        root.router.add_delete("/_sim/faults", self._clear_faults)
        root.router.add_get("/_sim/calls", self._list_calls)
        root.router.add_post("/_sim/reset", self._reset)
        return root

    async def start(self) -> None:
        self._runner = web.AppRunner(self._build(), access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        server = site._server
        assert server is not None
        sockets = getattr(server, "sockets", None) or []
        if sockets:
            self.port = sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # Thread mode, for synchronous test code and for the operator running in another loop.

    def start_in_thread(self) -> SimulatorServer:
        ready = threading.Event()
        errors: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self.start())
            except BaseException as exc:
                errors.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self.stop())
            loop.close()

        self._thread = threading.Thread(target=run, name="vendor-simulators", daemon=True)
        self._thread.start()
        ready.wait(30)
        if errors:
            raise errors[0]
        return self

    def stop_thread(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._thread = None

    def call_soon(self, fn: Any, *args: Any) -> None:
        """Run ``fn`` on the server's loop (for state changes from another thread)."""
        assert self._loop is not None
        self._loop.call_soon_threadsafe(fn, *args)

    # Control endpoints.

    async def _add_fault(self, request: web.Request) -> web.Response:
        prefix = request.match_info["prefix"]
        if prefix not in self._mounts:
            return web.json_response({"error": f"no simulator at /{prefix}"}, status=404)
        spec = await request.json()
        fault = self._mounts[prefix].faults.add(Fault(**spec))
        return web.json_response({"added": fault.kind}, status=201)

    async def _clear_faults(self, request: web.Request) -> web.Response:
        for sim in self._mounts.values():
            sim.faults.clear()
        return web.json_response({}, status=200)

    async def _list_calls(self, request: web.Request) -> web.Response:
        calls = [
            {"vendor": c.vendor, "method": c.method, "path": c.path, "query": c.query, "status": c.status}
            for c in self.calls.calls()
        ]
        return web.json_response(calls)

    async def _reset(self, request: web.Request) -> web.Response:
        self.reset()
        return web.json_response({}, status=200)
