"""The per-object reconcile loop shared by every kind (Kopf-free, so it is tested without Kopf).

One loop per object serialises all work on it: a change (new generation or a new value of an
annotation we react to) wakes the loop; otherwise it sleeps until the reconciler's requeue time.
Status is computed, compared with what the object shows, and patched once, only when it differs.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from .api.common import ADOPT, FORCE_DELETE, REQUESTED_AT, KindInfo
from .credentials import Credentials, fingerprint
from .kube import KubeAPI, KubeError
from .reconcile.conditions import StatusBuilder, status_patch
from .vendors.http import ClientOptions, ClientPool, RateLimiters

log = logging.getLogger(__name__)

#: Annotations whose change wakes an object's loop (besides a new generation).
TRIGGER_ANNOTATIONS = (REQUESTED_AT, ADOPT, FORCE_DELETE)


@dataclass(frozen=True)
class Obj:
    """A snapshot of one of our objects, as the reconcilers see it."""

    kind: KindInfo
    namespace: str
    name: str
    uid: str
    generation: int | None
    created: str
    annotations: Mapping[str, str]
    spec: dict[str, Any]
    status: dict[str, Any]
    deleting: bool = False
    body: Any = field(default=None, repr=False, compare=False)

    @classmethod
    def from_body(cls, kind: KindInfo, body: Mapping[str, Any]) -> Obj:
        meta = body.get("metadata", {})
        return cls(
            kind=kind,
            namespace=meta.get("namespace", ""),
            name=meta.get("name", ""),
            uid=meta.get("uid", ""),
            generation=meta.get("generation"),
            created=meta.get("creationTimestamp", ""),
            annotations=dict(meta.get("annotations") or {}),
            spec=_plain(body.get("spec") or {}),
            status=_plain(body.get("status") or {}),
            deleting=bool(meta.get("deletionTimestamp")),
            body=body,
        )

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"

    def builder(self) -> StatusBuilder:
        return StatusBuilder(self.status, self.generation)


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


@dataclass
class Event:
    type: str  # Normal | Warning
    reason: str
    message: str


@dataclass
class Outcome:
    status: dict[str, Any]
    #: Seconds until the loop runs again by itself; None waits for a change.
    requeue_after: float | None
    events: list[Event] = field(default_factory=list)


class Retry(Exception):
    """Finalization cannot finish yet; try again after ``delay`` seconds."""

    def __init__(self, message: str, delay: float, status: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.delay = delay
        self.status = status


class Reconciler(Protocol):
    kind: KindInfo

    async def reconcile(self, obj: Obj) -> Outcome: ...

    async def finalize(self, obj: Obj) -> Outcome | None:
        """Clean up the vendor side before the finalizer goes; raise :class:`Retry` to wait."""
        ...


EventSink = Callable[[Obj, Event], None]


def jittered(seconds: float, fraction: float = 0.1) -> float:
    """``seconds`` ± ``fraction``, so that many objects with one interval spread out."""
    return max(0.0, seconds * random.uniform(1 - fraction, 1 + fraction))


class Context:
    """What reconcilers need from the operator, passed in explicitly (no module-level singletons)."""

    def __init__(
        self,
        kube: KubeAPI,
        *,
        events: EventSink,
        pool: ClientPool | None = None,
        vendor_concurrency: int = 50,
        harness_limit: tuple[int, float] = (30, 60.0),
    ) -> None:
        self.kube = kube
        self.credentials = Credentials(kube)
        self.pool = pool or ClientPool()
        self.vendor_slots = asyncio.Semaphore(vendor_concurrency)
        self.harness_limiters = RateLimiters(*harness_limit)
        self.emit = events
        self.locks: dict[str, asyncio.Lock] = {}

    def client_for(self, opts: ClientOptions) -> Any:
        return self.pool.get(fingerprint(opts), opts)

    def lock(self, key: str) -> asyncio.Lock:
        lock = self.locks.get(key)
        if lock is None:
            lock = self.locks[key] = asyncio.Lock()
        return lock

    async def write_status(self, obj: Obj, desired: dict[str, Any]) -> bool:
        """Patch status when it differs from what the object shows; True if a patch was sent."""
        patch = status_patch(obj.status, desired)
        if patch is None:
            return False
        await self.kube.patch_status(obj.kind.plural, obj.namespace, obj.name, patch)
        # Later diffs in this reconcile compare against what the object now shows.
        obj.status.clear()
        obj.status.update(copy.deepcopy(desired))
        return True

    async def aclose(self) -> None:
        await self.pool.aclose()
        await self.kube.aclose()


def trigger_of(body: Mapping[str, Any]) -> tuple[Any, ...]:
    """What, when it changes, wakes an object's loop: never our own status patches."""
    meta = body.get("metadata", {})
    annotations = meta.get("annotations") or {}
    return (meta.get("generation"), *(annotations.get(a) for a in TRIGGER_ANNOTATIONS))


class Wakers:
    """One wake-up event per object uid."""

    def __init__(self) -> None:
        self._events: dict[str, asyncio.Event] = {}
        self._seen: dict[str, tuple[Any, ...]] = {}

    def event(self, uid: str) -> asyncio.Event:
        ev = self._events.get(uid)
        if ev is None:
            ev = self._events[uid] = asyncio.Event()
        return ev

    def observe(self, uid: str, body: Mapping[str, Any]) -> None:
        trig = trigger_of(body)
        if self._seen.get(uid) != trig:
            first = uid not in self._seen
            self._seen[uid] = trig
            if not first:
                self.event(uid).set()

    def forget(self, uid: str) -> None:
        self._events.pop(uid, None)
        self._seen.pop(uid, None)


async def run_loop(
    reconciler: Reconciler,
    ctx: Context,
    body: Mapping[str, Any],
    stopped: Callable[[], bool],
    stop_waiter: Callable[[], Awaitable[Any]],
    wakers: Wakers,
) -> None:
    """Reconcile one object until it is deleted or the operator stops."""
    obj = Obj.from_body(reconciler.kind, body)
    wake = wakers.event(obj.uid)
    failures = 0
    while not stopped():
        wake.clear()
        obj = Obj.from_body(reconciler.kind, body)
        if obj.deleting:
            return
        delay: float | None
        try:
            outcome = await reconciler.reconcile(obj)
            await ctx.write_status(obj, outcome.status)
            for ev in outcome.events:
                ctx.emit(obj, ev)
            delay = outcome.requeue_after
            failures = 0
        except asyncio.CancelledError:
            raise
        except KubeError as exc:
            failures += 1
            delay = min(300.0, 2.0 * 2**failures)
            log.warning(
                "%s %s: status not written (%s); retrying in %.0fs", obj.kind.kind, obj.ref, exc, delay
            )
        except Exception:
            failures += 1
            delay = min(300.0, 2.0 * 2**failures)
            log.exception(
                "%s %s: reconcile failed unexpectedly; retrying in %.0fs", obj.kind.kind, obj.ref, delay
            )
        await _sleep(wake, stop_waiter, delay)


async def _sleep(wake: asyncio.Event, stop_waiter: Callable[[], Awaitable[Any]], delay: float | None) -> None:
    waiters = [asyncio.ensure_future(wake.wait()), asyncio.ensure_future(stop_waiter())]
    try:
        await asyncio.wait(waiters, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()
