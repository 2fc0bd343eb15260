"""JFrogClient against the simulated Artifactory: lifecycle, refusals, runs, PUD, faults."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from cleanup_operator.reconcile.cleanup_policy import differences
from cleanup_operator.testing.simulators import Fault, JFrogSimulator, ManualClock, SimulatorServer
from cleanup_operator.testing.simulators.jfrog import directory_content
from cleanup_operator.vendors import jfrog
from cleanup_operator.vendors.errors import (
    AuthError,
    BadResponseError,
    ConflictError,
    NotFoundError,
    RateLimitedError,
    RejectedError,
    TransientError,
)
from cleanup_operator.vendors.http import ClientOptions, make_client

from ..conftest import jfrog as jfrog_simulator

TOKEN = "test-token"


def criteria(**extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"packageTypes": ["docker"], "repos": ["docker-local"], "includedPackages": ["**"]}
    if not any(
        k in extra for k in ("createdBeforeInDays", "lastDownloadedBeforeInDays", "keepLastNVersions")
    ):
        base["createdBeforeInMonths"] = 6
    base.update(extra)
    return {k: v for k, v in base.items() if v is not None}


def policy(key: str = "docker-old", **top: Any) -> jfrog.Policy:
    body: dict[str, Any] = {"key": key, "description": "old images", "searchCriteria": criteria()}
    body.update(top)
    return jfrog.Policy.model_validate(body)


RUN_SECONDS = 0.3
PRUNE_PACE = 0.002


@pytest.fixture
def jsim(sim: SimulatorServer) -> JFrogSimulator:
    """The JFrog simulator on a :class:`ManualClock`: runs and prunes move only when a test says so."""
    simulator = jfrog_simulator(sim)
    simulator.run_duration = RUN_SECONDS
    simulator.prune_seconds_per_directory = PRUNE_PACE
    simulator.clock = ManualClock()
    return simulator


@pytest.fixture
def clock(jsim: JFrogSimulator) -> ManualClock:
    assert isinstance(jsim.clock, ManualClock)
    return jsim.clock


@pytest.fixture
async def client(
    sim: SimulatorServer, jsim: JFrogSimulator, sim_ca_pem: str
) -> AsyncIterator[jfrog.JFrogClient]:
    http = make_client(
        ClientOptions(
            base_url=sim.url("jfrog"), headers={"Authorization": f"Bearer {TOKEN}"}, ca_pem=sim_ca_pem
        )
    )
    async with http:
        yield jfrog.JFrogClient(http)


async def enabled_policy(client: jfrog.JFrogClient, key: str) -> None:
    await client.create_policy(policy(key))
    await client.set_enabled(key, True)


# Version ------------------------------------------------------------------------------------------


async def test_version_gates_follow_the_server(client: jfrog.JFrogClient, jsim: JFrogSimulator) -> None:
    v = await client.version()
    assert v.version == "7.117.5"
    assert (v.supports_days_conditions, v.supports_run_summaries, v.supports_property_filters) == (
        True,
        True,
        False,
    )
    jsim.version = "7.129.1"
    assert (await client.version()).supports_property_filters is True


# Policy lifecycle ---------------------------------------------------------------------------------


@pytest.mark.parametrize("sample_shape", [False, True], ids=["unset-left-out", "sample-shape"])
async def test_policy_lifecycle(
    client: jfrog.JFrogClient, jsim: JFrogSimulator, sim: SimulatorServer, sample_shape: bool
) -> None:
    jsim.echo_empty_defaults = sample_shape
    desired = policy(enabled=True, durationInMinutes=None, cronExp="0 0 2 ? * SUN")
    await client.create_policy(desired)

    create = sim.calls.calls("jfrog", "POST", r"/policies/docker-old$")
    assert len(create) == 1 and create[0].status == 201
    assert create[0].json["enabled"] is False  # never enabled on create
    assert create[0].json["searchCriteria"]["createdBeforeInMonths"] == 6
    assert "durationInMinutes" not in create[0].json  # unset fields are not sent

    current = await client.get_policy("docker-old")
    assert current.enabled is False
    if sample_shape:  # server defaults echoed back…
        assert (current.duration_in_minutes, current.search_criteria.keep_last_n_versions) == (0, 0)
        assert current.search_criteria.excluded_repos == []
    else:  # …or left out
        assert (current.duration_in_minutes, current.search_criteria.keep_last_n_versions) == (None, None)
        assert current.search_criteria.excluded_repos is None
    assert jfrog.normalise_policy(desired.model_copy(update={"enabled": False})) == jfrog.normalise_policy(
        current
    )

    await client.set_enabled("docker-old", True)
    assert (await client.get_policy("docker-old")).enabled is True
    assert sim.calls.calls("jfrog", "POST", r"/enablement$")[0].json == {"enabled": True}

    changed = desired.model_copy(update={"description": "older images", "enabled": False})
    await client.update_policy(changed)
    after = await client.get_policy("docker-old")
    assert after.description == "older images"
    assert after.enabled is True  # enablement only through the enablement call

    await client.create_policy(policy("other-pol"))
    assert sorted(p.key for p in await client.list_policies()) == ["docker-old", "other-pol"]

    await client.delete_policy("docker-old")
    with pytest.raises(NotFoundError) as missing:
        await client.get_policy("docker-old")
    assert missing.value.status_code == 404
    assert "docker-old" in str(missing.value)
    with pytest.raises(NotFoundError):
        await client.delete_policy("docker-old")
    assert [p.key for p in await client.list_policies()] == ["other-pol"]


DRIFT_CASES: dict[str, jfrog.Policy] = {
    "mandatory-only": jfrog.Policy.model_validate({"key": "pol-min", "searchCriteria": criteria()}),
    "every-optional-field": policy(
        "pol-full",
        cronExp="0 0 3 ? * SUN",
        durationInMinutes=30,
        skipTrashcan=True,
        searchCriteria=criteria(
            excludedRepos=["docker-keep-local"],
            excludedPackages=["base"],
            includeAllProjects=True,
            includedProjects=["default"],
            lastDownloadedBeforeInMonths=3,
        ),
    ),
    "sent-empty": policy(
        "pol-empty",
        description="",
        cronExp="",
        durationInMinutes=0,
        searchCriteria=criteria(excludedRepos=[], excludedPackages=[], includedProjects=[]),
    ),
    "days": policy("pol-days", searchCriteria=criteria(createdBeforeInDays=30)),
    "project-level": policy("acme-pol", projectKey="acme"),
}


@pytest.mark.parametrize("sample_shape", [False, True], ids=["unset-left-out", "sample-shape"])
async def test_no_false_drift_in_either_echo_shape(
    client: jfrog.JFrogClient, jsim: JFrogSimulator, sim: SimulatorServer, sample_shape: bool
) -> None:
    """What the client created reads back equal (``differences`` empty), one GET and list alike."""
    jsim.echo_empty_defaults = sample_shape
    for desired in DRIFT_CASES.values():
        await client.create_policy(desired)
    listed = {p.key: p for p in await client.list_policies()}
    for name, desired in DRIFT_CASES.items():
        current = await client.get_policy(desired.key)
        assert differences(desired, current) == [], name
        assert differences(desired, listed[desired.key]) == [], name
    echoed = (await client.get_policy("pol-min")).search_criteria
    assert (echoed.excluded_repos == []) is sample_shape  # the two shapes really were served
    # A change made behind the operator's back is still seen, in both shapes.
    tampered = jsim.policy("pol-full")
    assert tampered is not None
    del tampered["searchCriteria"]["excludedRepos"]
    jsim.seed_policy(tampered)
    assert differences(DRIFT_CASES["every-optional-field"], await client.get_policy("pol-full")) == [
        "searchCriteria.excludedRepos"
    ]


async def test_list_by_project(client: jfrog.JFrogClient) -> None:
    await client.create_policy(policy("acme-old", projectKey="acme"))
    await client.create_policy(policy("global-old"))
    assert [p.key for p in await client.list_policies(project_key="acme")] == ["acme-old"]
    assert [p.project_key for p in await client.list_policies(project_key="acme")] == ["acme"]
    assert len(await client.list_policies()) == 2


@pytest.mark.parametrize("status", [200, 201, 204])
async def test_create_accepts_every_success_status(
    client: jfrog.JFrogClient, jsim: JFrogSimulator, status: int
) -> None:
    jsim.create_status = status
    await client.create_policy(policy())
    assert jsim.policy("docker-old") is not None


@pytest.mark.parametrize("status", [409, 400])
async def test_create_of_existing_key(client: jfrog.JFrogClient, jsim: JFrogSimulator, status: int) -> None:
    jsim.duplicate_key_status = status
    await client.create_policy(policy())
    with pytest.raises(jfrog.PolicyExists) as exc:
        await client.create_policy(policy())
    assert isinstance(exc.value, ConflictError)
    assert exc.value.status_code == status
    assert "already exists" in exc.value.message


async def test_missing_policy_calls(client: jfrog.JFrogClient) -> None:
    for call in (
        client.get_policy("nope-nope"),
        client.update_policy(policy("nope-nope")),
        client.set_enabled("nope-nope", True),
        client.run_policy("nope-nope", dry_run=True),
    ):
        with pytest.raises(NotFoundError):
            await call


# Validation: every rule answers 400 with its message ----------------------------------------------

RULES: list[tuple[str, dict[str, Any], str]] = [
    ("key-too-short", {"key": "ab"}, "at least 3 characters"),
    ("key-pattern", {"key": "bad key!"}, "letters, digits"),
    (
        "project-prefix",
        {"key": "other-pol", "projectKey": "acme"},
        "must start with the project key: 'acme-'",
    ),
    ("description-length", {"description": "x" * 257}, "must not exceed 256 characters"),
    ("cron-fields", {"cronExp": "0 0 * *"}, "Invalid cron expression"),
    ("duration-negative", {"durationInMinutes": -1}, "durationInMinutes must be 0 or more"),
    ("no-package-type", {"searchCriteria": criteria(packageTypes=[])}, "at least one package type"),
    ("no-repo", {"searchCriteria": criteria(repos=[])}, "at least one repository"),
    ("no-included-package", {"searchCriteria": criteria(includedPackages=[])}, "only one pattern"),
    ("two-included-packages", {"searchCriteria": criteria(includedPackages=["a", "b"])}, "only one pattern"),
    (
        "excluded-pattern",
        {"searchCriteria": criteria(excludedPackages=["com/*"])},
        "only explicit names (and not patterns): com/*",
    ),
    (
        "no-condition",
        {"searchCriteria": criteria(createdBeforeInMonths=None)},
        "must use one of the three settings",
    ),
    (
        "zero-conditions",
        {"searchCriteria": criteria(createdBeforeInMonths=0, keepLastNVersions=0)},
        "must use one of the three settings",
    ),
    (
        "keep-with-time",
        {"searchCriteria": criteria(keepLastNVersions=3, lastDownloadedBeforeInMonths=2)},
        "cannot be used with keepLastNVersions",
    ),
    (
        "months-and-days",
        {"searchCriteria": criteria(createdBeforeInMonths=1, createdBeforeInDays=10)},
        "createdBeforeInMonths and createdBeforeInDays cannot be used together",
    ),
    (
        "download-months-and-days",
        {"searchCriteria": criteria(lastDownloadedBeforeInMonths=1, lastDownloadedBeforeInDays=10)},
        "lastDownloadedBeforeInMonths and lastDownloadedBeforeInDays cannot be used together",
    ),
    (
        "include-all-projects-on-project",
        {"key": "acme-old", "projectKey": "acme", "searchCriteria": criteria(includeAllProjects=True)},
        "relevant only on the global level",
    ),
    (
        "included-projects-on-project",
        {"key": "acme-old", "projectKey": "acme", "searchCriteria": criteria(includedProjects=["p1"])},
        "relevant only on the global level",
    ),
    (
        "properties-too-old",
        {"searchCriteria": criteria(includedProperties={"release": ["true"]})},
        "not supported by Artifactory 7.117.5; it needs 7.129",
    ),
]


@pytest.mark.parametrize(("change", "message"), [pytest.param(c, m, id=i) for i, c, m in RULES])
async def test_validation_rules(client: jfrog.JFrogClient, change: dict[str, Any], message: str) -> None:
    body: dict[str, Any] = {"key": "docker-old", "searchCriteria": criteria()}
    body.update(change)
    with pytest.raises(RejectedError) as exc:
        await client.create_policy(
            jfrog.Policy.model_validate({k: v for k, v in body.items() if v is not None})
        )
    assert exc.value.status_code == 400
    assert message in exc.value.message
    assert type(exc.value) is RejectedError


async def test_validation_on_update_too(client: jfrog.JFrogClient) -> None:
    await client.create_policy(policy())
    bad = policy(searchCriteria=criteria(keepLastNVersions=2, createdBeforeInMonths=3))
    with pytest.raises(RejectedError, match="cannot be used with keepLastNVersions"):
        await client.update_policy(bad)


async def test_days_conditions_need_7_111_2(client: jfrog.JFrogClient, jsim: JFrogSimulator) -> None:
    days = policy(searchCriteria=criteria(createdBeforeInMonths=None, createdBeforeInDays=30))
    jsim.version = "7.110.0"
    assert jfrog.unsupported_features(days, await client.version()) != []
    with pytest.raises(RejectedError) as exc:
        await client.create_policy(days)
    assert (
        "createdBeforeInDays is not supported by Artifactory 7.110.0; it needs 7.111.2" in exc.value.message
    )

    jsim.version = "7.111.2"
    assert jfrog.unsupported_features(days, await client.version()) == []
    await client.create_policy(days)
    stored = await client.get_policy("docker-old")
    assert stored.search_criteria.created_before_in_days == 30
    assert jfrog.normalise_policy(stored) == jfrog.normalise_policy(days)


async def test_property_filters_on_7_129(client: jfrog.JFrogClient, jsim: JFrogSimulator) -> None:
    jsim.version = "7.129.0"
    with_props = policy(searchCriteria=criteria(excludedProperties={"keep": ["true", "yes"]}))
    with pytest.raises(RejectedError, match="one property key with one value"):
        await client.create_policy(with_props)
    ok = policy(searchCriteria=criteria(excludedProperties={"keep": ["true"]}))
    await client.create_policy(ok)
    assert (await client.get_policy("docker-old")).search_criteria.excluded_properties == {"keep": ["true"]}


# Runs ---------------------------------------------------------------------------------------------


async def test_dry_run_then_real_run(
    client: jfrog.JFrogClient, jsim: JFrogSimulator, sim: SimulatorServer, clock: ManualClock
) -> None:
    await enabled_policy(client, "docker-old")
    jsim.set_run_result("docker-old", packages=4, versions=10, nbytes=5000)

    run_id = await client.run_policy("docker-old", dry_run=True)
    assert run_id == 1
    assert sim.calls.calls("jfrog", "PUT", r"/docker-old/run$")[0].query == {"dryRun": "true"}
    first = await client.run_summaries("docker-old")
    assert [(s.run_id, s.state, s.dry_run) for s in first] == [(1, "Running", True)]
    assert first[0].finished_at is None

    clock.advance(RUN_SECONDS - 0.01)
    assert [s.state for s in await client.run_summaries("docker-old")] == ["Running"]
    clock.advance(0.01)
    [dry] = await client.run_summaries("docker-old", trigger_id=run_id)
    assert (dry.state, dry.dry_run) == ("Succeeded", True)
    assert (dry.packages_deleted, dry.versions_deleted, dry.bytes_deleted) == (4, 10, 5000)
    assert dry.started_at is not None and dry.finished_at is not None and dry.finished_at >= dry.started_at
    assert jsim.deleted("docker-old") == (0, 0, 0)  # a dry run deletes nothing

    real_id = await client.run_policy("docker-old", dry_run=False)
    assert real_id == 2
    clock.advance(RUN_SECONDS)
    real = (await client.run_summaries("docker-old", trigger_id=real_id))[0]
    assert (real.state, real.dry_run, real.packages_deleted, real.bytes_deleted) == (
        "Succeeded",
        False,
        4,
        5000,
    )
    assert jsim.deleted("docker-old") == (4, 10, 5000)

    again = await client.run_policy("docker-old", dry_run=True)
    clock.advance(RUN_SECONDS)
    nothing_left = (await client.run_summaries("docker-old", trigger_id=again))[0]
    assert (nothing_left.packages_deleted, nothing_left.versions_deleted) == (0, 0)
    assert [s.run_id for s in await client.run_summaries("docker-old")] == [3, 2, 1]


async def test_disabled_policy_cannot_run(client: jfrog.JFrogClient) -> None:
    await client.create_policy(policy())
    with pytest.raises(RejectedError) as exc:
        await client.run_policy("docker-old", dry_run=True)
    assert exc.value.status_code == 400
    assert "disabled" in exc.value.message
    assert not isinstance(exc.value, ConflictError)


async def test_changes_refused_while_running(
    sim: SimulatorServer, client: jfrog.JFrogClient, jsim: JFrogSimulator
) -> None:
    await enabled_policy(client, "docker-old")
    run_id = jsim.set_running("docker-old")  # until stopped

    with pytest.raises(jfrog.PolicyRunning) as update:
        await client.update_policy(policy(description="new"))
    assert update.value.status_code == 409
    assert "currently running" in update.value.message
    assert update.value.retryable is True
    with pytest.raises(jfrog.PolicyRunning):
        await client.delete_policy("docker-old")
    with pytest.raises(jfrog.PolicyRunning, match="already running"):
        await client.run_policy("docker-old", dry_run=True)

    jsim.running_refusal_status = 400  # another reading of the same refusal
    with pytest.raises(jfrog.PolicyRunning) as as_400:
        await client.update_policy(policy(description="new"))
    assert as_400.value.status_code == 400

    await client.stop_run(run_id)
    [stopped] = await client.run_summaries("docker-old")
    assert stopped.state == "Stopped" and stopped.finished_at is not None
    await client.update_policy(policy(description="new"))
    assert (await client.get_policy("docker-old")).description == "new"
    await client.delete_policy("docker-old")
    # What was sent: the refused DELETE while running (409), then the one after the stop.
    deletes = sim.calls.calls("jfrog", "DELETE", r"/policies/docker-old$")
    assert [c.status for c in deletes] == [409, 200], deletes
    with pytest.raises(NotFoundError):
        await client.get_policy("docker-old")


async def test_at_most_three_runs(client: jfrog.JFrogClient, jsim: JFrogSimulator) -> None:
    jsim.run_duration = 30.0
    keys = ["pol-a", "pol-b", "pol-c", "pol-d"]
    for key in keys:
        await enabled_policy(client, key)
    ids = [await client.run_policy(key, dry_run=True) for key in keys[:3]]
    assert ids == [1, 2, 3]
    with pytest.raises(jfrog.RunLimitReached) as exc:
        await client.run_policy("pol-d", dry_run=True)
    assert isinstance(exc.value, ConflictError)
    assert exc.value.status_code == 409
    assert "At most 3" in exc.value.message

    await client.stop_run(ids[0])
    assert await client.run_policy("pol-d", dry_run=False) == 4


async def test_stop_run(client: jfrog.JFrogClient, jsim: JFrogSimulator, sim: SimulatorServer) -> None:
    jsim.run_duration = 30.0
    jsim.set_run_result("docker-old", packages=10, versions=20, nbytes=1000)
    await enabled_policy(client, "docker-old")
    run_id = await client.run_policy("docker-old", dry_run=False)
    await client.stop_run(run_id)
    stop = sim.calls.calls("jfrog", "PUT", rf"/cleanup/policies/runs/{run_id}$")
    assert [(c.json, c.status) for c in stop] == [({"action": "stop"}, 202)]
    [summary] = await client.run_summaries("docker-old")
    assert summary.state == "Stopped"
    assert summary.packages_deleted == 0  # stopped at once: nothing reached

    with pytest.raises(ConflictError, match="not running"):
        await client.stop_run(run_id)
    with pytest.raises(NotFoundError):
        await client.stop_run(999)


async def test_failed_run(client: jfrog.JFrogClient, jsim: JFrogSimulator, clock: ManualClock) -> None:
    jsim.failing_policies = {"docker-old"}
    await enabled_policy(client, "docker-old")
    await client.run_policy("docker-old", dry_run=False)
    assert [s.state for s in await client.run_summaries("docker-old")] == ["Running"]
    clock.advance(RUN_SECONDS)
    [summary] = await client.run_summaries("docker-old")
    assert (summary.status, summary.state, summary.packages_deleted) == ("FAILED", "Failed", 0)


async def test_summaries_need_7_117(client: jfrog.JFrogClient, jsim: JFrogSimulator) -> None:
    jsim.version = "7.116.0"
    with pytest.raises(NotFoundError):
        await client.run_summaries("docker-old")
    jsim.version = "7.117.0"
    assert await client.run_summaries("docker-old") == []


# Prune unreferenced data --------------------------------------------------------------------------

TOTAL_BINARIES = sum(directory_content(i)[0] for i in range(256))
TOTAL_CLEANABLE = sum(directory_content(i)[1] for i in range(256))
TOTAL_BYTES = sum(directory_content(i)[2] for i in range(256))


def test_directory_content_totals_are_stable() -> None:
    """Pinned numbers, so a change to the simulator's filestore shows up here first."""
    assert (TOTAL_BINARIES, TOTAL_CLEANABLE, TOTAL_BYTES) == (766, 238, 2076672)


