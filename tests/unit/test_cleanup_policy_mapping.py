"""Spec → vendor payload for CleanupPolicy, checked against the vendor document's own sample."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cleanup_operator.api.cleanup_policy import CLEANUP_POLICY, CleanupPolicySpec
from cleanup_operator.reconcile.cleanup_policy import check_quartz, desired_policy, differences, policy_key
from cleanup_operator.reconcile.common import InvalidSpec
from cleanup_operator.runtime import Obj
from cleanup_operator.vendors.jfrog import Policy

from .test_jfrog_models import doc_policy_sample


def spec_from_vendor(sample: dict[str, Any]) -> CleanupPolicySpec:
    """What a user writes to declare the doc's policy: the same fields, camelCase, under spec."""
    body = {k: v for k, v in sample.items() if k not in ("key", "enabled")}
    criteria = dict(body.pop("searchCriteria"))
    # The doc's sample combines keepLastNVersions: 0 with the months conditions; 0 means "unset".
    if criteria.get("keepLastNVersions") == 0:
        criteria.pop("keepLastNVersions")
    return CleanupPolicySpec.model_validate(
        {
            "connection": {"url": "https://acme.jfrog.io", "secretRef": {"name": "jfrog"}},
            "policyKey": sample["key"],
            "enabled": sample["enabled"],
            "searchCriteria": criteria,
            **body,
        }
    )


def obj(name: str, spec: dict[str, Any] | None = None) -> Obj:
    return Obj(CLEANUP_POLICY, "ns", name, "uid", 1, "", {}, spec or {}, {})


def test_doc_sample_round_trips_through_spec(vendor_docs: Path) -> None:
    sample = doc_policy_sample(vendor_docs)
    spec = spec_from_vendor(sample)
    payload = desired_policy(spec, sample["key"]).payload()
    assert payload["key"] == "key1"
    assert payload["cronExp"] == "0 15 10 * * ? 2024"
    assert payload["durationInMinutes"] == 150
    assert payload["skipTrashcan"] is False
    crit = payload["searchCriteria"]
    assert crit["packageTypes"] == ["docker", "maven"]
    assert crit["repos"] == ["repo1", "repo2"]
    assert crit["includedPackages"] == ["com/jfrog"]
    assert crit["excludedPackages"] == ["com/jfrog/latest"]
    assert crit["includedProjects"] == ["project1", "project2"]
    assert crit["createdBeforeInMonths"] == 12 and crit["lastDownloadedBeforeInMonths"] == 1
    # What the server answers for the same policy is no drift.
    assert differences(desired_policy(spec, "key1"), Policy.model_validate(sample)) == []


def test_payload_omits_unset_fields_and_keeps_days() -> None:
    spec = CleanupPolicySpec.model_validate(
        {
            "connection": {"url": "https://x", "secretRef": {"name": "s"}},
            "searchCriteria": {
                "packageTypes": ["npm"],
                "repos": ["npm-local"],
                "includedPackages": ["**"],
                "createdBeforeInDays": 30,
                "includedProperties": {"release": ["false"]},
            },
        }
    )
    payload = desired_policy(spec, "npm-old").payload()
    assert "description" not in payload and "cronExp" not in payload
    assert payload["enabled"] is False
    assert payload["searchCriteria"]["createdBeforeInDays"] == 30
    assert payload["searchCriteria"]["includedProperties"] == {"release": ["false"]}
    assert "keepLastNVersions" not in payload["searchCriteria"]


def test_server_echoed_defaults_are_not_drift() -> None:
    spec = CleanupPolicySpec.model_validate(
        {
            "connection": {"url": "https://x", "secretRef": {"name": "s"}},
            "searchCriteria": {
                "packageTypes": ["docker"],
                "repos": ["r"],
                "includedPackages": ["**"],
                "keepLastNVersions": 2,
            },
        }
    )
    echoed = Policy.model_validate(
        {
            "key": "k",
            "description": "",
            "cronExp": "",
            "durationInMinutes": 0,
            "enabled": False,
            "skipTrashcan": False,
            "searchCriteria": {
                "packageTypes": ["docker"],
                "repos": ["r"],
                "excludedRepos": [],
                "includedPackages": ["**"],
                "excludedPackages": [],
                "includeAllProjects": False,
                "includedProjects": [],
                "createdBeforeInMonths": 0,
                "lastDownloadedBeforeInMonths": 0,
                "keepLastNVersions": 2,
            },
        }
    )
    assert differences(desired_policy(spec, "k"), echoed) == []
    changed = echoed.model_copy(update={"description": "edited", "enabled": True})
    assert differences(desired_policy(spec, "k"), changed) == ["description", "enabled"]


@pytest.mark.parametrize(
    ("name", "project", "explicit", "key"),
    [
        ("docker-stale", None, None, "docker-stale"),
        ("my.policy", None, None, "my-policy"),
        ("stale", "proj", None, "proj-stale"),
        ("proj-stale", "proj", None, "proj-stale"),
        ("whatever", "proj", "proj-chosen", "proj-chosen"),
    ],
)
def test_policy_key(name: str, project: str | None, explicit: str | None, key: str) -> None:
    spec = CleanupPolicySpec.model_validate(
        {
            "connection": {"url": "https://x", "secretRef": {"name": "s"}},
            "projectKey": project,
            "policyKey": explicit,
            "searchCriteria": {
                "packageTypes": ["docker"],
                "repos": ["r"],
                "includedPackages": ["**"],
                "keepLastNVersions": 1,
            },
        }
    )
    assert policy_key(obj(name), spec) == key


@pytest.mark.parametrize("expr", ["0 15 10 * * ? 2024", "0 0 3 ? * SUN", "0 0/5 * * * ?", "0 0 12 1 * ?"])
def test_quartz_accepts(expr: str) -> None:
    check_quartz(expr)


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("0 0 3 * *", "6 or 7 fields"),
        ("0 0 3 1 * MON", "'?' in day-of-month or day-of-week"),
        ("0 61 3 * * ?", "61 is outside 0-59"),
        ("0 0 25 * * ?", "25 is outside 0-23"),
    ],
)
def test_quartz_rejects(expr: str, message: str) -> None:
    with pytest.raises(InvalidSpec, match=message.replace("?", r"\?").replace("(", r"\(")):
        check_quartz(expr)
