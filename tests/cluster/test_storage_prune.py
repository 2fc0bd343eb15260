"""StoragePrune end to end: real API server, the operator process, the JFrog PUD simulator."""

from __future__ import annotations

import time
from typing import Any

import pytest

from cleanup_operator.testing.simulators import Fault, JFrogSimulator, SimulatorServer

from .conftest import (
    RECONCILE_AT,
    REQUESTED_AT,
    SPRUNE,
    Kube,
    Operator,
    condition,
    is_true,
    jfrog,
    phase,
    prune,
    starts,
    wait_until,
)

PLURAL = SPRUNE


def state(obj: dict[str, Any]) -> tuple[str | None, int | None, str | None]:
    st = obj.get("status") or {}
    return st.get("phase"), st.get("percent"), st.get("progress")


def reconciled_again(kube: Kube, name: str) -> dict[str, Any]:
    """Ask for a reconcile (reconcile-at) and wait until status says it answered it."""
    value = str(time.time())
    kube.annotate(PLURAL, name, **{RECONCILE_AT: value})
    return kube.wait_for(
        PLURAL, name, lambda o: o["status"].get("lastHandledReconcileAt") == value, what="a reconcile"
    )


@pytest.fixture
def fast(sim: SimulatorServer, kube: Kube) -> JFrogSimulator:
    kube.secret("jfrog", token="test-token")
    j = jfrog(sim)
    j.prune_seconds_per_directory = 0.01
    return j


def test_dry_run_to_finished(kube: Kube, sim: SimulatorServer, fast: JFrogSimulator) -> None:
    kube.apply(prune(sim, "dry"))
    obj = kube.wait_for(PLURAL, "dry", phase("Succeeded"), what="Succeeded")
    st = obj["status"]
    vendor = fast.prune_status()
    assert vendor is not None and vendor["status"] == "finished" and vendor["dryRun"] is True
    assert st["progress"] == "256 of 256" and st["percent"] == 100
    assert st["report"]["binariesProcessed"] == vendor["report"]["totalBinariesProcessed"] > 0
    assert st["report"]["binariesCleaned"] == vendor["report"]["totalBinariesCleaned"]
    assert st["report"]["bytesCleaned"] == vendor["report"]["totalBytesCleaned"] > 0
    assert st["report"]["reclaimed"].endswith("iB") or st["report"]["reclaimed"].endswith(" B")
    assert st["lastHandledDirectory"] == "ff"
    assert st["dryRun"] is True and st["startedAt"] and st["duration"]
    assert is_true(obj, "Ready", "PruneSucceeded")
    assert "would reclaim" in condition(obj, "Ready")["message"]
    assert len(st["history"]) == 1 and st["history"][0]["phase"] == "Succeeded"
    assert starts(sim) == 1 and fast.prune_starts == 1
    start = sim.calls.calls(vendor="jfrog", method="POST", path="/prune/start$")[0]
    assert start.json["dryRun"] is True and start.json["binaryOlderThanDays"] == 1
    assert fast.cleaned_directories == []
    events = kube.wait_event("dry", "PruneSucceeded")
    assert st["report"]["reclaimed"] in events[0]["message"]
    row = kube.table(PLURAL, "dry")
    assert list(row) == [
        "NAME",
        "PHASE",
        "PROGRESS",
        "RECLAIMED",
        "DRY RUN",
        "DRY RUN RECLAIMS",
        "APPROVAL",
        "AGE",
    ], row
    assert (row["PHASE"], row["PROGRESS"], row["DRY RUN"]) == ("Succeeded", "256 of 256", "true"), row
    assert row["RECLAIMED"] == st["report"]["reclaimed"], row
    # A reconcile after the end (one that status shows it answered) does not start it again.
    again = reconciled_again(kube, "dry")
    assert again["status"]["phase"] == "Succeeded"
    assert starts(sim) == 1, "started twice"


def test_real_run_deletes_and_follows_progress(
    kube: Kube, sim: SimulatorServer, fast: JFrogSimulator
) -> None:
    """A prune from directory 80 has 128 directories to process: its percent goes from 0 to 100 over
    them, and its progress counts the directories processed since its start, ending at "128 of 256"."""
    fast.prune_seconds_per_directory = 0.05  # 6.4 s for the 128 directories
    kube.apply(prune(sim, "real", dryRun=False, startFromDirectory="80", binaryOlderThanDays=3))
    seen = kube.watch(PLURAL, "real", phase("Succeeded"), what="Succeeded")
    obj = seen[-1]
    running = [o for o in seen if state(o)[0] == "Running" and state(o)[1] is not None]
    assert running, [state(o) for o in seen]
    percents = [o["status"]["percent"] for o in running]
    assert percents[0] < 50, f"a prune from 80 started at {percents[0]} %: {[state(o) for o in seen]}"
    assert percents == sorted(percents) and len(set(percents)) >= 2, percents
    assert all(is_true(o, "Reconciling") for o in running)
    assert (obj["status"]["percent"], obj["status"]["progress"]) == (100, "128 of 256"), state(obj)
    assert obj["status"]["dryRun"] is False
    assert fast.cleaned_directories and min(fast.cleaned_directories) == "80"
    start = sim.calls.calls(vendor="jfrog", method="POST", path="/prune/start$")[0]
    assert start.json == {"dryRun": False, "startFromDirectory": "80", "binaryOlderThanDays": 3}
    assert "reclaimed" in condition(obj, "Ready")["message"]