async def finished_prune(client: jfrog.JFrogClient, clock: ManualClock) -> jfrog.PruneStatus:
    """Move the clock past the longest prune (256 directories) and read the final status."""
    clock.advance(256 * PRUNE_PACE + 1.0)
    status = await client.prune_status()
    assert status is not None and not status.running
    return status


async def test_prune_412_cases(client: jfrog.JFrogClient, jsim: JFrogSimulator, sim: SimulatorServer) -> None:
    assert await client.prune_status() is None
    assert await client.prune_stop() is False
    assert [c.status for c in sim.calls.calls("jfrog", path=r"/storage/prune/")] == [412, 412]

    jsim.prune_seconds_per_directory = 1.0
    info = await client.prune_start(dry_run=True)
    assert "started" in info
    with pytest.raises(jfrog.PruneAlreadyRunning) as exc:
        await client.prune_start(dry_run=False)
    assert isinstance(exc.value, ConflictError)
    assert exc.value.status_code == 412
    assert "already running" in exc.value.message
    assert jsim.prune_starts == 1

    assert await client.prune_stop() is True
    stopped = await client.prune_status()
    assert stopped is not None and stopped.status == "stopped"
    assert stopped.directories_done == 0
    assert await client.prune_stop() is False


async def test_prune_dry_then_real(
    client: jfrog.JFrogClient, jsim: JFrogSimulator, sim: SimulatorServer, clock: ManualClock
) -> None:
    await client.prune_start(dry_run=True)
    assert sim.calls.calls("jfrog", "POST", r"/prune/start$")[0].json == {"dryRun": True}
    dry = await finished_prune(client, clock)
    assert (dry.status, dry.dry_run, dry.progress, dry.directories_done) == (
        "finished",
        True,
        "256 of 256",
        256,
    )
    assert dry.report is not None
    assert (
        dry.report.total_binaries_processed,
        dry.report.total_binaries_cleaned,
        dry.report.total_bytes_cleaned,
    ) == (
        TOTAL_BINARIES,
        TOTAL_CLEANABLE,
        TOTAL_BYTES,
    )
    assert dry.last_handled_directory is not None and dry.last_handled_directory.name == "ff"
    assert dry.last_handled_directory.binaries_processed == directory_content(255)[0]
    assert dry.error is None
    assert jsim.cleaned_directories == []  # a dry run cleans nothing

    await client.prune_start(dry_run=False, binary_older_than_days=0)
    real = await finished_prune(client, clock)
    assert real.report is not None and real.dry_run is False
    assert (real.report.total_binaries_cleaned, real.report.total_bytes_cleaned) == (
        TOTAL_CLEANABLE,
        TOTAL_BYTES,
    )
    assert len(jsim.cleaned_directories) == 256

    await client.prune_start(dry_run=True)
    after = await finished_prune(client, clock)
    assert after.report is not None
    assert after.report.total_binaries_processed == TOTAL_BINARIES
    assert (after.report.total_binaries_cleaned, after.report.total_bytes_cleaned) == (0, 0)
    assert jsim.prune_starts == 3
    assert after.timing is not None and after.timing.duration_millis is not None
    assert (
        after.timing.last_updated_millis
        == (after.timing.started_at_millis or 0) + after.timing.duration_millis
    )


