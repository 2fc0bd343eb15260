"""Fuzz: whatever the API server admits, the operator handles, without crashing or repeating itself.

Specs of all three kinds are generated with the strategies of the differential admission test
(tests/strategies.py: fields from the pydantic models, biased to the boundaries: schedules, intervals
and poll intervals at their minimums, missing Secrets and keys, wrong credentials, odd keys, old
Artifactory versions, existing policy keys, requested-at values before and after creation). Each is
sent to the real API server as a server-side dry run; refused ones are counted and dropped until
:data:`COUNT` are admitted. The admitted ones are applied in one ``kubectl apply`` of a List into a
namespace of their own, watched by an operator of its own, against simulators of their own (https,
trusted through the ``sim-ca`` Secret by every source whose spec names no CA of its own):

- CleanupPolicies share three Artifactories (7.129, 7.117 and 7.100; a few keys already exist there),
  so two resources naming one key meet, as they would in real life;
- each StoragePrune has an Artifactory of its own (a prune is per filestore), and each
  ArtifactStreamSync a Harness or SourceCraft of its own (rate limits are per account), so every call
  in the simulators' log belongs to exactly one object.

Then, per object: the operator never logs an unhandled exception; the object reaches a terminal
condition (``Ready`` True, or ``Stalled`` True; ``spec.suspend`` counts when status says Suspended)
within two of its intervals (its interval, or poll interval plus the time the vendor needs) after
:data:`GRACE` seconds for 200 objects to be picked up, and, for intervals too long to wait two of,
within :data:`WAIT_CAP`; and the call log shows no vendor write or run repeated: per policy key at most
one successful create and no create, update or enablement once a resource with that key was seen
Ready (no spec changes here), at most one run; per prune at most the starts its creation, request and
schedule ticks ask for; per Harness stream no clean-up sooner than its interval (or schedule) allows,
and none again after a permanent answer (not found, unsupported).

``make test`` runs the "ci" hypothesis profile: a fixed seed, :data:`COUNT` specs.
``--hypothesis-profile=thorough`` draws other (random) specs, and more of them.
"""

from __future__ import annotations

import collections
import datetime as dt
import itertools
import json
import re
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from cleanup_operator.api.common import parse_duration
from cleanup_operator.reconcile.cleanup_policy import derive_key
from cleanup_operator.schedule import Cron
from cleanup_operator.testing.controlplane import ControlPlane
from cleanup_operator.testing.simulators import (
    Call,
    HarnessSimulator,
    JFrogSimulator,
    SimulatorServer,
    SourceCraftSimulator,
)
from cleanup_operator.testing.tls import SimulatorCA
from tests import strategies as s

from .conftest import GROUP, SIM_CA_REF, Kube, Operator, condition, is_true

#: Admitted specs per run ("ci"); the thorough profile multiplies it.
COUNT = 200
#: Seconds for the operator to pick up and first reconcile every object, on a shared 2-core machine.
GRACE = 30.0
#: The longest the test waits for any object (intervals longer than half of it are held to it).
WAIT_CAP = 100.0
#: Seconds the test keeps watching after every object is terminal (repeats show up here).
QUIET = 8.0
#: The Artifactories CleanupPolicies share: prefix → version.
POLICY_JFROGS = {"j129": "7.129.0", "j117": "7.117.5", "j100": "7.100.0"}
#: Keys that already exist in each of them (adopt, ObserveOnly and conflicts meet these).
EXISTING_KEYS = ("abc", "proj-stale", "other-stale")
PRUNE_PACE = 0.02  # seconds per filestore directory: a whole prune takes about 5 s
SC_PROCESSING = 4.0  # seconds the latest SourceCraft run (run-2) is still processing
PLURALS = {"CleanupPolicy": "cleanuppolicies", "StoragePrune": "storageprunes"}
PLURALS["ArtifactStreamSync"] = "artifactstreamsyncs"
UNEXPECTED = re.compile(r"reconcile failed unexpectedly|Traceback")


# Generation: hypothesis draws, the API server judges.

