"""Stateful, fault-injectable simulators of the vendor APIs, faithful to ``vendor-docs``.

>>> server = build_server()            # JFrog at /jfrog, Harness at /harness, SourceCraft at /sourcecraft
>>> server.start_in_thread()
>>> server.url("jfrog")                # an Artifactory base URL for a CleanupPolicy's spec.connection.url

``build_server(root_ports={"jfrog": 0})`` also serves JFrog at its real root paths on a free port of
its own (``server.root_url("jfrog")``), backed by the same simulator object.
``build_server(ssl_context=SimulatorCA().server_context())`` serves https (``testing.tls``).
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping

from .clock import ManualClock
from .faults import Call, CallLog, Fault, Faults
from .harness import HarnessSimulator
from .jfrog import JFrogSimulator
from .server import SimulatorServer, VendorSimulator
from .sourcecraft import SourceCraftSimulator

__all__ = [
    "Call",
    "CallLog",
    "Fault",
    "Faults",
    "HarnessSimulator",
    "JFrogSimulator",
    "ManualClock",
    "SimulatorServer",
    "SourceCraftSimulator",
    "VendorSimulator",
    "build_server",
]


def build_server(
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    root_ports: Mapping[str, int] | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> SimulatorServer:
    """A server with one simulator of each vendor mounted at its usual prefix.

    ``root_ports`` maps a prefix (``"jfrog"``, ``"harness"``, ``"sourcecraft"``) to a port (0: any
    free one) where that vendor is also served at its real root paths. ``ssl_context`` (server
    side) makes every listener serve https; without it the server speaks plain http.
    """
    server = SimulatorServer(host, port, ssl_context=ssl_context)
    server.mount("jfrog", JFrogSimulator())
    server.mount("harness", HarnessSimulator())
    server.mount("sourcecraft", SourceCraftSimulator())
    for prefix, root_port in (root_ports or {}).items():
        server.serve_at_root(prefix, root_port)
    return server
