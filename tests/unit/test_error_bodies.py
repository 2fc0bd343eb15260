"""Only a vendor's documented error fields reach a message (and so a status), never a raw body.

The server here is deliberately not our simulator: it is an unknown server answering whatever it
likes (an internal page, an echo of a Secret), which is what the rule protects against.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from cleanup_operator.vendors.errors import VendorError
from cleanup_operator.vendors.harness import HarnessClient
from cleanup_operator.vendors.jfrog import JFrogClient
from cleanup_operator.vendors.sourcecraft import SourceCraftClient

pytestmark = pytest.mark.unit

SECRETISH = "internal-admin-page-token-9f8e7d"


def server(status: int, body: Any, ctype: str = "application/json") -> httpx.AsyncClient:
    raw = body if isinstance(body, str) else json.dumps(body)

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, content=raw.encode(), headers={"content-type": ctype})

    return httpx.AsyncClient(base_url="https://unknown.example", transport=httpx.MockTransport(answer))


async def jfrog_call(http: httpx.AsyncClient) -> None:
    await JFrogClient(http).get_policy("p1")


async def sourcecraft_call(http: httpx.AsyncClient) -> None:
    await SourceCraftClient(http).get_run("acme", "web", "run-1")


async def harness_call(http: httpx.AsyncClient) -> None:
    result = await HarnessClient(http, "acc1").artifact_cleanup("s1")
    raise VendorError(str(result.message))  # a result is a message the status shows too


CALLS: dict[str, Callable[[httpx.AsyncClient], Any]] = {
    "jfrog": jfrog_call,
    "sourcecraft": sourcecraft_call,
    "harness": harness_call,
}

UNKNOWN_BODIES = [
    (502, f"<html><body>proxy error; debug {SECRETISH}</body></html>", "text/html"),
    (400, {"detail": SECRETISH, "trace": SECRETISH}, "application/json"),
    (500, {"error": SECRETISH, "message": 42}, "application/json"),
    (403, SECRETISH, "text/plain"),
    (200, {"unexpected": SECRETISH}, "application/json"),
]


@pytest.mark.parametrize("vendor", list(CALLS))
@pytest.mark.parametrize(("status", "body", "ctype"), UNKNOWN_BODIES)
async def test_an_unknown_servers_body_never_reaches_the_message(
    vendor: str, status: int, body: Any, ctype: str
) -> None:
    async with server(status, body, ctype) as http:
        with pytest.raises(VendorError) as caught:
            await CALLS[vendor](http)
    assert SECRETISH not in str(caught.value), str(caught.value)


@pytest.mark.parametrize(
    ("vendor", "status", "body", "expected"),
    [
        (
            "jfrog",
            400,
            {"errors": [{"status": 400, "message": "Policy key is invalid"}]},
            "Policy key is invalid",
        ),
        ("jfrog", 412, {"info": "No running Prune task found"}, "No running Prune task found"),
        (
            "sourcecraft",
            404,
            {"error_code": "NOT_FOUND", "message": "run not found", "request_id": "r-1"},
            "NOT_FOUND: run not found",
        ),
        ("harness", 200, {"errors": [{"message": "Invalid api key"}]}, "Invalid api key"),
    ],
)
async def test_documented_error_fields_are_said(vendor: str, status: int, body: Any, expected: str) -> None:
    async with server(status, body) as http:
        with pytest.raises(VendorError) as caught:
            await CALLS[vendor](http)
    assert expected in str(caught.value)


async def test_a_long_documented_message_is_capped() -> None:
    body = {"errors": [{"status": 400, "message": "x" * 5000}]}
    async with server(400, body) as http:
        with pytest.raises(VendorError) as caught:
            await jfrog_call(http)
    assert len(str(caught.value)) < 400