SPECS = st.one_of(
    s.operated_policies(st.sampled_from(sorted(POLICY_JFROGS)).flatmap(s.connections)),
    s.operated_policies(st.sampled_from(sorted(POLICY_JFROGS)).flatmap(s.connections)),
    s.storage_prunes(s.connections("prune")),
    # Admission refuses most of these (two sources, neither, empty names...): draw them more often.
    *([s.ARTIFACT_STREAM_SYNCS] * 4),
)


@dataclass
class Generated:
    admitted: list[dict[str, Any]] = field(default_factory=list)
    refused: collections.Counter[str] = field(default_factory=collections.Counter)
    names: set[tuple[str, str]] = field(default_factory=set)


def dry_run(client: httpx.Client, ns: str, obj: dict[str, Any]) -> str | None:
    """None when the API server admits ``obj`` (server-side dry run), else its refusal message."""
    plural = PLURALS[obj["kind"]]
    res = client.post(f"/apis/{s.GROUP_VERSION}/namespaces/{ns}/{plural}", params={"dryRun": "All"}, json=obj)
    if res.status_code == 201:
        return None
    assert res.status_code == 422, f"unexpected answer {res.status_code}: {res.text}"
    return str(res.json().get("message", res.text))


def unique_name(gen: Generated, obj: dict[str, Any]) -> None:
    """Keep a generated name (its derived key is part of the test) unless taken: then suffix it."""
    kind, name = obj["kind"], obj["metadata"]["name"]
    if (kind, name) in gen.names:
        name = f"{name[:50].rstrip('.-')}-{len(gen.names)}"
    gen.names.add((kind, name))
    obj["metadata"]["name"] = name


