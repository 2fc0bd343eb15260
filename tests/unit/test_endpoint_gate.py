"""Per-endpoint gates: a bounded share per vendor endpoint, and a silent endpoint refused fast."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from cleanup_operator.vendors.errors import TransientError
from cleanup_operator.vendors.http import ClientOptions, EndpointGates, make_client, request

pytestmark = [pytest.mark.unit, pytest.mark.looptime(start=0)]


class Vendor(httpx.AsyncBaseTransport):
    """An endpoint that answers after ``delay`` (fake time), or times out while ``silent``."""

    def __init__(self) -> None:
        self.silent = False
        self.seen = 0
        self.in_flight = 0
        self.max_in_flight = 0

    async def handle_async_request(self, req: httpx.Request) -> httpx.Response:
        self.seen += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(30.0 if self.silent else 1.0)
            if self.silent:
                raise httpx.ConnectTimeout("no answer", request=req)
            return httpx.Response(200, json={}, headers={"content-type": "application/json"})
        finally:
            self.in_flight -= 1


def client(vendor: Vendor, gates: EndpointGates, url: str) -> httpx.AsyncClient:
    return make_client(ClientOptions(base_url=url), transport=vendor, gates=gates)


async def test_each_endpoint_has_its_own_bounded_share() -> None:
    gates = EndpointGates(limit=3)
    a, b = Vendor(), Vendor()
    a.silent = True
    ca, cb = client(a, gates, "https://a.example"), client(b, gates, "https://b.example")
    loop = asyncio.get_running_loop()
    slow = [asyncio.create_task(request(ca, "GET", "/x", vendor="jfrog")) for _ in range(20)]
    await asyncio.sleep(0.1)
    t0 = loop.time()
    await asyncio.gather(*(request(cb, "GET", "/y", vendor="jfrog") for _ in range(6)))
    assert loop.time() - t0 == pytest.approx(2.0, abs=0.2)  # two rounds of three, A never in the way
    assert a.max_in_flight == 3 and b.max_in_flight == 3
    results = await asyncio.gather(*slow, return_exceptions=True)
    assert all(isinstance(r, TransientError) for r in results)
    # Only the first three reached the silent endpoint: the rest were refused without a request.
    assert a.seen == 3
    assert any("not sent" in str(r) for r in results)


async def test_a_silent_endpoint_is_probed_by_one_request_then_recovers() -> None:
    gates = EndpointGates(limit=5)
    vendor = Vendor()
    vendor.silent = True
    c = client(vendor, gates, "https://a.example")
    with pytest.raises(TransientError):
        await request(c, "GET", "/x", vendor="jfrog")
    assert vendor.seen == 1
    with pytest.raises(TransientError, match="not sent"):
        await request(c, "GET", "/x", vendor="jfrog")  # within the pause: no request at all
    assert vendor.seen == 1
    await asyncio.sleep(3.0)  # past the first pause (1-2 s)
    vendor.silent = False
    probe = asyncio.create_task(request(c, "GET", "/x", vendor="jfrog"))
    await asyncio.sleep(0.1)
    with pytest.raises(TransientError, match="probing"):
        await request(c, "GET", "/x", vendor="jfrog")
    await probe
    await request(c, "GET", "/x", vendor="jfrog")  # answered: the gate is open again
    assert vendor.seen == 3


async def test_harness_accounts_are_endpoints_of_their_own() -> None:
    gates = EndpointGates(limit=1)
    vendor = Vendor()
    c = client(vendor, gates, "https://app.harness.io")
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    await asyncio.gather(
        request(c, "POST", "/gateway/api/graphql", vendor="harness", params={"accountId": "a1"}),
        request(c, "POST", "/gateway/api/graphql", vendor="harness", params={"accountId": "a2"}),
    )
    assert loop.time() - t0 == pytest.approx(1.0, abs=0.2)
    assert set(gates.by_key) == {"https://app.harness.io|a1", "https://app.harness.io|a2"}
