"""Never delete, run or prune what nobody asked for (issue 10).

Each test drives the operator as users do (kubectl against a real kube-apiserver, the operator as a
subprocess) and takes the simulator's call log as the evidence: no write, run, start or stop that
the test did not ask for.
"""

from __future__ import annotations

import json
import time
from typing import Any

from cleanup_operator.api.common import CREATE_PENDING, FINALIZER
from cleanup_operator.testing.simulators import Fault, SimulatorServer

from .conftest import (
    CPOL,
    SPRUNE,
    Kube,
    calls,
    condition,
    harness,
    hsync,
    is_true,
    jfrog,
    policy,
    prune,
    ready,
    resync,
    starts,
    unique,
    wait_until,
)

ASS = "artifactstreamsyncs"
REQUESTED_AT = "cleanup.artifacts.dev/requested-at"
RECONCILE_AT = "cleanup.artifacts.dev/reconcile-at"


def now_value() -> str:
    """A requested-at value as the README says to set it: the current time in Unix seconds."""
    return str(int(time.time()))


def annotations_of(obj: dict[str, Any] | None) -> dict[str, str]:
    assert obj is not None, "the object is gone"
    return dict(obj["metadata"].get("annotations") or {})


def writes(sim: SimulatorServer, key: str) -> list[tuple[str, str]]:
    """Every JFrog call naming policy ``key`` that is not a read."""
    return [c for c in calls(sim, key) if c[0] != "GET"]


# CleanupPolicy: only a confirmed create makes a policy ours.


def test_refused_create_is_not_ownership(kube: Kube, sim: SimulatorServer) -> None:
    """A 400 on create, then another team creates the key: we never PUT over it nor DELETE it."""
    kube.secret("jfrog", token="test-token")
    name = unique("refused")
    j = jfrog(sim)
    jfrog(sim).faults.add(
        Fault(
            "status",
            path=f"/policies/{name}$",
            method="POST",
            status=400,
            body={"errors": [{"status": 400, "message": "Invalid policy"}]},
        )
    )
    kube.apply(policy(sim, name, interval="1h"))
    obj = kube.wait_for(CPOL, name, lambda o: is_true(o, "Stalled", "VendorRejected"), what="VendorRejected")
    assert not obj["status"].get("managed") and not obj["status"].get("ownedPolicy")
    assert CREATE_PENDING not in annotations_of(kube.get(CPOL, name))  # a refusal: nothing was created
    theirs = {
        "key": name,
        "description": "another team's",
        "enabled": True,
        "cronExp": "0 0 2 ? * SAT",
        "searchCriteria": {
            "packageTypes": ["npm"],
            "repos": ["npm-local"],
            "includedPackages": ["**"],
            "keepLastNVersions": 3,
        },
    }
    j.seed_policy(theirs)
    kube.annotate(CPOL, name, **{RECONCILE_AT: now_value()})
    obj = kube.wait_for(CPOL, name, lambda o: is_true(o, "Stalled", "AlreadyExists"), what="AlreadyExists")
    assert "left untouched" in condition(obj, "Stalled")["message"]
    kube.delete(CPOL, name)
    kube.wait_gone(CPOL, name)
    assert writes(sim, name) == [("POST", f"/jfrog/artifactory/api/cleanup/packages/policies/{name}")]
    stored = j.policy(name)
    assert stored is not None and stored["description"] == "another team's" and stored["enabled"] is True


def test_create_that_loses_the_race_is_not_ownership(kube: Kube, sim: SimulatorServer) -> None:
    """Someone else's POST wins between our GET and our POST (PolicyExists): no write, no delete."""
    kube.secret("jfrog", token="test-token")
    name = unique("race")
    j = jfrog(sim)
    # Our GET answers 404 (not yet there); by the time our POST lands the other team has created it.
    j.faults.add(
        Fault(
            "status",
            path=f"/policies/{name}$",
            method="GET",
            status=404,
            body={"errors": [{"status": 404, "message": "not found"}]},
            times=None,
        )
    )
    j.seed_policy(
        {
            "key": name,
            "description": "theirs",
            "searchCriteria": {
                "packageTypes": ["npm"],
                "repos": ["npm-local"],
                "includedPackages": ["**"],
                "keepLastNVersions": 1,
            },
        }
    )
    kube.apply(policy(sim, name, interval="1h"))
    obj = kube.wait_for(CPOL, name, lambda o: is_true(o, "Stalled", "AlreadyExists"), what="AlreadyExists")
    assert not obj["status"].get("managed") and not obj["status"].get("createPending")
    assert "refused to create" in condition(obj, "Stalled")["message"]
    j.faults.clear()
    kube.delete(CPOL, name)
    kube.wait_gone(CPOL, name)
    assert writes(sim, name) == [("POST", f"/jfrog/artifactory/api/cleanup/packages/policies/{name}")]
    assert (j.policy(name) or {}).get("description") == "theirs"


