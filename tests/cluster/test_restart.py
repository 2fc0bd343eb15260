"""An operator that starts with many objects already there reconciles all of them (no start-up deadlock)."""

from __future__ import annotations

from typing import Any

import yaml

from cleanup_operator.testing.simulators import SimulatorServer

from .conftest import CPOL, policy, ready, wait_until

COUNT = 80  # more than any per-object worker limit that would deadlock Kopf's start-up indexing


def test_start_with_existing_objects_reconciles_them_all(isolated: Any, sim: SimulatorServer) -> None:
    kube, op = isolated
    kube.secret("jfrog", token="test-token")
    names = [f"pre-{i:03d}" for i in range(COUNT)]
    items = [policy(sim, name, interval="1h") for name in names]
    kube.kubectl(
        "apply",
        "-n",
        kube.ns,
        "-f",
        "-",
        input=yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": items}),
    )
    op.start()  # every object exists before the operator's first list

    def all_ready() -> bool:
        out = kube.kubectl("get", f"{CPOL}.cleanup.artifacts.dev", "-n", kube.ns, "-o", "json").stdout
        objs = yaml.safe_load(out)["items"]
        return len(objs) == COUNT and all(ready(o) for o in objs)

    wait_until(all_ready, f"all {COUNT} policies Ready after start-up", timeout=120, interval=1.0)
    posts = sim.calls.calls(vendor="jfrog", method="POST", path=r"/policies/pre-\d+$")
    assert sorted(c.path.rsplit("/", 1)[-1] for c in posts) == names  # each created once