async def test_prune_from_a_directory(
    client: jfrog.JFrogClient, jsim: JFrogSimulator, sim: SimulatorServer, clock: ManualClock
) -> None:
    await client.prune_start(dry_run=True, start_from_directory="80", start_from_binary="a" * 40)
    assert sim.calls.calls("jfrog", "POST", r"/prune/start$")[0].json == {
        "dryRun": True,
        "startFromDirectory": "80",
        "startFromBinary": "a" * 40,
    }
    status = await finished_prune(client, clock)
    assert (status.status, status.progress, status.directories_done) == ("finished", "128 of 256", 128)
    assert status.report is not None
    assert status.report.total_binaries_processed == sum(directory_content(i)[0] for i in range(0x80, 256))
    assert status.report.total_bytes_cleaned == sum(directory_content(i)[2] for i in range(0x80, 256))


async def test_prune_error_state(client: jfrog.JFrogClient, jsim: JFrogSimulator, clock: ManualClock) -> None:
    jsim.fail_prune_at_directory = "03"
    await client.prune_start(dry_run=False)
    status = await finished_prune(client, clock)
    assert status.status == "error"
    assert status.progress == "3 of 256"
    assert status.error is not None and "03" in status.error
    assert status.last_handled_directory is not None
    assert (status.last_handled_directory.name, status.last_handled_directory.status) == ("03", "error")
    assert status.report is not None
    assert status.report.total_binaries_processed == sum(directory_content(i)[0] for i in range(3))
    assert status.report.total_binaries_cleaned == sum(directory_content(i)[1] for i in range(3))
    assert jsim.cleaned_directories == ["00", "01", "02"]
    assert await client.prune_stop() is False