def test_error_state(kube: Kube, sim: SimulatorServer, fast: JFrogSimulator) -> None:
    fast.fail_prune_at_directory = "40"
    kube.apply(prune(sim, "broken"))
    obj = kube.wait_for(PLURAL, "broken", phase("Failed"), what="Failed")
    assert "I/O error" in obj["status"]["error"]
    ready = condition(obj, "Ready")
    assert ready["status"] == "False" and ready["reason"] == "PruneFailed" and "I/O error" in ready["message"]
    assert obj["status"]["history"][0]["phase"] == "Failed"
    kube.wait_event("broken", "PruneFailed")


def test_stop_on_delete(kube: Kube, sim: SimulatorServer, fast: JFrogSimulator) -> None:
    fast.prune_seconds_per_directory = 0.5
    kube.apply(prune(sim, "stopme"))
    kube.wait_for(PLURAL, "stopme", phase("Running"), what="Running")
    kube.delete(PLURAL, "stopme")
    kube.wait_gone(PLURAL, "stopme")
    assert len(sim.calls.calls(vendor="jfrog", method="POST", path="/prune/stop$")) == 1
    vendor = fast.prune_status()
    assert vendor is not None and vendor["status"] == "stopped"


def test_stop_on_delete_false_leaves_it_running(
    kube: Kube, sim: SimulatorServer, fast: JFrogSimulator
) -> None:
    fast.prune_seconds_per_directory = 0.5
    kube.apply(prune(sim, "leave", stopOnDelete=False))
    kube.wait_for(PLURAL, "leave", phase("Running"), what="Running")
    kube.delete(PLURAL, "leave")
    kube.wait_gone(PLURAL, "leave")
    assert not sim.calls.calls(vendor="jfrog", method="POST", path="/prune/stop$")
    assert fast.prune_status()["status"] == "running"


def test_stop_412_nothing_running_is_fine(kube: Kube, sim: SimulatorServer, fast: JFrogSimulator) -> None:
    fast.prune_seconds_per_directory = 0.5
    kube.apply(prune(sim, "raced"))
    kube.wait_for(PLURAL, "raced", phase("Running"), what="Running")
    fast.faults.add(
        Fault("status", path="/prune/stop$", status=412, body={"info": "No running Prune task found"})
    )
    kube.delete(PLURAL, "raced")
    kube.wait_gone(PLURAL, "raced")
    stops = sim.calls.calls(vendor="jfrog", method="POST", path="/prune/stop$")
    assert [c.status for c in stops] == [412]


def test_status_412_before_any_run_is_normal(kube: Kube, sim: SimulatorServer, fast: JFrogSimulator) -> None:
    kube.apply(prune(sim, "later", schedule="0 0 1 1 *"))
    obj = kube.wait_for(
        PLURAL, "later", lambda o: o.get("status", {}).get("observedGeneration") == 1, what="observed"
    )
    # Waiting for the first tick is healthy: phase Scheduled, Ready (Argo CD: Healthy), no prune started.
    assert obj["status"]["phase"] == "Scheduled"
    assert is_true(obj, "Ready", "Scheduled") and "0 0 1 1 *" in condition(obj, "Ready")["message"]
    assert not is_true(obj, "Stalled") and not is_true(obj, "Reconciling")
    assert starts(sim) == 0


def test_foreign_prune_is_followed_not_restarted(
    kube: Kube, sim: SimulatorServer, fast: JFrogSimulator
) -> None:
    fast.prune_seconds_per_directory = 0.02
    fast.start_prune(dry_run=True)
    kube.apply(prune(sim, "follower"))
    obj = kube.wait_for(
        PLURAL,
        "follower",
        lambda o: condition(o, "Reconciling").get("reason") == "AlreadyRunning",
        what="AlreadyRunning",
    )
    assert obj["status"]["startedByUs"] is False
    kube.wait_event("follower", "AlreadyRunning")
    kube.wait_for(PLURAL, "follower", phase("Succeeded"), what="Succeeded")
    assert starts(sim) == 0


def test_start_412_means_already_running(kube: Kube, sim: SimulatorServer, fast: JFrogSimulator) -> None:
    fast.prune_seconds_per_directory = 0.02
    # The status read says nothing runs, then the start answers 412: someone started one in between.
    fast.faults.add(
        Fault("status", path="/prune/status$", status=412, body={"info": "No Prune task found"}, times=1)
    )
    fast.start_prune(dry_run=True)
    kube.apply(prune(sim, "race"))
    kube.wait_for(PLURAL, "race", phase("Succeeded"), what="Succeeded")
    started = sim.calls.calls(vendor="jfrog", method="POST", path="/prune/start$")
    assert [c.status for c in started] == [412]
    assert fast.prune_starts == 0


