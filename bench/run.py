"""`make bench`: the operator against a real kube-apiserver and the vendor simulators, beside its floor.

Scenarios (``--scenarios``, comma-separated; default all that apply):

- ``floor``: :mod:`bench.floor` brings N CleanupPolicies to Ready with only the floor's calls (vendor
  create POST, enablement, one GET; one status patch), in a namespace the operator does not watch.
- ``startup``: one policy exists before the operator starts; seconds from its start to the first
  status it writes (its first reconcile), and to that policy Ready.
- ``create``: N CleanupPolicies created 32 at a time; seconds from the first create until all are
  Ready (watched), its ratio to the floor; per object, from the simulator's timestamped call log
  (until that object's Ready) and from a watch on the objects: vendor calls by method and path,
  status patches, metadata patches (finalizers), and events (events API); operator peak RSS
  (VmHWM) and CPU time (/proc/<pid>/stat).
- ``steady``: the N objects on a 10 s interval for three intervals: writes (vendor writes, status
  and metadata patches, events), vendor GETs per object per interval, operator CPU %.
- ``restart``: the operator killed (SIGKILL) and started again: seconds until it checked every
  object (a GET of each policy), and the writes it made (none should be).
- ``failover``: every operator runs with ``--leader-elect``; a standby is started and left to list
  and index every object, then the leader is killed (SIGKILL): seconds until the new leader checked
  every object, and the writes it made (none should be).
- ``harness``: 200 ArtifactStreamSyncs on one Harness account, under the simulator's documented
  limit (30 requests per 60 s): seconds to all Ready, the least the limit allows, 429s received.

Results go to ``bench/results.json`` and a table on stdout, with the targets missed. The exit code is
non-zero only for correctness failures (objects not Ready, writes in the steady state or after a
restart, 429s), never for speed, so the bench is usable on any machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from cleanup_operator.testing.controlplane import ControlPlane

from .kube import Kube, client_from_kubeconfig
from .sim import ACCOUNT, stream_id

ROOT = Path(__file__).resolve().parent.parent
CPOL = "cleanuppolicies"
ASS = "artifactstreamsyncs"
ALL_SCENARIOS = ("floor", "startup", "create", "steady", "restart", "failover", "harness")
CREATE_CONCURRENCY = 32
CLK_TCK = os.sysconf("SC_CLK_TCK")
#: The simulators listen on loopback in plain http; the operator refuses both unless told.
SIM_FLAGS = ("--allowed-hosts", "127.0.0.1", "--allow-insecure-http")


def _env() -> dict[str, str]:
    """The environment of our child processes: this checkout's bench and operator importable."""
    paths = [str(ROOT), str(ROOT / "operator"), *filter(None, os.environ.get("PYTHONPATH", "").split(":"))]
    return {**os.environ, "PYTHONPATH": ":".join(dict.fromkeys(paths))}


def policy_manifest(name: str, url: str, interval: str) -> dict[str, Any]:
    return {
        "apiVersion": "cleanup.artifacts.dev/v1alpha1",
        "kind": "CleanupPolicy",
        "metadata": {"name": name},
        "spec": {
            "connection": {"url": url, "secretRef": {"name": "jfrog"}},
            "enabled": True,
            "interval": interval,
            "searchCriteria": {
                "packageTypes": ["docker"],
                "repos": ["docker-local"],
                "includedPackages": ["**"],
                "createdBeforeInMonths": 6,
            },
        },
    }


def sync_manifest(name: str, url: str, stream: str) -> dict[str, Any]:
    return {
        "apiVersion": "cleanup.artifacts.dev/v1alpha1",
        "kind": "ArtifactStreamSync",
        "metadata": {"name": name},
        "spec": {
            "harness": {
                "url": url,
                "accountId": ACCOUNT,
                "apiKeySecretRef": {"name": "harness", "key": "apiKey"},
                "artifactStreamIds": [stream],
            },
            "interval": "1h",
        },
    }


def is_ready(obj: dict[str, Any]) -> bool:
    status = obj.get("status") or {}
    return status.get("observedGeneration") == obj["metadata"].get("generation") and any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or []
    )


# Processes: the simulators, the operator, the floor.