async def test_prune_stop_midway(client: jfrog.JFrogClient, jsim: JFrogSimulator, clock: ManualClock) -> None:
    jsim.prune_seconds_per_directory = 0.02
    await client.prune_start(dry_run=False)
    clock.advance(3 * 0.02 + 0.001)
    assert await client.prune_stop() is True
    status = await client.prune_status()
    assert status is not None and status.status == "stopped"
    done = status.directories_done
    assert done == 3
    assert status.report is not None
    assert status.report.total_binaries_processed == sum(directory_content(i)[0] for i in range(done))
    clock.advance(10.0)
    later = await client.prune_status()
    assert later is not None and later.directories_done == done  # a stopped prune stays put
    assert len(jsim.cleaned_directories) == done


# Faults and errors --------------------------------------------------------------------------------


async def test_server_error_is_transient(
    client: jfrog.JFrogClient, jsim: JFrogSimulator, sim: SimulatorServer
) -> None:
    jsim.faults.add(
        Fault(
            "status",
            path=r"/system/version$",
            status=503,
            body={"errors": [{"status": 503, "message": "Down"}]},
        )
    )
    with pytest.raises(TransientError) as exc:
        await client.version()
    assert type(exc.value) is TransientError
    assert exc.value.status_code == 503
    assert "Down" in exc.value.message
    assert (await client.version()).version == "7.117.5"  # the fault fired once
    assert [c.status for c in sim.calls.calls("jfrog", "GET", r"/system/version$")] == [503, 200]


