"""`make demo` runs end to end: control plane, simulators, operator, examples/, clean shutdown; and
its spec.safety walk-through: a real run held after its dry run, approved, then run once."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GUARDED = "npm-stale"  # examples/cleanup-policy-guarded.yaml


def policy_tables(text: str) -> list[dict[str, dict[str, str]]]:
    """Every ``kubectl get`` table of CleanupPolicies in ``text``, in order, each as
    {name: {column header: cell}} (names without their ``kind.group/`` prefix).

    Columns are cut at the header's positions (kubectl left-aligns every cell under its header), so a
    value is found in its own column, never in NAME or another one.
    """
    found = []
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if not (line.lstrip().startswith("NAME ") and " KEY " in line and "DRY RUN PKGS" in line):
            continue
        indent = len(line) - len(line.lstrip())
        header = line[indent:]
        starts = [m.start() for m in re.finditer(r"(?:^|(?<=\s\s))\S", header)]
        bounds = [*starts[1:], None]
        rows: dict[str, dict[str, str]] = {}
        for row_line in lines[i + 1 :]:
            if not row_line.strip() or row_line[:indent].strip():
                break
            row = row_line[indent:]
            cells = {header[a:b].strip(): row[a:b].strip() for a, b in zip(starts, bounds, strict=True)}
            rows[cells["NAME"].rsplit("/", 1)[-1]] = cells
        found.append(rows)
    return found


@dataclass(frozen=True)
class Demo:
    out: str
    began: float
    ended: float


@pytest.fixture(scope="module")
def demo() -> Demo:
    """One run of the demo (about a minute: control plane start, 35 s of progress, shutdown)."""
    began = time.time()
    result = subprocess.run(
        [sys.executable, str(ROOT / "hack" / "demo.py"), "--duration", "35", "--port", "0"],
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ},
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return Demo(result.stdout, began, time.time())


def test_demo_runs_end_to_end(demo: Demo) -> None:
    out = demo.out
    assert "cleanuppolicy.cleanup.artifacts.dev/docker-stale created" in out
    assert f"cleanuppolicy.cleanup.artifacts.dev/{GUARDED} created" in out
    assert "storageprune.cleanup.artifacts.dev/filestore created" in out
    assert "artifactstreamsync.cleanup.artifacts.dev/harness-streams created" in out
    last = out[out.rindex("kubectl get cleanup") :]
    policies = policy_tables(last)[0]
    assert policies["docker-stale"]["ENABLED"] == "true" and policies["docker-stale"]["READY"] == "True"
    assert policies["docker-stale"]["LAST RUN"] in ("Running", "Succeeded")
    assert "harness       False   1/2" in last
    assert "RunSucceeded" in out  # the dry run asked for by the demo finished (kubectl describe)
    assert "== stopped: operator, simulators, kube-apiserver, etcd" in out


def test_demo_holds_a_guarded_real_run_until_its_dry_run_is_approved(demo: Demo) -> None:
    out = demo.out

    # 1. A real run is asked for with requested-at = the current Unix seconds.
    asked = re.search(
        rf"\$ kubectl annotate --overwrite -n demo cleanuppolicy/{GUARDED} cleanup.artifacts.dev/requested-at=(\d+)\n",
        out,
    )
    assert asked, out[-5000:]
    assert demo.began <= int(asked.group(1)) + 1 and int(asked.group(1)) <= demo.ended

    # 2. Its dry run ends over the budget: held, and shown so by the printer columns.
    held = out.index("== held for approval: BudgetExceeded: dry run ", asked.end())
    dry_id = re.compile(r"dry run (\d+) would delete more than the budget allows \(packages 7 > limit 5\)")
    match = dry_id.match(out, held + len("== held for approval: BudgetExceeded: "))
    assert match, out[held : held + 300]
    dry = match.group(1)
    held_row = policy_tables(out[held:])[0][GUARDED]
    assert held_row["READY"] == "False" and held_row["APPROVAL"] == "BudgetExceeded"
    assert held_row["DRY RUN PKGS"] == "7" and held_row["DRY RUN BYTES"] == "22020096"
    assert held_row["LAST RUN"] == "Succeeded"  # the dry run; nothing was deleted
    # Only the gating dry run was started before the approval (the simulator's call log).
    assert "   runs started so far: dry run\n" in out[held:]

    # 3. The demo prints the exact approve command it runs, naming that dry run.
    approve = f"   $ kubectl annotate --overwrite -n demo cleanuppolicy/{GUARDED} cleanup.artifacts.dev/approve={dry}\n"
    approved = out.index(approve, held)

    # 4. The real run that follows succeeds, allowed by that dry run, and clears the hold.
    done = re.compile(
        rf"== real run (\d+) \(allowedBy: dry run {dry}\) Succeeded: 7 packages, 21 versions, 22020096 bytes deleted"
    ).search(out, approved)
    assert done, out[approved : approved + 5000]
    assert int(done.group(1)) > int(dry)
    after = policy_tables(out[done.end() :])[0][GUARDED]
    assert after["READY"] == "True" and after["LAST RUN"] == "Succeeded" and after["APPROVAL"] == ""

    # 5. In all: one dry run, then one real run (the call log, in order), and the events saying so
    #    (their order within a second is not kept: counted, not ordered).
    assert (
        f"== {GUARDED}: runs Artifactory was asked to start (simulator call log): dry run, real run\n" in out
    )
    events = out[out.index(f"== events of {GUARDED}") :].splitlines()[2:]
    rows = [line.split(None, 1) for line in events if line.startswith("   ") and line.strip()]
    reasons = [row[0] for row in rows]
    assert reasons.count("BudgetExceeded") == 1 and reasons.count("RunApproved") == 1
    assert sorted(row[1] for row in rows if row[0] == "RunStarted") == sorted(
        [f"started dry run {dry} of policy {GUARDED}", f"started run {done.group(1)} of policy {GUARDED}"]
    )