class Simulators:
    """``python -m bench.sim`` in its own process, and what it reports."""

    def __init__(self, log: Path, harness_streams: int, harness_rate: int, harness_window: float) -> None:
        self._log = open(log, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.sim",
                f"--harness-streams={harness_streams}",
                f"--harness-rate={harness_rate}",
                f"--harness-window={harness_window}",
            ],
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=self._log,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the simulators did not start; see {log}")
        ports = json.loads(line)
        self.base = f"http://127.0.0.1:{ports['port']}"
        self.control = httpx.AsyncClient(base_url=f"http://127.0.0.1:{ports['controlPort']}", timeout=120)
        self._next = 0
        #: Every call so far: (vendor, method, path, status, time).
        self.calls: list[tuple[str, str, str, int, float]] = []

    def url(self, vendor: str) -> str:
        return f"{self.base}/{vendor}"

    async def refresh(self) -> list[tuple[str, str, str, int, float]]:
        resp = await self.control.get("/bench/calls", params={"since": self._next})
        resp.raise_for_status()
        body = resp.json()
        self._next = body["next"]
        self.calls.extend((str(v), str(m), str(p), int(s), float(t)) for v, m, p, s, t in body["calls"])
        return self.calls

    async def harness(self) -> dict[str, Any]:
        resp = await self.control.get("/bench/harness")
        resp.raise_for_status()
        stats: dict[str, Any] = resp.json()
        return stats

    async def stop(self) -> None:
        await self.control.aclose()
        self.proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)
        if self.proc.poll() is None:
            self.proc.kill()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._log.close()


