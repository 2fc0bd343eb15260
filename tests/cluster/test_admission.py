"""Bad specs are refused by the real API server at apply time, with messages quoting the vendor's rules.

Every refusal asserts its rule's own message. Each test makes the objects it needs (names unique in
the module's namespace), so any test passes alone. No operator is needed: only the API server.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from cleanup_operator.api import cleanup_policy as cp
from cleanup_operator.api import validation as v
from cleanup_operator.api.common import URL_IMMUTABLE
from cleanup_operator.testing.controlplane import ControlPlane
from tests import strategies

from .conftest import Kube


@pytest.fixture(scope="module")
def akube(control_plane: ControlPlane) -> Iterator[Kube]:
    ns = f"adm-{uuid.uuid4().hex[:8]}"
    control_plane.kubectl("create", "namespace", ns)
    yield Kube(control_plane, ns)
    control_plane.kubectl("delete", "namespace", ns, "--wait=false", check=False)


CONNECTION = {"url": "https://jfrog.invalid", "secretRef": {"name": "jfrog"}}

POLICY: dict[str, Any] = {
    "apiVersion": "cleanup.artifacts.dev/v1alpha1",
    "kind": "CleanupPolicy",
    "metadata": {"name": "valid"},
    "spec": {
        "connection": CONNECTION,
        "searchCriteria": {
            "packageTypes": ["docker"],
            "repos": ["docker-local"],
            "includedPackages": ["**"],
            "createdBeforeInMonths": 6,
        },
    },
}


def policy(
    name: str,
    spec: dict[str, Any] | None = None,
    criteria: dict[str, Any] | None = None,
    drop: tuple[str, ...] = (),
) -> dict[str, Any]:
    obj = copy.deepcopy(POLICY)
    obj["metadata"]["name"] = name
    obj["spec"].update(spec or {})
    obj["spec"]["searchCriteria"].update(criteria or {})
    for field in drop:
        obj["spec"]["searchCriteria"].pop(field)
    return obj


PLURALS = {"CleanupPolicy": "cleanuppolicies", "StoragePrune": "storageprunes"}


def refused(kube: Kube, obj: dict[str, Any], message: str) -> None:
    """``obj`` is refused at apply with ``message``, and nothing was stored."""
    result = kube.apply(obj, check=False)
    name = obj["metadata"]["name"]
    assert result.returncode != 0, f"{name} was accepted"
    assert message in result.stderr, result.stderr
    assert kube.get(PLURALS[obj["kind"]], name) is None


def test_valid_policy_is_accepted_with_defaults(akube: Kube) -> None:
    akube.apply(policy("valid"))
    obj = akube.get("cleanuppolicies", "valid")
    assert obj is not None
    assert obj["spec"]["deletionPolicy"] == "Delete"
    assert obj["spec"]["managementPolicy"] == "Manage"
    assert obj["spec"]["interval"] == "10m"
    assert obj["spec"]["connection"]["insecureSkipVerify"] is False


def test_jfrogs_documented_sample_is_admitted(akube: Kube) -> None:
    """The vendor document's own sample (keepLastNVersions: 0 next to two time conditions, a year field)."""
    sample = policy(*strategies.doc_sample())  # read from the vendor document
    akube.apply(sample)
    stored = akube.get("cleanuppolicies", "key1")
    assert stored is not None and stored["spec"]["searchCriteria"]["keepLastNVersions"] == 0


@pytest.mark.parametrize(
    "criteria",
    [
        {"keepLastNVersions": 3, "createdBeforeInMonths": 0},
        {"createdBeforeInMonths": 0, "createdBeforeInDays": 30},
        {"lastDownloadedBeforeInMonths": 2, "lastDownloadedBeforeInDays": 0, "createdBeforeInMonths": 0},
    ],
    ids=["keep-with-zero-months", "days-with-zero-months", "zero-days-beside-months"],
)
def test_a_zero_condition_does_not_count(akube: Kube, criteria: dict[str, Any]) -> None:
    name = f"zero-{uuid.uuid4().hex[:6]}"
    akube.apply(policy(name, criteria=criteria))
    assert akube.get("cleanuppolicies", name) is not None


