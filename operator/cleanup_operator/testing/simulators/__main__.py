"""``python -m cleanup_operator.testing.simulators``: every simulated vendor on one loopback port.

Each vendor sits under its prefix on ``--port`` (``/jfrog``, ``/harness``, ``/sourcecraft``);
``--jfrog-port``, ``--harness-port`` and ``--sourcecraft-port`` also serve that vendor at its real
root paths on a port of its own (``/artifactory/api/…``, ``/gateway/api/graphql``, ``/repos/…``),
for clients that keep only scheme, host and port of a URL. ``--echo-sample-shape`` makes the JFrog
simulator echo the vendor-doc sample's defaults for unset policy fields. ``--demo`` seeds the data
the manifests in ``examples/`` refer to. Faults can be injected and the call log read over HTTP on
``--port``: ``POST /_sim/faults/<prefix>`` with a JSON fault (see ``faults.py``), ``GET /_sim/calls``
(``?include_telemetry=true`` adds usage reports), ``POST /_sim/reset``. ``--tls-dir DIR`` serves
every port over https with a certificate for 127.0.0.1, localhost and ::1 signed by a CA made at
start, whose certificate is written to ``DIR/ca.crt`` (for ``curl --cacert`` or a caSecretRef
Secret); the default is plain http.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import ssl
import time
from pathlib import Path

from . import HarnessSimulator, JFrogSimulator, SourceCraftSimulator, build_server
from .server import SimulatorServer


def seed_demo(server: SimulatorServer) -> None:
    """The data examples/ expects: Harness streams of a supported and an unsupported type, a CI run."""
    jfrog = server.simulator("jfrog")
    harness = server.simulator("harness")
    sourcecraft = server.simulator("sourcecraft")
    assert isinstance(jfrog, JFrogSimulator)
    assert isinstance(harness, HarnessSimulator)
    assert isinstance(sourcecraft, SourceCraftSimulator)
    jfrog.prune_seconds_per_directory = 0.1
    jfrog.run_duration = 3.0
    jfrog.set_run_result("docker-stale", packages=12, versions=57, nbytes=3_221_225_472)
    harness.add_stream("acc1", "bOgdZBYQS2-oHZMwEZTeIQ", "DOCKER")
    harness.add_stream("acc1", "jenkins-stream", "JENKINS")
    sourcecraft.add_runs("acme", "web", 3)
    sourcecraft.add_run(
        "acme",
        "web",
        "run-4",
        workflow="build",
        task="package",
        cube="publish",
        artifacts=[
            ("dist/web.tar.gz", "success"),
            ("dist/web.sbom.json", "success"),
            ("reports/e2e.xml", "missing"),
        ],
        processing_seconds=8,
        created_at=time.time(),
    )


VENDORS = ("jfrog", "harness", "sourcecraft")


async def serve(
    host: str,
    port: int,
    demo: bool,
    root_ports: dict[str, int],
    echo_sample_shape: bool = False,
    ssl_context: ssl.SSLContext | None = None,
) -> None:
    server = build_server(host, port, root_ports=root_ports, ssl_context=ssl_context)
    jfrog = server.simulator("jfrog")
    assert isinstance(jfrog, JFrogSimulator)
    jfrog.echo_empty_defaults = echo_sample_shape
    if demo:
        seed_demo(server)
    await server.start()
    for prefix in VENDORS:
        line = f"{prefix:12} {server.url(prefix)}"
        if prefix in server.root_ports:
            line += f"  {server.root_url(prefix)}"
        print(line, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to listen on")
    parser.add_argument("--port", type=int, default=18080)
    for prefix in VENDORS:
        parser.add_argument(
            f"--{prefix}-port",
            type=int,
            metavar="PORT",
            help=f"also serve {prefix} at its real root paths on this port (0: any free port)",
        )
    parser.add_argument("--demo", action="store_true", help="seed the data examples/ refers to")
    parser.add_argument(
        "--echo-sample-shape",
        action="store_true",
        help='JFrog: echo the doc sample\'s defaults for unset policy fields ("excludedRepos": [] …)',
    )
    parser.add_argument(
        "--tls-dir",
        type=Path,
        metavar="DIR",
        help="serve https with a CA made at start; its certificate is written to DIR/ca.crt",
    )
    args = parser.parse_args()
    roots = {p: port for p in VENDORS if (port := getattr(args, f"{p}_port")) is not None}
    context = None
    if args.tls_dir is not None:
        from ..tls import SimulatorCA

        ca = SimulatorCA()
        print(f"{'ca':12} {ca.write_ca(args.tls_dir)}", flush=True)
        context = ca.server_context()
    asyncio.run(serve(args.host, args.port, args.demo, roots, args.echo_sample_shape, context))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
