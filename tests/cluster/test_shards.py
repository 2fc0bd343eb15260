"""Shards: two operators, each watching namespaces of its own with its own Lease (issue 14).

Each touches only its own resources and makes only their vendor calls: with one shard's operator
stopped, its namespace's policy is left alone by the other (no status, nothing in Artifactory),
while the running shard's policy is Ready; once started, the stopped shard's operator takes its
own. Each shard's Lease is held by its own operator.

A shard can also be a namespace label (``--namespace-selector``, the chart's ``watch.shard``): the
operator follows the label as it comes and goes, without a restart.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from cleanup_operator.namespaces import SHARD_LABEL
from cleanup_operator.testing.controlplane import ControlPlane
from cleanup_operator.testing.simulators import SimulatorServer
from cleanup_operator.testing.tls import SimulatorCA

from .conftest import (
    CPOL,
    REQUESTED_AT,
    SIM_FLAGS,
    Kube,
    Operator,
    calls,
    now_value,
    own_simulator,
    policy,
    ready,
    trust_simulators,
)

CREATE = "/jfrog/artifactory/api/cleanup/packages/policies/{}"


@pytest.fixture
def lone(sim_ca: SimulatorCA) -> Iterator[SimulatorServer]:
    yield from own_simulator(sim_ca)


def shard(cp: ControlPlane, tmp: Path, name: str, namespace: str, lease_ns: str) -> Operator:
    """One release's operator: its own namespace, its own Lease."""
    return Operator(
        cp,
        tmp / f"{name}.log",
        "--namespace",
        namespace,
        "--leader-elect",
        "--leader-elect-namespace",
        lease_ns,
        "--leader-elect-lease-name",
        name,
        *SIM_FLAGS,
    )


def delete_all(made: list[tuple[Kube, str]]) -> None:
    """Delete the policies while their operators run, so that the finalizers are released."""
    for kube, key in made:
        kube.delete(CPOL, key)
    for kube, key in made:
        with contextlib.suppress(AssertionError):
            kube.wait_gone(CPOL, key, timeout=30)


