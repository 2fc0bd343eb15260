"""Two operator processes with ``--leader-elect`` on one namespace, a real kube-apiserver holding
their Lease, the JFrog simulator keeping a prune or a run in progress.

The leader is killed (SIGKILL) or frozen (SIGSTOP past the lease duration, then SIGCONT) mid-prune
and mid-run: the standby takes over within lease duration + one retry period, the simulator's call
log shows one prune start and one run per request, and a frozen leader that wakes up makes no
vendor call and exits.
"""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from cleanup_operator.testing.controlplane import ControlPlane
from cleanup_operator.testing.simulators import SimulatorServer
from cleanup_operator.testing.tls import SimulatorCA

from .conftest import (
    CPOL,
    REQUESTED_AT,
    SIM_FLAGS,
    SPRUNE,
    Kube,
    Operator,
    jfrog,
    last_run,
    now_value,
    own_simulator,
    phase,
    policy,
    prune,
    ready,
    starts,
    trust_simulators,
    wait_until,
)

LEASE = "cleanup-operator"
#: Short times for the tests (the defaults are 15 s, 10 s, 2 s).
D, RENEW, RETRY = 6.0, 4.0, 1.0
#: Process start-up and scheduling on a loaded 2-core machine, on top of the bound itself.
SLACK = 1.0


class Pair:
    """Two replicas of the operator, as a Deployment with ``replicas: 2`` runs them."""

    def __init__(self, cp: ControlPlane, kube: Kube, tmp: Path) -> None:
        self.kube = kube
        self.ops: dict[str, Operator] = {}
        for name in ("op-a", "op-b"):
            self.ops[name] = Operator(
                cp,
                tmp / f"{name}.log",
                "--namespace",
                kube.ns,
                "--leader-elect",
                "--leader-elect-namespace",
                kube.ns,
                "--leader-elect-lease-name",
                LEASE,
                "--leader-elect-lease-duration",
                str(D),
                "--leader-elect-renew-deadline",
                str(RENEW),
                "--leader-elect-retry-period",
                str(RETRY),
                "--leader-elect-identity",
                name,
                *SIM_FLAGS,
            )

    def start(self) -> str:
        """Start both; the identity of the one that leads."""
        for op in self.ops.values():
            op.start()
        return wait_until(lambda: self.lease().get("holderIdentity") or None, "a leader", timeout=60)

    def lease(self) -> dict[str, Any]:
        res = self.kube.kubectl("get", "lease", LEASE, "-n", self.kube.ns, "-o", "json", check=False)
        return dict(json.loads(res.stdout)["spec"]) if res.returncode == 0 else {}

    def other(self, name: str) -> str:
        return next(n for n in self.ops if n != name)

    def taken_over(self, old: str) -> tuple[str, float]:
        """Wait for the other replica to hold the lease; its identity and acquireTime (Unix seconds)."""
        new = self.other(old)
        spec = wait_until(
            lambda: (s := self.lease()).get("holderIdentity") == new and s, f"{new} to take over", timeout=60
        )
        return new, micro(spec["acquireTime"])

    def logs(self) -> str:
        return "\n".join(f"--- {n}\n{op.logs()[-6000:]}" for n, op in self.ops.items())