class OperatorProcess:
    """The operator as users run it (``python -m cleanup_operator``), with its CPU time and memory."""

    def __init__(self, cp: ControlPlane, log: Path, args: list[str]) -> None:
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "cleanup_operator", *args],
                env={**_env(), "KUBECONFIG": str(cp.kubeconfig)},
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.started = time.time()
        self.pid = self.proc.pid

    def cpu_seconds(self) -> float:
        """utime + stime from /proc/<pid>/stat (after the command name, fields 12 and 13)."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def memory_mib(self) -> dict[str, float]:
        status = Path(f"/proc/{self.pid}/status").read_text()
        values = {k: int(v.split()[0]) for k, v in re.findall(r"^(Vm\w+):\s+(.*)$", status, re.M)}
        return {"rss": round(values["VmRSS"] / 1024, 1), "peak": round(values["VmHWM"] / 1024, 1)}

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        if self.alive():
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.alive():
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()


# What the API server shows: a watch on the objects.


@dataclass
class Seen:
    added_at: float
    status: Any
    meta: Any
    status_writes: list[float] = field(default_factory=list)
    meta_writes: list[float] = field(default_factory=list)
    ready_at: float | None = None


def _meta_of(obj: dict[str, Any]) -> Any:
    meta = obj.get("metadata") or {}
    return (meta.get("finalizers"), meta.get("annotations"), meta.get("labels"), obj.get("spec"))


class Tracker:
    """Every version of the objects of one kind in a namespace, with when it was seen: status
    patches (the status changed), metadata patches (finalizers, annotations) and Ready."""

    def __init__(self, kube: Kube, namespace: str, plural: str) -> None:
        self.kube, self.namespace, self.plural = kube, namespace, plural
        self.objects: dict[str, Seen] = {}
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        items, version = await self.kube.list_objects(self.namespace, self.plural)
        now = time.time()
        for obj in items:
            self._record(obj, now)
        self._task = asyncio.create_task(self._watch(version))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _watch(self, version: str) -> None:
        async for kind, obj in self.kube.watch(self.namespace, self.plural, version):
            if kind in ("ADDED", "MODIFIED"):
                self._record(obj, time.time())

    def _record(self, obj: dict[str, Any], now: float) -> None:
        name = obj["metadata"]["name"]
        seen = self.objects.get(name)
        status, meta = obj.get("status"), _meta_of(obj)
        if seen is None:
            seen = self.objects[name] = Seen(now, status, meta)
            if status:
                seen.status_writes.append(now)
        else:
            if status != seen.status:
                seen.status_writes.append(now)
            if meta != seen.meta:
                seen.meta_writes.append(now)
            seen.status, seen.meta = status, meta
        if seen.ready_at is None and is_ready(obj):
            seen.ready_at = now

    def named(self, names: list[str]) -> list[Seen]:
        return [self.objects[n] for n in names if n in self.objects]

    def ready(self, names: list[str]) -> int:
        return sum(1 for s in self.named(names) if s.ready_at is not None)

    async def wait_ready(self, names: list[str], within: float) -> bool:
        deadline = time.monotonic() + within
        while self.ready(names) < len(names):
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.1)
        return True

    def writes_between(self, start: float, end: float) -> dict[str, int]:
        status = sum(1 for s in self.objects.values() for t in s.status_writes if start <= t < end)
        meta = sum(1 for s in self.objects.values() for t in s.meta_writes if start <= t < end)
        return {"statusPatches": status, "metadataPatches": meta}


# Per-object counts.

_POLICY_PATH = re.compile(r"/cleanup/packages/policies/([^/]+)(/.*)?$")


def vendor_calls_by_object(
    calls: list[tuple[str, str, str, int, float]], until: dict[str, float]
) -> dict[str, Counter[str]]:
    """Per policy key, its JFrog calls as "METHOD …/policies/{key}[/suffix]", up to ``until[key]``."""
    out: dict[str, Counter[str]] = {}
    for vendor, method, path, _status, at in calls:
        if vendor != "jfrog":
            continue
        m = _POLICY_PATH.search(path)
        if m is None or m.group(1) not in until or at > until[m.group(1)]:
            continue
        out.setdefault(m.group(1), Counter())[f"{method} …/policies/{{key}}{m.group(2) or ''}"] += 1
    return out


def spread(values: list[int]) -> dict[str, float]:
    if not values:
        return {"mean": 0.0, "max": 0}
    return {"mean": round(sum(values) / len(values), 2), "max": max(values)}


async def events_by_object(kube: Kube, namespace: str, names: set[str]) -> Counter[str]:
    """Events per object (their ``count`` included: the API server folds repeats into one)."""
    counts: Counter[str] = Counter()
    for ev in await kube.events(namespace):
        name = (ev.get("involvedObject") or {}).get("name")
        if name in names:
            counts[name] += int(ev.get("count") or 1)
    return counts


async def settled_events(kube: Kube, namespace: str, names: set[str], quiet: float = 2.0) -> Counter[str]:
    """Events per object once no new one arrived for ``quiet`` seconds (Kopf posts them from a queue)."""
    last = await events_by_object(kube, namespace, names)
    for _ in range(15):
        await asyncio.sleep(quiet)
        now = await events_by_object(kube, namespace, names)
        if now == last:
            break
        last = now
    return last


# The bench.


@dataclass
class Options:
    count: int = 1000
    scenarios: tuple[str, ...] = ALL_SCENARIOS
    interval: float = 10.0
    steady_intervals: int = 3
    harness_count: int = 200
    harness_rate: int = 30
    harness_window: float = 60.0
    timeout: float | None = None
    prefix: str = "bench"
    profile: str | None = None
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="bench-")))

    @property
    def ready_timeout(self) -> float:
        return self.timeout or max(300.0, self.count * 0.6)


class Bench:
    def __init__(self, cp: ControlPlane, options: Options) -> None:
        self.cp = cp
        self.o = options
        self.results: dict[str, Any] = {
            "objects": options.count,
            "scenarios": list(options.scenarios),
            "machine": {"cpus": os.cpu_count(), "loadAverageAtStart": list(os.getloadavg())},
        }
        self.ns_floor = f"{options.prefix}-floor"
        self.ns_op = f"{options.prefix}-op"
        self.ns_harness = f"{options.prefix}-harness"
        self.names = [f"policy-{i:05d}" for i in range(options.count)]

    def _operator(self, log: str) -> OperatorProcess:
        harness_rate = max(1, self.o.harness_rate - 2)  # the operator's default keeps the same margin
        args = [
            "--namespace",
            self.ns_op,
            "--namespace",
            self.ns_harness,
            f"--harness-rate={harness_rate}",
            f"--harness-window={self.o.harness_window}",
            *SIM_FLAGS,
        ]
        if "failover" in self.o.scenarios:
            identity = log.removesuffix(".log")
            args += [
                "--leader-elect",
                f"--leader-elect-namespace={self.ns_op}",
                f"--leader-elect-identity={identity}",
            ]
        return OperatorProcess(self.cp, self.o.workdir / log, args)

    async def run(self) -> dict[str, Any]:
        sim = Simulators(
            self.o.workdir / "simulators.log",
            self.o.harness_count if "harness" in self.o.scenarios else 0,
            self.o.harness_rate,
            self.o.harness_window,
        )
        kube = Kube(client_from_kubeconfig(self.cp.kubeconfig))
        op: OperatorProcess | None = None
        try:
            for ns in (self.ns_floor, self.ns_op, self.ns_harness):
                await kube.ensure_namespace(ns)
                await kube.create_secret(ns, "jfrog", {"token": "test-token"})
                await kube.create_secret(ns, "harness", {"apiKey": "test-key"})
            if "floor" in self.o.scenarios:
                await self._floor(kube, sim)
            tracker = Tracker(kube, self.ns_op, CPOL)
            await tracker.start()
            probe = "startup-probe"
            await kube.create(self.ns_op, CPOL, policy_manifest(probe, sim.url("jfrog"), "1h"))
            op = self._operator("operator.log")
            await self._startup(tracker, op, probe)
            if "create" in self.o.scenarios:
                profiler = self._start_profiler(op)
                await self._create(kube, sim, tracker, op)
                self._stop_profiler(profiler)
                if "steady" in self.o.scenarios:
                    await self._steady(kube, sim, tracker, op)
                self.results["operator"] = {"memoryMiB": op.memory_mib(), "cpuSeconds": op.cpu_seconds()}
                if "restart" in self.o.scenarios:
                    op = await self._restart(kube, sim, tracker, op)
                if "failover" in self.o.scenarios:
                    op = await self._failover(sim, tracker, op)
            if "harness" in self.o.scenarios:
                await self._harness(kube, sim, op)
            await tracker.stop()
        finally:
            if op is not None:
                op.stop()
            await kube.aclose()
            await sim.stop()
        return self.results

    # Scenarios.

    async def _create_objects(self, kube: Kube, namespace: str, bodies: list[dict[str, Any]]) -> float:
        """Create every body, CREATE_CONCURRENCY at a time; the time of the first create."""
        sem = asyncio.Semaphore(CREATE_CONCURRENCY)
        start = time.time()

        async def one(body: dict[str, Any]) -> None:
            async with sem:
                await kube.create(namespace, _plural(body), body)

        await asyncio.gather(*(one(b) for b in bodies))
        return start

    async def _floor(self, kube: Kube, sim: Simulators) -> None:
        names = [f"floor-{i:05d}" for i in range(self.o.count)]
        tracker = Tracker(kube, self.ns_floor, CPOL)
        await tracker.start()
        proc = _spawn_floor(self.cp.kubeconfig, self.ns_floor, self.o.count)
        assert proc.stdout is not None
        try:
            first = await asyncio.to_thread(proc.stdout.readline)
            if not first:
                raise RuntimeError("the floor client did not start")
            bodies = [policy_manifest(n, sim.url("jfrog"), f"{self.o.interval:g}s") for n in names]
            start = await self._create_objects(kube, self.ns_floor, bodies)
            all_ready = await tracker.wait_ready(names, self.o.ready_timeout)
            end = max((s.ready_at or 0.0) for s in tracker.named(names))
            line = await asyncio.to_thread(proc.stdout.readline)
            figures = json.loads(line) if line else {}
        finally:
            proc.stdout.close()
            if proc.poll() is None:
                proc.terminate()
            proc.wait(10)
            await tracker.stop()
        await sim.refresh()
        until = {n: s.ready_at or 0.0 for n, s in zip(names, tracker.named(names), strict=True)}
        per = vendor_calls_by_object(sim.calls, until)
        self.results["floor"] = {
            "ready": tracker.ready(names),
            "allReady": all_ready,
            "seconds": round(end - start, 2),
            "vendorCallsPerObject": spread([sum(c.values()) for c in per.values()]),
            "statusPatchesPerObject": spread([len(s.status_writes) for s in tracker.named(names)]),
            "cpuSeconds": figures.get("cpuSeconds"),
            "peakRssMiB": figures.get("peakRssMiB"),
        }

    async def _startup(self, tracker: Tracker, op: OperatorProcess, probe: str) -> None:
        deadline = time.monotonic() + 60
        cpu: float | None = None
        while time.monotonic() < deadline:
            seen = tracker.objects.get(probe)
            if cpu is None and seen is not None and seen.status_writes:
                cpu = op.cpu_seconds()  # within 50 ms of the first status it wrote
            if seen is not None and seen.ready_at is not None:
                break
            await asyncio.sleep(0.05)
        seen = tracker.objects.get(probe)
        first = min(seen.status_writes) if seen is not None and seen.status_writes else None
        ready = seen.ready_at if seen is not None else None
        self.results["startup"] = {
            "toFirstReconcileSeconds": round(first - op.started, 2) if first else None,
            "toReadySeconds": round(ready - op.started, 2) if ready else None,
            # CPU time is what a loaded machine does not stretch: imports, login, first watch.
            "cpuSecondsToFirstReconcile": round(cpu, 2) if cpu is not None else None,
        }

    async def _create(self, kube: Kube, sim: Simulators, tracker: Tracker, op: OperatorProcess) -> None:
        cpu0 = op.cpu_seconds()
        bodies = [policy_manifest(n, sim.url("jfrog"), f"{self.o.interval:g}s") for n in self.names]
        start = await self._create_objects(kube, self.ns_op, bodies)
        created = time.time()
        all_ready = await tracker.wait_ready(self.names, self.o.ready_timeout)
        seen = tracker.named(self.names)
        end = max((s.ready_at or time.time()) for s in seen)
        cpu = op.cpu_seconds() - cpu0
        memory = op.memory_mib()
        await sim.refresh()
        until = {n: s.ready_at or end for n, s in zip(self.names, seen, strict=True)}
        per = vendor_calls_by_object(sim.calls, until)
        by_call: Counter[str] = Counter()
        for counts in per.values():
            by_call.update(counts)
        events = await settled_events(kube, self.ns_op, set(self.names))
        seconds = end - start
        floor = (self.results.get("floor") or {}).get("seconds")
        self.results["create"] = {
            "ready": tracker.ready(self.names),
            "allReady": all_ready,
            "createdInSeconds": round(created - start, 2),
            "seconds": round(seconds, 2),
            "ratioToFloor": round(seconds / floor, 2) if floor else None,
            "vendorCallsPerObject": spread([sum(per.get(n, Counter()).values()) for n in self.names]),
            "vendorCallsByKind": {k: round(v / self.o.count, 2) for k, v in sorted(by_call.items())},
            "statusPatchesPerObject": spread([len(s.status_writes) for s in seen]),
            "metadataPatchesPerObject": spread([len(s.meta_writes) for s in seen]),
            "eventsPerObject": spread([events.get(n, 0) for n in self.names]),
            "operatorCpuSeconds": round(cpu, 2),
            "operatorMemoryMiB": memory,
        }

    async def _steady(self, kube: Kube, sim: Simulators, tracker: Tracker, op: OperatorProcess) -> None:
        await sim.refresh()
        names = set(self.names)
        events0 = sum((await events_by_object(kube, self.ns_op, names)).values())
        start, cpu0 = time.time(), op.cpu_seconds()
        window = self.o.interval * self.o.steady_intervals
        await asyncio.sleep(window)
        end, cpu = time.time(), op.cpu_seconds() - cpu0
        await sim.refresh()
        events = sum((await events_by_object(kube, self.ns_op, names)).values()) - events0
        keys = set(self.names)
        window_calls = [
            c
            for c in sim.calls
            if c[0] == "jfrog"
            and start <= c[4] < end
            and (m := _POLICY_PATH.search(c[2]))
            and m.group(1) in keys
        ]
        gets = Counter(m.group(1) for c in window_calls if c[1] == "GET" and (m := _POLICY_PATH.search(c[2])))
        writes = tracker.writes_between(start, end)
        intervals = (end - start) / self.o.interval
        self.results["steady"] = {
            "windowSeconds": round(end - start, 1),
            "interval": self.o.interval,
            "vendorWrites": sum(1 for c in window_calls if c[1] != "GET"),
            **writes,
            "events": events,
            "getsPerObjectPerInterval": round(sum(gets.values()) / len(keys) / intervals, 3),
            "maxGetsOfOneObjectPerInterval": round(max(gets.values(), default=0) / intervals, 2),
            "objectsNotChecked": len(keys - set(gets)),
            "operatorCpuPercent": round(100 * cpu / (end - start), 1),
        }

    async def _restart(
        self, kube: Kube, sim: Simulators, tracker: Tracker, op: OperatorProcess
    ) -> OperatorProcess:
        """Kill the operator and start it again: until every object was checked (a GET of its policy)."""
        op.kill()
        killed = time.time()
        fresh = self._operator("operator-restarted.log")
        keys = set(self.names)
        checked, writes, end = await self._checked_since(sim, killed, keys)
        self.results["restart"] = {
            "checked": len(checked),
            "toFirstCheckSeconds": round(min(checked.values()) - fresh.started, 2) if checked else None,
            "toAllCheckedSeconds": round(max(checked.values()) - fresh.started, 2)
            if len(checked) == len(keys)
            else None,
            "vendorWrites": writes,
            **tracker.writes_between(killed, end),
        }
        return fresh

    async def _checked_since(
        self, sim: Simulators, since: float, keys: set[str]
    ) -> tuple[dict[str, float], int, float]:
        """When each policy was first read after ``since``; the vendor writes since; the end."""
        deadline = time.monotonic() + self.o.ready_timeout
        checked: dict[str, float] = {}
        while time.monotonic() < deadline and len(checked) < len(keys):
            await asyncio.sleep(0.5)
            for c in await sim.refresh():
                m = _POLICY_PATH.search(c[2]) if c[4] >= since and c[1] == "GET" else None
                if m is not None and m.group(1) in keys:
                    checked.setdefault(m.group(1), c[4])
        await asyncio.sleep(2)
        end = time.time()
        await sim.refresh()
        writes = sum(
            1
            for c in sim.calls
            if c[0] == "jfrog" and c[4] >= since and c[1] != "GET" and _POLICY_PATH.search(c[2])
        )
        return checked, writes, end

    async def _failover(self, sim: Simulators, tracker: Tracker, leader: OperatorProcess) -> OperatorProcess:
        """A warm standby, then the leader killed: until the new leader checked every object."""
        standby = self._operator("operator-standby.log")
        # Warm: its watches listed and indexed every object once its CPU use settles.
        warm_deadline = time.monotonic() + self.o.ready_timeout
        last = -1.0
        while time.monotonic() < warm_deadline:
            await asyncio.sleep(2)
            cpu = standby.cpu_seconds()
            if cpu - last < 0.05:
                break
            last = cpu
        warmed = time.time() - standby.started
        leader.kill()
        killed = time.time()
        keys = set(self.names)
        checked, writes, end = await self._checked_since(sim, killed, keys)
        self.results["failover"] = {
            "standbyWarmSeconds": round(warmed, 1),
            "checked": len(checked),
            "toFirstCheckSeconds": round(min(checked.values()) - killed, 2) if checked else None,
            "toAllCheckedSeconds": round(max(checked.values()) - killed, 2)
            if len(checked) == len(keys)
            else None,
            "leaseDurationSeconds": 15,
            "vendorWrites": writes,
            **tracker.writes_between(killed, end),
        }
        return standby

    async def _harness(self, kube: Kube, sim: Simulators, op: OperatorProcess | None) -> None:
        if op is None or not op.alive():
            op = self._operator("operator-harness.log")
        names = [f"sync-{i:05d}" for i in range(self.o.harness_count)]
        tracker = Tracker(kube, self.ns_harness, ASS)
        await tracker.start()
        bodies = [sync_manifest(n, sim.url("harness"), stream_id(i)) for i, n in enumerate(names)]
        start = await self._create_objects(kube, self.ns_harness, bodies)
        windows = math.ceil(self.o.harness_count / self.o.harness_rate)
        least = max(0, windows - 1) * self.o.harness_window
        all_ready = await tracker.wait_ready(names, least * 2 + 120)
        seen = tracker.named(names)
        end = max((s.ready_at or time.time()) for s in seen)
        await tracker.stop()
        stats = await sim.harness()
        self.results["harness"] = {
            "objects": self.o.harness_count,
            "ready": tracker.ready(names),
            "allReady": all_ready,
            "seconds": round(end - start, 1),
            "leastTheLimitAllowsSeconds": least,
            "limit": f"{stats['rateLimit']} per {stats['rateWindow']:g} s",
            "rateLimited429": stats["rateLimited"],
            "maxRequestsInOneWindow": stats["maxInWindow"],
        }

    # Profiling (optional): py-spy attached to the operator during the create scenario.

    def _start_profiler(self, op: OperatorProcess) -> subprocess.Popen[bytes] | None:
        if self.o.profile != "py-spy":
            return None
        out = self.o.workdir / "profile.txt"
        self.results["profile"] = str(out)
        return subprocess.Popen(
            [
                str(Path(sys.executable).parent / "py-spy"),
                *("record", "--pid", str(op.pid), "--format", "raw"),
                *("--rate", "100", "--nonblocking", "-o", str(out)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def _stop_profiler(self, proc: subprocess.Popen[bytes] | None) -> None:
        if proc is not None:
            proc.send_signal(2)  # SIGINT: py-spy writes what it sampled
            proc.wait(60)
            path = Path(self.results["profile"])
            if path.exists():
                self.results["profile"] = {"file": str(path), **summarize_profile(path)}


def summarize_profile(path: Path, top: int = 25) -> dict[str, Any]:
    """py-spy's raw (collapsed) stacks: the share of the operator's busy samples in each function,
    itself and with what it calls (idle waits are not sampled)."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = [re.sub(r":\d+\)$", ")", f.strip()) for f in stack.split(";")]
        for frame in set(frames):
            inclusive[frame] += count
        own[frames[-1]] += count

    def shares(counter: Counter[str]) -> list[list[Any]]:
        return [[name, round(100 * n / total, 1)] for name, n in counter.most_common(top)] if total else []

    return {"samples": total, "inclusivePercent": shares(inclusive), "selfPercent": shares(own)}