ONE_OF_THREE = "a policy must use one of the three settings: createdBeforeInMonths"
BAD_POLICIES = [
    ("short-key", {"policyKey": "ab"}, {}, (), "policyKey: " + cp.KEY_RULE),
    ("bad-key-chars", {"policyKey": "bad key!"}, {}, (), "policyKey: " + cp.KEY_RULE),
    ("empty-key", {"policyKey": ""}, {}, (), "policyKey: " + cp.KEY_RULE),
    (
        "project-prefix",
        {"policyKey": "abc-policy", "projectKey": "proj"},
        {},
        (),
        "policyKey: a project-level policy key starts with '<projectKey>-'",
    ),
    ("long-description", {"description": "x" * 257}, {}, (), "description: at most 256 characters"),
    (
        "no-package-type",
        {},
        {"packageTypes": []},
        (),
        "packageTypes: you must enter at least one package type",
    ),
    (
        "no-repo",
        {},
        {"repos": []},
        (),
        "repos: specifying at least one pattern or explicit repository name is mandatory",
    ),
    (
        "two-included",
        {},
        {"includedPackages": ["a", "b"]},
        (),
        "includedPackages: only one pattern or explicit name can be entered",
    ),
    (
        "excluded-pattern",
        {},
        {"excludedPackages": ["com/*"]},
        (),
        "excludedPackages: only explicit names (and not patterns) are accepted",
    ),
    ("no-condition", {}, {}, ("createdBeforeInMonths",), ONE_OF_THREE),
    ("keep-zero-alone", {}, {"keepLastNVersions": 0}, ("createdBeforeInMonths",), ONE_OF_THREE),
    ("all-zero", {}, {"createdBeforeInMonths": 0, "lastDownloadedBeforeInDays": 0}, (), ONE_OF_THREE),
    (
        "keep-and-time",
        {},
        {"keepLastNVersions": 3},
        (),
        "createdBeforeInMonths and lastDownloadedBeforeInMonths can be used together, but they cannot be"
        " used with keepLastNVersions",
    ),
    (
        "months-and-days",
        {},
        {"createdBeforeInDays": 10},
        (),
        "createdBeforeInMonths and createdBeforeInDays cannot be mixed: use months or days",
    ),
    (
        "last-months-and-days",
        {},
        {"lastDownloadedBeforeInMonths": 1, "lastDownloadedBeforeInDays": 10},
        (),
        "lastDownloadedBeforeInMonths and lastDownloadedBeforeInDays cannot be mixed",
    ),
    ("negative-condition", {}, {"createdBeforeInMonths": -1}, (), "should be greater than or equal to 0"),
    (
        "projects-on-project-policy",
        {"projectKey": "proj"},
        {"includeAllProjects": True},
        (),
        "includeAllProjects and includedProjects are relevant only on the global level",
    ),
    (
        "included-projects-on-project",
        {"projectKey": "proj"},
        {"includedProjects": ["p1"]},
        (),
        "includeAllProjects and includedProjects are relevant only on the global level",
    ),
    ("bad-cron", {"cronExp": "every day"}, {}, (), v.QUARTZ_FORMAT_MESSAGE),
    ("cron-both-days", {"cronExp": "0 0 3 1 * MON"}, {}, (), v.QUARTZ_QUESTION_MESSAGE),
    ("cron-two-questions", {"cronExp": "0 0 3 ? * ?"}, {}, (), v.QUARTZ_QUESTION_MESSAGE),
    ("cron-seconds", {"cronExp": "60 0 3 ? * SUN"}, {}, (), v.quartz_range_message("seconds", 0, 59)),
    ("cron-minutes", {"cronExp": "0 61 3 ? * SUN"}, {}, (), v.quartz_range_message("minutes", 0, 59)),
    ("cron-hours", {"cronExp": "0 0 24 ? * SUN"}, {}, (), v.quartz_range_message("hours", 0, 23)),
    ("cron-dom", {"cronExp": "0 0 3 32 * ?"}, {}, (), v.quartz_range_message("day-of-month", 1, 31)),
    ("cron-month", {"cronExp": "0 0 3 1 13 ?"}, {}, (), v.quartz_range_message("month", 1, 12)),
    ("cron-dow", {"cronExp": "0 0 3 ? * 8"}, {}, (), v.quartz_range_message("day-of-week", 1, 7)),
    ("bad-deletion-policy", {"deletionPolicy": "Keep"}, {}, (), 'Unsupported value: "Keep"'),
    (
        "bad-interval",
        {"interval": "ten minutes"},
        {},
        (),
        'spec.interval: Invalid value: "ten minutes": spec.interval in body should match',
    ),
    ("zero-interval", {"interval": "0s"}, {}, (), v.INTERVAL.message),
    ("long-interval", {"interval": "169h"}, {}, (), v.INTERVAL.message),
    ("fast-poll", {"onDemandRun": {"pollInterval": "100ms"}}, {}, (), v.POLL_INTERVAL.message),
    ("slow-poll", {"onDemandRun": {"pollInterval": "2h"}}, {}, (), v.POLL_INTERVAL.message),
    ("zero-timeout", {"connection": dict(CONNECTION, timeout="0s")}, {}, (), v.TIMEOUT.message),
    ("hour-timeout", {"connection": dict(CONNECTION, timeout="1h")}, {}, (), v.TIMEOUT.message),
    (
        "two-properties",
        {},
        {"includedProperties": {"a": ["1"], "b": ["2"]}},
        (),
        "includedProperties: one property key with one value",
    ),
]


