"""`make bench` at 20 objects, with the bench's own code: correctness, never speed.

The full bench (1,000 and 10,000 objects, the documented Harness limit) is `make bench`, not part
of `make test`; this keeps its code working and its per-object counts honest on every run.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

from bench.run import Bench, Options, targets

from cleanup_operator.testing.controlplane import ControlPlane


def test_bench_smoke(control_plane: ControlPlane, tmp_path: Path) -> None:
    options = Options(
        count=20,
        interval=2.0,
        harness_count=10,
        # The documented shape (a sliding window per account) scaled down: 4 per 2 s in the
        # simulator, 2 per 2 s in the operator (the same margin of 2 as its default of 28 per 60 s).
        harness_rate=4,
        harness_window=2.0,
        timeout=120.0,
        prefix=f"smoke-{uuid.uuid4().hex[:6]}",
        workdir=tmp_path,
    )
    results = asyncio.run(Bench(control_plane, options).run())
    logs = f"(logs in {tmp_path})"

    floor = results["floor"]
    assert floor["allReady"] and floor["seconds"] > 0, floor
    assert floor["vendorCallsPerObject"] == {"mean": 3.0, "max": 3}, floor
    assert floor["statusPatchesPerObject"]["max"] == 1, floor

    create = results["create"]
    assert create["allReady"], (create, logs)
    assert create["ratioToFloor"] is not None
    # Per policy: the existence GET the create-pending guard needs, one create and one enablement
    # (their 2xx answers stand for the floor's confirming GET); one metadata patch (the finalizer and
    # the create-pending record together) and one status patch.
    calls = create["vendorCallsByKind"]
    assert calls == {
        "GET …/policies/{key}": 1.0,
        "POST …/policies/{key}": 1.0,
        "POST …/policies/{key}/enablement": 1.0,
    }, calls
    assert create["vendorCallsPerObject"] == {"mean": 3.0, "max": 3}, create
    assert create["metadataPatchesPerObject"] == {"mean": 1.0, "max": 1}, create
    assert create["statusPatchesPerObject"] == {"mean": 1.0, "max": 1}, create
    assert create["eventsPerObject"] == {"mean": 1.0, "max": 1}, create  # Created, once

    steady = results["steady"]
    assert steady["vendorWrites"] == steady["statusPatches"] == steady["metadataPatches"] == 0, steady
    assert steady["events"] == 0, steady
    assert steady["objectsNotChecked"] == 0, steady
    # Three 2 s intervals with ±10 % jitter: a few objects fit a fourth check in the window.
    assert steady["getsPerObjectPerInterval"] <= 1.2, steady

    assert results["startup"]["toFirstReconcileSeconds"] is not None, results["startup"]

    restart = results["restart"]
    assert restart["checked"] == 20, (restart, logs)
    assert restart["vendorWrites"] == restart["statusPatches"] == restart["metadataPatches"] == 0, restart

    # Every operator of the bench runs with --leader-elect when failover is measured: a warm
    # standby takes over from a killed leader and reads every policy again, writing nothing.
    failover = results["failover"]
    assert failover["checked"] == 20, (failover, logs)
    assert failover["vendorWrites"] == failover["statusPatches"] == failover["metadataPatches"] == 0, failover

    harness = results["harness"]
    assert harness["allReady"], (harness, logs)
    assert harness["rateLimited429"] == 0, harness
    assert harness["maxRequestsInOneWindow"] <= 4, harness

    missed = [name for name, met, correctness in targets(results) if correctness and not met]
    assert not missed, missed