def test_two_prunes_on_one_artifactory_take_turns(
    kube: Kube, sim: SimulatorServer, fast: JFrogSimulator
) -> None:
    fast.prune_seconds_per_directory = 0.01
    kube.apply(prune(sim, "one"))
    kube.apply(prune(sim, "two"))
    phases: dict[str, set[str | None]] = {"one": set(), "two": set()}

    def both_succeeded() -> bool:
        now = {n: (kube.get(PLURAL, n) or {}).get("status", {}).get("phase") for n in phases}
        for n, p in now.items():
            phases[n].add(p)
        return set(now.values()) == {"Succeeded"}

    wait_until(both_succeeded, "both prunes Succeeded", timeout=60, interval=0.2)
    assert any("Waiting" in seen for seen in phases.values()), f"the second never waited: {phases}"
    started = sim.calls.calls(vendor="jfrog", method="POST", path="/prune/start$")
    assert [c.status for c in started] == [202, 202], "a start collided with a running prune"
    assert fast.prune_starts == 2
    for o in ("one", "two"):
        kube.wait_event(o, "PruneStarted")


def test_poll_errors_keep_progress_and_recover(
    kube: Kube, sim: SimulatorServer, fast: JFrogSimulator
) -> None:
    fast.prune_seconds_per_directory = 0.05
    kube.apply(prune(sim, "flaky"))
    kube.wait_for(PLURAL, "flaky", lambda o: (o.get("status") or {}).get("percent", 0) > 5, what="progress")
    fast.faults.add(
        Fault(
            "status",
            path="/prune/status$",
            status=503,
            body={"errors": [{"status": 503, "message": "down"}]},
            times=3,
        )
    )
    obj = kube.wait_for(
        PLURAL, "flaky", lambda o: condition(o, "Synced").get("status") == "False", what="Synced=False"
    )
    assert obj["status"]["phase"] == "Running" and obj["status"]["progress"]
    kube.wait_for(PLURAL, "flaky", phase("Succeeded"), timeout=90, what="Succeeded after errors")
    assert starts(sim) == 1


def test_requested_at_starts_again_and_history_is_capped(
    kube: Kube, sim: SimulatorServer, fast: JFrogSimulator
) -> None:
    kube.apply(prune(sim, "again", historyLimit=2))
    kube.wait_for(PLURAL, "again", phase("Succeeded"), what="first run")
    for n in (1, 2):
        value = str(int(time.time()) + n)
        kube.annotate(PLURAL, "again", **{REQUESTED_AT: value})
        kube.wait_for(
            PLURAL,
            "again",
            lambda o, value=value, n=n: (
                o["status"].get("lastHandledRequestedAt") == value
                and o["status"]["phase"] == "Succeeded"
                and len(o["status"]["history"]) == min(2, n + 1)
            ),
            what=f"run {n}",
        )
    obj = kube.get(PLURAL, "again")
    assert obj is not None and len(obj["status"]["history"]) == 2
    assert starts(sim) == 3


def test_schedule_tick_starts_a_prune(kube: Kube, sim: SimulatorServer, fast: JFrogSimulator) -> None:
    kube.apply(prune(sim, "cron", schedule="* * * * *"))
    obj = kube.wait_for(PLURAL, "cron", phase("Succeeded"), timeout=90, what="a tick's run")
    assert obj["status"]["runStartedFor"].startswith("schedule:")
    assert obj["status"]["lastScheduleTime"]
    assert starts(sim) == 1


def test_operator_killed_mid_prune_resumes_without_second_start(
    isolated: tuple[Kube, Operator], sim: SimulatorServer
) -> None:
    kube, op = isolated
    kube.secret("jfrog", token="test-token")
    j = jfrog(sim)
    j.prune_seconds_per_directory = 0.04
    op.start()
    kube.apply(prune(sim, "crash"))
    seen = kube.wait_for(
        PLURAL, "crash", lambda o: (o.get("status") or {}).get("percent", 0) >= 10, what="progress"
    )
    op.kill()
    # While the operator is down the prune goes on: Artifactory reports more directories than status.
    shown = int(seen["status"]["progress"].split(" of ")[0])
    wait_until(
        lambda: int((j.prune_status() or {}).get("progress", "0 of 256").split(" of ")[0]) > shown + 10,
        "the prune to go on while the operator is down",
    )
    op.start()
    obj = kube.wait_for(PLURAL, "crash", phase("Succeeded"), timeout=90, what="Succeeded after restart")
    assert starts(sim) == 1 and j.prune_starts == 1
    assert obj["status"]["progress"] == "256 of 256"
    assert len(obj["status"]["history"]) == 1