async def test_rate_limited(client: jfrog.JFrogClient, jsim: JFrogSimulator) -> None:
    jsim.faults.add(
        Fault("status", path=r"/policies$", status=429, body={"errors": [{"status": 429, "message": "Slow"}]})
    )
    with pytest.raises(RateLimitedError) as exc:
        await client.list_policies()
    assert exc.value.status_code == 429
    assert exc.value.retryable is True


async def test_latency_beyond_the_timeout(
    sim: SimulatorServer, jsim: JFrogSimulator, sim_ca_pem: str
) -> None:
    jsim.faults.add(Fault("latency", path=r"/policies/slow-one$", delay=0.5))
    opts = ClientOptions(
        base_url=sim.url("jfrog"),
        headers={"Authorization": f"Bearer {TOKEN}"},
        ca_pem=sim_ca_pem,
        timeout=0.1,
    )
    async with make_client(opts) as http:
        with pytest.raises(TransientError, match="timed out") as exc:
            await jfrog.JFrogClient(http).get_policy("slow-one")
    assert type(exc.value) is TransientError


async def test_dropped_connection(client: jfrog.JFrogClient, jsim: JFrogSimulator) -> None:
    jsim.faults.add(Fault("drop", path=r"/prune/status$"))
    with pytest.raises(TransientError, match="failed") as exc:
        await client.prune_status()
    assert type(exc.value) is TransientError