def _spawn_floor(kubeconfig: Path, namespace: str, count: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench.floor",
            f"--kubeconfig={kubeconfig}",
            f"--namespace={namespace}",
            f"--count={count}",
        ],
        env=_env(),
        stdout=subprocess.PIPE,
        text=True,
    )


def _plural(body: dict[str, Any]) -> str:
    return {"CleanupPolicy": CPOL, "ArtifactStreamSync": ASS}[body["kind"]]


# Targets, and what the run prints.


def targets(results: dict[str, Any]) -> list[tuple[str, bool, bool]]:
    """(target, met, a correctness target): correctness misses make the exit code non-zero."""
    out: list[tuple[str, bool, bool]] = []
    n = results["objects"]
    create, floor, steady = results.get("create"), results.get("floor"), results.get("steady")
    if floor:
        out.append((f"floor: all {n} Ready", bool(floor["allReady"]), True))
    if create:
        out.append((f"all {n} CleanupPolicies Ready", bool(create["allReady"]), True))
        if create.get("ratioToFloor") is not None:
            out.append(("time to Ready <= 1.5 x the floor", create["ratioToFloor"] <= 1.5, False))
        if n == 1000:
            out.append(("1,000 Ready in under 15 s", create["seconds"] < 15, False))
        calls = create["vendorCallsByKind"]
        at_floor = (
            create["vendorCallsPerObject"]["max"] <= 3
            and calls.get("POST …/policies/{key}", 0) <= 1
            and calls.get("POST …/policies/{key}/enablement", 0) <= 1
        )
        out.append(("vendor calls at the floor (POST + enablement + GET)", at_floor, False))
        out.append(
            ("at most 2 status patches per object", create["statusPatchesPerObject"]["max"] <= 2, False)
        )
        out.append(("at most 1 event per object", create["eventsPerObject"]["max"] <= 1, False))
        peak = (results.get("operator") or {}).get("memoryMiB", create["operatorMemoryMiB"])["peak"]
        limit = 100 if n <= 1000 else 250
        out.append((f"operator peak RSS under {limit} MiB", peak < limit, False))
    if steady:
        writes = (
            steady["vendorWrites"] + steady["statusPatches"] + steady["metadataPatches"] + steady["events"]
        )
        out.append(("steady state: 0 writes", writes == 0, True))
        out.append(
            (
                "steady state: <= 1 GET per object per interval",
                steady["getsPerObjectPerInterval"] <= 1.0,
                False,
            )
        )
        out.append(
            ("steady state: operator CPU under 25 % of one core", steady["operatorCpuPercent"] < 25, False)
        )
    startup = results.get("startup")
    if startup and startup.get("toFirstReconcileSeconds") is not None:
        out.append(("start-up to first reconcile under 3 s", startup["toFirstReconcileSeconds"] < 3, False))
    restart = results.get("restart")
    if restart:
        out.append(("restart: every object checked again", restart["checked"] == n, True))
        quiet = restart["vendorWrites"] + restart["statusPatches"] + restart["metadataPatches"] == 0
        out.append(("restart: 0 writes", quiet, True))
    failover = results.get("failover")
    if failover:
        out.append(("failover: the new leader checked every object", failover["checked"] == n, True))
        quiet = failover["vendorWrites"] + failover["statusPatches"] + failover["metadataPatches"] == 0
        out.append(("failover: 0 writes", quiet, True))
    harness = results.get("harness")
    if harness:
        out.append((f"harness: all {harness['objects']} Ready", bool(harness["allReady"]), True))
        out.append(("harness: 0 responses 429", harness["rateLimited429"] == 0, True))
    return out


