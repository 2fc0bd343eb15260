"""Deletion guard rails (issue 15): a real run only after a dry run within the team's budget, or an
approval of that exact dry run; the simulator's call log shows every run that was started."""

from __future__ import annotations

from typing import Any

from cleanup_operator.testing.simulators import SimulatorServer

from .conftest import (
    CPOL,
    SPRUNE,
    Kube,
    condition,
    is_true,
    jfrog,
    last_run,
    now_value,
    policy,
    prune,
    ready,
    unique,
)

APPROVE = "cleanup.artifacts.dev/approve"
REQUESTED_AT = "cleanup.artifacts.dev/requested-at"


def guarded(sim: SimulatorServer, name: str, **safety: Any) -> dict[str, Any]:
    return policy(
        sim,
        name,
        interval="1h",
        onDemandRun={"dryRun": False, "pollInterval": "500ms"},
        safety=safety,
    )


def runs(sim: SimulatorServer, name: str) -> list[str]:
    """The dryRun flag of every run started for policy ``name``, in order."""
    return [c.query["dryRun"] for c in sim.calls.calls(vendor="jfrog", method="PUT", path=f"/{name}/run$")]


def held(reason: str) -> Any:
    return lambda o: is_true(o, "Stalled", reason)


def test_real_run_within_budget_follows_its_dry_run(kube: Kube, sim: SimulatorServer) -> None:
    kube.secret("jfrog", token="test-token")
    name = unique("budget")
    j = jfrog(sim)
    j.set_run_result(name, packages=4, versions=9, nbytes=123456)
    kube.apply(guarded(sim, name, maxPackages=10, maxVersions=10, maxBytes="1Mi"))
    kube.wait_for(CPOL, name, ready, what="Ready")
    kube.annotate(CPOL, name, **{REQUESTED_AT: now_value()})
    obj = kube.wait_for(
        CPOL,
        name,
        lambda o: last_run(o).get("dryRun") is False and last_run(o).get("state") == "Succeeded",
        what="real run",
    )
    st = obj["status"]
    assert runs(sim, name) == ["true", "false"]
    assert st["lastDryRun"]["packagesDeleted"] == 4 and st["lastDryRun"]["bytesDeleted"] == 123456
    assert st["lastRun"]["allowedBy"] == str(st["lastDryRun"]["runId"])
    assert "pendingApproval" not in st
    assert j.deleted(name) == (4, 9, 123456)
    kube.wait_event(name, "RealRunAllowed")
    reasons = [e["reason"] for e in kube.events(name)]
    assert "RunExceededDryRun" not in reasons
    table = kube.table(CPOL, name)
    assert (table["DRY RUN PKGS"], table["DRY RUN BYTES"], table["APPROVAL"]) == ("4", "123456", "")


def test_over_budget_holds_the_run_until_that_dry_run_is_approved(kube: Kube, sim: SimulatorServer) -> None:
    kube.secret("jfrog", token="test-token")
    name = unique("over")
    j = jfrog(sim)
    j.set_run_result(name, packages=4, versions=9, nbytes=123456)
    kube.apply(guarded(sim, name, maxPackages=3))
    kube.wait_for(CPOL, name, ready, what="Ready")
    kube.annotate(CPOL, name, **{REQUESTED_AT: now_value()})
    obj = kube.wait_for(CPOL, name, held("BudgetExceeded"), what="BudgetExceeded")
    st = obj["status"]
    dry_id = str(st["lastDryRun"]["runId"])
    message = condition(obj, "Stalled")["message"]
    assert "packages 4 > limit 3" in message and f"{APPROVE}={dry_id}" in message
    assert st["pendingApproval"]["dryRunId"] == dry_id and st["pendingApproval"]["reason"] == "BudgetExceeded"
    assert runs(sim, name) == ["true"] and j.deleted(name) == (0, 0, 0)
    kube.wait_event(name, "BudgetExceeded")
    assert kube.table(CPOL, name)["APPROVAL"] == "BudgetExceeded"
    # An approval naming another dry run is refused, and starts nothing.
    kube.annotate(CPOL, name, **{APPROVE: "999"})
    obj = kube.wait_for(
        CPOL, name, lambda o: o["status"].get("lastHandledApproval") == "999", what="approval refused"
    )
    assert "names another dry run" in obj["status"]["lastRefusal"]
    assert runs(sim, name) == ["true"]
    # Approving that dry run starts exactly one real run.
    kube.annotate(CPOL, name, **{APPROVE: dry_id})
    obj = kube.wait_for(
        CPOL,
        name,
        lambda o: last_run(o).get("dryRun") is False and last_run(o).get("state") == "Succeeded",
        what="approved run",
    )
    assert runs(sim, name) == ["true", "false"]
    assert obj["status"]["lastApprovedDryRun"] == dry_id and "pendingApproval" not in obj["status"]
    assert obj["status"]["lastRun"]["allowedBy"] == dry_id
    assert is_true(obj, "Ready")
    # One approval allows one run: setting it again (or a re-sync) starts nothing.
    kube.annotate(CPOL, name, **{"cleanup.artifacts.dev/reconcile-at": now_value()})
    kube.wait_for(CPOL, name, lambda o: bool(o["status"].get("lastHandledReconcileAt")), what="re-synced")
    assert runs(sim, name) == ["true", "false"]