async def test_malformed_body(client: jfrog.JFrogClient, jsim: JFrogSimulator) -> None:
    await client.create_policy(policy())
    jsim.faults.add(Fault("malformed", path=r"/policies/docker-old$", method="GET"))
    with pytest.raises(BadResponseError, match="not JSON") as exc:
        await client.get_policy("docker-old")
    assert exc.value.status_code == 200


async def test_wrong_content_type(client: jfrog.JFrogClient, jsim: JFrogSimulator) -> None:
    jsim.faults.add(Fault("content_type", path=r"/system/version$"))
    with pytest.raises(BadResponseError, match="text/html"):
        await client.version()


async def test_wrong_shape_is_a_bad_response(client: jfrog.JFrogClient, jsim: JFrogSimulator) -> None:
    jsim.faults.add(Fault("status", path=r"/prune/status$", status=200, body={"progress": "1 of 256"}))
    with pytest.raises(BadResponseError, match="PruneStatus: status"):
        await client.prune_status()
    jsim.faults.add(Fault("status", path=r"/docker-old/run$", status=201, body={"id": "x"}))
    with pytest.raises(BadResponseError, match="no runId"):
        await client.run_policy("docker-old", dry_run=True)


@pytest.mark.parametrize(
    ("headers", "auth", "status"),
    [
        ({"Authorization": "Bearer wrong-token"}, None, 401),
        ({}, None, 401),
        ({}, ("admin", "wrong"), 401),
        ({"Authorization": "Bearer readonly-token"}, None, 403),
    ],
)
async def test_auth_failures(
    sim: SimulatorServer,
    jsim: JFrogSimulator,
    headers: dict[str, str],
    auth: tuple[str, str] | None,
    status: int,
    sim_ca_pem: str,
) -> None:
    jsim.forbidden_tokens = {"readonly-token"}
    opts = ClientOptions(base_url=sim.url("jfrog"), headers=headers, auth=auth, ca_pem=sim_ca_pem)
    async with make_client(opts) as http:
        with pytest.raises(AuthError) as exc:
            await jfrog.JFrogClient(http).list_policies()
    assert exc.value.status_code == status
    for secret in ("wrong-token", "readonly-token", "wrong"):
        assert secret not in str(exc.value)
    assert ("Bad credentials" in exc.value.message) == (status == 401)


