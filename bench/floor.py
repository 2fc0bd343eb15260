"""The floor: the least any client can do to bring N CleanupPolicies to Ready, measured in the same run.

A minimal asyncio client, no Kopf and no reconciler: it watches the CleanupPolicies of a namespace
and, for each new one, makes exactly the floor's calls: the vendor create POST, the enablement call,
one confirming GET (through the operator's own JFrog client and per-endpoint bound, so vendor
concurrency is the operator's default), and one status patch with a Ready condition. It makes none
of the calls safety needs (finalizer, create-pending record, existence check, event): the bench
reports the operator's time as a ratio to this.

``python -m bench.floor --kubeconfig K --namespace NS --count N`` prints ``{"watching": true}``
once its watch is open, then one JSON line with its figures when every object is done.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import resource
import time
from pathlib import Path
from typing import Any

from cleanup_operator.vendors import jfrog
from cleanup_operator.vendors.http import ClientOptions, ClientPool

from .kube import Kube, client_from_kubeconfig

PLURAL = "cleanuppolicies"


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def ready_status(obj: dict[str, Any], key: str, url: str) -> dict[str, Any]:
    """A status of the operator's shape and size for a policy in sync."""
    generation = obj["metadata"].get("generation")
    stamp = _now()

    def cond(type_: str, status: str, reason: str, message: str) -> dict[str, Any]:
        return {
            "type": type_,
            "status": status,
            "reason": reason,
            "message": message,
            "lastTransitionTime": stamp,
            "observedGeneration": generation,
        }

    return {
        "observedGeneration": generation,
        "policyKey": key,
        "ownedPolicy": {"url": url, "key": key, "origin": "Created"},
        "enabled": True,
        "managed": True,
        "lastSyncedAt": stamp,
        "conditions": [
            cond("Ready", "True", "Synced", f"policy {key} matches the spec"),
            cond("Synced", "True", "Synced", "the last call to the vendor succeeded"),
            cond("Reconciling", "False", "Synced", ""),
            cond("Stalled", "False", "Synced", ""),
        ],
    }


async def run(kubeconfig: Path, namespace: str, count: int, token: str, concurrency: int) -> dict[str, Any]:
    kube = Kube(client_from_kubeconfig(kubeconfig, limits=100))
    pool = ClientPool(per_endpoint=concurrency)
    done = 0
    first: float | None = None
    finished = asyncio.Event()
    tasks: set[asyncio.Task[None]] = set()

    async def one(obj: dict[str, Any]) -> None:
        nonlocal done
        spec = obj["spec"]
        key = obj["metadata"]["name"]
        url = spec["connection"]["url"]
        client = jfrog.JFrogClient(
            pool.get(url, ClientOptions(base_url=url, headers={"Authorization": f"Bearer {token}"}))
        )
        policy = jfrog.Policy.model_validate(
            {"key": key, "enabled": False, "searchCriteria": spec["searchCriteria"]}
        )
        await client.create_policy(policy)
        await client.set_enabled(key, True)
        await client.get_policy(key)
        await kube.patch_status(namespace, PLURAL, key, ready_status(obj, key, url))
        done += 1
        if done >= count:
            finished.set()

    try:
        _, version = await kube.list_objects(namespace, PLURAL)
        watch = kube.watch(namespace, PLURAL, version)

        async def consume() -> None:
            nonlocal first
            async for kind, obj in watch:
                if kind == "ADDED":
                    if first is None:
                        first = time.time()
                    task = asyncio.create_task(one(obj))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)

        print(json.dumps({"watching": True}), flush=True)
        consumer = asyncio.create_task(consume())
        await finished.wait()
        consumer.cancel()
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return {
            "done": done,
            "firstSeenAt": first,
            "finishedAt": time.time(),
            "cpuSeconds": round(usage.ru_utime + usage.ru_stime, 2),
            "peakRssMiB": round(usage.ru_maxrss / 1024, 1),
        }
    finally:
        await pool.aclose()
        await kube.aclose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--kubeconfig", type=Path, required=True)
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--token", default="test-token", help="the JFrog simulator's bearer token")
    parser.add_argument("--vendor-concurrency", type=int, default=10)
    args = parser.parse_args()
    result = asyncio.run(
        run(args.kubeconfig, args.namespace, args.count, args.token, args.vendor_concurrency)
    )
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