def test_lost_create_answer_is_ours_only_if_exactly_what_we_sent(isolated: Any, sim: SimulatorServer) -> None:
    """The operator dies after Artifactory created the policy, before it saw the answer (SIGKILL)."""
    kube, op = isolated
    kube.secret("jfrog", token="test-token")
    j = jfrog(sim)
    mine, theirs = unique("lost"), unique("lostx")
    op.start()
    for name in (mine, theirs):
        jfrog(sim).faults.add(Fault("late", path=f"/policies/{name}$", method="POST", delay=4.0))
        kube.apply(policy(sim, name, interval="1h"))
    wait_until(lambda: j.policy(mine) and j.policy(theirs), "both creates carried out")
    for name in (mine, theirs):  # recorded with the finalizer, before the POST was sent
        obj = kube.get(CPOL, name)
        assert obj is not None and FINALIZER in obj["metadata"]["finalizers"], obj
        assert json.loads(annotations_of(obj)[CREATE_PENDING])["key"] == name, obj["metadata"]
    op.kill()
    jfrog(sim).faults.clear()
    # While the operator was down, someone changed the second one: it is no longer what we sent.
    changed = dict(j.policy(theirs) or {})
    changed["description"] = "edited by someone else"
    j.seed_policy(changed)
    op.start()
    obj = kube.wait_for(CPOL, mine, ready, what="Ready after restart")
    assert obj["status"]["managed"] is True
    assert obj["status"]["ownedPolicy"]["origin"] == "Created"
    other = kube.wait_for(
        CPOL, theirs, lambda o: is_true(o, "Stalled", "AlreadyExists"), what="AlreadyExists"
    )
    assert not other["status"].get("managed") and not other["status"].get("ownedPolicy")
    # The record of a create that found someone else's policy goes: it must not stand in an adopt's way.
    assert CREATE_PENDING not in annotations_of(kube.get(CPOL, theirs))
    # The held answers are logged once given (to no one): one POST each, the enablement of ours only.
    wait_until(lambda: len(writes(sim, theirs)) == 1, "the held create answered")
    wait_until(lambda: len(writes(sim, mine)) >= 2, "the held create answered")
    assert sorted(p.rsplit("/", 1)[-1] for m, p in writes(sim, mine) if m == "POST") == sorted(
        [mine, "enablement"]
    )
    assert len(writes(sim, mine)) == 2
    assert [m for m, _ in writes(sim, theirs)] == ["POST"]
    kube.delete(CPOL, theirs)
    kube.wait_gone(CPOL, theirs)
    assert (j.policy(theirs) or {}).get("description") == "edited by someone else"
    kube.delete(CPOL, mine)
    kube.wait_gone(CPOL, mine)
    assert j.policy(mine) is None


def test_adopt_is_used_once_and_a_key_change_is_refused(kube: Kube, sim: SimulatorServer) -> None:
    """A leftover adopt annotation never takes over another team's policy after a key edit."""
    kube.secret("jfrog", token="test-token")
    j = jfrog(sim)
    name, other = unique("adopt"), unique("team")
    base = {
        "packageTypes": ["docker"],
        "repos": ["docker-local"],
        "includedPackages": ["**"],
        "createdBeforeInMonths": 6,
    }
    for key in (name, other):
        j.seed_policy({"key": key, "description": f"{key} as found", "searchCriteria": dict(base)})
    manifest = policy(sim, name, interval="1h")
    manifest["metadata"]["annotations"] = {"cleanup.artifacts.dev/adopt": "true"}
    kube.apply(manifest)
    obj = kube.wait_for(CPOL, name, ready, what="adopted")
    assert obj["status"]["ownedPolicy"] == {
        "url": sim.url("jfrog").rstrip("/").lower(),
        "key": name,
        "origin": "Adopted",
    }
    assert obj["status"]["adoptedPolicy"]["key"] == name
    # The key cannot move: admission says to create a new resource instead.
    moved = policy(sim, name, interval="1h", policyKey=other)
    moved["metadata"]["annotations"] = {"cleanup.artifacts.dev/adopt": "true"}
    res = kube.apply(moved, check=False)
    assert res.returncode != 0 and "create a new" in res.stderr, res.stderr
    kube.delete(CPOL, name)
    kube.wait_gone(CPOL, name)
    assert not writes(sim, other)
    assert (j.policy(other) or {}).get("description") == f"{other} as found"
    assert j.policy(name) is None  # the adopted one was ours to delete