async def test_basic_auth(sim: SimulatorServer, sim_ca_pem: str) -> None:
    opts = ClientOptions(base_url=sim.url("jfrog"), auth=("admin", "password"), ca_pem=sim_ca_pem)
    async with make_client(opts) as http:
        assert await jfrog.JFrogClient(http).list_policies() == []


async def test_auth_fault(client: jfrog.JFrogClient, jsim: JFrogSimulator) -> None:
    jsim.faults.add(Fault("status", status=403, body={"errors": [{"status": 403, "message": "Forbidden"}]}))
    with pytest.raises(AuthError, match="Forbidden"):
        await client.prune_status()


def mock_client(handler: Callable[[httpx.Request], httpx.Response]) -> httpx.AsyncClient:
    return make_client(
        ClientOptions(base_url="https://acme.jfrog.invalid"), transport=httpx.MockTransport(handler)
    )


async def test_injected_http_client_and_quoted_keys() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.raw_path.decode())
        if request.url.path.endswith("/version"):
            return httpx.Response(200, json={"version": "7.90.0"})
        return httpx.Response(404, json={"errors": [{"status": 404, "message": "Policy not found"}]})

    async with mock_client(handler) as http:
        client = jfrog.JFrogClient(http)
        assert (await client.version()).parts == (7, 90, 0)
        with pytest.raises(NotFoundError, match="Policy not found"):
            await client.get_policy("a/b?c")
    assert seen == [
        "/artifactory/api/system/version",
        "/artifactory/api/cleanup/packages/policies/a%2Fb%3Fc",
    ]


