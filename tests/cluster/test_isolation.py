"""One vendor cannot stall the others (issue 14).

Artifactory A accepts connections and never answers (a black hole on loopback); Artifactory B is the
simulator. 100 CleanupPolicies on each, and a prune running on B: B's policies reach Ready and the
prune's progress keeps moving on its poll interval while A's requests time out. Vendor requests are
bounded per endpoint, per request, and a silent endpoint is refused fast after its first timeouts.
"""

from __future__ import annotations

import collections
import itertools
import re
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from cleanup_operator.testing.simulators import SimulatorServer

from .conftest import CPOL, SPRUNE, Kube, condition, jfrog, phase, policy, prune, ready, wait_until

COUNT = 100


@pytest.fixture
def black_hole() -> Iterator[int]:
    """A TCP port that accepts every connection and never sends a byte."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(512)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            held.append(conn)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield int(server.getsockname()[1])
    stop.set()
    thread.join(2)
    for conn in held:
        conn.close()
    server.close()


def names(kube: Kube, prefix: str) -> list[dict[str, Any]]:
    import json

    out = kube.kubectl("get", CPOL, "-n", kube.ns, "-o", "json").stdout
    return [o for o in json.loads(out)["items"] if o["metadata"]["name"].startswith(prefix)]


def test_a_silent_artifactory_never_holds_up_another(
    kube: Kube, sim: SimulatorServer, black_hole: int
) -> None:
    kube.secret("jfrog", token="test-token")
    j = jfrog(sim)
    j.prune_seconds_per_directory = 0.15  # about 40 s: it runs through the whole test
    kube.apply(prune(sim, "b-prune"))
    kube.wait_for(SPRUNE, "b-prune", lambda o: (o.get("status") or {}).get("percent", 0) > 0, what="started")

    silent = re.sub(r"//127\.0\.0\.1:\d+", f"//127.0.0.1:{black_hole}", sim.url("jfrog"))
    a_policies = [policy(sim, f"a-{i:03d}", interval="5s") for i in range(COUNT)]
    for m in a_policies:
        m["spec"]["connection"]["url"] = silent
    b_policies = [policy(sim, f"b-{i:03d}", interval="5s") for i in range(COUNT)]
    # A first: its requests are in flight (and waiting) before B's arrive.
    kube.kubectl("apply", "-n", kube.ns, "-f", "-", input="\n---\n".join(map(yaml.safe_dump, a_policies)))
    time.sleep(1)  # let A's reconciles start and block; there is nothing to observe in a black hole
    started = time.monotonic()
    kube.kubectl("apply", "-n", kube.ns, "-f", "-", input="\n---\n".join(map(yaml.safe_dump, b_policies)))

    progress: list[tuple[float, str]] = []

    def b_ready() -> bool:
        obj = kube.get(SPRUNE, "b-prune")
        shown = ((obj or {}).get("status") or {}).get("progress")
        if shown and (not progress or progress[-1][1] != shown):
            progress.append((time.monotonic(), shown))
        return sum(ready(o) for o in names(kube, "b-")) == COUNT

    # Faster than one timeout of A (connect timeout 10 s) would allow if A held B's slots.
    wait_until(b_ready, f"all {COUNT} policies on B Ready", timeout=60, interval=0.5)
    took = time.monotonic() - started
    # The prune on B was polled all along: its shown progress moved at least every few seconds.
    gaps = [b - a for (a, _), (b, _) in itertools.pairwise(progress)]
    # A blocked share would cost at least A's connect timeout (10 s) per gap.
    assert len(progress) >= 3 and max(gaps, default=0) < 10.0, (progress, took)
    # A's requests did time out, and every one of A's policies says so: none Ready, none created.
    # After the first timeouts A is paused and its other requests are refused at once, so all of
    # them report within about one timeout (a TLS handshake that timed out once counted as an
    # answer: A was never paused, and its policies reported ten per timeout).
    reasons: collections.Counter[str] = collections.Counter()

    def a_reported() -> bool:
        reasons.clear()
        reasons.update(str(condition(o, "Reconciling").get("reason")) for o in names(kube, "a-"))
        return reasons.get("VendorUnavailable", 0) == COUNT

    try:
        wait_until(a_reported, "policies on A to say their vendor is unavailable", timeout=60)
    except AssertionError:
        raise AssertionError(f"policies on A by Reconciling reason: {dict(reasons)}") from None
    assert set(reasons) <= {"VendorUnavailable", "None"}, dict(reasons)
    assert not any(ready(o) for o in names(kube, "a-"))
    assert j.policy("a-000") is None and j.policy("b-000") is not None
    # The prune on B runs to its end: a prune left running here would hold B's Artifactory (the
    # session simulator's) for every later test (the test cluster deletes no namespace's objects).
    kube.wait_for(SPRUNE, "b-prune", phase("Succeeded"), timeout=90, what="the prune on B finished")
