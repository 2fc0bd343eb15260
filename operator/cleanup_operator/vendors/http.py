"""Shared HTTP plumbing for the vendor clients: client factory, one request helper that maps
transport and status failures onto :mod:`.errors`, backoff with jitter, and a per-key rate limiter.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import random
import ssl
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from .errors import (
    AuthError,
    BadResponseError,
    ConflictError,
    NotFoundError,
    RateLimitedError,
    RejectedError,
    TLSError,
    TransientError,
    VendorError,
    redact_url,
    truncate,
)

USER_AGENT = "cleanup-operator/0.1"


@dataclass(frozen=True)
class ClientOptions:
    """How to reach one vendor endpoint. Secrets live only in ``headers``/``auth`` and are never printed."""

    base_url: str
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    auth: tuple[str, str] | None = field(default=None, repr=False)
    ca_pem: str | None = field(default=None, repr=False)
    insecure_skip_verify: bool = False
    timeout: float = 30.0


def make_client(
    opts: ClientOptions,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    gates: EndpointGates | None = None,
    guard: RequestGuard | None = None,
) -> httpx.AsyncClient:
    """One pooled client per endpoint and credentials; TLS verification is on unless asked otherwise.

    With ``gates``, every request passes its endpoint's gate (bounded concurrency, and a fast
    refusal while the endpoint is not answering), so one slow vendor never holds the others up.
    ``guard`` is called right before a request goes out (after any wait at the gate); it raises to
    stop the request (leader election: the lease must be known held at that moment).
    """
    verify: ssl.SSLContext | bool
    if opts.insecure_skip_verify:
        verify = False
    elif opts.ca_pem:
        verify = ssl.create_default_context(cadata=opts.ca_pem)
    else:
        verify = True
    headers = {"User-Agent": USER_AGENT, "Accept": "application/json", **opts.headers}
    limits = httpx.Limits(max_connections=20, max_keepalive_connections=10)
    inner = transport or httpx.AsyncHTTPTransport(verify=verify, limits=limits)
    if guard is not None:
        inner = GuardedTransport(inner, guard)
    return httpx.AsyncClient(
        base_url=opts.base_url.rstrip("/"),
        headers=headers,
        auth=httpx.BasicAuth(*opts.auth) if opts.auth else None,
        timeout=httpx.Timeout(opts.timeout, connect=min(opts.timeout, 10.0)),
        transport=GatedTransport(inner, gates, opts.base_url) if gates is not None else inner,
    )


RequestGuard = Callable[[httpx.Request], None]


class GuardedTransport(httpx.AsyncBaseTransport):
    """Asks ``guard`` right before each request is sent; an exception it raises stops the request."""

    def __init__(self, inner: httpx.AsyncBaseTransport, guard: RequestGuard) -> None:
        self._inner = inner
        self._guard = guard

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self._guard(request)
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


class EndpointUnavailable(httpx.TransportError):
    """Refused without a request: the endpoint did not answer recent ones (see :class:`EndpointGate`)."""


@dataclass
class EndpointGate:
    """One vendor endpoint's share of the operator: at most ``limit`` requests in flight, and after
    a timeout or a refused connection a pause (2 s doubling to 5 min) in which requests are refused
    at once instead of waiting for the same timeout: then one request probes, the rest still wait.
    """

    limit: int
    backoff: Backoff = field(default_factory=lambda: Backoff(base=2.0, cap=300.0))
    failures: int = 0
    open_until: float = 0.0
    probing: bool = False
    in_flight: int = 0
    _semaphore: asyncio.Semaphore | None = None

    @property
    def semaphore(self) -> asyncio.Semaphore:
        if self._semaphore is None:
            self._semaphore = asyncio.Semaphore(self.limit)
        return self._semaphore

    def refusal(self, now: float) -> str | None:
        if self.failures == 0:
            return None
        if now < self.open_until:
            return f"it did not answer recent requests; trying again in {self.open_until - now:.0f}s"
        if self.probing:
            return "it did not answer recent requests; one request is probing it"
        return None

    def failed(self, now: float) -> None:
        self.failures += 1
        self.open_until = now + self.backoff.delay(self.failures - 1)

    def answered(self) -> None:
        self.failures = 0
        self.open_until = 0.0


class EndpointGates:
    """Gates by endpoint (base URL, plus the ``accountId`` a Harness request names)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.by_key: dict[str, EndpointGate] = {}

    def get(self, key: str) -> EndpointGate:
        gate = self.by_key.get(key)
        if gate is None:
            gate = self.by_key[key] = EndpointGate(self.limit)
        return gate