def test_manual_approval_and_a_stale_approval(kube: Kube, sim: SimulatorServer) -> None:
    kube.secret("jfrog", token="test-token")
    name = unique("manual")
    j = jfrog(sim)
    j.set_run_result(name, packages=1, versions=1, nbytes=10)
    kube.apply(guarded(sim, name, approval="Manual"))
    kube.wait_for(CPOL, name, ready, what="Ready")
    kube.annotate(CPOL, name, **{REQUESTED_AT: now_value()})
    first = kube.wait_for(CPOL, name, held("ApprovalRequired"), what="ApprovalRequired")
    old_id = first["status"]["pendingApproval"]["dryRunId"]
    # A new request makes a new dry run: an approval of the older one is refused.
    kube.annotate(CPOL, name, **{REQUESTED_AT: str(int(now_value()) + 1)})
    second = kube.wait_for(
        CPOL,
        name,
        lambda o: (o["status"].get("pendingApproval") or {}).get("dryRunId") not in (None, old_id),
        what="second dry run held",
    )
    new_id = second["status"]["pendingApproval"]["dryRunId"]
    kube.annotate(CPOL, name, **{APPROVE: old_id})
    obj = kube.wait_for(
        CPOL, name, lambda o: o["status"].get("lastHandledApproval") == old_id, what="stale approval"
    )
    assert f"the one waiting for an approval is {new_id}" in obj["status"]["lastRefusal"]
    kube.wait_event(name, "ApprovalRefused")
    assert runs(sim, name) == ["true", "true"]
    kube.annotate(CPOL, name, **{APPROVE: new_id})
    kube.wait_for(
        CPOL, name, lambda o: last_run(o).get("dryRun") is False and last_run(o).get("state") == "Succeeded"
    )
    assert runs(sim, name) == ["true", "true", "false"]


def test_a_real_run_that_deletes_more_than_its_dry_run_is_flagged(kube: Kube, sim: SimulatorServer) -> None:
    kube.secret("jfrog", token="test-token")
    name = unique("more")
    j = jfrog(sim)
    j.set_run_result(name, packages=2, versions=2, nbytes=100)
    kube.apply(guarded(sim, name, approval="Manual"))
    kube.wait_for(CPOL, name, ready, what="Ready")
    kube.annotate(CPOL, name, **{REQUESTED_AT: now_value()})
    obj = kube.wait_for(CPOL, name, held("ApprovalRequired"), what="ApprovalRequired")
    j.set_run_result(name, packages=3, versions=2, nbytes=100)  # more became stale since the dry run
    kube.annotate(CPOL, name, **{APPROVE: obj["status"]["pendingApproval"]["dryRunId"]})
    obj = kube.wait_for(
        CPOL,
        name,
        lambda o: last_run(o).get("dryRun") is False and last_run(o).get("state") == "Succeeded",
        what="real run done",
    )
    assert "deleted more than its dry run said: packages 3 > 2" in obj["status"]["lastRun"]["message"]
    kube.wait_event(name, "RunExceededDryRun")


def test_cron_exp_with_safety_is_refused_at_admission(kube: Kube, sim: SimulatorServer) -> None:
    manifest = guarded(sim, unique("cron"), maxPackages=1)
    manifest["spec"]["cronExp"] = "0 0 3 ? * SUN"
    res = kube.apply(manifest, check=False)
    assert res.returncode != 0
    assert "cronExp runs inside Artifactory, where nothing can hold a run" in res.stderr, res.stderr


