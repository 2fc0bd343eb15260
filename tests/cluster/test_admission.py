"""Bad specs are refused by the real API server at apply time, with messages quoting the vendor's rules."""

from __future__ import annotations

import copy
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from cleanup_operator.testing.controlplane import ControlPlane

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


def test_valid_policy_is_accepted_with_defaults(akube: Kube) -> None:
    akube.apply(policy("valid"))
    obj = akube.get("cleanuppolicies", "valid")
    assert obj is not None
    assert obj["spec"]["deletionPolicy"] == "Delete"
    assert obj["spec"]["managementPolicy"] == "Manage"
    assert obj["spec"]["interval"] == "10m"
    assert obj["spec"]["connection"]["insecureSkipVerify"] is False


BAD_POLICIES = [
    ("short-key", {"policyKey": "ab"}, {}, (), "key must be at least 3 characters"),
    ("bad-key-chars", {"policyKey": "bad key!"}, {}, (), "^[a-zA-Z0-9_-]+$"),
    (
        "project-prefix",
        {"policyKey": "abc-policy", "projectKey": "proj"},
        {},
        (),
        "starts with '<projectKey>-'",
    ),
    ("long-description", {"description": "x" * 257}, {}, (), "at most 256 characters"),
    ("no-package-type", {}, {"packageTypes": []}, (), "at least one package type"),
    ("no-repo", {}, {"repos": []}, (), "at least one pattern or explicit repository name"),
    ("two-included", {}, {"includedPackages": ["a", "b"]}, (), "only one pattern or explicit name"),
    ("excluded-pattern", {}, {"excludedPackages": ["com/*"]}, (), "only explicit names (and not patterns)"),
    ("no-condition", {}, {}, ("createdBeforeInMonths",), "must use one of the three settings"),
    ("keep-and-time", {}, {"keepLastNVersions": 3}, (), "cannot be used with keepLastNVersions"),
    ("months-and-days", {}, {"createdBeforeInDays": 10}, (), "cannot be mixed"),
    (
        "projects-on-project-policy",
        {"projectKey": "proj"},
        {"includeAllProjects": True},
        (),
        "only on the global level",
    ),
    (
        "included-projects-on-project",
        {"projectKey": "proj"},
        {"includedProjects": ["p1"]},
        (),
        "only on the global level",
    ),
    ("bad-cron", {"cronExp": "every day"}, {}, (), "Quartz expression"),
    ("bad-deletion-policy", {"deletionPolicy": "Keep"}, {}, (), "Unsupported value"),
    ("bad-interval", {"interval": "ten minutes"}, {}, (), "spec.interval"),
    (
        "two-properties",
        {},
        {"includedProperties": {"a": ["1"], "b": ["2"]}},
        (),
        "one property key with one value",
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
    result = akube.apply(policy(name, spec, criteria, drop), check=False)
    assert result.returncode != 0, f"{name} was accepted"
    assert message in result.stderr, result.stderr
    assert akube.get("cleanuppolicies", name) is None


PRUNE = {
    "apiVersion": "cleanup.artifacts.dev/v1alpha1",
    "kind": "StoragePrune",
    "metadata": {"name": "prune"},
    "spec": {"connection": CONNECTION},
}

BAD_PRUNES = [
    ("dir", {"startFromDirectory": "zz"}, "spec.startFromDirectory"),
    ("binary", {"startFromBinary": "abc"}, "spec.startFromBinary"),
    ("days", {"binaryOlderThanDays": -1}, "spec.binaryOlderThanDays"),
    ("schedule", {"schedule": "0 3 * *"}, "spec.schedule"),
    ("history", {"historyLimit": 500}, "spec.historyLimit"),
]


def test_valid_prune_defaults(akube: Kube) -> None:
    akube.apply(PRUNE)
    obj = akube.get("storageprunes", "prune")
    assert obj is not None
    assert obj["spec"]["dryRun"] is True
    assert obj["spec"]["binaryOlderThanDays"] == 1
    assert obj["spec"]["stopOnDelete"] is True
    assert obj["spec"]["pollInterval"] == "15s"
    assert obj["spec"]["historyLimit"] == 5


@pytest.mark.parametrize(("name", "spec", "message"), BAD_PRUNES, ids=[b[0] for b in BAD_PRUNES])
def test_bad_prune_is_rejected(akube: Kube, name: str, spec: dict[str, Any], message: str) -> None:
    obj = copy.deepcopy(PRUNE)
    obj["metadata"]["name"] = f"bad-{name}"
    obj["spec"].update(spec)
    result = akube.apply(obj, check=False)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr


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
    assert both.returncode != 0 and "exactly one source" in both.stderr
    neither = akube.apply(sync("neither", {}), check=False)
    assert neither.returncode != 0 and "exactly one source" in neither.stderr
    akube.apply(sync("harness-only", {"harness": HARNESS}))
    assert (
        akube.get("artifactstreamsyncs", "harness-only")["spec"]["harness"]["url"] == "https://app.harness.io"
    )


def test_sourcecraft_run_or_latest(akube: Kube) -> None:
    both = dict(SOURCECRAFT, latestRun=True)
    res = akube.apply(sync("run-and-latest", {"sourceCraft": both}), check=False)
    assert res.returncode != 0 and "either run or latestRun" in res.stderr
    neither = {k: v for k, v in SOURCECRAFT.items() if k != "run"}
    res = akube.apply(sync("no-run", {"sourceCraft": neither}), check=False)
    assert res.returncode != 0 and "either run or latestRun" in res.stderr


def test_no_stream_ids_rejected(akube: Kube) -> None:
    res = akube.apply(sync("no-ids", {"harness": dict(HARNESS, artifactStreamIds=[])}), check=False)
    assert res.returncode != 0 and "artifactStreamIds" in res.stderr


def test_kubectl_get_cleanup_category_lists_all_kinds(akube: Kube) -> None:
    out = akube.kubectl("get", "cleanup", "-n", akube.ns, "-o", "name").stdout
    assert "cleanuppolicy.cleanup.artifacts.dev/valid" in out
    assert "storageprune.cleanup.artifacts.dev/prune" in out
    assert "artifactstreamsync.cleanup.artifacts.dev/harness-only" in out
