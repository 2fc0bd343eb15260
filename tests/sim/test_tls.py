"""TLS between the vendor clients and an https simulator: a private CA trusted, refused, or not checked.

The session simulator serves https with a certificate of the session CA (``sim_ca``); the clients
are the operator's own (``make_client`` with ``ClientOptions``), exactly as the operator builds them
from a caSecretRef Secret or ``insecureSkipVerify``.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator

import httpx
import pytest

from cleanup_operator.testing.simulators import SimulatorServer, build_server
from cleanup_operator.testing.tls import SimulatorCA
from cleanup_operator.vendors import jfrog
from cleanup_operator.vendors.errors import TLSError, TransientError
from cleanup_operator.vendors.harness import CleanupOutcome, HarnessClient
from cleanup_operator.vendors.http import ClientOptions, EndpointGates, make_client

from ..conftest import harness

TOKEN = "test-token"
BEARER = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def other_ca() -> SimulatorCA:
    """A CA that signed nothing the simulators present."""
    return SimulatorCA()


def jfrog_client(
    url: str, ca_pem: str | None = None, insecure_skip_verify: bool = False
) -> httpx.AsyncClient:
    opts = ClientOptions(
        base_url=url, headers=BEARER, ca_pem=ca_pem, insecure_skip_verify=insecure_skip_verify
    )
    return make_client(opts)


def test_the_session_simulator_serves_https(sim: SimulatorServer) -> None:
    assert sim.url("jfrog").startswith("https://127.0.0.1:")
    assert sim.url("harness").startswith("https://") and sim.url("sourcecraft").startswith("https://")


async def test_trusted_ca_works(sim: SimulatorServer, sim_ca_pem: str) -> None:
    async with jfrog_client(sim.url("jfrog"), ca_pem=sim_ca_pem) as http:
        client = jfrog.JFrogClient(http)
        assert (await client.version()).parts >= (7, 0, 0)
        assert await client.list_policies() == []
    assert [(c.method, c.path.rsplit("/", 1)[-1], c.status) for c in sim.calls.calls("jfrog")] == [
        ("GET", "version", 200),
        ("GET", "policies", 200),
    ]


@pytest.mark.parametrize("trust", ["another CA", "the system's CAs"])
async def test_untrusted_certificate_raises_tls_error(
    sim: SimulatorServer, other_ca: SimulatorCA, trust: str
) -> None:
    ca_pem = other_ca.ca_pem if trust == "another CA" else None
    async with jfrog_client(sim.url("jfrog"), ca_pem=ca_pem) as http:
        with pytest.raises(TLSError) as exc:
            await jfrog.JFrogClient(http).list_policies()
    error = exc.value
    assert error.reason == "TLSVerificationFailed" and not error.retryable
    assert "TLS failed (unable to get local issuer certificate)" in str(error), str(error)
    assert "caSecretRef" in str(error)  # says what to fix
    assert TOKEN not in str(error) and TOKEN not in repr(error)
    assert sim.calls.calls() == []  # the handshake failed: no request reached the vendor


async def test_insecure_skip_verify_works(sim: SimulatorServer, other_ca: SimulatorCA) -> None:
    """No check at all: even a wrong CA given beside it does not matter."""
    async with jfrog_client(sim.url("jfrog"), insecure_skip_verify=True, ca_pem=other_ca.ca_pem) as http:
        assert await jfrog.JFrogClient(http).list_policies() == []
    assert [c.status for c in sim.calls.calls("jfrog")] == [200]


async def test_certificate_names_localhost(sim: SimulatorServer, sim_ca_pem: str) -> None:
    url = sim.url("jfrog").replace("127.0.0.1", "localhost")
    async with jfrog_client(url, ca_pem=sim_ca_pem) as http:
        assert await jfrog.JFrogClient(http).list_policies() == []


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.fixture
def v6(sim_ca: SimulatorCA) -> Iterator[SimulatorServer]:
    if not _ipv6_loopback():
        pytest.skip("no IPv6 loopback on this machine")
    server = build_server("::1", ssl_context=sim_ca.server_context()).start_in_thread()
    yield server
    server.stop_thread()


async def test_certificate_names_ipv6_loopback(v6: SimulatorServer, sim_ca_pem: str) -> None:
    assert v6.url("jfrog").startswith("https://[::1]:")
    async with jfrog_client(v6.url("jfrog"), ca_pem=sim_ca_pem) as http:
        assert await jfrog.JFrogClient(http).list_policies() == []


async def test_harness_client_trusts_the_ca_it_is_given(
    sim: SimulatorServer, sim_ca_pem: str, other_ca: SimulatorCA
) -> None:
    harness(sim).add_stream("acc1", "s1", "ECR")
    trusted = ClientOptions(base_url=sim.url("harness"), headers={"x-api-key": "test-key"}, ca_pem=sim_ca_pem)
    async with make_client(trusted) as http:
        assert (await HarnessClient(http, "acc1").artifact_cleanup("s1")).outcome is CleanupOutcome.SUCCEEDED
    wrong = ClientOptions(
        base_url=sim.url("harness"), headers={"x-api-key": "test-key"}, ca_pem=other_ca.ca_pem
    )
    async with make_client(wrong) as http:
        with pytest.raises(TLSError):
            await HarnessClient(http, "acc1").artifact_cleanup("s1")
    assert harness(sim).cleanup_count("s1", "acc1") == 1


# Plain http stays available for the demo and the bench (the operator refuses it unless told).


@pytest.fixture(scope="module")
def plain() -> Iterator[SimulatorServer]:
    server = build_server().start_in_thread()
    yield server
    server.stop_thread()


async def test_without_a_context_the_server_speaks_plain_http(plain: SimulatorServer) -> None:
    assert plain.url("jfrog").startswith("http://127.0.0.1:")
    async with jfrog_client(plain.url("jfrog")) as http:
        assert await jfrog.JFrogClient(http).list_policies() == []


async def test_an_https_port_does_not_answer_plain_http(sim: SimulatorServer) -> None:
    async with jfrog_client(sim.url("jfrog").replace("https://", "http://")) as http:
        with pytest.raises(TransientError) as exc:
            await jfrog.JFrogClient(http).list_policies()
    assert type(exc.value) is TransientError  # a dropped connection, not a TLS verdict
    assert TOKEN not in str(exc.value)
    assert sim.calls.calls() == []


@pytest.fixture
def silent_tls_port() -> Iterator[int]:
    """A port that accepts TCP connections and never answers a TLS hello."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(512)  # the kernel completes the TCP handshakes; nothing ever reads or writes
    try:
        yield int(server.getsockname()[1])
    finally:
        server.close()