def test_create_then_delete_at_once_leaves_nothing_behind(kube: Kube, sim: SimulatorServer) -> None:
    """An Argo CD prune or Helm rollback right after a create: the policy is deleted, not orphaned."""
    kube.secret("jfrog", token="test-token")
    j = jfrog(sim)
    names = [unique("flash") for _ in range(3)]
    for n, name in enumerate(names):
        # The create is in flight when the delete arrives (the first one even before the create).
        jfrog(sim).faults.add(Fault("latency", path=f"/policies/{name}$", method="POST", delay=1.5))
        kube.apply(policy(sim, name, interval="1h"))
        if n:
            kube.wait_for(CPOL, name, lambda o: CREATE_PENDING in annotations_of(o), what="create sent")
        kube.delete(CPOL, name)
    for name in names:
        kube.wait_gone(CPOL, name)
    for name in names:
        assert j.policy(name) is None, f"{name} was orphaned in Artifactory: {calls(sim, name)}"
        made = [m for m, p in writes(sim, name) if p.endswith(f"/{name}")]
        assert made in ([], ["POST", "DELETE"]), made


# CleanupPolicy: a retry never runs, a request is acted on once.


def test_reconcile_at_retries_without_running(kube: Kube, sim: SimulatorServer) -> None:
    """Fixing credentials and asking for a retry re-syncs; it never starts a (real) run."""
    kube.secret("jfrog", token="wrong")
    name = unique("retry")
    kube.apply(policy(sim, name, interval="1h", onDemandRun={"dryRun": False, "pollInterval": "1s"}))
    kube.wait_for(CPOL, name, lambda o: is_true(o, "Stalled", "AuthenticationFailed"), what="auth failure")
    kube.secret("jfrog", token="test-token")
    value = now_value()
    kube.annotate(CPOL, name, **{RECONCILE_AT: value})
    # The Secret's change alone may already have retried it (the Secret watch): wait for the answer
    # to the reconcile-at itself.
    obj = kube.wait_for(
        CPOL,
        name,
        lambda o: ready(o) and o["status"].get("lastHandledReconcileAt") == value,
        timeout=30,
        what="Ready after reconcile-at",
    )
    assert not sim.calls.calls(vendor="jfrog", method="PUT", path=f"/{name}/run$")
    assert not obj["status"].get("lastRun")


def test_request_while_suspended_is_refused_and_never_fires_later(kube: Kube, sim: SimulatorServer) -> None:
    kube.secret("jfrog", token="test-token")
    name = unique("susp")
    kube.apply(policy(sim, name, interval="1h"))
    kube.wait_for(CPOL, name, ready, what="Ready")
    kube.apply(policy(sim, name, interval="1h", suspend=True))
    kube.wait_for(
        CPOL, name, lambda o: condition(o, "Reconciling").get("reason") == "Suspended", what="suspended"
    )
    value = now_value()
    kube.annotate(CPOL, name, **{REQUESTED_AT: value})
    obj = kube.wait_for(
        CPOL, name, lambda o: o["status"].get("lastHandledRequestedAt") == value, what="request recorded"
    )
    assert obj["status"]["lastRun"]["state"] == "Refused"
    assert "suspend" in obj["status"]["lastRun"]["message"]
    kube.wait_event(name, "RequestRefused")
    kube.apply(policy(sim, name, interval="1h", suspend=False))
    kube.wait_for(CPOL, name, lambda o: ready(o) and o["metadata"]["generation"] == 3, what="resumed")
    obj = kube.wait_for(CPOL, name, ready, what="Ready after resume")
    assert obj["status"]["lastRun"]["state"] == "Refused"
    assert not sim.calls.calls(vendor="jfrog", method="PUT", path=f"/{name}/run$")


def test_a_request_older_than_the_resource_is_not_run_again(kube: Kube, sim: SimulatorServer) -> None:
    """A resource re-created from Git or restored from a backup keeps its annotation, not its status."""
    kube.secret("jfrog", token="test-token")
    name = unique("restored")
    manifest = policy(sim, name, interval="1h")
    manifest["metadata"]["annotations"] = {REQUESTED_AT: str(int(time.time()) - 86400)}
    kube.apply(manifest)
    obj = kube.wait_for(
        CPOL, name, lambda o: (o["status"].get("lastRun") or {}).get("state") == "Refused", what="refused"
    )
    assert "older than this resource" in obj["status"]["lastRun"]["message"]
    resync(kube, CPOL, name)
    assert not sim.calls.calls(vendor="jfrog", method="PUT", path=f"/{name}/run$")
    # A fresh request runs, once.
    kube.annotate(CPOL, name, **{REQUESTED_AT: now_value()})
    kube.wait_for(
        CPOL, name, lambda o: (o["status"].get("lastRun") or {}).get("state") == "Succeeded", what="run"
    )
    assert len(sim.calls.calls(vendor="jfrog", method="PUT", path=f"/{name}/run$")) == 1


