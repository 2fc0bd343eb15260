"""The scheduler's bookkeeping: what runs an object, when, and never twice at once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from cleanup_operator.api.cleanup_policy import CLEANUP_POLICY
from cleanup_operator.observability import Metrics
from cleanup_operator.reconcile.common import interval_of
from cleanup_operator.runtime import Obj, Outcome, Scheduler, jittered, spread_later, trigger_of


def body(
    uid: str, generation: int, annotations: dict[str, str] | None = None, status: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {
        "apiVersion": "cleanup.artifacts.dev/v1alpha1",
        "kind": "CleanupPolicy",
        "metadata": {
            "uid": uid,
            "name": uid,
            "namespace": "ns",
            "generation": generation,
            "annotations": annotations or {},
            "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}],
        },
        "spec": {"interval": "10m"},
        "status": status or {},
    }


class Recorder:
    """A reconciler that records what ran and when (the loop's time: under looptime, a fake one)."""

    kind = CLEANUP_POLICY

    def __init__(self, requeue: float | None = None, hold: float = 0.0) -> None:
        self.seen: list[tuple[str, int | None]] = []
        self.at: list[float] = []
        self.active = 0
        self.max_active = 0
        self.requeue = requeue
        self.hold = hold

    async def reconcile(self, obj: Obj) -> Outcome:
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        self.seen.append((obj.uid, obj.generation))
        self.at.append(asyncio.get_running_loop().time())
        await asyncio.sleep(self.hold)
        self.active -= 1
        return Outcome(dict(obj.status), self.requeue)

    async def finalize(self, obj: Obj) -> Outcome | None:
        return None


class NoKube:
    """A context whose status writes must never happen (status is unchanged in these tests)."""

    def __init__(self) -> None:
        self.emitted: list[Any] = []
        self.metrics = Metrics()

    async def write_status(self, obj: Obj, desired: dict[str, Any]) -> bool:
        assert desired == obj.status, "status changed unexpectedly"
        return False

    def emit(self, obj: Obj, event: Any) -> None:
        self.emitted.append(event)

    def newest_status(self, uid: str, body: Any) -> dict[str, Any] | None:
        return None

    def forget(self, uid: str) -> None:
        pass


# The scheduler runs on the event loop's clock; under ``looptime`` that clock is fake and moves only
# when every task waits, so "0.05 s later" is exact and a loaded machine changes nothing.
pytestmark_looptime = pytest.mark.looptime(start=0)


@asynccontextmanager
async def running(sched: Scheduler) -> AsyncIterator[None]:
    task = asyncio.create_task(sched.run())
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await sched.aclose()


@pytestmark_looptime
async def test_new_objects_run_once_and_status_only_events_do_not_rerun() -> None:
    rec = Recorder()
    sched = Scheduler(NoKube())  # type: ignore[arg-type]
    sched.observe(rec, body("a", 1))
    sched.observe(rec, body("b", 1))
    async with running(sched):
        await asyncio.sleep(1)
        assert sorted(rec.seen) == [("a", 1), ("b", 1)] and rec.at == [0, 0]
        sched.observe(rec, body("a", 1, status={"phase": "x"}))  # our own status patch
        sched.observe(rec, body("a", 1, {"cleanup.artifacts.dev/kopf-managed": "yes"}))
        await asyncio.sleep(3600)  # an hour later: nothing else ran
    assert sorted(rec.seen) == [("a", 1), ("b", 1)]
    assert (
        sched.ctx.metrics.value("cleanup_operator_reconciles_total", kind="CleanupPolicy", result="ok") == 2
    )
    assert "cleanup_operator_reconciles_total{" in sched.ctx.metrics.render()


@pytestmark_looptime
async def test_generation_and_requested_at_rerun() -> None:
    rec = Recorder()
    sched = Scheduler(NoKube())  # type: ignore[arg-type]
    sched.observe(rec, body("a", 1))
    async with running(sched):
        await asyncio.sleep(10)
        sched.observe(rec, body("a", 2))
        await asyncio.sleep(10)
        sched.observe(rec, body("a", 2, {"cleanup.artifacts.dev/requested-at": "now"}))
        await asyncio.sleep(10)
        sched.observe(rec, body("a", 2, {"cleanup.artifacts.dev/requested-at": "now"}))  # same value
        await asyncio.sleep(10)
    assert rec.seen == [("a", 1), ("a", 2), ("a", 2)]
    assert rec.at == [0, 10, 20], "each change runs at once, the same value never again"


@pytestmark_looptime
async def test_change_during_a_reconcile_reruns_after_it_never_concurrently() -> None:
    rec = Recorder(hold=5)
    sched = Scheduler(NoKube())  # type: ignore[arg-type]
    sched.observe(rec, body("a", 1))
    async with running(sched):
        await asyncio.sleep(1)
        assert rec.active == 1
        sched.observe(rec, body("a", 2))
        sched.observe(rec, body("a", 3))
        await asyncio.sleep(60)
    assert rec.max_active == 1
    assert rec.seen == [("a", 1), ("a", 3)]
    assert rec.at == [0, 5], "the rerun starts when the first reconcile ends, with the newest snapshot"


@pytestmark_looptime
async def test_requeue_after_and_hold() -> None:
    rec = Recorder(requeue=30)
    sched = Scheduler(NoKube())  # type: ignore[arg-type]
    sched.observe(rec, body("a", 1))
    async with running(sched):
        await asyncio.sleep(100)
        assert rec.at == [0, 30, 60, 90], rec.at
        await sched.hold("a")
        await asyncio.sleep(600)
    assert rec.at == [0, 30, 60, 90], "a held object is not scheduled again"


@pytestmark_looptime
async def test_hold_waits_for_the_reconcile_in_flight() -> None:
    rec = Recorder(hold=7, requeue=1)
    sched = Scheduler(NoKube())  # type: ignore[arg-type]
    sched.observe(rec, body("a", 1))
    async with running(sched):
        await asyncio.sleep(2)
        loop = asyncio.get_running_loop()
        await sched.hold("a")
        assert loop.time() == 7 and rec.active == 0
        await asyncio.sleep(100)
    assert rec.at == [0]


async def test_snapshot_is_lean() -> None:
    obj = Obj.from_body(CLEANUP_POLICY, body("a", 1))
    assert "managedFields" not in str(obj.body)
    assert obj.body["metadata"] == {"name": "a", "namespace": "ns", "uid": "a"}


def test_trigger_ignores_status() -> None:
    assert trigger_of(body("a", 3)) == trigger_of(body("a", 3, status={"x": 1}))
    assert trigger_of(body("a", 3)) != trigger_of(body("a", 3, {"cleanup.artifacts.dev/adopt": "true"}))


def test_jitter_stays_within_ten_percent() -> None:
    values = [jittered(600.0) for _ in range(200)]
    assert min(values) >= 540.0 and max(values) <= 660.0
    assert len(set(values)) > 100


def test_an_interval_is_spread_later_never_sooner() -> None:
    """A policy's next check: never sooner than its interval (at most one check per interval),
    at most 10 % later, and spread."""
    values = [spread_later(600.0) for _ in range(200)]
    assert min(values) >= 600.0 and max(values) <= 660.0
    assert len(set(values)) > 100
    assert all(600.0 <= interval_of("10m") <= 660.0 for _ in range(200))


async def test_metrics_endpoint_serves_prometheus_text() -> None:
    import socket

    import httpx

    from cleanup_operator.observability import serve_metrics

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    metrics = Metrics()
    metrics.inc("cleanup_operator_reconciles_total", kind="StoragePrune", result="ok")
    runner = await serve_metrics(metrics, port, host="127.0.0.1")
    try:
        async with httpx.AsyncClient() as client:
            text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
    finally:
        await runner.cleanup()
    assert "# TYPE cleanup_operator_reconciles_total counter" in text
    assert 'cleanup_operator_reconciles_total{kind="StoragePrune",result="ok"} 1' in text


@pytestmark_looptime
async def test_metrics_show_the_queue_the_waiting_and_reconcile_latency() -> None:
    """Queue depth, objects due but waiting for a slot, reconciles in flight, latency per kind."""
    rec = Recorder()
    rec.hold = 2.0
    sched = Scheduler(NoKube(), concurrency=1)  # type: ignore[arg-type]
    for name in ("a", "b", "c"):
        sched.observe(rec, body(name, 1))
    metrics = sched.ctx.metrics
    async with running(sched):
        await asyncio.sleep(1)  # one reconcile running (2 s each), two due and waiting for the slot
        text = metrics.render()
        assert metrics.gauge("cleanup_operator_objects", kind="CleanupPolicy") == 3
        assert metrics.gauge("cleanup_operator_reconciles_in_flight") == 1
        assert metrics.gauge("cleanup_operator_objects_due_waiting") == 2
        await asyncio.sleep(10)
        metrics.render()
        assert metrics.gauge("cleanup_operator_objects_due_waiting") == 0
    count = metrics.registry.get_sample_value(
        "cleanup_operator_reconcile_duration_seconds_count", {"kind": "CleanupPolicy"}
    )
    assert count == 3
    assert 'cleanup_operator_reconcile_duration_seconds_bucket{kind="CleanupPolicy",le="2.5"} 3.0' in (
        metrics.render()
    )
    assert "# HELP cleanup_operator_objects " in text


class PatchingKube:
    """The API server's status subresource, as far as ``Context.write_status`` sees it: every
    patch is accepted with the next resourceVersion. No watch follows, as while a watch reconnects."""

    def __init__(self) -> None:
        self.version = 100
        self.patches: list[dict[str, Any]] = []

    async def patch_status(self, plural: str, namespace: str, name: str, status: dict[str, Any]) -> str:
        self.patches.append(status)
        self.version += 1
        return str(self.version)

    async def aclose(self) -> None:
        pass


class Counting:
    """A reconciler that adds one to ``status.count`` each time, and records what it was given."""

    kind = CLEANUP_POLICY

    def __init__(self) -> None:
        self.given: list[dict[str, Any]] = []

    async def reconcile(self, obj: Obj) -> Outcome:
        self.given.append(dict(obj.status))
        return Outcome({**obj.status, "count": obj.status.get("count", 0) + 1}, 1.0)

    async def finalize(self, obj: Obj) -> Outcome | None:
        return None


@pytestmark_looptime
async def test_a_reconcile_while_the_watch_lags_sees_the_status_it_wrote_last() -> None:
    """Our write's record must not alias the status it came from: while the watch is down (an API
    server restart) the next reconcile of the same snapshot got an empty status, which for a prune
    reads as "never started" (the apiserver-restart test caught it as conditions: [])."""
    from cleanup_operator.runtime import Context

    kube = PatchingKube()
    ctx = Context(kube, events=lambda obj, ev: None)  # type: ignore[arg-type]
    rec = Counting()
    sched = Scheduler(ctx)
    first = body("a", 1, status={"count": 0, "phase": "Running"})
    first["metadata"]["resourceVersion"] = "100"  # what the watch delivered last
    sched.observe(rec, first)
    async with running(sched):
        await asyncio.sleep(3.5)  # four reconciles, one a second, and no watch event at all
    assert [g.get("count") for g in rec.given] == [0, 1, 2, 3]
    assert all(g.get("phase") == "Running" for g in rec.given), rec.given
    assert kube.patches == [{"count": 1}, {"count": 2}, {"count": 3}, {"count": 4}]
    await ctx.aclose()
