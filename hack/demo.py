"""`make demo`: a local control plane, the vendor simulators, the operator, and examples/ applied.

Prints the resources with their printer columns as they progress; Ctrl-C (or --duration) stops
everything. Needs no cluster and no vendor account.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from cleanup_operator.testing.controlplane import ControlPlane
from cleanup_operator.testing.simulators import JFrogSimulator, SimulatorServer, build_server
from cleanup_operator.testing.simulators.__main__ import seed_demo

ROOT = Path(__file__).resolve().parent.parent
NS = "demo"
#: examples/cleanup-policy-guarded.yaml: a CleanupPolicy with spec.safety.
GUARDED = "npm-stale"
REQUESTED_AT = "cleanup.artifacts.dev/requested-at"
APPROVE = "cleanup.artifacts.dev/approve"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--duration", type=float, default=0, help="stop after this many seconds (0: until Ctrl-C)"
    )
    parser.add_argument(
        "--port", type=int, default=18080, help="simulator port (examples/ say 18080; 0: any free port)"
    )
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))

    workdir = ROOT / ".demo"
    workdir.mkdir(exist_ok=True)
    print("== starting etcd + kube-apiserver on loopback", flush=True)
    cp = ControlPlane(log_to=workdir)
    operator: subprocess.Popen[bytes] | None = None
    server = build_server("127.0.0.1", args.port)
    seed_demo(server)
    jfrog = server.simulator("jfrog")
    assert isinstance(jfrog, JFrogSimulator)
    # Its dry run reports 7 packages: over the example's maxPackages (5), so the real run is held.
    jfrog.set_run_result(GUARDED, packages=7, versions=21, nbytes=22_020_096)
    try:
        cp.start()
        cp.install_crds()
        print(f"   KUBECONFIG={cp.kubeconfig}")
        print(
            f"== vendor simulators on http://127.0.0.1:{args.port} (JFrog /jfrog, Harness /harness, SourceCraft /sourcecraft)"
        )
        server.start_in_thread()
        print(f"== operator (logs in {workdir / 'operator.log'})")
        with open(workdir / "operator.log", "wb") as log:
            operator = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "cleanup_operator",
                    "--namespace",
                    NS,
                    # The simulators listen on loopback, in plain http.
                    "--allowed-hosts",
                    "127.0.0.1",
                    "--allow-insecure-http",
                ],
                env=cp.env(),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        cp.kubectl("create", "namespace", NS)
        print("== kubectl apply -f examples/")
        manifests = "\n---\n".join(p.read_text() for p in sorted((ROOT / "examples").glob("*.yaml")))
        manifests = manifests.replace("127.0.0.1:18080", f"127.0.0.1:{server.port}")
        applied = cp.kubectl("apply", "-n", NS, "-f", "-", input=manifests, check=False)
        print(applied.stdout)
        if applied.returncode != 0:
            raise SystemExit(f"kubectl apply -f examples/ failed:\n{applied.stderr}")
        started = time.monotonic()
        requested = False
        guard = GuardedRun(cp, server)
        while not args.duration or time.monotonic() - started < args.duration:
            print(f"--- t+{time.monotonic() - started:4.0f}s   kubectl get cleanup -n {NS}")
            print(cp.kubectl("get", "cleanup", "-n", NS).stdout, flush=True)
            if not requested and _ready(_get(cp, "cleanuppolicy", "docker-stale")):
                print(
                    "== asking for a dry run: kubectl annotate cleanuppolicy docker-stale cleanup.artifacts.dev/requested-at=..."
                )
                _kubectl_annotate(cp, "docker-stale", f"{REQUESTED_AT}={int(time.time())}")
                requested = True
            guard.step()
            time.sleep(3)
        print(cp.kubectl("describe", "-n", NS, "cleanuppolicy", "docker-stale").stdout)
        guard.summary()
    except KeyboardInterrupt:
        print("\n== Ctrl-C: stopping")
    finally:
        if operator is not None:
            operator.terminate()
            try:
                operator.wait(15)
            except subprocess.TimeoutExpired:
                operator.kill()
        server.stop_thread()
        cp.stop()
        print("== stopped: operator, simulators, kube-apiserver, etcd")
    return 0


class GuardedRun:
    """The spec.safety walk-through on examples/cleanup-policy-guarded.yaml: ask for a real run, see it
    held after its dry run (over the budget), approve that dry run, see the real run succeed."""

    def __init__(self, cp: ControlPlane, server: SimulatorServer) -> None:
        self.cp = cp
        self.server = server
        self.requested = False
        self.approved: str | None = None
        self.done = False

    def step(self) -> None:
        if self.done:
            return
        obj = _get(self.cp, "cleanuppolicy", GUARDED)
        status = (obj or {}).get("status") or {}
        if not self.requested:
            if _ready(obj):
                value = str(int(time.time()))
                print(
                    f"== {GUARDED} has spec.safety and onDemandRun.dryRun: false: a real run is asked for,"
                    " and starts as a dry run"
                )
                print(f"   $ {_annotate_command(GUARDED, f'{REQUESTED_AT}={value}')}")
                _kubectl_annotate(self.cp, GUARDED, f"{REQUESTED_AT}={value}")
                self.requested = True
            return
        pending = status.get("pendingApproval") or {}
        if self.approved is None:
            if not pending.get("dryRunId"):
                return
            dry_id = str(pending["dryRunId"])
            print(f"== held for approval: {pending.get('reason')}: {pending.get('message')}")
            print(f"   $ kubectl get cleanuppolicy {GUARDED} -n {NS}")
            print(_indent(self.cp.kubectl("get", "cleanuppolicy", GUARDED, "-n", NS).stdout))
            print(f"   runs started so far: {self.runs()}")
            print(f"== approving dry run {dry_id}")
            print(f"   $ {_annotate_command(GUARDED, f'{APPROVE}={dry_id}')}", flush=True)
            _kubectl_annotate(self.cp, GUARDED, f"{APPROVE}={dry_id}")
            self.approved = dry_id
            return
        last = status.get("lastRun") or {}
        if last.get("dryRun") is False and last.get("state") == "Succeeded":
            print(
                f"== real run {last.get('runId')} (allowedBy: dry run {last.get('allowedBy')}) Succeeded:"
                f" {last.get('packagesDeleted', 0)} packages, {last.get('versionsDeleted', 0)} versions,"
                f" {last.get('bytesDeleted', 0)} bytes deleted"
            )
            print(f"   $ kubectl get cleanuppolicy {GUARDED} -n {NS}")
            print(_indent(self.cp.kubectl("get", "cleanuppolicy", GUARDED, "-n", NS).stdout), flush=True)
            self.done = True

    def runs(self) -> str:
        """The runs Artifactory (the simulator) was asked to start for the guarded policy, in order."""
        calls = self.server.calls.calls(vendor="jfrog", method="PUT", path=f"/{GUARDED}/run$")
        return (
            ", ".join("dry run" if c.query.get("dryRun") == "true" else "real run" for c in calls) or "none"
        )

    def summary(self) -> None:
        print(f"== {GUARDED}: runs Artifactory was asked to start (simulator call log): {self.runs()}")
        if not self.done:
            print(f"   (the walk-through did not finish within the demo's time: {self.approved=})")
        events = self.cp.kubectl(
            "get",
            "events",
            "-n",
            NS,
            "--field-selector",
            f"involvedObject.name={GUARDED}",
            "--sort-by",
            ".metadata.creationTimestamp",
            "-o",
            "custom-columns=REASON:.reason,MESSAGE:.message",
        ).stdout
        print(f"== events of {GUARDED}")
        print(_indent(events), flush=True)


def _annotate_command(name: str, annotation: str) -> str:
    return f"kubectl annotate --overwrite -n {NS} cleanuppolicy/{name} {annotation}"


def _kubectl_annotate(cp: ControlPlane, name: str, annotation: str) -> None:
    cp.kubectl("annotate", "--overwrite", "-n", NS, f"cleanuppolicy/{name}", annotation)


def _indent(text: str) -> str:
    return "\n".join("   " + line for line in text.rstrip("\n").splitlines())


def _get(cp: ControlPlane, kind: str, name: str) -> dict[str, Any] | None:
    res = cp.kubectl("get", "-n", NS, kind, name, "-o", "json", check=False)
    if res.returncode != 0:
        return None
    obj: dict[str, Any] = json.loads(res.stdout)
    return obj


def _ready(obj: dict[str, Any] | None) -> bool:
    conds = ((obj or {}).get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds)


if __name__ == "__main__":
    raise SystemExit(main())
