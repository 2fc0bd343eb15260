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

from cleanup_operator.testing.controlplane import ControlPlane
from cleanup_operator.testing.simulators import build_server
from cleanup_operator.testing.simulators.__main__ import seed_demo

ROOT = Path(__file__).resolve().parent.parent
NS = "demo"


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
                [sys.executable, "-m", "cleanup_operator", "--namespace", NS],
                env=cp.env(),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        cp.kubectl("create", "namespace", NS)
        print("== kubectl apply -f examples/")
        manifests = "\n---\n".join(p.read_text() for p in sorted((ROOT / "examples").glob("*.yaml")))
        manifests = manifests.replace("127.0.0.1:18080", f"127.0.0.1:{server.port}")
        print(cp.kubectl("apply", "-n", NS, "-f", "-", input=manifests).stdout)
        started = time.monotonic()
        requested = False
        while not args.duration or time.monotonic() - started < args.duration:
            print(f"--- t+{time.monotonic() - started:4.0f}s   kubectl get cleanup -n {NS}")
            print(cp.kubectl("get", "cleanup", "-n", NS).stdout, flush=True)
            if not requested and _ready(cp, "cleanuppolicy", "docker-stale"):
                print(
                    "== asking for a dry run: kubectl annotate cleanuppolicy docker-stale cleanup.artifacts.dev/requested-at=..."
                )
                cp.kubectl(
                    "annotate",
                    "--overwrite",
                    "-n",
                    NS,
                    "cleanuppolicy",
                    "docker-stale",
                    f"cleanup.artifacts.dev/requested-at={int(time.time())}",
                )
                requested = True
            time.sleep(3)
        print(cp.kubectl("describe", "-n", NS, "cleanuppolicy", "docker-stale").stdout)
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


def _ready(cp: ControlPlane, kind: str, name: str) -> bool:
    res = cp.kubectl("get", "-n", NS, kind, name, "-o", "json", check=False)
    if res.returncode != 0:
        return False
    conds = json.loads(res.stdout).get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conds)


if __name__ == "__main__":
    raise SystemExit(main())
