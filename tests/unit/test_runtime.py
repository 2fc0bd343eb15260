"""The per-object loop's bookkeeping: what wakes it, and what it writes."""

from __future__ import annotations

import asyncio
from typing import Any

from cleanup_operator.runtime import Wakers, jittered, trigger_of


def body(
    generation: int, annotations: dict[str, str] | None = None, status: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {
        "metadata": {"uid": "u1", "generation": generation, "annotations": annotations or {}},
        "status": status or {},
    }


async def test_status_only_changes_do_not_wake() -> None:
    wakers = Wakers()
    wakers.observe("u1", body(1))
    ev = wakers.event("u1")
    wakers.observe("u1", body(1, status={"phase": "Running"}))
    wakers.observe("u1", body(1, {"kopf.zalando.org/last-handled-configuration": "x"}))
    assert not ev.is_set()


async def test_generation_and_request_annotations_wake() -> None:
    wakers = Wakers()
    wakers.observe("u1", body(1))
    ev = wakers.event("u1")
    wakers.observe("u1", body(2))
    assert ev.is_set()
    ev.clear()
    wakers.observe("u1", body(2, {"cleanup.artifacts.dev/requested-at": "now"}))
    assert ev.is_set()
    ev.clear()
    wakers.observe("u1", body(2, {"cleanup.artifacts.dev/requested-at": "now"}))
    assert not ev.is_set()
    wakers.forget("u1")
    assert trigger_of(body(3)) == (3, None, None, None)
    await asyncio.sleep(0)


def test_jitter_stays_within_ten_percent() -> None:
    values = [jittered(600.0) for _ in range(200)]
    assert min(values) >= 540.0 and max(values) <= 660.0
    assert len(set(values)) > 100