def micro(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@pytest.fixture(scope="module")
def own_sim_server(sim_ca: SimulatorCA) -> Iterator[SimulatorServer]:
    """A simulator of these tests' own: its call log holds only the calls of the two replicas
    (the session's simulator also serves the session operator, whose objects may still be busy).
    It serves https with the session's CA, as every simulator of the cluster tier does."""
    yield from own_simulator(sim_ca)


@pytest.fixture
def sim(own_sim_server: SimulatorServer) -> Iterator[SimulatorServer]:
    own_sim_server.reset()
    yield own_sim_server
    own_sim_server.reset()


@pytest.fixture
def pair(
    control_plane: ControlPlane, tmp_path: Path, request: pytest.FixtureRequest, sim_ca_pem: str
) -> Iterator[Pair]:
    ns = f"le-{uuid.uuid4().hex[:8]}"
    control_plane.kubectl("create", "namespace", ns)
    kube = Kube(control_plane, ns)
    kube.secret("jfrog", token="test-token")
    trust_simulators(kube, sim_ca_pem)
    p = Pair(control_plane, kube, tmp_path)
    yield p
    if getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed:
        print(p.logs())
    for op in p.ops.values():
        if op.proc is not None and op.proc.poll() is None:
            os.kill(op.proc.pid, signal.SIGCONT)
        op.stop()
    control_plane.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def run_puts(sim: SimulatorServer, key: str) -> list[Any]:
    return list(sim.calls.calls(vendor="jfrog", method="PUT", path=f"/{key}/run$"))


def assert_takeover_in_time(acquired: float, ended: float) -> None:
    took = acquired - ended
    print(f"takeover {took:.2f}s after the leader's end (bound {D + RETRY:g}s)")
    assert took <= D + RETRY + SLACK, f"the standby took {took:.2f}s to take over"


def test_leader_killed_mid_prune_standby_finishes_it_with_one_start(pair: Pair, sim: SimulatorServer) -> None:
    j = jfrog(sim)
    j.prune_seconds_per_directory = 0.08  # about 20 s for the 256 directories
    leader = pair.start()
    standby = pair.other(leader)
    pair.kube.apply(prune(sim, "failover"))
    pair.kube.wait_for(
        SPRUNE, "failover", lambda o: (o.get("status") or {}).get("percent", 0) >= 5, what="progress"
    )
    assert "standing by" in pair.ops[standby].logs()
    pair.ops[leader].kill()
    killed = time.time()
    _, acquired = pair.taken_over(leader)
    assert_takeover_in_time(acquired, killed)
    assert pair.lease()["leaseTransitions"] == 1
    obj = pair.kube.wait_for(SPRUNE, "failover", phase("Succeeded"), timeout=90, what="Succeeded")
    assert starts(sim) == 1 and j.prune_starts == 1, "a second prune start"
    assert obj["status"]["progress"] == "256 of 256" and len(obj["status"]["history"]) == 1


def test_leader_killed_mid_run_standby_follows_it_with_one_run(pair: Pair, sim: SimulatorServer) -> None:
    j = jfrog(sim)
    j.run_duration = 15.0
    name = f"fo-{uuid.uuid4().hex[:6]}"
    j.set_run_result(name, packages=2, versions=3, nbytes=1024)
    leader = pair.start()
    pair.kube.apply(policy(sim, name, interval="10m"))
    pair.kube.wait_for(CPOL, name, ready, what="Ready")
    requested = now_value()
    pair.kube.annotate(CPOL, name, **{REQUESTED_AT: requested})
    pair.kube.wait_for(CPOL, name, lambda o: last_run(o).get("state") == "Running", what="Running")
    pair.ops[leader].kill()
    killed = time.time()
    _, acquired = pair.taken_over(leader)
    assert_takeover_in_time(acquired, killed)
    obj = pair.kube.wait_for(
        CPOL, name, lambda o: last_run(o).get("state") == "Succeeded", timeout=60, what="Succeeded"
    )
    assert obj["status"]["lastHandledRequestedAt"] == requested
    assert len(run_puts(sim, name)) == 1, "a second run call"
    assert [r["runId"] for r in j.run_summaries(name)] == [last_run(obj)["runId"]]
    assert len(sim.calls.calls(vendor="jfrog", method="PUT", path=f"/policies/{name}$")) == 0
    assert len(sim.calls.calls(vendor="jfrog", method="POST", path=f"/policies/{name}$")) == 1


def test_frozen_leader_wakes_makes_no_vendor_call_and_exits(pair: Pair, sim: SimulatorServer) -> None:
    j = jfrog(sim)
    j.prune_seconds_per_directory = 0.1  # about 26 s
    leader = pair.start()
    pair.kube.apply(prune(sim, "frozen"))
    pair.kube.wait_for(
        SPRUNE, "frozen", lambda o: (o.get("status") or {}).get("percent", 0) >= 5, what="progress"
    )
    old, new = pair.ops[leader], pair.ops[pair.other(leader)]
    assert old.proc is not None and new.proc is not None
    os.kill(old.proc.pid, signal.SIGSTOP)
    frozen = time.time()
    _, acquired = pair.taken_over(leader)
    assert_takeover_in_time(acquired, frozen)
    # The new leader follows the prune (its polls show in status)...
    shown = pair.kube.get(SPRUNE, "frozen")["status"]["percent"]  # type: ignore[index]
    pair.kube.wait_for(SPRUNE, "frozen", lambda o: o["status"]["percent"] > shown, what="new leader's poll")
    # ...and is held still while the old one wakes (within its renew deadline), so that every call
    # the simulator logs meanwhile would be the old leader's.
    os.kill(new.proc.pid, signal.SIGSTOP)
    try:
        time.sleep(0.5)  # a call in flight when it stopped is logged by now
        before = len(sim.calls)
        os.kill(old.proc.pid, signal.SIGCONT)
        wait_until(
            lambda: "stopped every vendor call" in old.logs(), "the woken leader to stop", timeout=RENEW - 2
        )
        time.sleep(0.5)
        assert len(sim.calls) == before, sim.calls.calls()[before:]
    finally:
        os.kill(new.proc.pid, signal.SIGCONT)
    assert old.proc.wait(30) == 1, "the old leader did not exit with 1"
    assert "leadership lost" in old.logs() and "renew deadline" in old.logs()
    obj = pair.kube.wait_for(SPRUNE, "frozen", phase("Succeeded"), timeout=90, what="Succeeded")
    assert starts(sim) == 1 and j.prune_starts == 1, "a second prune start"
    assert len(obj["status"]["history"]) == 1
    assert pair.lease()["holderIdentity"] == pair.other(leader)


def test_clean_shutdown_hands_the_lease_over_at_once(pair: Pair, sim: SimulatorServer) -> None:
    leader = pair.start()
    pair.kube.apply(policy(sim, "handover", interval="10m"))
    pair.kube.wait_for(CPOL, "handover", ready, what="Ready")
    stopped = time.time()
    pair.ops[leader].stop()  # SIGTERM, as a rolling update does
    _, acquired = pair.taken_over(leader)
    assert acquired - stopped < D, "the standby waited for the lease to expire"
    assert pair.ops[leader].proc is not None and pair.ops[leader].proc.returncode == 0
    assert "released by" in pair.ops[leader].logs()