def test_change_during_a_run_start_does_not_rewind_status(kube: Kube, sim: SimulatorServer) -> None:
    """A change that arrives while the run is being started reruns from the status that run wrote."""
    kube.secret("jfrog", token="test-token")
    name = unique("rerun")
    kube.apply(policy(sim, name, interval="1h"))
    kube.wait_for(CPOL, name, ready, what="Ready")
    jfrog(sim).faults.add(Fault("latency", path=f"/{name}/run$", method="PUT", delay=1.5))
    kube.annotate(CPOL, name, **{REQUESTED_AT: now_value()})
    kube.wait_for(
        CPOL, name, lambda o: (o["status"].get("lastRun") or {}).get("state") == "Starting", what="Starting"
    )
    # Any change that wakes the loop (here an adopt annotation, which is nothing to adopt) reruns it.
    kube.annotate(CPOL, name, **{"cleanup.artifacts.dev/adopt": "false"})
    obj = kube.wait_for(
        CPOL, name, lambda o: (o["status"].get("lastRun") or {}).get("state") == "Succeeded", what="run"
    )
    assert len(sim.calls.calls(vendor="jfrog", method="PUT", path=f"/{name}/run$")) == 1
    assert obj["status"]["lastRun"]["runId"] is not None
    assert not kube.events(name, "RunFound"), "the rerun took the run for a crashed start"


def test_delete_during_a_cron_run_disables_stops_and_deletes(kube: Kube, sim: SimulatorServer) -> None:
    """A run the policy's own cron started does not hold the deletion until it ends."""
    kube.secret("jfrog", token="test-token")
    name = unique("cronrun")
    j = jfrog(sim)
    kube.apply(policy(sim, name, interval="1h", cronExp="0 0 3 ? * SUN"))
    kube.wait_for(CPOL, name, ready, what="Ready")
    run_id = j.set_running(name, seconds=600.0)  # as if Artifactory's cron had started it
    kube.delete(CPOL, name)
    kube.wait_gone(CPOL, name, timeout=30)
    assert j.policy(name) is None
    order = [
        (c.method, c.path.rsplit("/", 1)[-1], c.json)
        for c in sim.calls.calls(vendor="jfrog")
        if c.method != "GET" and (name in c.path or c.path.endswith(f"/runs/{run_id}"))
    ]
    assert order[-3:] == [
        ("POST", "enablement", {"enabled": False}),
        ("PUT", str(run_id), {"action": "stop"}),
        ("DELETE", name, None),
    ], order


# StoragePrune: only a confirmed start is ours; never started twice, whatever the clocks say.


def test_prune_begun_after_our_start_failed_is_not_ours(kube: Kube, sim: SimulatorServer) -> None:
    """Artifactory's clock 5 minutes ahead; our start fails (503), another admin starts one."""
    kube.secret("jfrog", token="test-token")
    j = jfrog(sim)
    j.wall_skew = 300.0
    j.prune_seconds_per_directory = 0.5
    jfrog(sim).faults.add(Fault("status", path="/prune/start$", method="POST", status=503, times=None))
    kube.apply(prune(sim, "theirs", dryRun=False))
    kube.wait_for(
        SPRUNE,
        "theirs",
        lambda o: o["status"].get("phase") == "Pending" and condition(o, "Synced").get("status") == "False",
        what="start failed",
    )
    j.start_prune(dry_run=False)  # another admin's
    jfrog(sim).faults.clear()
    obj = kube.wait_for(SPRUNE, "theirs", lambda o: o["status"].get("phase") == "Running", what="following")
    assert obj["status"].get("startedByUs") is not True
    kube.delete(SPRUNE, "theirs")
    kube.wait_gone(SPRUNE, "theirs")
    assert not sim.calls.calls(vendor="jfrog", method="POST", path="/prune/stop$"), (
        "stopped a prune that is not ours"
    )
    assert (j.prune_status() or {}).get("status") == "running"
    assert j.prune_starts == 0


