"""One loopback HTTP server hosting every simulated vendor, each under its own path prefix.

``http://127.0.0.1:<port>/jfrog`` is an Artifactory base URL, ``/harness`` a Harness base URL and
``/sourcecraft`` a SourceCraft API base URL. More instances of a vendor can be mounted under other
prefixes (two Artifactories, say). Control endpoints under ``/_sim`` let a standalone user inject
faults and read the call log; tests use the Python objects directly.

A mounted vendor can also be served at its real root paths on a port of its own
(:meth:`SimulatorServer.serve_at_root`): ``http://127.0.0.1:<jfrog port>/artifactory/api/…`` as a
real Artifactory serves it, for clients that keep only scheme, host and port of their URL (JFrog's
Terraform provider). Both listeners share the one simulator object, its faults and the call log;
a call's ``path`` is the path as requested (with the prefix on the shared port, without on the
root port).
"""

from __future__ import annotations

import asyncio
import ssl
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
    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, *, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        self.host = host
        self.port = port
        #: Server-side TLS for every listener; None: plain http.
        self.ssl_context = ssl_context
        self.calls = CallLog()
        self._mounts: dict[str, VendorSimulator] = {}
        #: prefix -> port asked for (0: any free port; the bound port once started).
        self.root_ports: dict[str, int] = {}
        self._runner: web.AppRunner | None = None
        self._root_runners: list[web.AppRunner] = []
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def mount(self, prefix: str, simulator: VendorSimulator) -> VendorSimulator:
        """Serve ``simulator`` under ``/<prefix>``; call before :meth:`start`."""
        if self._runner is not None:
            raise RuntimeError("mount simulators before starting the server")
        self._mounts[prefix.strip("/")] = simulator
        return simulator

    def serve_at_root(self, prefix: str, port: int = 0) -> None:
        """Also serve the simulator mounted at ``prefix`` at its root paths on ``port``; before start."""
        if self._runner is not None:
            raise RuntimeError("choose root ports before starting the server")
        name = prefix.strip("/")
        if name not in self._mounts:
            raise KeyError(f"no simulator mounted at /{name}")
        self.root_ports[name] = port

    @property
    def scheme(self) -> str:
        return "https" if self.ssl_context is not None else "http"

    def origin(self, port: int | None = None) -> str:
        """``scheme://host:port`` of the shared port (or of ``port``), IPv6 hosts in brackets."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port if port is None else port}"

    def url(self, prefix: str) -> str:
        return f"{self.origin()}/{prefix.strip('/')}"

    def root_url(self, prefix: str) -> str:
        """Base URL of the vendor's own port (see :meth:`serve_at_root`): no path prefix."""
        return self.origin(self.root_ports[prefix.strip("/")])

    def simulator(self, prefix: str) -> VendorSimulator:
        return self._mounts[prefix.strip("/")]

    def reset(self) -> None:
        """Forget all state, faults and calls (between tests)."""
        for sim in self._mounts.values():
            sim.reset()
            sim.faults.clear()
        self.calls.clear()

    def _vendor_app(self, sim: VendorSimulator) -> web.Application:
        telemetry = getattr(sim, "is_telemetry", None)
        app = web.Application(middlewares=[instrument(sim.vendor, sim.faults, self.calls, telemetry)])  # type: ignore[list-item]
        sim.add_routes(app)
        return app

    def _build(self) -> web.Application:
        root = web.Application()
        for prefix, sim in self._mounts.items():
            root.add_subapp(f"/{prefix}", self._vendor_app(sim))
        root.router.add_post("/_sim/faults/{prefix}", self._add_fault)
        root.router.add_delete("/_sim/faults", self._clear_faults)
        root.router.add_get("/_sim/calls", self._list_calls)
        root.router.add_post("/_sim/reset", self._reset)
        return root

    async def _listen(self, app: web.Application, port: int) -> tuple[web.AppRunner, int]:
        # A vendor does not wait a minute for its clients' keep-alive connections to end (aiohttp's
        # default): a stopping simulator closes them within a second.
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, self.host, port, ssl_context=self.ssl_context)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        server = site._server
        assert server is not None
        sockets = getattr(server, "sockets", None) or []
        return runner, (sockets[0].getsockname()[1] if sockets else port)

    async def start(self) -> None:
        try:
            self._runner, self.port = await self._listen(self._build(), self.port)
            for prefix, port in self.root_ports.items():
                runner, self.root_ports[prefix] = await self._listen(
                    self._vendor_app(self._mounts[prefix]), port
                )
                self._root_runners.append(runner)
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        for runner in self._root_runners:
            await runner.cleanup()
        self._root_runners.clear()
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
        """The call log; ``?include_telemetry=true`` adds the telemetry calls (flagged)."""
        everything = request.query.get("include_telemetry", "").lower() in ("1", "true", "yes")
        calls = [
            {
                "vendor": c.vendor,
                "method": c.method,
                "path": c.path,
                "query": c.query,
                "status": c.status,
                "telemetry": c.telemetry,
            }
            for c in self.calls.calls(include_telemetry=everything)
        ]
        return web.json_response(calls)

    async def _reset(self, request: web.Request) -> web.Response:
        self.reset()
        return web.json_response({}, status=200)
