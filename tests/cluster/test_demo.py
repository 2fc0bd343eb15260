"""`make demo` runs end to end: control plane, simulators, operator, examples/, clean shutdown."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_demo_runs_end_to_end() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "hack" / "demo.py"), "--duration", "25", "--port", "0"],
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ},
        cwd=ROOT,
    )
    out = result.stdout
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "cleanuppolicy.cleanup.artifacts.dev/docker-stale created" in out
    assert "storageprune.cleanup.artifacts.dev/filestore created" in out
    assert "artifactstreamsync.cleanup.artifacts.dev/harness-streams created" in out
    last = out[out.rindex("kubectl get cleanup") :]
    assert "docker-stale   true      True" in last
    assert "Running" in last or "Succeeded" in last
    assert "harness       False   1/2" in last
    assert "RunSucceeded" in out  # the dry run asked for by the demo finished (kubectl describe)
    assert "== stopped: operator, simulators, kube-apiserver, etcd" in out
