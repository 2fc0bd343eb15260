"""Leader election on a ``coordination.k8s.io/v1`` Lease, with client-go's semantics.

One replica holds the Lease and does the work; the others watch and wait. The record is the one
client-go writes (``holderIdentity``, ``leaseDurationSeconds``, ``acquireTime``, ``renewTime``,
``leaseTransitions``), so ``kubectl get lease`` reads it as it reads any controller's.

- **Acquire.** Create the Lease, or take it over once it has expired: its record has not changed
  for ``leaseDurationSeconds`` *as measured on our own clock* since we first saw that record
  (never by comparing ``renewTime`` with our wall clock, which may be off), or its holder is empty
  (released). Taking it from another holder increments ``leaseTransitions``.
- **Renew** every ``retry_period``; give up when ``renew_deadline`` has passed since the last
  successful renew without another one, or as soon as the Lease shows another holder.
- **Known held** (:meth:`LeaderElector.held`) means: not lost, and now < the time the last
  successful acquire or renew was *sent* + ``renew_deadline``. Every vendor call and status write
  asks this right before it is made. Since ``renew_deadline < lease_duration``, a replica stops
  acting before any other may take over, even when it was frozen (SIGSTOP) or starved: on waking,
  its clock says the deadline has passed, before it has a chance to talk to anyone.

One deviation from client-go, on the safe side: a standby polls every half retry period (client-go:
every retry period), so it notices an expired lease within ``lease_duration + retry_period`` of the
leader's end instead of up to two retry periods later. It never takes over earlier.

Times come from an injectable clock (the event loop's monotonic time by default), so tests of the
state machine advance time instead of sleeping.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import httpx

from .kube import KubeError

log = logging.getLogger(__name__)

#: client-go's JitterFactor: the renew deadline must leave room for jittered retries.
JITTER = 1.2


class NotLeader(Exception):
    """A vendor call or a Kubernetes write refused: this replica does not know the lease to be held."""


class LeaseAPI(Protocol):
    """The three Lease calls the elector makes (:class:`.kube.KubeAPI` has them)."""

    async def get_lease(self, namespace: str, name: str) -> dict[str, Any] | None: ...

    async def create_lease(self, namespace: str, body: dict[str, Any]) -> dict[str, Any] | None: ...

    async def replace_lease(
        self, namespace: str, name: str, body: dict[str, Any]
    ) -> dict[str, Any] | None: ...


def default_identity() -> str:
    """client-go's habit: the host (the pod's name) and a unique suffix, so two processes on one
    host, or a restarted container, never share an identity."""
    return f"{socket.gethostname()}_{uuid.uuid4()}"


@dataclass(frozen=True)
class ElectionConfig:
    namespace: str
    name: str = "cleanup-operator"
    identity: str = field(default_factory=default_identity)
    #: How long a standby waits after the record last changed before it takes the lease over.
    lease_duration: float = 15.0
    #: How long the leader keeps acting without a successful renew.
    renew_deadline: float = 10.0
    #: Between renews (the leader), between attempts (retries, and a standby: half of it).
    retry_period: float = 2.0

    def __post_init__(self) -> None:
        if not self.namespace or not self.name or not self.identity:
            raise ValueError("leader election needs a namespace, a lease name and an identity")
        if self.retry_period <= 0:
            raise ValueError("the retry period must be more than 0")
        if self.renew_deadline <= JITTER * self.retry_period:
            raise ValueError(
                f"the renew deadline ({self.renew_deadline:g}s) must be more than {JITTER} times the retry"
                f" period ({self.retry_period:g}s)"
            )
        if self.lease_duration <= self.renew_deadline:
            raise ValueError(
                f"the lease duration ({self.lease_duration:g}s) must be more than the renew deadline"
                f" ({self.renew_deadline:g}s)"
            )

    @property
    def lease_seconds(self) -> int:
        """``leaseDurationSeconds`` is whole seconds: round up, never shorten what we promise."""
        return max(1, math.ceil(self.lease_duration))


def micro_time(moment: datetime) -> str:
    """A Kubernetes ``MicroTime``: RFC 3339 in UTC with microseconds."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    def __init__(
        self,
        api: LeaseAPI,
        config: ElectionConfig,
        *,
        clock: Callable[[], float] | None = None,
        wall: Callable[[], datetime] | None = None,
        on_change: Callable[[bool], None] | None = None,
    ) -> None:
        self.api = api
        self.config = config
        self._clock = clock or (lambda: asyncio.get_running_loop().time())
        self._wall = wall or (lambda: datetime.now(UTC))
        self._on_change = on_change
        #: The Lease's spec as last read or written, and when (our clock) it was first seen so.
        self._observed: dict[str, Any] | None = None
        self._observed_at = -math.inf
        #: When (our clock) the last successful acquire or renew was sent; None: not held.
        self._renewed_at: float | None = None
        self.acquired = asyncio.Event()
        self.lost = asyncio.Event()
        #: Why the lease was lost (for the log and the exit).
        self.reason = ""

    @property
    def identity(self) -> str:
        return self.config.identity

    @property
    def where(self) -> str:
        return f"Lease {self.config.namespace}/{self.config.name}"

    def held(self) -> bool:
        """Whether the lease is known held right now (checked against the renew deadline)."""
        return (
            not self.lost.is_set()
            and self._renewed_at is not None
            and self._clock() < self._renewed_at + self.config.renew_deadline
        )

    def check(self, what: str) -> None:
        """Raise :class:`NotLeader` unless the lease is known held (before ``what`` is done)."""
        if not self.held():
            raise NotLeader(f"{what} refused: this replica ({self.identity}) does not hold {self.where}")

    @property
    def holder(self) -> str:
        """The holder as last seen ('' when none, or not seen yet)."""
        return str((self._observed or {}).get("holderIdentity") or "")

    async def run(self) -> None:
        """Acquire the lease (waiting as long as it takes), then renew it; return once it is lost."""
        await self.acquire()
        await self.keep()

    async def acquire(self) -> None:
        announced = ""
        while not await self.try_acquire_or_renew():
            if self.holder and self.holder != announced:
                announced = self.holder
                log.info("%s is held by %s; standing by as %s", self.where, self.holder, self.identity)
            half = self.config.retry_period / 2
            await asyncio.sleep(random.uniform(0.8 * half, half))
        log.info("%s acquired by %s: leading", self.where, self.identity)
        self.acquired.set()
        self._changed(True)

    async def keep(self) -> None:
        """Renew every retry period until a renew deadline passes without a successful renew."""
        while True:
            await asyncio.sleep(self.config.retry_period)
            while True:
                renewed = self._renewed_at
                if renewed is None:
                    self._lose(f"{self.where} is now held by {self.holder or 'nobody'}")
                    return
                remaining = renewed + self.config.renew_deadline - self._clock()
                if remaining <= 0:
                    self._lose(
                        f"no successful renew of {self.where} for"
                        f" {self._clock() - renewed:.1f}s (renew deadline {self.config.renew_deadline:g}s)"
                    )
                    return
                try:
                    async with asyncio.timeout(remaining):
                        if await self.try_acquire_or_renew():
                            break
                except TimeoutError:
                    continue  # the deadline is checked at the top
                if self._renewed_at is None:
                    continue  # another holder: lost, said at the top
                await asyncio.sleep(min(self.config.retry_period, max(0.0, remaining)))

    async def try_acquire_or_renew(self) -> bool:
        """One attempt, as client-go's ``tryAcquireOrRenew``; True when we hold the lease after it."""
        sent = self._clock()
        now = micro_time(self._wall())
        cfg = self.config
        try:
            lease = await self.api.get_lease(cfg.namespace, cfg.name)
            if lease is None:
                body = {
                    "apiVersion": "coordination.k8s.io/v1",
                    "kind": "Lease",
                    "metadata": {"name": cfg.name, "namespace": cfg.namespace},
                    "spec": self._spec(acquire=now, renew=now, transitions=0),
                }
                created = await self.api.create_lease(cfg.namespace, body)
                if created is None:
                    return False  # another replica created it first
                self._took(created, sent)
                return True
            spec = dict(lease.get("spec") or {})
            if spec != self._observed:
                self._observed = spec
                self._observed_at = self._clock()
            holder = str(spec.get("holderIdentity") or "")
            duration = float(spec.get("leaseDurationSeconds") or cfg.lease_seconds)
            if holder and holder != self.identity:
                if self._renewed_at is not None:
                    self._renewed_at = None  # someone else holds it: we stop at once
                    return False
                if self._observed_at + duration > self._clock():
                    return False  # held, and not expired
            transitions = int(spec.get("leaseTransitions") or 0)
            if holder == self.identity:
                new = self._spec(acquire=spec.get("acquireTime") or now, renew=now, transitions=transitions)
            else:
                new = self._spec(acquire=now, renew=now, transitions=transitions + 1)
            replaced = await self.api.replace_lease(cfg.namespace, cfg.name, {**lease, "spec": new})
            if replaced is None:
                return False  # changed since we read it: someone else renewed or took it
            self._took(replaced, sent)
            return True
        except (KubeError, httpx.HTTPError, ValueError) as exc:
            log.warning("%s: %s", self.where, exc if isinstance(exc, KubeError) else type(exc).__name__)
            return False

    async def release(self) -> bool:
        """On a clean shutdown, after all work stopped: hand the lease over at once (holder empty),
        so that a standby takes over without waiting for it to expire. True if released."""
        if not self.held():
            return False
        self._renewed_at = None  # nothing more is done under this lease
        self.lost.set()
        cfg = self.config
        try:
            lease = await self.api.get_lease(cfg.namespace, cfg.name)
            spec = dict((lease or {}).get("spec") or {})
            if lease is None or spec.get("holderIdentity") != self.identity:
                return False
            now = micro_time(self._wall())
            new = {
                **self._spec(acquire=now, renew=now, transitions=int(spec.get("leaseTransitions") or 0)),
                "holderIdentity": "",
                "leaseDurationSeconds": 1,
            }
            released = await self.api.replace_lease(cfg.namespace, cfg.name, {**lease, "spec": new})
        except (KubeError, httpx.HTTPError) as exc:
            log.warning("%s: not released (%s)", self.where, type(exc).__name__)
            return False
        finally:
            self._changed(False)
        if released is not None:
            log.info("%s released by %s", self.where, self.identity)
        return released is not None

    def _spec(self, *, acquire: str, renew: str, transitions: int) -> dict[str, Any]:
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": self.config.lease_seconds,
            "acquireTime": acquire,
            "renewTime": renew,
            "leaseTransitions": transitions,
        }

    def _took(self, lease: dict[str, Any], sent: float) -> None:
        self._observed = dict(lease.get("spec") or {})
        self._observed_at = self._clock()
        self._renewed_at = sent

    def _lose(self, reason: str) -> None:
        self._renewed_at = None
        self.reason = reason
        self.lost.set()
        log.error("leadership lost: %s", reason)
        self._changed(False)

    def _changed(self, leading: bool) -> None:
        if self._on_change is not None:
            self._on_change(leading)