class GatedTransport(httpx.AsyncBaseTransport):
    def __init__(self, inner: httpx.AsyncBaseTransport, gates: EndpointGates, base_url: str) -> None:
        self._inner = inner
        self._gates = gates
        self._base = base_url.rstrip("/").lower()

    def _key(self, request: httpx.Request) -> str:
        account = request.url.params.get("accountId")
        return f"{self._base}|{account}" if account else self._base

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        gate = self._gates.get(self._key(request))
        loop = asyncio.get_running_loop()
        why = gate.refusal(loop.time())
        if why is not None:
            raise EndpointUnavailable(why, request=request)
        probe = gate.failures > 0
        if probe:
            gate.probing = True
        try:
            async with gate.semaphore:
                why = gate.refusal(loop.time()) if not probe else None  # it may have failed meanwhile
                if why is not None:
                    raise EndpointUnavailable(why, request=request)
                gate.in_flight += 1
                try:
                    response = await self._inner.handle_async_request(request)
                finally:
                    gate.in_flight -= 1
        except (httpx.TimeoutException, httpx.ConnectError) as exc:
            if _tls_failure(exc) is None:
                gate.failed(loop.time())  # an untrusted certificate is an answer, said as such
            raise
        finally:
            if probe:
                gate.probing = False
        gate.answered()
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


ErrorMessage = Callable[[httpx.Response, Any], str | None]


def default_error_message(response: httpx.Response, body: Any) -> str | None:
    """JFrog's documented error fields: ``errors[].message``, or ``info`` (the prune endpoints).

    Only a vendor's own documented fields ever reach a message (and so a status): whatever else an
    unknown server answers is left out, however it looks.
    """
    if isinstance(body, dict):
        errors = body.get("errors")
        if isinstance(errors, list):
            msgs = [e["message"] for e in errors if isinstance(e, dict) and isinstance(e.get("message"), str)]
            if msgs:
                return "; ".join(msgs)
        if isinstance(body.get("info"), str):
            return str(body["info"])
    return None


async def request(
    client: httpx.AsyncClient,
    method: str,
    path: str,
    *,
    vendor: str,
    expect: tuple[int, ...] = (200, 201, 202, 204),
    error_message: ErrorMessage = default_error_message,
    request_id_key: str | None = None,
    **kwargs: Any,
) -> tuple[httpx.Response, Any]:
    """Send a request and return ``(response, parsed JSON body or None)``.

    Raises the most specific :class:`VendorError` for transport failures, non-expected status codes
    and unreadable bodies. Status codes in ``expect`` are returned to the caller even when they are
    errors by HTTP standards (412 is a normal answer for JFrog's prune status).
    """
    where = f"{method} {redact_url(path)}"
    try:
        response = await client.request(method, path, **kwargs)
    except EndpointUnavailable as exc:
        raise TransientError(f"{vendor}: {where} not sent: {exc}", vendor=vendor) from exc
    except httpx.TimeoutException as exc:
        raise TransientError(f"{vendor}: {where} timed out", vendor=vendor) from exc
    except httpx.ConnectError as exc:
        tls = _tls_failure(exc)
        if tls is not None:
            raise TLSError(
                f"{vendor}: {where}: TLS failed ({tls}); trust the server's CA with"
                " spec.connection.caSecretRef",
                vendor=vendor,
            ) from exc
        raise TransientError(f"{vendor}: {where} failed: {type(exc).__name__}", vendor=vendor) from exc
    except httpx.TransportError as exc:
        raise TransientError(f"{vendor}: {where} failed: {type(exc).__name__}", vendor=vendor) from exc

    body: Any = None
    raw = response.content
    if raw:
        ctype = response.headers.get("content-type", "")
        try:
            body = json.loads(raw)
        except ValueError as exc:
            if response.status_code in expect and response.status_code < 300:
                raise BadResponseError(
                    f"{vendor}: {where} answered a body that is not JSON ({ctype or 'no content type'})",
                    vendor=vendor,
                    status_code=response.status_code,
                ) from exc
            body = None
        else:
            if "json" not in ctype and response.status_code < 300 and response.status_code in expect:
                raise BadResponseError(
                    f"{vendor}: {where} answered content type {ctype or 'none'}, expected application/json",
                    vendor=vendor,
                    status_code=response.status_code,
                )

    if response.status_code in expect:
        return response, body

    code = response.status_code
    # Never the raw body: an unknown server's answer (an internal page, an echo) stays out of status.
    msg = error_message(response, body) or response.reason_phrase or "no error message"
    request_id = None
    details: dict[str, Any] = {}
    if request_id_key and isinstance(body, dict):
        request_id = body.get(request_id_key)
        raw_details = body.get("details")
        details = raw_details if isinstance(raw_details, dict) else {}
    text = f"{vendor}: {where}: {truncate(msg)}"
    kw: dict[str, Any] = {"vendor": vendor, "status_code": code, "request_id": request_id, "details": details}
    if code in (401, 403):
        raise AuthError(text, **kw)
    if code == 404:
        raise NotFoundError(text, **kw)
    if code == 429:
        retry_after = _parse_retry_after(response.headers.get("retry-after"))
        raise RateLimitedError(text, retry_after=retry_after, **kw)
    if code in (409, 412, 423):
        raise ConflictError(text, **kw)
    if code >= 500:
        raise TransientError(text, **kw)
    if 400 <= code < 500:
        raise RejectedError(text, **kw)
    raise VendorError(text, **kw)