def test_lost_start_answer_is_followed_never_repeated(isolated: Any, sim: SimulatorServer) -> None:
    """Artifactory's clock 5 minutes behind; the operator dies after the start, before its answer."""
    kube, op = isolated
    kube.secret("jfrog", token="test-token")
    j = jfrog(sim)
    j.wall_skew = -300.0
    j.prune_seconds_per_directory = 0.002
    jfrog(sim).faults.add(Fault("late", path="/prune/start$", method="POST", delay=4.0))
    op.start()
    kube.apply(prune(sim, "lost"))
    wait_until(lambda: j.prune_starts == 1, "the prune start carried out")
    op.kill()
    jfrog(sim).faults.clear()
    wait_until(lambda: (j.prune_status() or {}).get("status") == "finished", "the prune finished meanwhile")
    op.start()
    obj = kube.wait_for(SPRUNE, "lost", lambda o: o["status"].get("phase") == "Succeeded", what="Succeeded")
    wait_until(lambda: starts(sim) >= 1, "the held start answered")
    assert starts(sim) == 1 and j.prune_starts == 1, "started twice"
    assert obj["status"]["history"][0]["phase"] == "Succeeded"


def test_suspended_prune_starts_nothing(kube: Kube, sim: SimulatorServer) -> None:
    kube.secret("jfrog", token="test-token")
    kube.apply(prune(sim, "paused", schedule="0 4 1 1 *", suspend=True))
    kube.wait_for(SPRUNE, "paused", lambda o: o["status"].get("observedGeneration") == 1, what="observed")
    value = now_value()
    kube.annotate(SPRUNE, "paused", **{REQUESTED_AT: value})
    obj = kube.wait_for(
        SPRUNE, "paused", lambda o: o["status"].get("lastHandledRequestedAt") == value, what="refused"
    )
    assert "suspend" in obj["status"]["lastRefusal"]
    assert "refused" in condition(obj, "Reconciling")["message"]
    kube.wait_event("paused", "RequestRefused")
    kube.apply(prune(sim, "paused", schedule="0 4 1 1 *", suspend=False))
    kube.wait_for(SPRUNE, "paused", lambda o: o["status"].get("observedGeneration") == 2, what="resumed")
    resync(kube, SPRUNE, "paused")
    assert starts(sim) == 0


def test_restored_prune_does_not_prune_again(kube: Kube, sim: SimulatorServer) -> None:
    """A backup keeps the operator's annotation (the creation's prune was started) and old requests."""
    kube.secret("jfrog", token="test-token")
    j = jfrog(sim)
    j.prune_seconds_per_directory = 0.002
    kube.apply(prune(sim, "first"))
    first = kube.wait_for(SPRUNE, "first", lambda o: o["status"].get("phase") == "Succeeded", what="first")
    marker = "cleanup.artifacts.dev/creation-prune-started"
    assert marker in first["metadata"]["annotations"]
    restored = prune(sim, "restored")
    restored["metadata"]["annotations"] = {
        marker: first["metadata"]["annotations"][marker],
        REQUESTED_AT: str(int(time.time()) - 3600),
    }
    kube.apply(restored)
    obj = kube.wait_for(SPRUNE, "restored", lambda o: bool(o["status"].get("lastRefusal")), what="refused")
    assert "older than this resource" in obj["status"]["lastRefusal"]
    resync(kube, SPRUNE, "restored")
    assert starts(sim) == 1


# ArtifactStreamSync.


def test_sync_request_while_suspended_is_refused(kube: Kube, sim: SimulatorServer) -> None:
    h = harness(sim)
    h.add_stream("acc1", "docker-s", "DOCKER")
    kube.secret("harness", apiKey="test-key")
    manifest = hsync(sim, "paused", ["docker-s"], interval="1h")
    manifest["spec"]["suspend"] = True
    kube.apply(manifest)
    kube.wait_for(ASS, "paused", lambda o: o["status"].get("observedGeneration") == 1, what="observed")
    value = now_value()
    kube.annotate(ASS, "paused", **{REQUESTED_AT: value})
    obj = kube.wait_for(
        ASS, "paused", lambda o: o["status"].get("lastHandledRequestedAt") == value, what="refused"
    )
    assert "suspend" in obj["status"]["lastRefusal"]
    kube.wait_event("paused", "RequestRefused")
    assert h.cleanup_count("docker-s") == 0
    manifest["spec"]["suspend"] = False
    kube.apply(manifest)
    kube.wait_for(ASS, "paused", lambda o: is_true(o, "Ready"), what="Ready")
    resync(kube, ASS, "paused")
    assert h.cleanup_count("docker-s") == 1, "the refused request fired after the resume"
