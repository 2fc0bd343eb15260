"""TLS end to end: the simulators serve https with a CA made for the session, the operator trusts it
only through ``caSecretRef``, refuses an untrusted certificate with a reason a user can act on, and
honours ``insecureSkipVerify`` only when its administrators allowed it (``--allow-insecure-tls``).

Refusals run against a simulator of the test's own (same CA, own call log), so "no request reached
the vendor" is read from a log no other test writes to.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from cleanup_operator.testing.simulators import SimulatorServer
from cleanup_operator.testing.tls import SimulatorCA

from .conftest import (
    ASS,
    CPOL,
    SIM_CA_SECRET,
    Kube,
    Operator,
    calls,
    condition,
    harness,
    hsync,
    is_true,
    jfrog,
    own_simulator,
    policy,
    ready,
    scsync,
    sourcecraft,
    unique,
)

#: A token no other test uses, so its absence from status, events and logs means something.
TOKEN = "tls-test-token-5f3a9c"


@pytest.fixture
def lone(sim_ca: SimulatorCA) -> Iterator[SimulatorServer]:
    """An https simulator (the session CA's certificate) whose call log only this test writes to."""
    for server in own_simulator(sim_ca):
        jfrog(server).tokens.add(TOKEN)
        yield server


def seed(server: SimulatorServer) -> None:
    """A Harness stream and a finished SourceCraft run for the builders' defaults."""
    harness(server).add_stream("acc1", "docker-1", "DOCKER")
    sourcecraft(server).add_run(
        "acme", "web", "run-1", workflow="build", task="package", cube="publish", artifacts=["dist/a.tar"]
    )


def secrets(kube: Kube) -> None:
    kube.secret("jfrog", token=TOKEN)
    kube.secret("harness", apiKey="test-key")
    kube.secret("sourcecraft", token="sc-token")


def without_ca(obj: dict[str, Any]) -> dict[str, Any]:
    """The manifest with no caSecretRef: only the system's CAs would be trusted."""
    for source in ("connection", "harness", "sourceCraft"):
        obj["spec"].get(source, {}).pop("caSecretRef", None)
    return obj


def ca_ref(obj: dict[str, Any], name: str) -> dict[str, Any]:
    for source in ("connection", "harness", "sourceCraft"):
        if source in obj["spec"]:
            obj["spec"][source]["caSecretRef"] = {"name": name, "key": "ca.crt"}
    return obj


def stalled_tls(o: dict[str, Any]) -> bool:
    return is_true(o, "Stalled", "TLSVerificationFailed")


def never_leaked(kube: Kube, operator: Operator, obj: dict[str, Any], name: str) -> None:
    assert TOKEN not in str(obj)
    assert all(TOKEN not in str(e) for e in kube.events(name))
    assert TOKEN not in operator.logs()


def test_trusting_the_simulators_ca_through_ca_secret_ref_reaches_ready(
    kube: Kube, sim: SimulatorServer
) -> None:
    seed(sim)
    jfrog(sim).tokens.add(TOKEN)
    secrets(kube)
    name = unique("tls")
    manifests = {
        (CPOL, name): policy(sim, name, interval="1h"),
        (ASS, "tls-harness"): hsync(sim, "tls-harness", ["docker-1"], interval="1h"),
        (ASS, "tls-sourcecraft"): scsync(sim, "tls-sourcecraft", run="run-1"),
    }
    for manifest in manifests.values():
        source = next(s for s in ("connection", "harness", "sourceCraft") if s in manifest["spec"])
        assert manifest["spec"][source]["url"].startswith("https://127.0.0.1:")
        assert manifest["spec"][source]["caSecretRef"] == {"name": SIM_CA_SECRET, "key": "ca.crt"}
        kube.apply(manifest)
    for plural, obj_name in manifests:
        obj = kube.wait_for(plural, obj_name, ready, what="Ready over https")
        assert not is_true(obj, "Stalled")
    assert ("POST", f"/jfrog/artifactory/api/cleanup/packages/policies/{name}") in calls(sim, name)
    assert harness(sim).cleanup_count("docker-1") >= 1
    assert any(
        c.path.endswith("/cicd/artifacts/run-1/build/package/publish") for c in sim.calls.calls("sourcecraft")
    )


def test_without_ca_secret_ref_the_certificate_is_untrusted_and_the_fix_works(
    kube: Kube, lone: SimulatorServer, operator: Operator
) -> None:
    seed(lone)
    secrets(kube)
    name = unique("noca")
    manifests = {
        (CPOL, name): policy(lone, name, interval="1h"),
        (ASS, "noca-harness"): hsync(lone, "noca-harness", ["docker-1"], interval="1h"),
        (ASS, "noca-sourcecraft"): scsync(lone, "noca-sourcecraft", run="run-1"),
    }
    for manifest in manifests.values():
        kube.apply(without_ca(manifest))
    for plural, obj_name in manifests:
        obj = kube.wait_for(plural, obj_name, stalled_tls, what="Stalled TLSVerificationFailed")
        message = condition(obj, "Stalled")["message"]
        assert "TLS failed (unable to get local issuer certificate)" in message, message
        assert "caSecretRef" in message, message  # says what to set
        assert condition(obj, "Ready")["status"] == "False"
        assert any(
            e["type"] == "Warning" and e["reason"] == "TLSVerificationFailed" for e in kube.events(obj_name)
        ), kube.events(obj_name)
        never_leaked(kube, operator, obj, obj_name)
    # The handshake failed before any request: the vendor never saw one, so never the token either.
    assert lone.calls.calls(include_telemetry=True) == []
    # The fix the message names: trust the simulators' CA.
    kube.apply(ca_ref(manifests[(CPOL, name)], SIM_CA_SECRET))
    kube.wait_for(CPOL, name, ready, what="Ready once the CA is trusted")
    assert ("POST", f"/jfrog/artifactory/api/cleanup/packages/policies/{name}") in calls(lone, name)


def test_a_ca_secret_holding_another_ca_is_refused(
    kube: Kube, lone: SimulatorServer, operator: Operator
) -> None:
    secrets(kube)
    kube.secret("other-ca", **{"ca.crt": SimulatorCA().ca_pem})
    name = unique("otherca")
    kube.apply(ca_ref(policy(lone, name, interval="1h"), "other-ca"))
    obj = kube.wait_for(CPOL, name, stalled_tls, what="Stalled TLSVerificationFailed")
    message = condition(obj, "Stalled")["message"]
    assert "TLS failed (unable to get local issuer certificate)" in message and "caSecretRef" in message
    never_leaked(kube, operator, obj, name)
    assert lone.calls.calls(include_telemetry=True) == []


def test_insecure_skip_verify_is_refused_unless_the_operator_allows_it(
    kube: Kube, lone: SimulatorServer, operator: Operator
) -> None:
    secrets(kube)
    name = unique("skipverify")
    manifest = without_ca(policy(lone, name, interval="1h"))
    manifest["spec"]["connection"]["insecureSkipVerify"] = True
    kube.apply(manifest)
    obj = kube.wait_for(
        CPOL, name, lambda o: is_true(o, "Stalled", "InsecureTLSNotAllowed"), what="InsecureTLSNotAllowed"
    )
    message = condition(obj, "Stalled")["message"]
    assert "insecureSkipVerify is refused" in message and "--allow-insecure-tls" in message, message
    assert "caSecretRef" in message, message  # and the way that needs no flag
    never_leaked(kube, operator, obj, name)
    assert lone.calls.calls(include_telemetry=True) == []  # refused before anything was sent


def test_insecure_skip_verify_is_accepted_by_an_operator_run_with_allow_insecure_tls(
    isolated: tuple[Kube, Operator], lone: SimulatorServer
) -> None:
    kube, op = isolated
    secrets(kube)
    name = unique("skipverify")
    manifest = without_ca(policy(lone, name, interval="1h"))
    manifest["spec"]["connection"]["insecureSkipVerify"] = True
    kube.apply(manifest)
    op.args = (*op.args, "--allow-insecure-tls")
    op.start()
    obj = kube.wait_for(CPOL, name, ready, what="Ready without verification")
    assert obj["spec"]["connection"]["insecureSkipVerify"] is True
    # The certificate is one the spec does not trust (no caSecretRef): only skipping the check let it through.
    assert ("POST", f"/jfrog/artifactory/api/cleanup/packages/policies/{name}") in calls(lone, name)
    assert jfrog(lone).policy(name) is not None
    assert TOKEN not in op.logs()
