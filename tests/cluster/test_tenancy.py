"""Whoever may write one of our resources cannot steal a Secret (the confused deputy, issue 13).

Each refusal is shown as a user sees it (a Stalled condition naming what to fix) and by the
simulator's call log: a refused resource makes no vendor call at all, so no request ever carried
the Secret's value.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cleanup_operator.testing.controlplane import ControlPlane
from cleanup_operator.testing.simulators import SimulatorServer
from cleanup_operator.testing.tls import SimulatorCA

from .conftest import (
    ASS,
    CPOL,
    CREDENTIALS_LABEL,
    RECONCILE_AT,
    SPRUNE,
    Kube,
    Operator,
    condition,
    harness,
    hsync,
    is_true,
    jfrog,
    own_simulator,
    policy,
    prune,
    ready,
    scsync,
    sourcecraft,
    unique,
)

SECRET_VALUE = "tenant-b-token-7c1f0e"


@pytest.fixture
def sim(sim_ca: SimulatorCA) -> Iterator[SimulatorServer]:
    """A simulator of each test's own: "no vendor call at all" is read from a call log that no
    other test's objects (say, ones still being deleted with their namespace) can write to."""
    yield from own_simulator(sim_ca)


def stalled(reason: str) -> Callable[[dict[str, Any]], bool]:
    return lambda o: is_true(o, "Stalled", reason)


def other_host(url: str) -> str:
    """The same simulator, named by a host the operator is not told to allow."""
    return re.sub(r"//127\.0\.0\.1", "//localhost", url)


def plain_http(url: str) -> str:
    return re.sub(r"^https://", "http://", url)


def retarget(manifest: dict[str, Any], change: Callable[[str], str]) -> dict[str, Any]:
    spec = manifest["spec"]
    for holder in (spec.get("connection"), spec.get("harness"), spec.get("sourceCraft")):
        if holder is not None:
            holder["url"] = change(holder["url"])
    return manifest


def all_kinds(sim: SimulatorServer) -> list[tuple[str, str, dict[str, Any]]]:
    names = {k: unique(k) for k in ("cp", "sp", "hs", "sc")}
    return [
        (CPOL, names["cp"], policy(sim, names["cp"])),
        (SPRUNE, names["sp"], prune(sim, names["sp"])),
        (ASS, names["hs"], hsync(sim, names["hs"], ["docker-1"])),
        (ASS, names["sc"], scsync(sim, names["sc"], run="run-1")),
    ]


def secrets(kube: Kube, labelled: bool = True) -> None:
    kube.secret("jfrog", labelled=labelled, token=SECRET_VALUE)
    kube.secret("harness", labelled=labelled, apiKey=SECRET_VALUE)
    kube.secret("sourcecraft", labelled=labelled, token=SECRET_VALUE)


def vendor_calls(sim: SimulatorServer) -> list[Any]:
    return [c for c in sim.calls.calls() if not c.telemetry]


def assert_secret_nowhere(kube: Kube, plural: str, name: str, logs: str) -> None:
    obj = kube.get(plural, name)
    assert SECRET_VALUE not in str(obj)
    assert all(SECRET_VALUE not in e.get("message", "") for e in kube.events(name))
    assert SECRET_VALUE not in logs


def test_a_host_not_allowed_is_refused_before_any_secret_is_read(
    kube: Kube, sim: SimulatorServer, operator: Operator
) -> None:
    """The session operator allows 127.0.0.1 only: `localhost` names the same simulator, refused.
    No Secret exists either, and the reason is still the host: the Secret was never looked at."""
    for plural, name, manifest in all_kinds(sim):
        kube.apply(retarget(manifest, other_host))
        obj = kube.wait_for(plural, name, stalled("HostNotAllowed"), what="HostNotAllowed")
        message = condition(obj, "Stalled")["message"]
        assert "host localhost:" in message and "--allowed-hosts" in message, message
        assert not is_true(obj, "Ready")
    assert vendor_calls(sim) == []


def test_a_host_not_allowed_never_sees_the_secret(
    kube: Kube, sim: SimulatorServer, operator: Operator
) -> None:
    secrets(kube)
    for plural, name, manifest in all_kinds(sim):
        kube.apply(retarget(manifest, other_host))
        kube.wait_for(plural, name, stalled("HostNotAllowed"), what="HostNotAllowed")
        assert_secret_nowhere(kube, plural, name, operator.logs())
    assert vendor_calls(sim) == []


