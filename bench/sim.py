"""The vendor simulators in a process of their own, for the bench.

``python -m bench.sim --harness-streams 200`` serves every simulator on one loopback port (as
``python -m cleanup_operator.testing.simulators`` does) and, on a second port, what the bench reads:
``GET /bench/calls?since=N`` (the call log from index N, with each call's time) and
``GET /bench/harness`` (429s answered and the most requests seen in one rate window). It prints one
JSON line with both ports once it listens, then serves until SIGTERM.

Harness is seeded with streams ``stream-00000`` … of a supported type in account ``acc1``; its rate
limit is the documented 30 requests per 60 s unless ``--harness-rate``/``--harness-window`` say
otherwise (tests scale the window down).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal

from aiohttp import web

from cleanup_operator.testing.simulators import HarnessSimulator, build_server

ACCOUNT = "acc1"


def stream_id(i: int) -> str:
    return f"stream-{i:05d}"


async def serve(args: argparse.Namespace) -> None:
    server = build_server(args.host, args.port)
    harness = server.simulator("harness")
    assert isinstance(harness, HarnessSimulator)
    harness.rate_limit = args.harness_rate
    harness.rate_window = args.harness_window
    for i in range(args.harness_streams):
        harness.add_stream(ACCOUNT, stream_id(i), "DOCKER")

    async def calls(request: web.Request) -> web.Response:
        since = int(request.query.get("since", "0"))
        listed = server.calls.calls()[since:]
        return web.json_response(
            {
                "next": since + len(listed),
                "calls": [[c.vendor, c.method, c.path, c.status, c.at] for c in listed],
            }
        )

    async def harness_stats(_: web.Request) -> web.Response:
        return web.json_response(
            {
                "rateLimited": harness.rate_limited_count(ACCOUNT),
                "maxInWindow": harness.max_in_window(ACCOUNT),
                "rateLimit": harness.rate_limit,
                "rateWindow": harness.rate_window,
            }
        )

    control = web.Application()
    control.router.add_get("/bench/calls", calls)
    control.router.add_get("/bench/harness", harness_stats)
    runner = web.AppRunner(control, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, args.host, args.control_port)
    await server.start()
    await site.start()
    sockets = getattr(site._server, "sockets", None) or []
    control_port = sockets[0].getsockname()[1] if sockets else args.control_port
    print(json.dumps({"port": server.port, "controlPort": control_port}), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()
    await server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--control-port", type=int, default=0)
    parser.add_argument("--harness-streams", type=int, default=0)
    parser.add_argument("--harness-rate", type=int, default=30)
    parser.add_argument("--harness-window", type=float, default=60.0)
    asyncio.run(serve(parser.parse_args()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
