"""Fixtures shared by every tier. Tier markers are applied from the folder a test lives in."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from hypothesis import HealthCheck, settings

if TYPE_CHECKING:
    from cleanup_operator.testing.simulators import SimulatorServer

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
def sim_server() -> Iterator[SimulatorServer]:
    """One simulator server for the session, in its own thread; see the ``sim`` fixture."""
    from cleanup_operator.testing.simulators import build_server

    server = build_server().start_in_thread()
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