def generate(client: httpx.Client, ns: str, count: int) -> Generated:
    gen = Generated()

    @settings(
        max_examples=count * 12,
        database=None,
        phases=[Phase.generate],
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(SPECS)
    def draw(obj: dict[str, Any]) -> None:
        if len(gen.admitted) >= count:
            return
        if obj["kind"] != "CleanupPolicy":
            obj["metadata"]["name"] = f"{obj['kind'].lower()}-{len(gen.names)}"
        unique_name(gen, obj)
        refusal = dry_run(client, ns, obj)
        if refusal is None:
            gen.admitted.append(obj)
        else:
            gen.refused[obj["kind"]] += 1

    draw()
    return gen


# The world the specs meet: simulators, Secrets, and resolved placeholders.


def prefix_of(obj: dict[str, Any], index: int) -> str:
    """The simulator mount an object talks to."""
    spec = obj["spec"]
    if obj["kind"] == "CleanupPolicy":
        return str(spec["connection"]["url"]).rsplit("/", 1)[-1]
    if obj["kind"] == "StoragePrune":
        return f"p{index}"
    return f"h{index}" if "harness" in spec else f"s{index}"


def build_world(objs: list[dict[str, Any]], ca: SimulatorCA) -> SimulatorServer:
    server = SimulatorServer(ssl_context=ca.server_context())
    for prefix, version in POLICY_JFROGS.items():
        j = JFrogSimulator()
        j.version = version
        for key in EXISTING_KEYS:
            j.seed_policy(
                {
                    "key": key,
                    "description": "made by hand",
                    "enabled": True,
                    "searchCriteria": {**s.BASIC, "keepLastNVersions": 2},
                }
            )
        server.mount(prefix, j)
    for i, obj in enumerate(objs):
        prefix = prefix_of(obj, i)
        if prefix.startswith("p"):
            j = JFrogSimulator()
            j.prune_seconds_per_directory = PRUNE_PACE
            server.mount(prefix, j)
        elif prefix.startswith("h"):
            h = HarnessSimulator()
            for stream, type_ in s.HARNESS_STREAMS.items():
                h.add_stream("acc1", stream, type_)
            server.mount(prefix, h)
        elif prefix.startswith("s"):
            sc = SourceCraftSimulator()
            sc.add_run(
                "acme",
                "web",
                "run-1",
                workflow="build",
                task="package",
                cube="publish",
                artifacts=["out/app.tar", ("out/docs.tar", "failed")],
                created_at=time.time() - 600,
            )
            sc.add_run(
                "acme",
                "web",
                "run-2",
                workflow="build",
                task="package",
                cube="publish",
                artifacts=["out/app.tar"],
                processing_seconds=SC_PROCESSING,
            )
            server.mount(prefix, sc)
    return server.start_in_thread()


def resolve(objs: list[dict[str, Any]], server: SimulatorServer) -> None:
    """Point every placeholder URL at its (https) simulator, and a source that names no CA at the
    simulators' CA (``sim-ca``; a generated CA reference is kept); requested-at tokens become times."""
    base = server.origin()
    later = str(int(time.time()) + 5)
    yesterday = (dt.datetime.now(dt.UTC) - dt.timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    for i, obj in enumerate(objs):
        spec, prefix = obj["spec"], f"{base}/{prefix_of(obj, i)}"
        for source in ("connection", "harness", "sourceCraft"):
            if source in spec:
                spec[source]["url"] = prefix
                spec[source].setdefault("caSecretRef", dict(SIM_CA_REF))
        annotations = obj["metadata"].get("annotations") or {}
        if annotations.get(s.REQUESTED_AT) == "future":
            annotations[s.REQUESTED_AT] = later
        elif annotations.get(s.REQUESTED_AT) == "yesterday":
            annotations[s.REQUESTED_AT] = yesterday


# What the objects may do: periods, deadlines, allowed calls.


def seconds(text: str | None, default: str) -> float:
    return parse_duration(text or default)


def requested(obj: dict[str, Any]) -> bool:
    """Whether the object carries a requested-at value the operator should act on (a time after creation)."""
    value = (obj["metadata"].get("annotations") or {}).get(s.REQUESTED_AT, "")
    return value.isdigit() and int(value) > time.time() - 3600 and not obj["spec"].get("suspend")


def period(obj: dict[str, Any]) -> float:
    """One 'interval' of the object: how long one round of its work may take, vendor time included."""
    spec = obj["spec"]
    if obj["kind"] == "CleanupPolicy":
        value = seconds(spec.get("interval"), "10m")
        if requested(obj):
            value = max(value, seconds((spec.get("onDemandRun") or {}).get("pollInterval"), "10s") + 1.0)
        return value
    if obj["kind"] == "StoragePrune":
        start = int(spec.get("startFromDirectory") or "00", 16)
        return seconds(spec.get("pollInterval"), "15s") + (256 - start) * PRUNE_PACE
    value = seconds(spec.get("interval"), "10m")
    if "sourceCraft" in spec:
        value += SC_PROCESSING
    return value


def deadline(obj: dict[str, Any]) -> float:
    """Seconds after the apply by which the object must be terminal."""
    return min(GRACE + 2 * period(obj), WAIT_CAP)


def terminal(obj: dict[str, Any]) -> bool:
    status = obj.get("status") or {}
    if status.get("observedGeneration") != obj["metadata"].get("generation"):
        return False
    if is_true(obj, "Stalled") or is_true(obj, "Ready"):
        return True
    reconciling = condition(obj, "Reconciling")
    return bool(obj["spec"].get("suspend")) and reconciling.get("reason") == "Suspended"


def ticks(schedule: str | None, start: float, end: float) -> int:
    """Schedule ticks in [start, end] (wall time)."""
    if not schedule:
        return 0
    cron, n = Cron.parse(schedule), 0
    t = dt.datetime.fromtimestamp(start, dt.UTC) - dt.timedelta(seconds=1)
    while (t := cron.next_after(t)).timestamp() <= end and n < 1000:
        n += 1
    return n


def policy_key(obj: dict[str, Any]) -> str:
    spec = obj["spec"]
    return derive_key(obj["metadata"]["name"], spec.get("policyKey"), spec.get("projectKey"))


# The test.


@dataclass
class Watch:
    """What the test saw of one object while waiting."""

    obj: dict[str, Any]
    prefix: str
    last: dict[str, Any] | None = None
    #: When the operator was first seen at work on it (any status): the deadline counts from there,
    #: so a machine too loaded to reach every object quickly is not taken for a loop.
    seen_at: float | None = None
    terminal_at: float | None = None
    ready_at: float | None = None

    def since(self, applied: float) -> float:
        return self.seen_at if self.seen_at is not None else applied


@pytest.fixture
def apiserver(control_plane: ControlPlane) -> Iterator[httpx.Client]:
    ctx = ssl.create_default_context(cafile=str(control_plane.workdir / "certs" / "apiserver.crt"))
    with httpx.Client(
        base_url=control_plane.url,
        verify=ctx,
        headers={"Authorization": f"Bearer {control_plane.token}"},
        timeout=30.0,
    ) as client:
        yield client


def list_all(kube: Kube) -> dict[tuple[str, str], dict[str, Any]]:
    plurals = ",".join(f"{p}.{GROUP}" for p in PLURALS.values())
    out = kube.kubectl("get", plurals, "-n", kube.ns, "-o", "json").stdout
    return {(o["kind"], o["metadata"]["name"]): o for o in json.loads(out)["items"]}


def test_fuzz_admitted_specs(
    isolated: tuple[Kube, Operator], apiserver: httpx.Client, tmp_path: Path, sim_ca: SimulatorCA
) -> None:
    kube, op = isolated
    profile = settings.default
    count = COUNT if profile is None or profile.derandomize else COUNT * 3
    gen = generate(apiserver, kube.ns, count)
    kinds = collections.Counter(o["kind"] for o in gen.admitted)
    summary = f"admitted {dict(kinds)}, refused at admission {dict(gen.refused)}"
    assert len(gen.admitted) == count, f"the strategies admitted too few specs: {summary}"
    # Every kind in numbers: at least one in forty (the stricter URL and CA rules refuse most of the
    # generated ArtifactStreamSyncs at admission; a fresh clone drew 15 of 200, 8 Harness, 7 SourceCraft).
    assert len(kinds) == 3 and min(kinds.values()) >= count // 40, summary
    sources = collections.Counter(
        next(k for k in ("harness", "sourceCraft") if k in o["spec"])
        for o in gen.admitted
        if o["kind"] == "ArtifactStreamSync"
    )
    assert min(sources.get("harness", 0), sources.get("sourceCraft", 0)) >= 3, sources

    server = build_world(gen.admitted, sim_ca)
    try:
        resolve(gen.admitted, server)
        watches = {
            (o["kind"], o["metadata"]["name"]): Watch(o, prefix_of(o, i)) for i, o in enumerate(gen.admitted)
        }
        for name, data in s.SECRETS.items():
            kube.secret(name, **data)
        op.start()
        manifest = {"apiVersion": "v1", "kind": "List", "items": gen.admitted}
        kube.kubectl("apply", "--server-side", "-n", kube.ns, "-f", "-", input=yaml.safe_dump(manifest))
        applied = time.time()

        # Watch until every object is terminal (or its deadline passed), then QUIET seconds more.
        all_terminal_at: float | None = None
        while True:
            # Taken after the list returns: a vendor call logged before this moment may be what
            # brought the status seen (the list itself can take seconds on a loaded machine).
            listed = list_all(kube)
            now = time.time()
            for ref, obj in listed.items():
                w = watches.get(ref)
                if w is None:
                    continue
                w.last = obj
                if w.seen_at is None and obj.get("status"):
                    w.seen_at = now
                if w.terminal_at is None and terminal(obj):
                    w.terminal_at = now
                if w.ready_at is None and is_true(obj, "Ready"):
                    w.ready_at = now
            waiting = [w for w in watches.values() if w.terminal_at is None]
            overdue = all(now - w.since(applied) > deadline(w.obj) for w in waiting)
            if all_terminal_at is None and (not waiting or overdue or now - applied > 2 * WAIT_CAP):
                all_terminal_at = now
            if all_terminal_at is not None and now - all_terminal_at >= QUIET:
                break
            time.sleep(1.0)
        ended = time.time()
        calls = server.calls.calls()
    finally:
        op.stop()
        server.stop_thread()

    problems: dict[str, list[str]] = collections.defaultdict(list)
    logs = op.logs()
    for match in UNEXPECTED.finditer(logs):
        start = logs.rfind("\n", 0, max(0, match.start() - 1500)) + 1
        problems["operator log"].append(logs[start : match.end() + 1500])
        if len(problems["operator log"]) >= 5:
            break

    for ref, w in watches.items():
        limit = deadline(w.obj)
        if w.terminal_at is None or w.terminal_at - w.since(applied) > limit:
            status = (w.last or {}).get("status")
            problems[f"{ref[0]}/{ref[1]}"].append(
                f"not terminal within {limit:.0f}s of the operator's first status"
                f" (seen terminal after {(w.terminal_at or ended) - w.since(applied):.0f}s);"
                f" status: {json.dumps(status)}"
            )

    by_prefix: dict[str, list[Call]] = collections.defaultdict(list)
    for c in calls:
        by_prefix[c.path.split("/", 2)[1]].append(c)
    check_policies(watches, by_prefix, problems)
    check_prunes(watches, by_prefix, problems, applied, ended)
    check_harness(watches, by_prefix, problems, ended)

    report: dict[str, Any] = {}
    for ref, w in watches.items():
        name = f"{ref[0]}/{ref[1]}"
        if name not in problems:
            continue
        key = policy_key(w.obj) if ref[0] == "CleanupPolicy" else ""
        report[name] = {
            "problems": problems[name],
            "spec": w.obj,
            "status": (w.last or {}).get("status"),
            "calls": [
                f"{c.at - applied:7.2f}s {c.method} {c.path} {c.query or ''} -> {c.status}"
                for c in by_prefix.get(w.prefix, [])
                if not key or re.search(f"/{re.escape(key)}(/|$)", c.path)
            ][:80],
        }
    (tmp_path / "fuzz-report.json").write_text(json.dumps(report, indent=2, default=str))
    (tmp_path / "fuzz-operator.log").write_text(logs)
    # What the objects ended as, by kind: the run is no proof if nothing got as far as the vendor.
    outcomes: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for (kind, _), w in watches.items():
        ready, stalled = condition(w.last or {}, "Ready"), condition(w.last or {}, "Stalled")
        shown = "Stalled" if stalled.get("status") == "True" else f"Ready={ready.get('status')}"
        outcomes[kind][f"{shown}/{(stalled if shown == 'Stalled' else ready).get('reason')}"] += 1
    (tmp_path / "fuzz-summary.json").write_text(
        json.dumps({"summary": summary, "outcomes": outcomes}, indent=2)
    )
    summary += f"; outcomes {json.dumps(outcomes)}"
    for kind, counter in outcomes.items():
        ready_count = sum(n for k, n in counter.items() if k.startswith("Ready=True"))
        assert ready_count >= sum(counter.values()) // 5, f"too few {kind}s got Ready: {summary}"
    lines = [f"{ref}: {p}" for ref, ps in problems.items() for p in ps]
    assert not problems, (
        f"{summary}; {len(problems)} objects (or the log) with problems, full report in"
        f" {tmp_path / 'fuzz-report.json'}:\n" + "\n".join(line[:1500] for line in lines[:40])
    )


def check_policies(
    watches: dict[tuple[str, str], Watch], by_prefix: dict[str, list[Call]], problems: dict[str, list[str]]
) -> None:
    """Per (Artifactory, key): one successful create at most, nothing written once Ready, one run."""
    owners: dict[tuple[str, str], list[Watch]] = collections.defaultdict(list)
    for w in watches.values():
        if w.obj["kind"] == "CleanupPolicy":
            owners[(w.prefix, policy_key(w.obj))].append(w)
    for (prefix, key), ws in owners.items():
        base = f"/{prefix}/artifactory/api/cleanup/packages/policies/{key}"
        mine = [c for c in by_prefix.get(prefix, []) if c.path == base or c.path.startswith(base + "/")]
        refs = ", ".join(f"CleanupPolicy/{w.obj['metadata']['name']}" for w in ws)
        creates = [c for c in mine if c.method == "POST" and c.path == base]
        if sum(1 for c in creates if 200 <= c.status < 300) > 1 or len(creates) > len(ws):
            problems[f"CleanupPolicy/{ws[0].obj['metadata']['name']}"].append(
                f"key {key} on {prefix} ({refs}): {len(creates)} create POSTs"
                f" (statuses {[c.status for c in creates]})"
            )
        ready_at = min((w.ready_at for w in ws if w.ready_at is not None), default=None)
        if ready_at is not None:
            late = [
                c
                for c in mine
                if c.at > ready_at
                and (
                    (c.method == "PUT" and c.path == base)
                    or (c.method == "POST" and not c.path.endswith("/run"))
                )
            ]
            if late:
                problems[f"CleanupPolicy/{ws[0].obj['metadata']['name']}"].append(
                    f"key {key} on {prefix} ({refs}): {len(late)} writes after it was seen Ready"
                    f" (spec unchanged): {[(c.method, c.path.rsplit('/', 1)[-1], c.status) for c in late][:10]}"
                )
        runs = [c for c in mine if c.method == "PUT" and c.path == base + "/run"]
        if len(runs) > 1:
            problems[f"CleanupPolicy/{ws[0].obj['metadata']['name']}"].append(
                f"key {key} on {prefix} ({refs}): {len(runs)} run PUTs for one requested-at value"
                f" (statuses {[c.status for c in runs]})"
            )


def created_at(obj: dict[str, Any], default: float) -> float:
    text = (obj.get("metadata") or {}).get("creationTimestamp")
    if not text:
        return default
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def check_prunes(
    watches: dict[tuple[str, str], Watch],
    by_prefix: dict[str, list[Call]],
    problems: dict[str, list[str]],
    applied: float,
    ended: float,
) -> None:
    """Per StoragePrune (its own Artifactory): the starts its creation, request and ticks ask for."""
    for ref, w in watches.items():
        if w.obj["kind"] != "StoragePrune":
            continue
        spec = w.obj["spec"]
        mine = by_prefix.get(w.prefix, [])
        starts = [c for c in mine if c.method == "POST" and c.path.endswith("/prune/start")]
        stops = [c for c in mine if c.method == "POST" and c.path.endswith("/prune/stop")]
        allowed = 0
        if not spec.get("suspend"):
            # Ticks from the object's creation (the operator's reference), not from when the
            # apply returned: on a loaded machine a tick can fall between the two.
            created = created_at(w.last or w.obj, applied)
            allowed = (
                ticks(spec.get("schedule"), created, ended) if spec.get("schedule") else 1
            ) + requested(w.obj)
        if len(starts) > allowed or stops:
            problems[f"{ref[0]}/{ref[1]}"].append(
                f"{len(starts)} prune starts (allowed {allowed}: creation or ticks, plus one per request),"
                f" {len(stops)} stops; statuses {[c.status for c in starts]}"
            )


def check_harness(
    watches: dict[tuple[str, str], Watch],
    by_prefix: dict[str, list[Call]],
    problems: dict[str, list[str]],
    ended: float,
) -> None:
    """Per Harness stream: no clean-up sooner than the interval (or next tick), none after a permanent answer."""
    for ref, w in watches.items():
        spec = w.obj["spec"]
        if w.obj["kind"] != "ArtifactStreamSync" or "harness" not in spec:
            continue
        per_stream: dict[str, list[Call]] = collections.defaultdict(list)
        for c in by_prefix.get(w.prefix, []):
            body = c.json if isinstance(c.json, dict) else {}
            stream = ((body.get("variables") or {}).get("input") or {}).get("artifactStreamId")
            if c.method == "POST" and stream is not None:
                per_stream[str(stream)].append(c)
        interval = seconds(spec.get("interval"), "10m")
        for stream, cs in per_stream.items():
            ok = cs  # every answer counts: a refusal repeated is a repeat too
            if spec.get("schedule"):
                allowed = 1 + ticks(spec["schedule"], ok[0].at if ok else ended, ended)
            else:
                min_gap = max(0.5, 0.85 * interval - 1.0)  # jitter, and lastSyncedAt kept to the second
                allowed = 1 + int((ended - (ok[0].at if ok else ended)) / min_gap)
            permanent = stream not in s.HARNESS_STREAMS or s.HARNESS_STREAMS[stream] == "JENKINS"
            if permanent and ok and ok[0].status == 200:
                allowed = 1  # Harness answered not found or unsupported: permanent for this spec
            if len(ok) > allowed:
                gaps = [round(b.at - a.at, 2) for a, b in itertools.pairwise(ok)]
                problems[f"{ref[0]}/{ref[1]}"].append(
                    f"stream {stream!r}: {len(ok)} artifactCleanup calls, allowed {allowed}"
                    f" (interval {spec.get('interval')}, schedule {spec.get('schedule')}); gaps {gaps[:20]}"
                )