@pytest.mark.parametrize(
    ("name", "spec", "criteria", "drop", "message"), BAD_POLICIES, ids=[b[0] for b in BAD_POLICIES]
)
def test_bad_policy_is_rejected(
    akube: Kube,
    name: str,
    spec: dict[str, Any],
    criteria: dict[str, Any],
    drop: tuple[str, ...],
    message: str,
) -> None:
    refused(akube, policy(name, spec, criteria, drop), message)


@pytest.mark.parametrize(
    ("name", "spec", "message"),
    [
        ("a.b", {}, cp.NAME_AS_KEY),
        ("ab", {}, cp.NAME_TOO_SHORT),
        ("proj-stale", {"projectKey": "proj"}, cp.NAME_HAS_PREFIX),
    ],
)
def test_name_that_cannot_be_the_key_is_refused(
    akube: Kube, name: str, spec: dict[str, Any], message: str
) -> None:
    refused(akube, policy(name, spec), message)


def test_names_that_would_share_a_key_cannot_both_exist(akube: Kube) -> None:
    """``a.b`` and ``a-b`` would both derive the key ``a-b``: the dotted one is refused with the reason."""
    akube.apply(policy("a-b"))
    refused(akube, policy("a.b"), cp.NAME_AS_KEY)
    # With an explicit key, any name works; with a project, a short name gets the prefix and is long enough.
    akube.apply(policy("c.d", {"policyKey": "c-d-explicit"}))
    akube.apply(policy("xy", {"projectKey": "proj"}))
    assert akube.get("cleanuppolicies", "c.d") is not None and akube.get("cleanuppolicies", "xy") is not None


