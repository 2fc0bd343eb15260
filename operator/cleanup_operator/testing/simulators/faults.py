"""Fault injection and the call log shared by every simulated vendor.

A fault is matched by HTTP method and a path regular expression and fires for the next ``times``
requests that match (``times=None``: until cleared). Kinds:

- ``status``: answer ``status`` with ``body`` (JSON) — 5xx, 429, 401/403, anything.
- ``latency``: sleep ``delay`` seconds, then serve normally.
- ``late``: serve normally (the action happens), then sleep ``delay`` seconds before answering: a
  client that gives up or dies meanwhile never learns that its request was carried out.
- ``drop``: close the connection without an answer.
- ``malformed``: answer 200 with a body that is not JSON but says ``application/json``.
- ``content_type``: answer the normal body with ``text/html``.

*Telemetry* calls (a simulator's ``is_telemetry(method, path)`` says which: JFrog's
``POST /artifactory/api/system/usage``) are answered normally, never faulted, and recorded with
``telemetry=True``; :meth:`CallLog.calls` and ``len()`` leave them out unless asked, so the counts
tests assert on are the same whether or not a client reports usage.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web

FaultKind = Literal["status", "latency", "late", "drop", "malformed", "content_type"]


@dataclass
class Fault:
    kind: FaultKind
    path: str = ".*"
    method: str = "*"
    status: int = 500
    body: Any = None
    delay: float = 0.0
    times: int | None = 1
    _pattern: re.Pattern[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._pattern = re.compile(self.path)

    def matches(self, method: str, path: str) -> bool:
        return (self.method in ("*", method)) and bool(self._pattern.search(path))


@dataclass(frozen=True)
class Call:
    """One request as the simulator saw it (headers are not kept: they hold credentials)."""

    vendor: str
    method: str
    path: str
    query: dict[str, str]
    json: Any
    status: int
    at: float
    #: A usage report or similar, not part of the vendor conversation (module docstring).
    telemetry: bool = False


class CallLog:
    """Every request the simulator answered, in order; thread-safe so tests in another thread can read it."""

    def __init__(self) -> None:
        self._calls: list[Call] = []
        self._lock = threading.Lock()

    def add(self, call: Call) -> None:
        with self._lock:
            self._calls.append(call)

    def calls(
        self,
        vendor: str | None = None,
        method: str | None = None,
        path: str | None = None,
        *,
        include_telemetry: bool = False,
    ) -> list[Call]:
        """Calls filtered by vendor, method and a path regular expression (``re.search``).

        Telemetry calls are left out unless ``include_telemetry``.
        """
        pat = re.compile(path) if path else None
        with self._lock:
            return [
                c
                for c in self._calls
                if (include_telemetry or not c.telemetry)
                and (vendor is None or c.vendor == vendor)
                and (method is None or c.method == method)
                and (pat is None or pat.search(c.path))
            ]

    def clear(self) -> None:
        with self._lock:
            self._calls.clear()

    def __len__(self) -> int:
        """The number of calls :meth:`calls` lists by default (telemetry left out)."""
        with self._lock:
            return sum(1 for c in self._calls if not c.telemetry)


class Faults:
    """The active faults, per simulated vendor."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._lock = threading.Lock()

    def add(self, fault: Fault) -> Fault:
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def take(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.matches(method, path):
                    if fault.times is not None:
                        fault.times -= 1
                        if fault.times <= 0:
                            self._faults.remove(fault)
                    return fault
        return None


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
TelemetryRule = Callable[[str, str], bool]


def _never(method: str, path: str) -> bool:
    return False


def instrument(
    vendor: str, faults: Faults, log: CallLog, telemetry: TelemetryRule | None = None
) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
    """aiohttp middleware: apply any matching fault, then record the call with its answer's status.

    ``telemetry(method, path)`` marks calls that are never faulted and are logged as telemetry.
    """
    is_telemetry = telemetry or _never

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        body: Any = None
        if request.can_read_body:
            raw = await request.read()
            try:
                import json as _json

                body = _json.loads(raw) if raw else None
            except ValueError:
                body = raw.decode(errors="replace")
        path = request.path
        flagged = is_telemetry(request.method, path)
        fault = None if flagged else faults.take(request.method, path)
        status = 0
        try:
            if fault is not None and fault.kind == "latency":
                await asyncio.sleep(fault.delay)
                fault = None
            if fault is None:
                response = await handler(request)
            elif fault.kind == "late":
                response = await handler(request)
                await asyncio.sleep(fault.delay)
            elif fault.kind == "status":
                response = web.json_response(
                    fault.body if fault.body is not None else {}, status=fault.status
                )
            elif fault.kind == "malformed":
                response = web.Response(text='{"truncated": ', status=200, content_type="application/json")
            elif fault.kind == "content_type":
                inner = await handler(request)
                text = inner.text if isinstance(inner, web.Response) else ""
                response = web.Response(
                    text=text or "<html></html>", status=inner.status, content_type="text/html"
                )
            elif fault.kind == "drop":
                transport = request.transport
                if transport is not None:
                    transport.abort()
                raise asyncio.CancelledError
            else:  # pragma: no cover - Literal exhausts the kinds
                raise AssertionError(fault.kind)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            log.add(
                Call(vendor, request.method, path, dict(request.query), body, status, time.time(), flagged)
            )

    return middleware