def _tls_failure(exc: BaseException) -> str | None:
    """The TLS reason behind a connection error (an untrusted certificate, a handshake refused), if any."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLWantReadError | ssl.SSLWantWriteError):
            # The handshake waiting for the peer (the context of whatever interrupted that wait):
            # no TLS failure.
            seen = seen.__cause__ or seen.__context__
            continue
        if isinstance(seen, ssl.SSLCertVerificationError):
            return seen.verify_message or "certificate verify failed"
        if isinstance(seen, ssl.SSLError):
            return seen.reason or "handshake failed"
        seen = seen.__cause__ or seen.__context__
    return None


def _parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


@dataclass
class Backoff:
    """Exponential backoff with "equal jitter": ``uniform(upper / 2, upper)`` where
    ``upper = min(cap, base * 2**attempt)`` — never less than half the step, so retries do spread out
    but never hammer."""

    base: float = 1.0
    cap: float = 300.0

    def delay(self, attempt: int) -> float:
        upper = min(self.cap, self.base * (2 ** max(0, attempt)))
        return random.uniform(upper / 2, upper)


class RateLimiter:
    """A sliding-window limiter: at most ``limit`` requests per ``window`` seconds, as the vendor counts.

    One instance is shared by every caller of a key (a Harness account), so many resources never
    stampede one vendor account. A request holds its place from the moment it may start until
    ``window`` seconds after it completed: however long it waited in a busy event loop or on the
    network, the vendor can never see more than ``limit`` arrivals in any ``window``.
    """

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        #: One entry per request: inf while it is in flight, then its completion time.
        self._stamps: list[list[float]] = []
        self._lock = asyncio.Lock()
        self._penalty_until = 0.0

    async def _take(self) -> list[float]:
        async with self._lock:
            while True:
                now = asyncio.get_running_loop().time()
                if now < self._penalty_until:
                    await asyncio.sleep(self._penalty_until - now)
                    continue
                self._stamps = [s for s in self._stamps if now - s[0] < self.window]
                if len(self._stamps) < self.limit:
                    stamp = [math.inf]
                    self._stamps.append(stamp)
                    return stamp
                done = [s[0] for s in self._stamps if s[0] != math.inf]
                wait = self.window - (now - min(done)) + 0.01 if done else 0.05
                await asyncio.sleep(max(0.01, wait))

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold a place for one request, from before it is sent until it completed."""
        stamp = await self._take()
        try:
            yield
        finally:
            stamp[0] = asyncio.get_running_loop().time()

    async def acquire(self) -> None:
        """A place for a request that is sent at once (counted from now)."""
        stamp = await self._take()
        stamp[0] = asyncio.get_running_loop().time()

    def penalize(self, seconds: float) -> None:
        """After a 429, hold every caller of this key back for a while."""
        self._penalty_until = max(self._penalty_until, asyncio.get_running_loop().time() + seconds)


class RateLimiters:
    """Limiters by key, created on first use. Owned by the operator and passed in explicitly."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self._by_key: dict[str, RateLimiter] = {}

    def get(self, key: str) -> RateLimiter:
        limiter = self._by_key.get(key)
        if limiter is None:
            limiter = self._by_key[key] = RateLimiter(self.limit, self.window)
        return limiter


class ClientPool:
    """One pooled ``httpx.AsyncClient`` per endpoint and credentials, reused across reconciles.

    ``key`` is an opaque fingerprint of the options (a hash, never the credentials themselves).
    """

    def __init__(self, transport: httpx.AsyncBaseTransport | None = None, *, per_endpoint: int = 10) -> None:
        self._clients: dict[str, httpx.AsyncClient] = {}
        self._transport = transport
        self.gates = EndpointGates(per_endpoint)
        #: Called right before every request of every client made from here on (:func:`make_client`).
        self.guard: RequestGuard | None = None

    def get(self, key: str, opts: ClientOptions) -> httpx.AsyncClient:
        client = self._clients.get(key)
        if client is None or client.is_closed:
            client = self._clients[key] = make_client(
                opts, transport=self._transport, gates=self.gates, guard=self.guard
            )
        return client

    async def aclose(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.aclose()