def _changed(
    name: str, spec: dict[str, Any], edit: dict[str, Any], drop: str | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    before = policy(name, spec)
    after = copy.deepcopy(before)
    after["spec"].update(edit)
    if drop:
        after["spec"].pop(drop)
    return before, after


IDENTITY_CHANGES = [
    ("key-changed", {"policyKey": "team-a-old"}, {"policyKey": "team-a-new"}, None, "policyKey"),
    ("key-removed", {"policyKey": "team-a-kept"}, {}, "policyKey", "policyKey"),
    ("key-added", {}, {"policyKey": "key-added-later"}, None, "policyKey"),
    ("project-changed", {"projectKey": "proj"}, {"projectKey": "other"}, None, "projectKey"),
    ("project-added", {}, {"projectKey": "proj"}, None, "projectKey"),
    ("project-removed", {"projectKey": "proj"}, {}, "projectKey", "projectKey"),
]


@pytest.mark.parametrize(
    ("name", "spec", "edit", "drop", "field"), IDENTITY_CHANGES, ids=[c[0] for c in IDENTITY_CHANGES]
)
def test_policy_identity_is_immutable(
    akube: Kube, name: str, spec: dict[str, Any], edit: dict[str, Any], drop: str | None, field: str
) -> None:
    before, after = _changed(name, spec, edit, drop)
    akube.apply(before)
    res = akube.apply(after, check=False)
    assert res.returncode != 0, f"{field} change was accepted"
    assert cp.IMMUTABLE.format(field=field) in res.stderr, res.stderr
    stored = akube.get("cleanuppolicies", name)
    assert stored is not None and stored["spec"].get(field) == spec.get(field)
    # The same spec again, and changes of other fields, still apply.
    akube.apply(before)
    akube.apply(policy(name, dict(spec, description="still editable")))


def test_connection_url_is_immutable(akube: Kube) -> None:
    before = policy("moving-url")
    akube.apply(before)
    after = copy.deepcopy(before)
    after["spec"]["connection"] = dict(CONNECTION, url="https://other.invalid")
    res = akube.apply(after, check=False)
    assert res.returncode != 0 and URL_IMMUTABLE in res.stderr, res.stderr
    akube.apply(before)
    timeout = copy.deepcopy(before)
    timeout["spec"]["connection"]["timeout"] = "10s"
    akube.apply(timeout)


PRUNE: dict[str, Any] = {
    "apiVersion": "cleanup.artifacts.dev/v1alpha1",
    "kind": "StoragePrune",
    "metadata": {"name": "prune"},
    "spec": {"connection": CONNECTION},
}


def prune(name: str, **spec: Any) -> dict[str, Any]:
    obj = copy.deepcopy(PRUNE)
    obj["metadata"]["name"] = name
    obj["spec"].update(spec)
    return obj


BAD_PRUNES = [
    ("dir", {"startFromDirectory": "zz"}, "spec.startFromDirectory in body should match '^[0-9a-f]{2}$'"),
    ("binary", {"startFromBinary": "abc"}, "spec.startFromBinary in body should match '^[0-9a-f]{40}$'"),
    (
        "days",
        {"binaryOlderThanDays": -1},
        "spec.binaryOlderThanDays in body should be greater than or equal to 0",
    ),
    ("fields", {"schedule": "0 3 * *"}, 'spec.schedule: Invalid value: "0 3 * *"'),
    ("minute", {"schedule": "61 * * * *"}, v.CRON5_RANGE_MESSAGE),
    ("hour", {"schedule": "0 24 * * *"}, v.CRON5_RANGE_MESSAGE),
    ("zero-step", {"schedule": "*/0 * * * *"}, v.CRON5_RANGE_MESSAGE),
    ("month-name", {"schedule": "0 0 1 foo *"}, v.CRON5_RANGE_MESSAGE),
    ("inverted", {"schedule": "30-10 * * * *"}, v.CRON5_ORDER_MESSAGE),
    ("feb-30", {"schedule": "0 0 30 2 *"}, v.CRON5_NEVER_MESSAGE),
    ("apr-31", {"schedule": "0 0 31 4 *"}, v.CRON5_NEVER_MESSAGE),
    ("short-months-31", {"schedule": "0 0 31 2,apr,6-6,9/2 *"}, v.CRON5_NEVER_MESSAGE),
    ("history", {"historyLimit": 500}, "spec.historyLimit in body should be less than or equal to 50"),
    ("fast-poll", {"pollInterval": "0s"}, v.POLL_INTERVAL.message),
    ("timeout", {"connection": dict(CONNECTION, timeout="6m")}, v.TIMEOUT.message),
]


def test_valid_prune_defaults(akube: Kube) -> None:
    akube.apply(prune("prune"))
    obj = akube.get("storageprunes", "prune")
    assert obj is not None
    assert obj["spec"]["dryRun"] is True
    assert obj["spec"]["binaryOlderThanDays"] == 1
    assert obj["spec"]["stopOnDelete"] is True
    assert obj["spec"]["pollInterval"] == "15s"
    assert obj["spec"]["historyLimit"] == 5


@pytest.mark.parametrize(("name", "spec", "message"), BAD_PRUNES, ids=[b[0] for b in BAD_PRUNES])
def test_bad_prune_is_rejected(akube: Kube, name: str, spec: dict[str, Any], message: str) -> None:
    obj = prune(f"bad-{name}", **spec)
    res = akube.apply(obj, check=False)
    assert res.returncode != 0, f"{name} was accepted"
    assert message in res.stderr, res.stderr
    assert akube.get("storageprunes", obj["metadata"]["name"]) is None


@pytest.mark.parametrize(
    "schedule", ["0 0 29 2 *", "0 0 30 2 1", "0 0 31 */2 *", "0 4 * * SUN", "@daily", "0 0 1-7 * mon-fri"]
)
def test_schedules_that_fire_are_admitted(akube: Kube, schedule: str) -> None:
    name = f"fires-{uuid.uuid4().hex[:6]}"
    akube.apply(prune(name, schedule=schedule, pollInterval="500ms"))
    assert akube.get("storageprunes", name) is not None


def test_prune_connection_url_is_immutable(akube: Kube) -> None:
    akube.apply(prune("prune-url"))
    res = akube.apply(
        prune("prune-url", connection=dict(CONNECTION, url="https://other.invalid")), check=False
    )
    assert res.returncode != 0 and URL_IMMUTABLE in res.stderr, res.stderr
    akube.apply(prune("prune-url"))
    akube.apply(prune("prune-url", dryRun=False))


HARNESS = {
    "accountId": "acc1",
    "apiKeySecretRef": {"name": "h", "key": "apiKey"},
    "artifactStreamIds": ["s1"],
}
SOURCECRAFT = {
    "org": "o",
    "repo": "r",
    "run": "42",
    "workflow": "w",
    "task": "t",
    "cube": "c",
    "tokenSecretRef": {"name": "sc", "key": "token"},
}


def sync(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "cleanup.artifacts.dev/v1alpha1",
        "kind": "ArtifactStreamSync",
        "metadata": {"name": name},
        "spec": spec,
    }


def test_sync_needs_exactly_one_source(akube: Kube) -> None:
    both = akube.apply(sync("both", {"harness": HARNESS, "sourceCraft": SOURCECRAFT}), check=False)
    assert both.returncode != 0 and "exactly one source: set either harness or sourceCraft" in both.stderr
    neither = akube.apply(sync("neither", {}), check=False)
    assert (
        neither.returncode != 0 and "exactly one source: set either harness or sourceCraft" in neither.stderr
    )
    akube.apply(sync("harness-only", {"harness": HARNESS}))
    assert (
        akube.get("artifactstreamsyncs", "harness-only")["spec"]["harness"]["url"] == "https://app.harness.io"
    )


def test_sourcecraft_run_or_latest(akube: Kube) -> None:
    message = "set either run or latestRun: true, not both and not neither"
    both = dict(SOURCECRAFT, latestRun=True)
    res = akube.apply(sync("run-and-latest", {"sourceCraft": both}), check=False)
    assert res.returncode != 0 and message in res.stderr
    neither = {k: v for k, v in SOURCECRAFT.items() if k != "run"}
    res = akube.apply(sync("no-run", {"sourceCraft": neither}), check=False)
    assert res.returncode != 0 and message in res.stderr


def test_no_stream_ids_rejected(akube: Kube) -> None:
    res = akube.apply(sync("no-ids", {"harness": dict(HARNESS, artifactStreamIds=[])}), check=False)
    assert res.returncode != 0, res.stderr
    assert "spec.harness.artifactStreamIds in body should have at least 1 items" in res.stderr, res.stderr


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"interval": "0s"}, v.INTERVAL.message),
        ({"interval": "30d"}, 'spec.interval: Invalid value: "30d": spec.interval in body should match'),
        ({"schedule": "0 0 30 2 *"}, v.CRON5_NEVER_MESSAGE),
        ({"schedule": "0 25 * * *"}, v.CRON5_RANGE_MESSAGE),
    ],
    ids=["zero-interval", "days-unit", "never-fires", "hour-25"],
)
def test_bad_sync_timing_is_rejected(akube: Kube, spec: dict[str, Any], message: str) -> None:
    res = akube.apply(sync(f"timing-{uuid.uuid4().hex[:6]}", {"harness": HARNESS, **spec}), check=False)
    assert res.returncode != 0 and message in res.stderr, res.stderr


def test_kubectl_get_cleanup_category_lists_all_kinds(akube: Kube) -> None:
    suffix = uuid.uuid4().hex[:6]
    akube.apply(policy(f"cat-{suffix}"))
    akube.apply(prune(f"cat-{suffix}"))
    akube.apply(sync(f"cat-{suffix}", {"harness": HARNESS}))
    out = akube.kubectl("get", "cleanup", "-n", akube.ns, "-o", "name").stdout
    assert f"cleanuppolicy.cleanup.artifacts.dev/cat-{suffix}" in out
    assert f"storageprune.cleanup.artifacts.dev/cat-{suffix}" in out
    assert f"artifactstreamsync.cleanup.artifacts.dev/cat-{suffix}" in out
