"""Drift comparison against both shapes a server may answer for unset optional fields.

A server may leave a field it was never sent out of its answer (``excludedRepos`` absent), or echo
the documented sample's defaults (``"excludedRepos": []``, ``"description": ""``, ``0``, ``false``).
Either way the operator must see no drift, and a real change must still show in both shapes.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from cleanup_operator.api.cleanup_policy import CleanupPolicySpec
from cleanup_operator.reconcile.cleanup_policy import desired_policy, differences
from cleanup_operator.vendors.jfrog import Policy, normalise_policy

CONNECTION = {"url": "https://acme.jfrog.io", "secretRef": {"name": "jfrog"}}

#: The defaults of the vendor-doc sample's shape (jfrog-get-package-cleanup-policy.txt), written out
#: here rather than taken from the simulator, so the two cannot share a mistake.
TOP_DEFAULTS: dict[str, Any] = {
    "description": "",
    "cronExp": "",
    "durationInMinutes": 0,
    "enabled": False,
    "skipTrashcan": False,
}
CRITERIA_DEFAULTS: dict[str, Any] = {
    "excludedRepos": [],
    "excludedPackages": [],
    "includeAllProjects": False,
    "includedProjects": [],
    "createdBeforeInMonths": 0,
    "lastDownloadedBeforeInMonths": 0,
    "keepLastNVersions": 0,
}

SPECS: dict[str, dict[str, Any]] = {
    "mandatory-only": {
        "searchCriteria": {
            "packageTypes": ["docker"],
            "repos": ["docker-local"],
            "includedPackages": ["**"],
            "keepLastNVersions": 3,
        }
    },
    "every-optional-field": {
        "description": "stale images",
        "cronExp": "0 0 3 ? * SUN",
        "durationInMinutes": 30,
        "skipTrashcan": True,
        "searchCriteria": {
            "packageTypes": ["docker", "npm"],
            "repos": ["docker-*-local"],
            "excludedRepos": ["docker-keep-local"],
            "includedPackages": ["**"],
            "excludedPackages": ["base"],
            "includeAllProjects": True,
            "includedProjects": ["default"],
            "createdBeforeInMonths": 12,
            "lastDownloadedBeforeInMonths": 6,
        },
    },
    "days-conditions": {
        "searchCriteria": {
            "packageTypes": ["maven"],
            "repos": ["libs-release-local"],
            "includedPackages": ["com/acme/**"],
            "createdBeforeInDays": 90,
            "lastDownloadedBeforeInDays": 30,
        }
    },
    "project-level": {
        "projectKey": "acme",
        "policyKey": "acme-stale",
        "searchCriteria": {
            "packageTypes": ["npm"],
            "repos": ["acme-npm-local"],
            "includedPackages": ["**"],
            "lastDownloadedBeforeInMonths": 3,
        },
    },
}


def spec(name: str) -> CleanupPolicySpec:
    return CleanupPolicySpec.model_validate({"connection": CONNECTION, **copy.deepcopy(SPECS[name])})


def left_out(payload: dict[str, Any]) -> dict[str, Any]:
    """A server that answers no optional field holding a default, even one it was sent."""
    out = {k: v for k, v in payload.items() if k not in TOP_DEFAULTS or v != TOP_DEFAULTS[k]}
    out["searchCriteria"] = {
        k: v
        for k, v in payload["searchCriteria"].items()
        if k not in CRITERIA_DEFAULTS or v != CRITERIA_DEFAULTS[k]
    }
    out["enabled"] = False
    return out


def sample_shape(payload: dict[str, Any]) -> dict[str, Any]:
    """A server that fills every field it was not sent with the sample's default."""
    out = {**TOP_DEFAULTS, **payload, "enabled": False}
    out["searchCriteria"] = {**CRITERIA_DEFAULTS, **payload["searchCriteria"]}
    return out


SHAPES = {"left-out": left_out, "sample-shape": sample_shape}


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name", SPECS)
def test_no_drift_in_either_shape(name: str, shape: str) -> None:
    desired = desired_policy(spec(name), "acme-stale" if name == "project-level" else "stale")
    answer = SHAPES[shape](desired.payload())
    if shape == "left-out" and name != "every-optional-field":
        assert "description" not in answer and "excludedRepos" not in answer["searchCriteria"]
    else:
        assert "description" in answer and "excludedRepos" in answer["searchCriteria"]
    current = Policy.model_validate(answer)
    assert differences(desired.model_copy(update={"enabled": False}), current) == []
    assert normalise_policy(desired.model_copy(update={"enabled": False})) == normalise_policy(current)


def test_missing_and_empty_fields_normalise_equal() -> None:
    """Field by field: absent, null and the sample's default are one value for drift."""
    base = {
        "key": "k",
        "searchCriteria": {"packageTypes": ["docker"], "repos": ["r"], "includedPackages": ["**"]},
    }
    plain = normalise_policy(Policy.model_validate(base))
    for name, default in TOP_DEFAULTS.items():
        for value in (default, None):
            assert normalise_policy(Policy.model_validate({**base, name: value})) == plain, (name, value)
    for name, default in CRITERIA_DEFAULTS.items():
        for value in (default, None):
            criteria = {**base["searchCriteria"], name: value}
            assert normalise_policy(Policy.model_validate({**base, "searchCriteria": criteria})) == plain, (
                name,
                value,
            )


@pytest.mark.parametrize("shape", SHAPES)
def test_real_changes_show_in_either_shape(shape: str) -> None:
    desired = desired_policy(spec("every-optional-field"), "stale").model_copy(update={"enabled": False})
    payload = desired.payload()
    payload["description"] = "edited in the UI"
    payload["searchCriteria"]["excludedRepos"] = ["docker-other-local"]
    del payload["searchCriteria"]["excludedPackages"]  # removed by hand: the server no longer has it
    current = Policy.model_validate(SHAPES[shape](payload))
    assert differences(desired, current) == [
        "description",
        "searchCriteria.excludedPackages",
        "searchCriteria.excludedRepos",
    ]
