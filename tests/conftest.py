"""Fixtures shared by every tier. Tier markers are applied from the folder a test lives in."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import pytest
from hypothesis import HealthCheck, settings

if TYPE_CHECKING:
    from cleanup_operator.testing.simulators import (
        HarnessSimulator,
        JFrogSimulator,
        SimulatorServer,
        SourceCraftSimulator,
    )
    from cleanup_operator.testing.tls import SimulatorCA

T = TypeVar("T")

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
VENDOR_DOCS = SHARED / "vendor-docs"


TIERS = ("unit", "sim", "cluster")

# Property-based tests: `make test` runs the "ci" profile, a fixed seed (derandomize) and a bounded
# number of examples, so a run is repeatable and its time known; `pytest --hypothesis-profile=thorough`
# explores far more (and randomly) on a developer's machine.
settings.register_profile(
    "ci",
    derandomize=True,
    max_examples=80,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "thorough", max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("ci")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test with its tier, and run the fast tiers first."""
    for item in items:
        tier = Path(str(item.fspath)).parent.name
        if tier in TIERS:
            item.add_marker(getattr(pytest.mark, tier))
    items.sort(key=lambda i: TIERS.index(t) if (t := Path(str(i.fspath)).parent.name) in TIERS else 0)


@pytest.fixture(scope="session")
def sim_ca() -> SimulatorCA:
    """The session's test CA, made now (never on disk), and its certificate for the loopback names."""
    from cleanup_operator.testing.tls import SimulatorCA

    return SimulatorCA()


@pytest.fixture(scope="session")
def sim_ca_pem(sim_ca: SimulatorCA) -> str:
    """The PEM of the CA that signed the simulators' certificate: what a client must trust."""
    return sim_ca.ca_pem


@pytest.fixture(scope="session")
def sim_server(sim_ca: SimulatorCA) -> Iterator[SimulatorServer]:
    """One simulator server for the session, in its own thread, for every tier; see the ``sim`` fixture.

    It serves https only, with a certificate of :func:`sim_ca` (``sim_ca_pem`` to trust it). The tiers
    run in order (unit, sim, cluster), and each test starts from a reset simulator.
    """
    from cleanup_operator.testing.simulators import build_server

    server = build_server(ssl_context=sim_ca.server_context()).start_in_thread()
    yield server
    server.stop_thread()


@pytest.fixture
def sim(sim_server: SimulatorServer) -> Iterator[SimulatorServer]:
    """The simulator server, with all state, faults and calls forgotten before each test."""
    sim_server.reset()
    yield sim_server
    sim_server.reset()


@pytest.fixture(scope="session")
def vendor_docs() -> Path:
    if not VENDOR_DOCS.is_dir():
        pytest.fail(f"vendor documents not found at {VENDOR_DOCS}: ../shared must sit beside the repo")
    return VENDOR_DOCS


def unique(prefix: str) -> str:
    """A name no other test (nor an earlier run of this one) uses."""
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def jfrog(sim: SimulatorServer) -> JFrogSimulator:
    """The server's JFrog simulator, typed."""
    from cleanup_operator.testing.simulators import JFrogSimulator

    s = sim.simulator("jfrog")
    assert isinstance(s, JFrogSimulator)
    return s


def harness(sim: SimulatorServer) -> HarnessSimulator:
    """The server's Harness simulator, typed."""
    from cleanup_operator.testing.simulators import HarnessSimulator

    s = sim.simulator("harness")
    assert isinstance(s, HarnessSimulator)
    return s


def sourcecraft(sim: SimulatorServer) -> SourceCraftSimulator:
    """The server's SourceCraft simulator, typed."""
    from cleanup_operator.testing.simulators import SourceCraftSimulator

    s = sim.simulator("sourcecraft")
    assert isinstance(s, SourceCraftSimulator)
    return s


def wait_until(check: Callable[[], T | None], what: str, timeout: float = 30.0, interval: float = 0.1) -> T:
    """Poll ``check`` until it returns something truthy, and return that; fail naming ``what``.

    The one polling loop of the suite: a test waits on a condition it can observe, never on a
    fixed sleep.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)
