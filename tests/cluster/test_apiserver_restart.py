"""The API server goes away for 30 s and comes back (issue 14).

A control plane of its own (the session one serves every other test): kube-apiserver is stopped
while 100 CleanupPolicies are being created and a prune is running, etcd and its data are kept,
and the same binary starts again on the same port with the same certificate. The operator is not
restarted: its watches reconnect, every object is reconciled from what the API server holds, and
the simulator's call log shows no create or prune start made twice.
"""

from __future__ import annotations

import collections
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from cleanup_operator.api.common import FINALIZER
from cleanup_operator.testing.controlplane import ControlPlane, ControlPlaneError
from cleanup_operator.testing.simulators import SimulatorServer

from .conftest import (
    CPOL,
    SIM_FLAGS,
    SPRUNE,
    Kube,
    Operator,
    jfrog,
    phase,
    policy,
    prune,
    ready,
    trust_simulators,
    wait_until,
)

COUNT = 100
OUTAGE = 30.0


@pytest.fixture
def own_plane(tmp_path: Path) -> Iterator[ControlPlane]:
    cp = ControlPlane(tmp_path / "cp")
    try:
        cp.start()
    except ControlPlaneError as exc:
        pytest.fail(f"control plane did not start: {exc}")
    try:
        cp.install_crds()
        yield cp
    finally:
        cp.stop()


def items(cp: ControlPlane, ns: str, plural: str) -> list[dict]:  # type: ignore[type-arg]
    out = cp.kubectl("get", plural, "-n", ns, "-o", "json").stdout
    return list(json.loads(out)["items"])


def test_an_api_server_restart_loses_and_repeats_nothing(
    own_plane: ControlPlane, sim: SimulatorServer, tmp_path: Path, sim_ca_pem: str
) -> None:
    cp = own_plane
    ns = "restart"
    cp.kubectl("create", "namespace", ns)
    kube = Kube(cp, ns)
    trust_simulators(kube, sim_ca_pem)  # the builders' caSecretRef
    kube.secret("jfrog", token="test-token")
    j = jfrog(sim)
    j.prune_seconds_per_directory = 0.25  # about a minute: it runs through the whole outage
    op = Operator(cp, tmp_path / "operator.log", "--namespace", ns, *SIM_FLAGS).start()
    try:
        kube.apply(prune(sim, "filestore"))
        kube.wait_for(SPRUNE, "filestore", lambda o: (o.get("status") or {}).get("percent", 0) > 0)
        names = [f"p{i:03d}" for i in range(COUNT)]
        manifests = "\n---\n".join(yaml.safe_dump(policy(sim, n, interval="2s")) for n in names)
        kube.kubectl("apply", "-n", ns, "-f", "-", input=manifests)
        # Mid-reconcile: some policies exist in Artifactory, not all are Ready yet.
        wait_until(lambda: len(j.policies) >= 10, "the first creates", timeout=60)
        cp.stop_apiserver()
        stopped = time.monotonic()
        progress_at_stop = int((j.prune_status() or {}).get("progress", "0 of 256").split(" of ")[0])
        time.sleep(OUTAGE)  # the outage itself: there is nothing to wait for while the server is gone
        assert op.proc is not None and op.proc.poll() is None, "the operator died with the API server"
        cp.start_apiserver()
        outage = time.monotonic() - stopped

        wait_until(
            lambda: sum(ready(o) for o in items(cp, ns, CPOL)) == COUNT,
            f"all {COUNT} policies Ready after the restart",
            timeout=180,
            interval=1.0,
        )
        obj = kube.wait_for(SPRUNE, "filestore", phase("Succeeded"), timeout=120, what="the prune done")
        # A watch that reconnected: a change made after the restart is acted on.
        kube.apply(policy(sim, names[0], interval="2s", description="after the restart"))
        wait_until(lambda: (j.policy(names[0]) or {}).get("description") == "after the restart", "the update")
        assert op.proc.poll() is None, "the operator was restarted"
    finally:
        op.stop()

    creates = collections.Counter(
        c.json.get("key") for c in sim.calls.calls(vendor="jfrog", method="POST") if isinstance(c.json, dict)
    )
    assert set(creates) >= set(names)
    assert all(creates[n] == 1 for n in names), {n: creates[n] for n in names if creates[n] != 1}
    assert j.prune_starts == 1, j.prune_starts
    assert obj["status"]["progress"] == "256 of 256" and len(obj["status"]["history"]) == 1
    assert progress_at_stop < 256, "the prune ended before the outage: it proved nothing"
    for o in items(cp, ns, CPOL):
        status = o["status"]
        assert status.get("ownedPolicy", {}).get("key") == o["metadata"]["name"], status
        assert FINALIZER in (o["metadata"].get("finalizers") or ()), o["metadata"]
    assert outage >= OUTAGE
    # An unreachable API server is an expected failure, retried with backoff, never a bug report.
    assert "reconcile failed unexpectedly" not in op.logs(), op.logs()[-4000:]
