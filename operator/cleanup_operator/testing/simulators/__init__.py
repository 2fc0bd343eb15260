"""Stateful, fault-injectable simulators of the vendor APIs, faithful to ``vendor-docs``.

>>> server = build_server()            # JFrog at /jfrog, Harness at /harness, SourceCraft at /sourcecraft
>>> server.start_in_thread()
>>> server.url("jfrog")                # an Artifactory base URL for a CleanupPolicy's spec.connection.url
"""

from __future__ import annotations

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
    "SimulatorServer",
    "SourceCraftSimulator",
    "VendorSimulator",
    "build_server",
]


def build_server(host: str = "127.0.0.1", port: int = 0) -> SimulatorServer:
    """A server with one simulator of each vendor mounted at its usual prefix."""
    server = SimulatorServer(host, port)
    server.mount("jfrog", JFrogSimulator())
    server.mount("harness", HarnessSimulator())
    server.mount("sourcecraft", SourceCraftSimulator())
    return server