def prune_starts(sim: SimulatorServer) -> list[bool]:
    """The dryRun flag of every prune start, in order."""
    return [c.json["dryRun"] for c in sim.calls.calls(vendor="jfrog", method="POST", path="/prune/start$")]


def test_a_real_prune_within_budget_follows_its_dry_run(kube: Kube, sim: SimulatorServer) -> None:
    kube.secret("jfrog", token="test-token")
    j = jfrog(sim)
    j.prune_seconds_per_directory = 0.002
    kube.apply(prune(sim, "budget", dryRun=False, safety={"maxBytes": "1Ti"}))
    obj = kube.wait_for(
        SPRUNE,
        "budget",
        lambda o: o["status"].get("phase") == "Succeeded" and o["status"].get("dryRun") is False,
        what="real prune done",
    )
    st = obj["status"]
    assert prune_starts(sim) == [True, False] and j.prune_starts == 2
    assert st["lastDryRun"]["bytesCleaned"] > 0 and st["allowedBy"] == st["lastDryRun"]["id"]
    assert [h["dryRun"] for h in st["history"]] == [False, True]
    kube.wait_event("budget", "RealPruneAllowed")


def test_a_real_prune_over_budget_waits_for_its_approval(kube: Kube, sim: SimulatorServer) -> None:
    kube.secret("jfrog", token="test-token")
    j = jfrog(sim)
    j.prune_seconds_per_directory = 0.002
    kube.apply(prune(sim, "big", dryRun=False, safety={"maxBytes": "1Ki"}))
    obj = kube.wait_for(SPRUNE, "big", held("BudgetExceeded"), what="BudgetExceeded")
    st = obj["status"]
    dry_id = st["pendingApproval"]["dryRunId"]
    assert dry_id == st["lastDryRun"]["id"]
    assert "> limit 1024" in condition(obj, "Stalled")["message"]
    assert prune_starts(sim) == [True] and j.cleaned_directories == []
    table = kube.table(SPRUNE, "big")
    assert (
        table["APPROVAL"] == "BudgetExceeded" and table["DRY RUN RECLAIMS"] == st["lastDryRun"]["reclaimed"]
    )
    kube.annotate(SPRUNE, "big", **{APPROVE: "0"})
    obj = kube.wait_for(
        SPRUNE, "big", lambda o: o["status"].get("lastHandledApproval") == "0", what="refused"
    )
    assert "names another dry run" in obj["status"]["lastRefusal"] and prune_starts(sim) == [True]
    kube.annotate(SPRUNE, "big", **{APPROVE: dry_id})
    obj = kube.wait_for(
        SPRUNE,
        "big",
        lambda o: o["status"].get("phase") == "Succeeded" and o["status"].get("dryRun") is False,
        what="approved prune done",
    )
    assert prune_starts(sim) == [True, False]
    assert obj["status"]["lastApprovedDryRun"] == dry_id and j.cleaned_directories


def test_the_operators_schedule_runs_through_the_same_guard_rails(kube: Kube, sim: SimulatorServer) -> None:
    """spec.schedule (the operator's cron, unlike cronExp) ticks a dry run, then the real run."""
    kube.secret("jfrog", token="test-token")
    name = unique("tick")
    jfrog(sim).set_run_result(name, packages=1, versions=1, nbytes=10)
    manifest = guarded(sim, name, maxPackages=5)
    manifest["spec"]["schedule"] = "* * * * *"
    kube.apply(manifest)
    obj = kube.wait_for(
        CPOL,
        name,
        lambda o: last_run(o).get("dryRun") is False and last_run(o).get("state") == "Succeeded",
        timeout=100,
        what="a tick's real run",
    )
    st = obj["status"]
    assert runs(sim, name) == ["true", "false"]
    assert st["lastRun"]["scheduledFor"] == st["lastScheduleTime"]
    assert st["lastRun"]["allowedBy"] == str(st["lastDryRun"]["runId"])
    assert "lastHandledRequestedAt" not in st


def test_cron_exp_and_schedule_are_not_both_allowed(kube: Kube, sim: SimulatorServer) -> None:
    manifest = policy(sim, unique("both"), cronExp="0 0 3 ? * SUN", schedule="0 3 * * 0")
    res = kube.apply(manifest, check=False)
    assert res.returncode != 0 and "would both start runs: set one of them" in res.stderr, res.stderr
