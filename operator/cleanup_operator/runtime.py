"""The per-object reconcile loop shared by every kind (Kopf-free, so it is tested without Kopf).

One scheduler serialises all work per object: a change (new generation or a new value of an
annotation we react to) runs it now; otherwise it runs again at the reconciler's requeue time.
Status is computed, compared with what the object shows, and patched once, only when it differs.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import heapq
import logging
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx

from .api.common import ADOPT, APPROVE, FINALIZER, FORCE_DELETE, RECONCILE_AT, REQUESTED_AT, KindInfo
from .credentials import Credentials, fingerprint
from .endpoints import EndpointPolicy
from .kube import KubeAPI, KubeError
from .leader import LeaderElector, NotLeader
from .observability import Metrics
from .reconcile.conditions import StatusBuilder, status_patch
from .vendors.http import ClientOptions, ClientPool, RateLimiters

log = logging.getLogger(__name__)

INTERNAL_ERROR = "InternalError"

#: Annotations whose change wakes an object's loop (besides a new generation).
TRIGGER_ANNOTATIONS = (REQUESTED_AT, RECONCILE_AT, APPROVE, ADOPT, FORCE_DELETE)


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
    finalizers: tuple[str, ...] = ()
    resource_version: str = ""
    body: Any = field(default=None, repr=False, compare=False)

    @classmethod
    def from_body(cls, kind: KindInfo, body: Mapping[str, Any]) -> Obj:
        """A lean copy: what reconcilers read, and a stub of the body for posting events."""
        meta = body.get("metadata", {})
        ref = {k: meta.get(k) for k in ("name", "namespace", "uid")}
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
            finalizers=tuple(meta.get("finalizers") or ()),
            resource_version=str(meta.get("resourceVersion") or ""),
            body={"apiVersion": body.get("apiVersion"), "kind": body.get("kind"), "metadata": ref},
        )

    def claim_body(self) -> dict[str, Any]:
        """What the claims index reads (spec and name)."""
        return {"spec": self.spec, "metadata": {"name": self.name, "namespace": self.namespace}}

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"

    def builder(self) -> StatusBuilder:
        return StatusBuilder(self.status, self.generation)

    @property
    def guarded(self) -> bool:
        """Whether our finalizer is on the object: only then may a vendor object be created for it,
        since deleting the resource could otherwise skip the clean-up and orphan it."""
        return FINALIZER in self.finalizers


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
    #: Run again as soon as our finalizer is on the object (it waited for it before creating anything).
    wake_on_finalizer: bool = False


class Retry(Exception):
    """Finalization cannot finish yet; try again after ``delay`` seconds."""

    def __init__(self, message: str, delay: float, status: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.delay = delay
        self.status = status


class SchedulerFailed(Exception):
    """The scheduler loop ended because a reconcile raised what no reconcile may raise."""


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


def spread_later(seconds: float, fraction: float = 0.1) -> float:
    """``seconds`` up to ``fraction`` later, never sooner: many objects with one interval spread
    out, and none is checked more often than its interval says."""
    return seconds * random.uniform(1.0, 1.0 + fraction)


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
        metrics: Metrics | None = None,
        endpoints: EndpointPolicy | None = None,
        status_report_interval: float = 3600.0,
        leader: LeaderElector | None = None,
    ) -> None:
        self.kube = kube
        #: How old a "last successful check" time in status may grow before an otherwise unchanged
        #: status is patched to refresh it.
        self.status_report_interval = status_report_interval
        #: With leader election: every vendor request and status write first asks it whether the
        #: lease is known held (None: a single replica, always allowed).
        self.leader = leader
        self.credentials = Credentials(kube, endpoints)
        #: Vendor requests in flight are bounded per endpoint (base URL, plus the Harness account),
        #: per request, never per reconcile: a slow or silent vendor holds only its own share.
        self.pool = pool or ClientPool(per_endpoint=vendor_concurrency)
        if leader is not None:
            self.pool.guard = self._vendor_guard
        self.harness_limiters = RateLimiters(*harness_limit)
        self.emit = events
        self.locks: dict[str, asyncio.Lock] = {}
        #: Kopf's claims indexes by plural (filled by the wiring): who claims which vendor object.
        self.indexes: dict[str, Any] = {}
        self.metrics = metrics or Metrics()
        self.metrics.collectors.append(self._collect_endpoints)
        #: uid → (resourceVersion of our last status patch, the status it wrote), until the watch
        #: catches up: a watch event older than our own write must not bring back an older status.
        self._written: dict[str, tuple[int, dict[str, Any]]] = {}

    def _collect_endpoints(self, metrics: Metrics) -> None:
        now = asyncio.get_running_loop().time()
        for endpoint, gate in list(self.pool.gates.by_key.items()):
            metrics.set("cleanup_operator_vendor_requests_in_flight", gate.in_flight, endpoint=endpoint)
            paused = 1 if gate.refusal(now) is not None else 0
            metrics.set("cleanup_operator_vendor_endpoint_paused", paused, endpoint=endpoint)

    def client_for(self, opts: ClientOptions) -> Any:
        return self.pool.get(fingerprint(opts), opts)

    def ensure_leader(self, what: str) -> None:
        """Raise :class:`NotLeader` unless this replica may act (no election, or the lease known held)."""
        if self.leader is not None:
            self.leader.check(what)

    def _vendor_guard(self, request: httpx.Request) -> None:
        """The one gate of every vendor call (creates, runs, prune starts, stops, deletes, and reads),
        run by the vendor clients' transport right before the request goes out: after any wait for
        the endpoint's share, so a request that waited is checked when it is sent. The request's URL
        is not named (its query may hold a token)."""
        self.ensure_leader(f"vendor call {request.method}")

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
        self.ensure_leader("status write")
        version = await self.kube.patch_status(obj.kind.plural, obj.namespace, obj.name, patch)
        # Later diffs in this reconcile compare against what the object now shows.
        obj.status.clear()
        obj.status.update(copy.deepcopy(desired))
        if version is not None and version.isdigit():
            # A copy of its own: the record outlives this reconcile, and the scheduler copies it
            # back into the very Obj whose status dict this is when the watch lags behind.
            self._written[obj.uid] = (int(version), copy.deepcopy(obj.status))
        return True

    def newest_status(self, uid: str, body: Mapping[str, Any]) -> dict[str, Any] | None:
        """Our own last written status when ``body`` (a watch event) predates it, else None.

        resourceVersions are etcd revisions here (numeric, increasing); anything else is taken as
        new, which is what the watch delivers in order anyway.
        """
        written = self._written.get(uid)
        if written is None:
            return None
        version = str((body.get("metadata") or {}).get("resourceVersion") or "")
        if version.isdigit() and int(version) < written[0]:
            return written[1]
        self._written.pop(uid, None)  # the watch has caught up with our write
        return None

    def forget(self, uid: str) -> None:
        self._written.pop(uid, None)

    async def aclose(self) -> None:
        await self.credentials.aclose()
        await self.pool.aclose()
        await self.kube.aclose()


def trigger_of(body: Mapping[str, Any]) -> tuple[Any, ...]:
    """What, when it changes, wakes an object's loop: never our own status patches."""
    meta = body.get("metadata", {})
    annotations = meta.get("annotations") or {}
    return (meta.get("generation"), *(annotations.get(a) for a in TRIGGER_ANNOTATIONS))