def test_plain_http_is_refused_unless_the_operator_allows_it(
    control_plane: ControlPlane, sim: SimulatorServer, tmp_path: Path, isolated: tuple[Kube, Operator]
) -> None:
    kube, _ = isolated
    op = Operator(
        control_plane, tmp_path / "https-only.log", "--namespace", kube.ns, "--allowed-hosts", "127.0.0.1"
    )
    op.start()
    try:
        secrets(kube)
        for plural, name, manifest in all_kinds(sim):
            kube.apply(retarget(manifest, plain_http))
            obj = kube.wait_for(plural, name, stalled("InsecureHTTPNotAllowed"), what="http refused")
            assert "--allow-insecure-http" in condition(obj, "Stalled")["message"]
            assert_secret_nowhere(kube, plural, name, op.logs())
        assert vendor_calls(sim) == []
    finally:
        op.stop()


def test_insecure_skip_verify_is_refused_unless_the_operator_allows_it(
    kube: Kube, sim: SimulatorServer, operator: Operator
) -> None:
    secrets(kube)
    name = unique("skipverify")
    manifest = policy(sim, name)
    manifest["spec"]["connection"]["insecureSkipVerify"] = True
    kube.apply(manifest)
    obj = kube.wait_for(CPOL, name, stalled("InsecureTLSNotAllowed"), what="insecureSkipVerify refused")
    assert "--allow-insecure-tls" in condition(obj, "Stalled")["message"]
    assert vendor_calls(sim) == []


def test_a_secret_without_the_label_is_not_read(kube: Kube, sim: SimulatorServer, operator: Operator) -> None:
    """Whoever may write a resource but not read Secrets cannot make the operator send one that its
    owner did not label for it; labelling it is enough to go on (no poke needed)."""
    secrets(kube, labelled=False)
    h, sc = harness(sim), sourcecraft(sim)
    h.add_stream("acc1", "docker-1", "DOCKER")
    sc.add_run("acme", "web", "run-1", workflow="build", task="package", cube="publish")
    kinds = all_kinds(sim)
    for plural, name, manifest in kinds:
        kube.apply(manifest)
        obj = kube.wait_for(plural, name, stalled("SecretNotAllowed"), what="SecretNotAllowed")
        message = condition(obj, "Stalled")["message"]
        assert f"Secret {kube.ns}/" in message and CREDENTIALS_LABEL in message, message
        assert_secret_nowhere(kube, plural, name, operator.logs())
    assert vendor_calls(sim) == []
    jfrog(sim).tokens.add(SECRET_VALUE)
    h.add_api_key("acc1", SECRET_VALUE)
    sc.tokens.add(SECRET_VALUE)
    secrets(kube, labelled=True)
    # Faster than any retry would come (30 s): labelling the Secret is what retries them.
    for plural, name, _ in kinds:
        kube.wait_for(plural, name, lambda o: not is_true(o, "Stalled"), timeout=20, what="no longer stalled")


@pytest.mark.parametrize(
    "url",
    [
        "https://user:password@127.0.0.1:8081",
        "https://127.0.0.1:8081/?token=abc",
        "https://127.0.0.1:8081/#fragment",
        "https://127.0.0.1:8081/path with space",
    ],
)
def test_a_url_that_is_more_than_a_base_is_refused_at_apply(
    kube: Kube, sim: SimulatorServer, url: str
) -> None:
    manifest = policy(sim, unique("badurl"))
    manifest["spec"]["connection"]["url"] = url
    res = kube.apply(manifest, check=False)
    assert res.returncode != 0
    assert "spec.connection.url" in res.stderr and "should match" in res.stderr, res.stderr


def test_a_rotated_secret_is_used_from_the_next_call(
    kube: Kube, sim: SimulatorServer, operator: Operator
) -> None:
    """The labelled Secrets are watched: after a token is replaced, the first vendor call already
    carries the new one (the simulator stops accepting the old token at the same moment)."""
    j = jfrog(sim)
    j.tokens = {"token-one"}
    kube.secret("jfrog", token="token-one")
    name = unique("rotate")
    kube.apply(policy(sim, name, interval="1h"))
    kube.wait_for(CPOL, name, ready, what="Ready")
    kube.secret("jfrog", token="token-two")
    j.tokens = {"token-two"}  # the old token is revoked as the new one is written
    rotated = time.time()
    value = str(time.time_ns())
    kube.annotate(CPOL, name, **{RECONCILE_AT: value})
    obj = kube.wait_for(
        CPOL, name, lambda o: o["status"].get("lastHandledReconcileAt") == value, what="re-sync"
    )
    after = [c for c in sim.calls.calls(vendor="jfrog") if c.at >= rotated and not c.telemetry]
    assert after, "the re-sync made no vendor call"
    assert all(c.status != 401 for c in after), [(c.method, c.path, c.status) for c in after]
    assert ready(obj)
