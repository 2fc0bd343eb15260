"""The vendor rate limiter counts what the vendor sees: a request holds its place until it completed."""

from __future__ import annotations

import asyncio

import pytest

from cleanup_operator.vendors.http import RateLimiter

pytestmark = pytest.mark.looptime(start=0)


async def test_a_slow_request_holds_its_place_until_a_window_after_it_completed() -> None:
    limiter = RateLimiter(2, 10.0)
    loop = asyncio.get_running_loop()
    starts: list[float] = []

    async def call(duration: float) -> None:
        async with limiter.slot():
            starts.append(loop.time())
            await asyncio.sleep(duration)

    # Two slow requests (30 s each, as on a loaded machine or a slow vendor) and a third.
    await asyncio.gather(call(30.0), call(30.0), call(0.0))
    assert starts[:2] == [0.0, 0.0]
    # Not at 10 s (a window after the first two *started*): a window after they completed.
    assert starts[2] >= 40.0


async def test_arrivals_never_exceed_the_limit_in_any_window() -> None:
    limiter = RateLimiter(3, 5.0)
    loop = asyncio.get_running_loop()
    arrivals: list[float] = []

    async def call(i: int) -> None:
        async with limiter.slot():
            await asyncio.sleep((i * 7) % 4)  # in flight for 0-3 s before the vendor counts it
            arrivals.append(loop.time())

    await asyncio.gather(*(call(i) for i in range(12)))
    arrivals.sort()
    for t in arrivals:
        assert sum(1 for a in arrivals if t <= a < t + 5.0) <= 3, arrivals


async def test_a_penalty_holds_every_caller_back() -> None:
    limiter = RateLimiter(5, 1.0)
    loop = asyncio.get_running_loop()
    limiter.penalize(12.0)
    await limiter.acquire()
    assert loop.time() >= 12.0
