"""Benchmark: N CleanupPolicies reconciled to Ready on a real kube-apiserver, then a quiet period.

Measures, for the targets in the developers' guide:
- seconds from the first create until every object is Ready (target: 1,000 within 60 s on 2 cores);
- vendor writes and status patches during a quiet period when nothing changed (target: zero);
- the operator process's peak and current RSS (target: under 120 MiB).

Usage: python bench/reconcile_1000.py [--count 1000] [--quiet 30]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from cleanup_operator.testing.controlplane import ControlPlane
from cleanup_operator.testing.simulators import JFrogSimulator, build_server

NS = "bench"
PLURAL_PATH = f"/apis/cleanup.artifacts.dev/v1alpha1/namespaces/{NS}/cleanuppolicies"


def rss_kib(pid: int) -> tuple[int, int]:
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line
    )
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])


def manifest(i: int, url: str) -> dict[str, Any]:
    return {
        "apiVersion": "cleanup.artifacts.dev/v1alpha1",
        "kind": "CleanupPolicy",
        "metadata": {"name": f"policy-{i:04d}"},
        "spec": {
            "connection": {"url": url, "secretRef": {"name": "jfrog"}},
            "enabled": True,
            "interval": "10s",
            "searchCriteria": {
                "packageTypes": ["docker"],
                "repos": ["docker-local"],
                "includedPackages": ["**"],
                "createdBeforeInMonths": 6,
            },
        },
    }


async def create_all(cp: ControlPlane, count: int, url: str) -> None:
    ctx = ssl.create_default_context(cadata=(cp.workdir / "certs" / "apiserver.crt").read_text())
    async with httpx.AsyncClient(
        base_url=cp.url, verify=ctx, headers={"Authorization": f"Bearer {cp.token}"}
    ) as client:
        sem = asyncio.Semaphore(32)

        async def one(i: int) -> None:
            async with sem:
                r = await client.post(PLURAL_PATH, json=manifest(i, url))
                r.raise_for_status()

        await asyncio.gather(*(one(i) for i in range(count)))


async def list_all(cp: ControlPlane) -> list[dict[str, Any]]:
    ctx = ssl.create_default_context(cadata=(cp.workdir / "certs" / "apiserver.crt").read_text())
    async with httpx.AsyncClient(
        base_url=cp.url, verify=ctx, headers={"Authorization": f"Bearer {cp.token}"}, timeout=60
    ) as client:
        r = await client.get(PLURAL_PATH)
        r.raise_for_status()
        return list(r.json()["items"])


def ready(obj: dict[str, Any]) -> bool:
    conds = (obj.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conds)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--quiet", type=float, default=30.0, help="seconds of no change to watch for writes")
    parser.add_argument("--timeout", type=float, default=300.0)
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="bench-"))
    server = build_server()
    jfrog = server.simulator("jfrog")
    assert isinstance(jfrog, JFrogSimulator)
    server.start_in_thread()
    with ControlPlane(workdir) as cp:
        cp.install_crds()
        cp.kubectl("create", "namespace", NS)
        cp.kubectl("create", "secret", "generic", "jfrog", "-n", NS, "--from-literal=token=test-token")
        cp.kubectl("label", "secret", "jfrog", "-n", NS, "cleanup.artifacts.dev/credentials=true")
        log = open(workdir / "operator.log", "wb")  # noqa: SIM115
        op = subprocess.Popen(
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
        try:
            time.sleep(2)
            t0 = time.monotonic()
            asyncio.run(create_all(cp, args.count, server.url("jfrog")))
            created = time.monotonic() - t0
            n_ready = 0
            while time.monotonic() - t0 < args.timeout:
                items = asyncio.run(list_all(cp))
                n_ready = sum(1 for o in items if ready(o))
                if n_ready == args.count:
                    break
                time.sleep(1)
            to_ready = time.monotonic() - t0
            rss_ready = rss_kib(op.pid)
            before = {
                o["metadata"]["name"]: o["metadata"]["resourceVersion"] for o in asyncio.run(list_all(cp))
            }
            writes_before = len([c for c in server.calls.calls(vendor="jfrog") if c.method != "GET"])
            gets_before = len(server.calls.calls(vendor="jfrog", method="GET"))
            time.sleep(args.quiet)
            after = {
                o["metadata"]["name"]: o["metadata"]["resourceVersion"] for o in asyncio.run(list_all(cp))
            }
            writes = len([c for c in server.calls.calls(vendor="jfrog") if c.method != "GET"]) - writes_before
            gets = len(server.calls.calls(vendor="jfrog", method="GET")) - gets_before
            patched = sum(1 for k in before if after.get(k) != before[k])
            rss_now, peak = rss_kib(op.pid)
            result = {
                "objects": args.count,
                "created_in_s": round(created, 1),
                "all_ready_in_s": round(to_ready, 1),
                "ready": n_ready,
                "quiet_period_s": args.quiet,
                "drift_check_gets_in_quiet_period": gets,
                "vendor_writes_in_quiet_period": writes,
                "objects_patched_in_quiet_period": patched,
                "operator_rss_mib_at_ready": round(rss_ready[0] / 1024, 1),
                "operator_rss_mib_now": round(rss_now / 1024, 1),
                "operator_peak_rss_mib": round(peak / 1024, 1),
            }
            print(json.dumps(result, indent=2))
            ok = n_ready == args.count and writes == 0 and patched == 0 and peak < 120 * 1024
            print("PASS" if ok else "FAIL: see the numbers above")
            return 0 if ok else 1
        finally:
            op.terminate()
            op.wait(20)
            log.close()
            server.stop_thread()


if __name__ == "__main__":
    raise SystemExit(main())
