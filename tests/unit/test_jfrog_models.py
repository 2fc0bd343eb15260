"""The JFrog models against the vendor's own samples, drift normalisation, version gates, payloads.

The samples are read from ``vendor-docs`` at test time, never copied: if the doc changes, so do the tests.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from cleanup_operator.vendors.jfrog import (
    ArtifactoryVersion,
    Policy,
    PruneStatus,
    RunSummary,
    SearchCriteria,
    normalise_policy,
    parse_version,
    unsupported_features,
)

POLICY_DOC = "jfrog-get-package-cleanup-policy.txt"
PUD_DOC = "jfrog-pud-status.txt"


# Extraction from the vendor documents -----------------------------------------------------------


def json_object_after(text: str, marker: str) -> str:
    """The first balanced ``{…}`` after ``marker`` (the samples hold no braces inside strings).

    The docs were copied from web pages that indent with non-breaking spaces, which JSON does not
    take as whitespace; none sits inside a string value (checked by a test), so they become spaces.
    """
    text = text.replace("\xa0", " ")
    start = text.index("{", text.index(marker))
    depth = 0
    for i in range(start, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[start : i + 1]
    raise AssertionError(f"unbalanced JSON after {marker!r}")


def repair_doc_json(text: str) -> str:
    """Fix the two kinds of typo in the policy sample so that it parses as JSON.

    1. A missing comma between two members: a line ending in a value (a digit, a closing quote or
       bracket, or true/false/null) followed by a line starting with a quoted key
       (``"lastDownloadedBeforeInMonths": 1`` ⏎ ``"keepLastNVersions": 0``).
    2. Trailing commas before ``]`` or ``}`` (``"com/jfrog",`` ⏎ ``]``).

    Only whitespace between tokens is touched, so string values stay as the doc wrote them.
    """
    text = re.sub(r'([0-9"\]}]|true|false|null)([ \t]*\n[ \t]*")', r"\1,\2", text)
    return re.sub(r",(\s*[\]}])", r"\1", text)


def doc_policy_sample(docs: Path) -> dict[str, Any]:
    raw = json_object_after((docs / POLICY_DOC).read_text(), "Sample Response:")
    sample = json.loads(repair_doc_json(raw))
    assert isinstance(sample, dict)
    return sample


def doc_prune_status_sample(docs: Path) -> dict[str, Any]:
    raw = json_object_after((docs / PUD_DOC).read_text(), "HTTP/1.1 200 OK")
    sample = json.loads(raw)
    assert isinstance(sample, dict)
    return sample


def doc_prune_never_ran_sample(docs: Path) -> dict[str, Any]:
    raw = json_object_after((docs / PUD_DOC).read_text(), "HTTP/1.1 412 Precondition Failed")
    sample = json.loads(raw)
    assert isinstance(sample, dict)
    return sample


def wire_names(model: type[BaseModel]) -> set[str]:
    return {field.alias or name for name, field in model.model_fields.items()}


def test_repair_fixes_exactly_the_doc_typos() -> None:
    broken = '{\n  "a": [\n    "x",\n  ],\n  "b": 1\n  "c": true\n  "d": "v"\n}'
    assert json.loads(repair_doc_json(broken)) == {"a": ["x"], "b": 1, "c": True, "d": "v"}
    valid = '{\n  "a": "1, 2 }",\n  "b": [1, 2]\n}'
    assert repair_doc_json(valid) == valid


def test_non_breaking_spaces_sit_only_between_tokens(vendor_docs: Path) -> None:
    for doc in (POLICY_DOC, PUD_DOC):
        text = (vendor_docs / doc).read_text()
        assert "\xa0" in text  # the reason for the replacement in json_object_after
        assert not re.search('"[^"\n]*\xa0[^"\n]*"', text), doc


def test_the_policy_sample_needs_the_repair(vendor_docs: Path) -> None:
    raw = json_object_after((vendor_docs / POLICY_DOC).read_text(), "Sample Response:")
    with pytest.raises(json.JSONDecodeError):
        json.loads(raw)
    assert doc_policy_sample(vendor_docs)["key"] == "key1"


# Contract: the doc samples parse ---------------------------------------------------------------


def test_policy_sample_parses(vendor_docs: Path) -> None:
    sample = doc_policy_sample(vendor_docs)
    policy = Policy.model_validate(sample)
    assert policy.key == "key1"
    assert policy.description == "some test description"
    assert policy.cron_exp == "0 15 10 * * ? 2024"
    assert policy.duration_in_minutes == 150
    assert policy.enabled is False
    assert policy.skip_trashcan is False
    c = policy.search_criteria
    assert c.package_types == ["docker", "maven"]
    assert c.repos == ["repo1", "repo2"]
    assert c.excluded_repos == []
    assert c.included_packages == ["com/jfrog"]
    assert c.excluded_packages == ["com/jfrog/latest"]
    assert c.include_all_projects is False
    assert c.included_projects == ["project1", "project2"]
    assert c.created_before_in_months == 12
    assert c.last_downloaded_before_in_months == 1
    assert c.keep_last_n_versions == 0


def test_policy_model_knows_every_field_of_the_sample(vendor_docs: Path) -> None:
    """Nothing the server sends is dropped silently, and the payload is the sample again."""
    sample = doc_policy_sample(vendor_docs)
    assert set(sample) <= wire_names(Policy)
    assert set(sample["searchCriteria"]) <= wire_names(SearchCriteria)
    assert Policy.model_validate(sample).payload() == sample


def test_prune_status_sample_parses(vendor_docs: Path) -> None:
    sample = doc_prune_status_sample(vendor_docs)
    status = PruneStatus.model_validate(sample)
    assert status.status == "running"
    assert status.running is True
    assert status.dry_run is True
    assert status.progress == "2 of 256"
    assert status.directories_done == 2
    assert status.directories_total == 256
    assert status.error is None
    assert status.timing is not None
    assert status.timing.started_at_millis == 1692862063727
    assert status.timing.started_at == "2023-08-24T10:27:43"
    assert status.timing.duration_millis == 285404
    assert status.timing.duration == "0:04:45.404"
    assert status.timing.last_updated_millis == 1692862349131
    assert status.report is not None
    assert (
        status.report.total_binaries_processed,
        status.report.total_binaries_cleaned,
        status.report.total_bytes_cleaned,
    ) == (2, 0, 0)
    last = status.last_handled_directory
    assert last is not None
    assert (last.name, last.status, last.binaries_processed, last.binaries_cleaned, last.bytes_cleaned) == (
        "01",
        "finished",
        1,
        0,
        0,
    )
    assert last.timing is not None and last.timing.duration_millis == 2090


def test_prune_status_model_knows_every_field_of_the_sample(vendor_docs: Path) -> None:
    sample = doc_prune_status_sample(vendor_docs)
    status = PruneStatus.model_validate(sample)
    assert status.model_dump(by_alias=True, exclude_none=True, mode="json") == sample


def test_prune_never_ran_sample_is_the_412_info(vendor_docs: Path) -> None:
    assert doc_prune_never_ran_sample(vendor_docs) == {"info": "No Prune task found"}


# Drift without false positives --------------------------------------------------------------------

BASE: dict[str, Any] = {
    "key": "docker-old",
    "description": "old docker images",
    "cronExp": "0 0 2 ? * SUN",
    "durationInMinutes": 60,
    "enabled": True,
    "skipTrashcan": False,
    "searchCriteria": {
        "packageTypes": ["docker"],
        "repos": ["docker-local", "docker-dev"],
        "includedPackages": ["**"],
        "createdBeforeInMonths": 6,
    },
}


def variant(top: dict[str, Any] | None = None, criteria: dict[str, Any] | None = None) -> Policy:
    body = json.loads(json.dumps(BASE))
    body.update(top or {})
    body["searchCriteria"].update(criteria or {})
    return Policy.model_validate({k: v for k, v in body.items() if v is not None})


@pytest.mark.parametrize(
    ("desired", "echoed"),
    [
        pytest.param(
            ({"durationInMinutes": None}, {}), ({"durationInMinutes": 0}, {}), id="duration-none-vs-0"
        ),
        pytest.param(({"description": None}, {}), ({"description": ""}, {}), id="description-none-vs-empty"),
        pytest.param(({"cronExp": None}, {}), ({"cronExp": ""}, {}), id="cron-none-vs-empty"),
        pytest.param(({}, {}), ({}, {"keepLastNVersions": 0}), id="keepLastNVersions-none-vs-0"),
        pytest.param(({}, {}), ({}, {"lastDownloadedBeforeInMonths": 0}), id="time-condition-none-vs-0"),
        pytest.param(
            ({}, {}), ({}, {"excludedRepos": [], "excludedPackages": [], "includedProjects": []}), id="lists"
        ),
        pytest.param(({}, {}), ({}, {"includeAllProjects": False}), id="includeAllProjects-none-vs-false"),
        pytest.param(({}, {}), ({}, {"includedProperties": {}}), id="properties-none-vs-empty"),
    ],
)
def test_server_echoed_defaults_are_not_drift(
    desired: tuple[dict[str, Any], dict[str, Any]], echoed: tuple[dict[str, Any], dict[str, Any]]
) -> None:
    assert variant(*desired) != variant(*echoed)
    assert normalise_policy(variant(*desired)) == normalise_policy(variant(*echoed))


def test_full_echo_of_a_minimal_policy_is_not_drift() -> None:
    desired = Policy.model_validate(
        {
            "key": "min",
            "searchCriteria": {
                "packageTypes": ["npm"],
                "repos": ["npm-local"],
                "includedPackages": ["**"],
                "keepLastNVersions": 3,
            },
        }
    )
    echoed = Policy.model_validate(
        {
            "key": "min",
            "description": "",
            "cronExp": "",
            "durationInMinutes": 0,
            "enabled": False,
            "skipTrashcan": False,
            "searchCriteria": {
                "packageTypes": ["npm"],
                "repos": ["npm-local"],
                "excludedRepos": [],
                "includedPackages": ["**"],
                "excludedPackages": [],
                "includeAllProjects": False,
                "includedProjects": [],
                "createdBeforeInMonths": 0,
                "lastDownloadedBeforeInMonths": 0,
                "keepLastNVersions": 3,
                "someFutureField": "ignored",
            },
            "someFutureTopLevel": 1,
        }
    )
    assert (
        normalise_policy(desired)
        == normalise_policy(echoed)
        == {
            "key": "min",
            "enabled": False,
            "searchCriteria": {
                "packageTypes": ["npm"],
                "repos": ["npm-local"],
                "includedPackages": ["**"],
                "keepLastNVersions": 3,
            },
        }
    )


def test_order_case_and_whitespace_are_not_drift() -> None:
    desired = variant(
        {"cronExp": "0 0 2 ?  * SUN"}, {"packageTypes": ["Docker", "maven"], "repos": ["b", "a"]}
    )
    echoed = variant(
        {"cronExp": " 0 0 2 ? * SUN"}, {"packageTypes": ["maven", "docker"], "repos": ["a", "b"]}
    )
    assert normalise_policy(desired) == normalise_policy(echoed)


@pytest.mark.parametrize(
    ("top", "criteria", "field"),
    [
        ({"description": "new"}, {}, "description"),
        ({"durationInMinutes": 150}, {}, "durationInMinutes"),
        ({"cronExp": "0 0 3 ? * SUN"}, {}, "cronExp"),
        ({"skipTrashcan": True}, {}, "skipTrashcan"),
        ({"enabled": False}, {}, "enabled"),
        ({}, {"repos": ["docker-local"]}, "searchCriteria"),
        ({}, {"createdBeforeInMonths": 12}, "searchCriteria"),
        ({}, {"includedPackages": ["com/acme"]}, "searchCriteria"),
        ({}, {"excludedPackages": ["keep-me"]}, "searchCriteria"),
        ({}, {"includedProperties": {"release": ["true"]}}, "searchCriteria"),
    ],
)
def test_real_changes_are_drift(top: dict[str, Any], criteria: dict[str, Any], field: str) -> None:
    want, have = normalise_policy(variant()), normalise_policy(variant(top, criteria))
    assert want != have
    assert want.get(field) != have.get(field)


def test_keep_last_versions_change_is_drift() -> None:
    a = variant({}, {"createdBeforeInMonths": None, "keepLastNVersions": 3})
    b = variant({}, {"createdBeforeInMonths": None, "keepLastNVersions": 5})
    assert normalise_policy(a)["searchCriteria"]["keepLastNVersions"] == 3
    assert normalise_policy(a) != normalise_policy(b)


def test_sample_against_its_own_echo_is_not_drift(vendor_docs: Path) -> None:
    sample = doc_policy_sample(vendor_docs)
    desired = json.loads(json.dumps(sample))
    del desired["searchCriteria"]["keepLastNVersions"]  # echoed as 0 by the server
    del desired["searchCriteria"]["excludedRepos"]  # echoed as []
    assert normalise_policy(Policy.model_validate(desired)) == normalise_policy(Policy.model_validate(sample))


# Version gates ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        ("7.111.2", (7, 111, 2)),
        ("7.117.5", (7, 117, 5)),
        ("7.90", (7, 90, 0)),
        ("7.111.2-rc1", (7, 111, 2)),
        ("v7.129.0", (7, 129, 0)),
        ("8", (8, 0, 0)),
    ],
)
def test_parse_version(text: str, parts: tuple[int, int, int]) -> None:
    assert parse_version(text) == parts


def test_parse_version_refuses_words() -> None:
    with pytest.raises(ValueError, match="not an Artifactory version"):
        parse_version("unknown")


@pytest.mark.parametrize(
    ("version", "days", "summaries", "properties"),
    [
        ("7.90.1", False, False, False),
        ("7.111.1", False, False, False),
        ("7.111.2", True, False, False),
        ("7.116.9", True, False, False),
        ("7.117.0", True, True, False),
        ("7.128.99", True, True, False),
        ("7.129.0", True, True, True),
        ("8.0.0", True, True, True),
        ("garbage", False, False, False),
    ],
)
def test_feature_gates(version: str, days: bool, summaries: bool, properties: bool) -> None:
    v = ArtifactoryVersion.model_validate({"version": version, "revision": 123, "addons": None})
    assert (v.supports_days_conditions, v.supports_run_summaries, v.supports_property_filters) == (
        days,
        summaries,
        properties,
    )
    assert v.revision == "123"
    assert v.addons == []


def test_unsupported_features_names_the_missing_version() -> None:
    policy = variant(
        {}, {"createdBeforeInMonths": None, "createdBeforeInDays": 30, "includedProperties": {"a": ["b"]}}
    )
    old = ArtifactoryVersion(version="7.100.0")
    problems = unsupported_features(policy, old)
    assert len(problems) == 2
    assert "7.111.2" in problems[0] and "7.100.0" in problems[0]
    assert "7.129.0" in problems[1]
    assert unsupported_features(policy, ArtifactoryVersion(version="7.129.3")) == []
    assert unsupported_features(variant(), old) == []


# Payloads -----------------------------------------------------------------------------------------


def test_payload_is_camel_case_without_unset_fields() -> None:
    policy = Policy(
        key="acme-old",
        project_key="acme",
        enabled=False,
        search_criteria=SearchCriteria(
            package_types=["maven"],
            repos=["libs-release-local"],
            included_packages=["**"],
            keep_last_n_versions=5,
            created_before_in_days=None,
            excluded_properties={"keep": ["true"]},
        ),
    )
    assert policy.payload() == {
        "key": "acme-old",
        "projectKey": "acme",
        "enabled": False,
        "skipTrashcan": False,
        "searchCriteria": {
            "packageTypes": ["maven"],
            "repos": ["libs-release-local"],
            "includedPackages": ["**"],
            "keepLastNVersions": 5,
            "excludedProperties": {"keep": ["true"]},
        },
    }
    assert Policy.model_validate(json.loads(json.dumps(policy.payload()))) == policy


@pytest.mark.parametrize(
    "shape",
    [
        {"release": ["yes"]},
        {"release": "yes"},
        [{"key": "release", "value": "yes"}],
        [{"key": "release", "values": ["yes"]}],
    ],
)
def test_property_filters_tolerate_the_shape(shape: Any) -> None:
    criteria = SearchCriteria.model_validate({"includedProperties": shape})
    assert criteria.included_properties == {"release": ["yes"]}
    assert criteria.uses_properties is True


def test_null_mandatory_lists_parse_as_empty() -> None:
    criteria = SearchCriteria.model_validate({"packageTypes": None, "repos": None, "includedPackages": None})
    assert (criteria.package_types, criteria.repos, criteria.included_packages) == ([], [], [])
    assert Policy.model_validate({"key": "abc", "enabled": None}).enabled is False


# Run summaries (assumption 1 of the client module) -------------------------------------------------


def test_run_summary_canonical_shape() -> None:
    summary = RunSummary.model_validate(
        {
            "runId": 7,
            "policyKey": "key1",
            "triggerId": 7,
            "status": "COMPLETED",
            "dryRun": True,
            "startedAt": "2026-01-02T03:04:05.000Z",
            "finishedAt": "2026-01-02T03:05:05.000Z",
            "packagesDeleted": 3,
            "versionsDeleted": 9,
            "bytesDeleted": 1024,
            "unknown": {"nested": True},
        }
    )
    assert summary.run_id == 7
    assert summary.trigger_id == "7"
    assert summary.state == "Succeeded"
    assert summary.done is True
    assert (summary.packages_deleted, summary.versions_deleted, summary.bytes_deleted) == (3, 9, 1024)
    assert summary.finished_at == "2026-01-02T03:05:05.000Z"


def test_run_summary_tolerates_other_names() -> None:
    summary = RunSummary.model_validate(
        {"id": "12", "state": "in-progress", "startTime": 1692862063727, "endedAt": None, "deletedBytes": 5}
    )
    assert summary.run_id == 12
    assert summary.state == "Running"
    assert summary.done is False
    assert summary.started_at == "2023-08-24T07:27:43.727Z"
    assert summary.finished_at is None
    assert summary.bytes_deleted == 5
    assert summary.packages_deleted is None


@pytest.mark.parametrize(
    ("word", "state"),
    [
        ("RUNNING", "Running"),
        ("COMPLETED", "Succeeded"),
        ("finished", "Succeeded"),
        ("STOPPED", "Stopped"),
        ("CANCELLED", "Stopped"),
        ("FAILED", "Failed"),
        ("error", "Failed"),
        ("QUEUED_SOMEHOW", "QUEUED_SOMEHOW"),
        (None, None),
    ],
)
def test_run_summary_state_words(word: str | None, state: str | None) -> None:
    assert RunSummary.model_validate({"runId": 1, "status": word}).state == state


# Prune status odds and ends -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("progress", "done", "total"),
    [
        ("2 of 256", 2, 256),
        (" 256 of 256 ", 256, 256),
        ("0 of 256", 0, 256),
        (None, 0, 256),
        ("half", 0, 256),
    ],
)
def test_prune_progress_parsed(progress: str | None, done: int, total: int) -> None:
    status = PruneStatus.model_validate({"status": "RUNNING", "progress": progress})
    assert status.status == "running"
    assert (status.directories_done, status.directories_total) == (done, total)


def test_prune_error_kept_as_text() -> None:
    status = PruneStatus.model_validate({"status": "error", "error": {"code": "IO", "message": "disk"}})
    assert status.error == '{"code": "IO", "message": "disk"}'
    assert PruneStatus.model_validate({"status": "error", "error": "disk full"}).error == "disk full"