async def test_a_tls_handshake_that_never_ends_pauses_the_endpoint(silent_tls_port: int) -> None:
    """A handshake timeout is silence, not a TLS answer: after the first requests time out, the
    rest are refused at once (the endpoint's gate pauses it) instead of each waiting its timeout.
    It used to count as a TLS answer (the interrupted handshake's ``SSLWantReadError``), so every
    request in turn waited for its own timeout."""
    gates = EndpointGates(limit=10)
    opts = ClientOptions(base_url=f"https://127.0.0.1:{silent_tls_port}", headers=BEARER, timeout=1.0)
    client = make_client(opts, gates=gates)
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        results = await asyncio.gather(
            *(jfrog.JFrogClient(client).get_policy(f"p{i}") for i in range(40)), return_exceptions=True
        )
    finally:
        await client.aclose()
    took = loop.time() - started
    assert all(isinstance(r, TransientError) for r in results), results
    timed_out = [r for r in results if "timed out" in str(r)]
    assert len(timed_out) == 10, [str(r) for r in results]  # the first ten, one slot each
    assert all("not sent: it did not answer recent requests" in str(r) for r in results if r not in timed_out)
    assert took < 1.9, took  # one timeout, not four in a row
    assert not any(isinstance(r, TLSError) for r in results)