def table(results: dict[str, Any]) -> str:
    rows: list[tuple[str, str]] = []

    def add(section: str, values: dict[str, Any] | None) -> None:
        for key, value in (values or {}).items():
            rows.append(
                (
                    f"{section}.{key}",
                    json.dumps(value, ensure_ascii=False) if isinstance(value, dict | list) else str(value),
                )
            )

    for section in ("floor", "startup", "create", "steady", "restart", "harness", "operator", "failover"):
        add(section, results.get(section))
    width = max(len(k) for k, _ in rows) if rows else 10
    lines = [f"{k:<{width}}  {v}" for k, v in rows]
    lines.append("")
    for name, met, correctness in results.get("targets", []):
        mark = "ok  " if met else ("FAIL" if correctness else "miss")
        lines.append(f"[{mark}] {name}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--count", type=int, default=1000, help="CleanupPolicies (default 1000)")
    parser.add_argument(
        "--scenarios", default=",".join(ALL_SCENARIOS), help=f"comma-separated, of {', '.join(ALL_SCENARIOS)}"
    )
    parser.add_argument("--interval", type=float, default=10.0, help="the policies' interval, seconds")
    parser.add_argument("--harness-count", type=int, default=200)
    parser.add_argument(
        "--harness-window", type=float, default=60.0, help="Harness rate window (documented: 60)"
    )
    parser.add_argument("--timeout", type=float, help="seconds to wait for all Ready")
    parser.add_argument("--profile", choices=["py-spy"], help="profile the operator while it creates")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results.json")
    args = parser.parse_args(argv)
    scenarios = tuple(s.strip() for s in args.scenarios.split(",") if s.strip())
    unknown = set(scenarios) - set(ALL_SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    options = Options(
        count=args.count,
        scenarios=scenarios,
        interval=args.interval,
        harness_count=args.harness_count,
        harness_window=args.harness_window,
        timeout=args.timeout,
        profile=args.profile,
    )
    with ControlPlane(options.workdir / "controlplane") as cp:
        cp.install_crds()
        results = asyncio.run(Bench(cp, options).run())
    results["targets"] = targets(results)
    results["workdir"] = str(options.workdir)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))
    print(f"\nresults: {args.out}; logs: {options.workdir}")
    failed = [name for name, met, correctness in results["targets"] if correctness and not met]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