def test_two_shards_each_touch_only_their_own(
    control_plane: ControlPlane, lone: SimulatorServer, sim_ca_pem: str, tmp_path: Path
) -> None:
    cp = control_plane
    suffix = uuid.uuid4().hex[:6]
    leases, ns_a, ns_b = f"shard-ops-{suffix}", f"shard-a-{suffix}", f"shard-b-{suffix}"
    kubes = {}
    for ns in (leases, ns_a, ns_b):
        cp.kubectl("create", "namespace", ns)
    for ns in (ns_a, ns_b):
        kube = kubes[ns] = Kube(cp, ns)
        trust_simulators(kube, sim_ca_pem)
        kube.secret("jfrog", token="test-token")
    op_a = shard(cp, tmp_path, "shard-a", ns_a, leases)
    op_b = shard(cp, tmp_path, "shard-b", ns_b, leases)
    key_a, key_b = f"pol-a-{suffix}", f"pol-b-{suffix}"
    try:
        op_a.start()
        kubes[ns_a].apply(policy(lone, key_a, interval="1h"))
        kubes[ns_b].apply(policy(lone, key_b, interval="1h"))
        kubes[ns_a].wait_for(CPOL, key_a, ready, what="shard A's policy Ready")
        # Shard A has finished its own work (Ready, with its own create in Artifactory); B's
        # policy, in a namespace A does not watch, is untouched: no status, no vendor call.
        untouched = kubes[ns_b].get(CPOL, key_b)
        assert untouched is not None and not untouched.get("status"), untouched
        assert calls(lone, key_b) == []
        assert calls(lone, key_a).count(("POST", CREATE.format(key_a))) == 1
        assert key_b not in op_a.logs()

        op_b.start()
        kubes[ns_b].wait_for(CPOL, key_b, ready, what="shard B's policy Ready")
        assert calls(lone, key_b).count(("POST", CREATE.format(key_b))) == 1
        assert key_b not in op_a.logs() and key_a not in op_b.logs()
        holders = {}
        for name in ("shard-a", "shard-b"):
            lease = json.loads(cp.kubectl("get", "lease", name, "-n", leases, "-o", "json").stdout)
            holders[name] = lease["spec"].get("holderIdentity")
        assert all(holders.values()) and holders["shard-a"] != holders["shard-b"], holders
    finally:
        # Deleted while their operators run, so that the finalizers are released.
        delete_all([(kubes[ns], key) for ns, key in ((ns_a, key_a), (ns_b, key_b)) if ns in kubes])
        op_a.stop()
        op_b.stop()
        for ns in (leases, ns_a, ns_b):
            cp.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def wait_log(op: Operator, text: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in op.logs():
        assert time.monotonic() < deadline, f"the operator never logged {text!r}"
        time.sleep(0.2)


def test_a_namespace_selector_follows_the_shard_label(
    control_plane: ControlPlane, lone: SimulatorServer, sim_ca_pem: str, tmp_path: Path
) -> None:
    cp = control_plane
    suffix = uuid.uuid4().hex[:6]
    label = f"{SHARD_LABEL}=team-{suffix}"
    ns_in, ns_later = f"sel-in-{suffix}", f"sel-later-{suffix}"
    kubes = {}
    for ns in (ns_in, ns_later):
        cp.kubectl("create", "namespace", ns)
        kube = kubes[ns] = Kube(cp, ns)
        trust_simulators(kube, sim_ca_pem)
        kube.secret("jfrog", token="test-token")
    cp.kubectl("label", "namespace", ns_in, label)
    op = Operator(cp, tmp_path / "selector.log", "--namespace-selector", label, *SIM_FLAGS)
    key_in, key_later, key_third = f"sel-in-{suffix}", f"sel-later-{suffix}", f"sel-third-{suffix}"
    made: list[tuple[Kube, str]] = []
    try:
        op.start()
        for ns, key in ((ns_in, key_in), (ns_later, key_later)):
            kubes[ns].apply(policy(lone, key, interval="1h"))
            made.append((kubes[ns], key))
        kubes[ns_in].wait_for(CPOL, key_in, ready, what="the labelled namespace's policy Ready")
        untouched = kubes[ns_later].get(CPOL, key_later)
        assert untouched is not None and not untouched.get("status"), untouched
        assert calls(lone, key_later) == []

        # The label arrives: the namespace is served from then on, without a restart.
        cp.kubectl("label", "namespace", ns_later, label)
        kubes[ns_later].wait_for(CPOL, key_later, ready, what="the newly labelled namespace's policy Ready")
        assert calls(lone, key_later).count(("POST", CREATE.format(key_later))) == 1

        # The label goes: a run requested there afterwards is not this operator's to start, while
        # the namespace it still serves keeps being served.
        cp.kubectl("label", "namespace", ns_in, f"{SHARD_LABEL}-")
        wait_log(op, f"namespace {ns_in} no longer matches")
        kubes[ns_in].annotate(CPOL, key_in, **{REQUESTED_AT: now_value()})
        kubes[ns_later].apply(policy(lone, key_third, interval="1h"))
        made.append((kubes[ns_later], key_third))
        kubes[ns_later].wait_for(CPOL, key_third, ready, what="a new policy in the served namespace Ready")
        # key_third's whole reconcile came after the request: the window in which a run would start.
        assert [c for c in calls(lone, key_in) if c[1].endswith("/run")] == []
        assert "lastRun" not in (kubes[ns_in].get(CPOL, key_in) or {}).get("status", {})
    finally:
        # Labelled again, so that the operator releases the finalizers of what it made.
        cp.kubectl("label", "--overwrite", "namespace", ns_in, label, check=False)
        delete_all(made)
        op.stop()
        for ns in (ns_in, ns_later):
            cp.kubectl("delete", "namespace", ns, "--wait=false", check=False)