async def test_write_calls_ignore_an_unreadable_success_body() -> None:
    """Some servers answer a delete with plain text: the 200 is what counts, not the body."""

    sent: list[tuple[str, str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append((request.method, request.url.path))
        return httpx.Response(200, text="Policy deleted", headers={"content-type": "text/plain"})

    async with mock_client(handler) as http:
        result = await jfrog.JFrogClient(http).delete_policy("docker-old")
    assert result is None
    assert sent == [("DELETE", "/artifactory/api/cleanup/packages/policies/docker-old")], sent


async def test_run_summaries_in_an_envelope() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert dict(request.url.params) == {"policyKey": "k-1", "triggerId": "5"}
        return httpx.Response(
            200, json={"summaries": [{"runId": 5, "state": "COMPLETED", "deletedPackages": 2}]}
        )

    async with mock_client(handler) as http:
        [summary] = await jfrog.JFrogClient(http).run_summaries("k-1", trigger_id=5)
    assert (summary.run_id, summary.state, summary.packages_deleted) == (5, "Succeeded", 2)


async def test_refusal_words_are_read_from_the_message_not_the_key(client: jfrog.JFrogClient) -> None:
    """A key holding "running" must not turn an ordinary 400 into a running-refusal."""
    await client.create_policy(policy("running-already-exists"))
    bad = policy("running-already-exists", searchCriteria=criteria(repos=[]))
    with pytest.raises(RejectedError) as exc:
        await client.update_policy(bad)
    assert type(exc.value) is RejectedError
    assert "at least one repository" in exc.value.message
