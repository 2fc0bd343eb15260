"""The Lease state machine (leader.py) on the event loop's fake clock (looptime), and the gates it
drives: every vendor request and status write (runtime.Context), the scheduler and liveness
(handlers.OperatorState).

The Lease store here keeps the API server's one rule the elector relies on (an update names the
resourceVersion it read; a stale one is a 409); the same state machine runs against a real
kube-apiserver in tests/cluster/test_leader.py.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import kopf
import pytest

from cleanup_operator.api.cleanup_policy import CLEANUP_POLICY
from cleanup_operator.handlers import OperatorState
from cleanup_operator.kube import KubeAPI, KubeError
from cleanup_operator.leader import ElectionConfig, LeaderElector, NotLeader
from cleanup_operator.runtime import Context, Obj, Outcome
from cleanup_operator.settings import OperatorOptions
from cleanup_operator.vendors.http import ClientOptions, ClientPool

pytestmark = pytest.mark.looptime(start=0)

D, RENEW, RETRY = 15.0, 10.0, 2.0  # client-go's defaults


class LeaseStore:
    """Leases by name, with resourceVersions and 409s; ``down`` makes every call fail (an outage)."""

    def __init__(self) -> None:
        self.leases: dict[str, dict[str, Any]] = {}
        self.version = 0
        self.down = False
        self.calls = 0
        #: When (the loop's clock) each write happened.
        self.written: list[float] = []

    def _enter(self) -> None:
        self.calls += 1
        if self.down:
            raise KubeError("API server unavailable: HTTP 503", 503)

    def _stamp(self, body: dict[str, Any]) -> dict[str, Any]:
        self.version += 1
        self.written.append(asyncio.get_running_loop().time())
        stored = copy.deepcopy(body)
        stored["metadata"]["resourceVersion"] = str(self.version)
        self.leases[stored["metadata"]["name"]] = stored
        return copy.deepcopy(stored)

    async def get_lease(self, namespace: str, name: str) -> dict[str, Any] | None:
        self._enter()
        lease = self.leases.get(name)
        return copy.deepcopy(lease) if lease else None

    async def create_lease(self, namespace: str, body: dict[str, Any]) -> dict[str, Any] | None:
        self._enter()
        if body["metadata"]["name"] in self.leases:
            return None
        return self._stamp(body)

    async def replace_lease(self, namespace: str, name: str, body: dict[str, Any]) -> dict[str, Any] | None:
        self._enter()
        current = self.leases.get(name)
        read = body["metadata"].get("resourceVersion")
        if current is None or current["metadata"]["resourceVersion"] != read:
            return None
        return self._stamp(body)

    def spec(self, name: str = "lease") -> dict[str, Any]:
        return dict(self.leases[name]["spec"])


def config(identity: str, **times: float) -> ElectionConfig:
    return ElectionConfig(
        namespace="ops",
        name="lease",
        identity=identity,
        lease_duration=times.get("lease_duration", D),
        renew_deadline=times.get("renew_deadline", RENEW),
        retry_period=times.get("retry_period", RETRY),
    )


def now() -> float:
    return asyncio.get_running_loop().time()


@asynccontextmanager
async def running(elector: LeaderElector) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(elector.run())
    try:
        yield task
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def wait_for(event: asyncio.Event, within: float = 300.0) -> float:
    """When ``event`` was set (the loop's clock); fails after ``within`` seconds."""
    await asyncio.wait_for(event.wait(), within)
    return now()


def test_times_must_fit_together() -> None:
    with pytest.raises(ValueError, match="lease duration"):
        config("a", lease_duration=10, renew_deadline=10)
    with pytest.raises(ValueError, match="renew deadline"):
        config("a", renew_deadline=2.4, retry_period=2)
    with pytest.raises(ValueError, match="retry period"):
        config("a", retry_period=0)
    assert config("a", lease_duration=2.5, renew_deadline=2, retry_period=1).lease_seconds == 3


async def test_first_creates_the_lease_second_stands_by() -> None:
    store = LeaseStore()
    a, b = LeaderElector(store, config("a")), LeaderElector(store, config("b"))
    async with running(a), running(b):
        assert await wait_for(a.acquired) == 0
        spec = store.spec()
        assert spec["holderIdentity"] == "a" and spec["leaseTransitions"] == 0
        assert spec["leaseDurationSeconds"] == 15 and spec["acquireTime"] == spec["renewTime"]
        await asyncio.sleep(120)  # renewed all along: b never takes over
        assert a.held() and not b.held() and not b.acquired.is_set()
        assert store.spec()["holderIdentity"] == "a" and store.spec()["renewTime"] != spec["renewTime"]
        assert store.spec()["acquireTime"] == spec["acquireTime"] and store.spec()["leaseTransitions"] == 0


async def test_standby_takes_over_a_dead_leader_within_lease_duration_plus_one_retry() -> None:
    store = LeaseStore()
    a, b = LeaderElector(store, config("a")), LeaderElector(store, config("b"))
    async with running(a) as a_task, running(b):
        await wait_for(a.acquired)
        await asyncio.sleep(31.3)  # somewhere between two renews
        last_renew, writes = store.written[-1], store.version
        a_task.cancel()  # a crash: no release
        died = now()
        took = await wait_for(b.acquired)
        assert store.version == writes + 1, "b wrote the lease only once, to take it"
    assert took - last_renew >= D, "never before the lease expired"
    assert took - died <= D + RETRY, took - died
    spec = store.spec()
    assert spec["holderIdentity"] == "b" and spec["leaseTransitions"] == 1


async def test_failed_renews_stop_the_leader_at_the_renew_deadline() -> None:
    store = LeaseStore()
    a = LeaderElector(store, config("a"))
    async with running(a) as task:
        await wait_for(a.acquired)
        await asyncio.sleep(RETRY + 0.5)  # one renew done
        renewed_at = RETRY  # that renew was sent at t=2
        store.down = True
        await asyncio.sleep(renewed_at + RENEW - now() - 0.01)
        assert a.held(), "still within the renew deadline"
        a.check("a vendor call")  # allowed
        lost_at = await wait_for(a.lost)
        assert not a.held()
        with pytest.raises(NotLeader, match="does not hold Lease ops/lease"):
            a.check("vendor call POST")
        await task  # run() returns once lost
    assert lost_at == pytest.approx(renewed_at + RENEW, abs=0.01)
    assert "no successful renew" in a.reason and "renew deadline 10s" in a.reason


async def test_a_frozen_leader_stops_on_waking_without_a_call() -> None:
    """SIGSTOP past the lease duration: on waking, the clock says the deadline has passed."""
    store = LeaseStore()
    offset = 0.0
    a = LeaderElector(store, config("a"), clock=lambda: now() + offset)
    async with running(a) as task:
        await wait_for(a.acquired)
        await asyncio.sleep(5)
        calls = store.calls
        offset = D + 5  # the process did not run for 20 s
        assert not a.held(), "refused at once: before any renew could run"
        await wait_for(a.lost)
        await task
    assert store.calls == calls, "gave up without talking to the API server"
    assert "renew deadline" in a.reason


async def test_another_holder_stops_the_leader_at_its_next_renew() -> None:
    store = LeaseStore()
    a = LeaderElector(store, config("a"))
    async with running(a) as task:
        await wait_for(a.acquired)
        lease = store.leases["lease"]
        lease["spec"]["holderIdentity"] = "intruder"
        store._stamp(lease)
        await wait_for(a.lost, within=RETRY + 0.1)
        await task
    assert "now held by intruder" in a.reason


async def test_release_hands_over_at_once() -> None:
    store = LeaseStore()
    a, b = LeaderElector(store, config("a")), LeaderElector(store, config("b"))
    async with running(a) as a_task, running(b):
        await wait_for(a.acquired)
        await asyncio.sleep(7)
        a_task.cancel()
        await asyncio.gather(a_task, return_exceptions=True)
        assert await a.release()
        assert store.spec()["holderIdentity"] == "" and not a.held()
        released = now()
        took = await wait_for(b.acquired)
    assert took - released <= RETRY / 2, "an empty holder needs no expiry"
    assert store.spec()["holderIdentity"] == "b" and store.spec()["leaseTransitions"] == 1


async def test_two_candidates_at_once_one_wins() -> None:
    store = LeaseStore()
    electors = [LeaderElector(store, config(name)) for name in "abc"]
    results = await asyncio.gather(*(e.try_acquire_or_renew() for e in electors))
    assert sorted(results) == [False, False, True]
    winner = next(e for e, won in zip(electors, results, strict=True) if won)
    assert store.spec()["holderIdentity"] == winner.identity and winner.held()


# The gates: runtime.Context (vendor requests, status writes) and the wiring (scheduler, liveness).


class Unreachable(httpx.AsyncBaseTransport):
    """The Kubernetes API in these tests: any request fails the test (nothing may be written)."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        raise AssertionError(f"unexpected Kubernetes request {request.method} {request.url.path}")


class Vendor(httpx.AsyncBaseTransport):
    """A vendor that records what reached it."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(f"{request.method} {request.url.path}")
        return httpx.Response(200, json={})


def context(leader: LeaderElector | None, vendor: Vendor) -> Context:
    kube = KubeAPI(httpx.AsyncClient(base_url="https://127.0.0.1:6443", transport=Unreachable()))
    return Context(kube, events=lambda obj, ev: None, pool=ClientPool(transport=vendor), leader=leader)


def obj() -> Obj:
    return Obj.from_body(
        CLEANUP_POLICY,
        {
            "metadata": {"uid": "u1", "name": "p", "namespace": "ns", "generation": 1},
            "spec": {},
            "status": {},
        },
    )


async def test_vendor_calls_and_status_writes_need_the_lease_known_held() -> None:
    store, vendor = LeaseStore(), Vendor()
    a = LeaderElector(store, config("a"))
    ctx = context(a, vendor)
    client = ctx.client_for(ClientOptions(base_url="https://127.0.0.1:8443", headers={"Authorization": "x"}))
    try:
        with pytest.raises(NotLeader, match=r"vendor call POST refused"):
            await client.post("/artifactory/api/cleanup/packages/policies/p/run")  # a standby
        with pytest.raises(NotLeader, match="status write refused"):
            await ctx.write_status(obj(), {"phase": "Running"})
        assert await a.try_acquire_or_renew()
        await client.post("/artifactory/api/cleanup/packages/policies/p/run")
        assert vendor.seen == ["POST /artifactory/api/cleanup/packages/policies/p/run"]
        await asyncio.sleep(RENEW)  # no renew since: the deadline passed
        with pytest.raises(NotLeader):
            await client.delete("/artifactory/api/cleanup/packages/policies/p")
        with pytest.raises(NotLeader):
            await client.get("/artifactory/api/cleanup/packages/policies/p")
        assert vendor.seen == ["POST /artifactory/api/cleanup/packages/policies/p/run"]
    finally:
        await ctx.aclose()


class SlowVendor(Vendor):
    """A vendor whose first answer takes ``delay`` seconds."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(f"{request.method} {request.url.path}")
        if len(self.seen) == 1:
            await asyncio.sleep(self.delay)
        return httpx.Response(200, json={})


async def test_a_call_that_waited_for_its_endpoint_share_is_checked_when_it_goes_out() -> None:
    store, vendor = LeaseStore(), SlowVendor(delay=RENEW + 1)
    a = LeaderElector(store, config("a"))
    kube = KubeAPI(httpx.AsyncClient(base_url="https://127.0.0.1:6443", transport=Unreachable()))
    pool = ClientPool(transport=vendor, per_endpoint=1)  # one request in flight per endpoint
    ctx = Context(kube, events=lambda obj, ev: None, pool=pool, leader=a)
    client = ctx.client_for(ClientOptions(base_url="https://127.0.0.1:8443"))
    try:
        assert await a.try_acquire_or_renew()
        first = asyncio.create_task(client.get("/slow"))
        await asyncio.sleep(0)
        second = asyncio.create_task(client.post("/prune/start"))  # waits for the share, lease held
        await asyncio.sleep(1)
        assert a.held() and vendor.seen == ["GET /slow"]
        await first  # answered after the renew deadline (no renew meanwhile)
        with pytest.raises(NotLeader):
            await second
        assert vendor.seen == ["GET /slow"], "the waiting call went out without the lease"
    finally:
        await ctx.aclose()


async def test_without_election_nothing_is_gated() -> None:
    vendor = Vendor()
    ctx = context(None, vendor)
    try:
        await ctx.client_for(ClientOptions(base_url="https://127.0.0.1:8443")).post("/x")
        assert vendor.seen == ["POST /x"]
        assert await ctx.write_status(obj(), obj().status) is False  # unchanged: no write at all
    finally:
        await ctx.aclose()


class Boom(BaseException):
    """What an ``except Exception`` lets through (as SystemExit and KeyboardInterrupt are)."""


class Raising:
    """A reconciler that raises ``error`` (a BaseException) on its first reconcile."""

    kind = CLEANUP_POLICY

    def __init__(self, error: BaseException) -> None:
        self.error = error
        self.calls = 0

    async def reconcile(self, obj: Obj) -> Outcome:
        self.calls += 1
        raise self.error

    async def finalize(self, obj: Obj) -> Outcome | None:
        return None


def body(uid: str) -> dict[str, Any]:
    return {
        "apiVersion": "cleanup.artifacts.dev/v1alpha1",
        "kind": "CleanupPolicy",
        "metadata": {"uid": uid, "name": uid, "namespace": "ns", "generation": 1},
        "spec": {},
        "status": {},
    }


@pytest.mark.parametrize("error", [Boom("x"), SystemExit(3), KeyboardInterrupt(), GeneratorExit()])
async def test_a_reconcile_raising_a_base_exception_fails_liveness_and_logs_why(
    error: BaseException, caplog: pytest.LogCaptureFixture
) -> None:
    state = OperatorState(OperatorOptions(namespaces=("ns",)), {})
    state._ctx = context(None, Vendor())
    rec = Raising(error)
    try:
        assert state.liveness() == "leading"
        state.scheduler().observe(rec, body("a"))
        with caplog.at_level(logging.ERROR, logger="cleanup_operator.handlers"):
            await asyncio.sleep(1)
        assert rec.calls == 1
        with pytest.raises(kopf.PermanentError, match=f"a reconcile raised {type(error).__name__}"):
            state.liveness()
        logged = [r for r in caplog.records if "liveness probe now fails" in r.getMessage()]
        assert logged and f"a reconcile raised {type(error).__name__}" in logged[0].getMessage()
        assert logged[0].exc_info is not None
    finally:
        await state.aclose()


async def test_a_standby_schedules_nothing_until_it_leads() -> None:
    store = LeaseStore()
    holder = LeaderElector(store, config("other"))
    assert await holder.try_acquire_or_renew()
    state = OperatorState(OperatorOptions(namespaces=("ns",), leader_elect=True), {})
    state.connection = type("Info", (), {"server": "https://127.0.0.1:6443"})()
    seen: list[float] = []

    class Recorder(Raising):
        async def reconcile(self, obj: Obj) -> Outcome:
            seen.append(now())
            return Outcome(dict(obj.status), None)

    state.elector = LeaderElector(store, config("me"), on_change=lambda leading: state._leading.set())
    state._ctx = context(state.elector, Vendor())
    task = asyncio.create_task(state.elector.run())
    try:
        assert state.liveness() == "standby"
        state.scheduler().observe(Recorder(Boom()), body("a"))
        await asyncio.sleep(10)
        assert seen == [], "a standby reconciled"
        took = await wait_for(state.elector.acquired)  # the other holder stopped renewing at t=0
        await asyncio.sleep(0.1)
        assert seen == [took] and state.liveness() == "leading"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await state.aclose()