#: Stalled reasons a changed Secret can cure.
CREDENTIAL_REASONS = frozenset(
    {"SecretNotFound", "SecretNotAllowed", "InvalidSecret", "AuthenticationFailed", "TLSVerificationFailed"}
)


def stalled_on_credentials(status: Mapping[str, Any]) -> bool:
    return any(
        c.get("type") == "Stalled" and c.get("status") == "True" and c.get("reason") in CREDENTIAL_REASONS
        for c in status.get("conditions") or []
    )


@dataclass
class _Entry:
    reconciler: Reconciler
    obj: Obj
    trigger: tuple[Any, ...]
    due: float | None = None
    running: bool = False
    rerun: bool = False
    blocked: bool = False
    wake_on_finalizer: bool = False
    idle: asyncio.Event = field(default_factory=asyncio.Event)


class Scheduler:
    """One loop for every object: a heap of due times, fed by watch events.

    Per object it keeps a lean snapshot (spec, status, annotations; no managedFields) instead of
    a long-lived task holding the full body, so a thousand objects cost little memory. Work on one
    object is never concurrent: a change during a reconcile reruns it right after.
    """

    def __init__(self, ctx: Context, concurrency: int = 50, clock: Callable[[], float] | None = None) -> None:
        self.ctx = ctx
        self._clock = clock or (lambda: asyncio.get_running_loop().time())
        self._entries: dict[str, _Entry] = {}
        self._heap: list[tuple[float, int, str]] = []
        self._seq = 0
        self._changed = asyncio.Event()
        self._slots = asyncio.Semaphore(concurrency)
        self._failures: dict[str, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._waiting = 0
        self._running = 0
        ctx.metrics.collectors.append(self._collect)
        #: A reconcile that raised a BaseException other than cancellation (SystemExit, a
        #: KeyboardInterrupt, anything an ``except Exception`` lets through): the loop ends with it.
        self.fatal: BaseException | None = None

    def __len__(self) -> int:
        return len(self._entries)

    def observe(self, reconciler: Reconciler, body: Mapping[str, Any]) -> None:
        """A watch event: refresh the snapshot; a new object or a new trigger runs it now."""
        obj = Obj.from_body(reconciler.kind, body)
        newer = self.ctx.newest_status(obj.uid, body)
        if newer is not None:
            obj.status.clear()
            obj.status.update(copy.deepcopy(newer))
        trig = trigger_of(body)
        entry = self._entries.get(obj.uid)
        if entry is None:
            entry = self._entries[obj.uid] = _Entry(reconciler, obj, trig)
            entry.idle.set()
            self._schedule(entry, 0.0)
            return
        entry.obj = obj
        woken = entry.wake_on_finalizer and obj.guarded  # the change it waited for
        if woken:
            entry.wake_on_finalizer = False
        if trig != entry.trigger or woken:
            entry.trigger = trig
            if entry.running:
                entry.rerun = True
            else:
                self._schedule(entry, 0.0)

    def secret_changed(self, namespace: str) -> None:
        """A labelled Secret of ``namespace`` appeared or changed: what waits on credentials there
        (a missing or unlabelled Secret, a refused token) tries again now, not at its next retry."""
        for entry in self._entries.values():
            if entry.obj.namespace == namespace and stalled_on_credentials(entry.obj.status):
                if entry.running:
                    entry.rerun = True
                else:
                    self._schedule(entry, 0.0)

    def _collect(self, metrics: Metrics) -> None:
        by_kind: dict[str, int] = {}
        for entry in self._entries.values():
            by_kind[entry.obj.kind.kind] = by_kind.get(entry.obj.kind.kind, 0) + 1
        for kind, count in by_kind.items():
            metrics.set("cleanup_operator_objects", count, kind=kind)
        metrics.set("cleanup_operator_objects_due_waiting", self._waiting)
        metrics.set("cleanup_operator_reconciles_in_flight", self._running)

    def forget(self, uid: str) -> None:
        self._entries.pop(uid, None)
        self._failures.pop(uid, None)
        self.ctx.forget(uid)

    def forget_namespace(self, namespace: str) -> None:
        """The operator no longer serves ``namespace``: nothing of it is scheduled again (a
        reconcile in flight finishes)."""
        for uid in [uid for uid, e in self._entries.items() if e.obj.namespace == namespace]:
            self.forget(uid)

    async def hold(self, uid: str) -> None:
        """Stop scheduling ``uid`` and wait for a reconcile in flight (before finalizing it)."""
        entry = self._entries.get(uid)
        if entry is not None:
            entry.blocked = True
            await entry.idle.wait()

    def _schedule(self, entry: _Entry, delay: float) -> None:
        due = self._clock() + delay
        if entry.due is not None and entry.due <= due:
            return
        entry.due = due
        self._seq += 1
        heapq.heappush(self._heap, (due, self._seq, entry.obj.uid))
        self._changed.set()

    async def run(self) -> None:
        while True:
            if self.fatal is not None:
                raise SchedulerFailed(f"a reconcile raised {type(self.fatal).__name__}") from self.fatal
            self._changed.clear()
            now = self._clock()
            while self._heap and self._heap[0][0] <= now:
                due, _, uid = heapq.heappop(self._heap)
                entry = self._entries.get(uid)
                if entry is None or entry.due != due:
                    continue  # forgotten, or rescheduled earlier
                entry.due = None
                if entry.running or entry.blocked or entry.obj.deleting:
                    continue
                entry.running = True
                entry.idle.clear()
                task = asyncio.create_task(self._run_one(entry))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            timeout = max(0.0, self._heap[0][0] - self._clock()) if self._heap else None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout)

    async def _run_one(self, entry: _Entry) -> None:
        delay: float | None = None
        try:
            self._waiting += 1
            try:
                await self._slots.acquire()
            finally:
                self._waiting -= 1
            self._running += 1
            started = asyncio.get_running_loop().time()
            try:
                delay = await self._reconcile(entry)
            finally:
                self._running -= 1
                self._slots.release()
                self.ctx.metrics.observe(
                    "cleanup_operator_reconcile_duration_seconds",
                    asyncio.get_running_loop().time() - started,
                    kind=entry.obj.kind.kind,
                )
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # recorded: the loop ends with it
            # Caught here rather than left to the task: asyncio would carry a SystemExit or a
            # KeyboardInterrupt out of the event loop, past every log line.
            if self.fatal is None:
                self.fatal = exc
            self._changed.set()
        finally:
            entry.running = False
            entry.idle.set()
            if entry.obj.uid in self._entries and not entry.blocked:
                if entry.rerun:
                    entry.rerun = False
                    self._schedule(entry, 0.0)
                elif delay is not None:
                    self._schedule(entry, delay)

    async def _reconcile(self, entry: _Entry) -> float | None:
        obj = entry.obj
        uid = obj.uid
        kind = obj.kind.kind
        # A rerun may start from a snapshot the watch delivered before our last status write landed.
        newer = self.ctx.newest_status(uid, {"metadata": {"resourceVersion": obj.resource_version}})
        if newer is not None:
            obj.status.clear()
            obj.status.update(copy.deepcopy(newer))
        try:
            outcome = await entry.reconciler.reconcile(obj)
            entry.wake_on_finalizer = outcome.wake_on_finalizer
            patched = await self.ctx.write_status(obj, outcome.status)
            for ev in outcome.events:
                self.ctx.emit(obj, ev)
            self._failures.pop(uid, None)
            self.ctx.metrics.inc("cleanup_operator_reconciles_total", kind=kind, result="ok")
            if patched:
                self.ctx.metrics.inc("cleanup_operator_status_patches_total", kind=kind)
            return outcome.requeue_after
        except asyncio.CancelledError:
            raise
        except NotLeader as exc:
            # The lease is no longer known held: nothing more is done or written for this object
            # here (the replica is stopping; the next leader reconciles it).
            log.info("%s %s: %s", obj.kind.kind, obj.ref, exc)
            return None
        except KubeError as exc:
            self.ctx.metrics.inc("cleanup_operator_reconciles_total", kind=kind, result="status_error")
            failures = self._failures[uid] = self._failures.get(uid, 0) + 1
            delay = min(300.0, 2.0 * 2.0**failures)
            log.warning(
                "%s %s: status not written (%s); retrying in %.0fs", obj.kind.kind, obj.ref, exc, delay
            )
            return delay
        except Exception as exc:
            self.ctx.metrics.inc("cleanup_operator_reconciles_total", kind=kind, result="error")
            failures = self._failures[uid] = self._failures.get(uid, 0) + 1
            delay = min(300.0, 2.0 * 2.0**failures)
            log.exception(
                "%s %s: reconcile failed unexpectedly; retrying in %.0fs", obj.kind.kind, obj.ref, delay
            )
            await self._report_internal_error(obj, exc, delay)
            return delay

    async def _report_internal_error(self, obj: Obj, exc: Exception, delay: float) -> None:
        """Say so in status: Ready False, reason InternalError, the exception's type (never its text,
        which might hold anything), so an unexpected failure is never silent."""
        b = obj.builder()
        message = (
            f"unexpected {type(exc).__name__} in the operator; retrying in {delay:.0f}s"
            " (the operator's log has the details)"
        )
        b.set_condition("Ready", False, INTERNAL_ERROR, message)
        b.set_condition("Reconciling", True, INTERNAL_ERROR, message)
        try:
            await self.ctx.write_status(obj, b.result())
        except Exception:  # the API server may be the problem: the log has it already
            log.warning("%s %s: could not report the failure in status", obj.kind.kind, obj.ref)

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
