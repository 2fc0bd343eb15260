"""Hypothesis strategies for the three kinds, built from the pydantic models and biased to the boundaries.

Shared by the differential admission test (tests/cluster/test_admission_differential.py: does the CRD
admit exactly what JFrog accepts?) and the fuzz test (tests/cluster/test_fuzz.py: does the operator
handle whatever is admitted?). Values are biased toward the boundaries: 0, negative, missing, both or
neither of exclusive fields, too-long lists, odd keys, durations and schedules at and past their limits.

URLs are placeholders under :data:`SIM_BASE` (``http://sim.invalid/<vendor>``): admission only checks
their form, and the fuzz test points each one at a simulator before applying it.
"""

from __future__ import annotations

import types
import typing
from typing import Any

from hypothesis import strategies as st
from pydantic.fields import FieldInfo

from cleanup_operator.api.cleanup_policy import SearchCriteria

GROUP_VERSION = "cleanup.artifacts.dev/v1alpha1"
#: Base of every placeholder vendor URL (replaced by the fuzz test with a simulator's).
SIM_BASE = "http://sim.invalid"
REQUESTED_AT = "cleanup.artifacts.dev/requested-at"
ADOPT = "cleanup.artifacts.dev/adopt"


def max_items(field: FieldInfo) -> int | None:
    extra = field.json_schema_extra
    value = extra.get("maxItems") if isinstance(extra, dict) else None
    return value if isinstance(value, int) else None


# CleanupPolicy: searchCriteria and the vendor fields, from the models.

ITEMS = {
    "packageTypes": ["docker", "maven", "npm", "generic"],
    "repos": ["docker-local", "repo1", "docker-*-local", "*"],
    "excludedRepos": ["repo2", "tmp-*"],
    "includedPackages": ["**", "com/jfrog", "app"],
    "excludedPackages": ["com/jfrog/latest", "base", "com/*", "a?b", "a[1]"],
    "includedProjects": ["project1", "project2"],
}
CONDITION = st.one_of(st.none(), st.sampled_from([0, 0, -1, 1, 2, 6, 12, 1000]))
PROPERTIES = st.one_of(
    st.none(),
    st.sampled_from(
        [{}, {"k": ["v"]}, {"k": []}, {"k": ["1", "2"]}, {"a": ["1"], "b": ["2"]}, {"release": ["rc"]}]
    ),
)


def _list_strategy(alias: str, field: FieldInfo) -> st.SearchStrategy[list[str] | None]:
    items = st.sampled_from(ITEMS.get(alias, ["x", "y"]))
    limit = max_items(field) or 100
    lists: st.SearchStrategy[list[str]] = st.one_of(
        st.lists(items, min_size=0, max_size=3),
        st.just([]),
        st.lists(items, min_size=1, max_size=1),
        st.lists(items, min_size=limit + 1, max_size=limit + 1),  # too long
    )
    return st.one_of(st.none(), lists, lists)


def strategy_for(alias: str, field: FieldInfo) -> st.SearchStrategy[Any]:
    """A value for a model field by its type (None stands for missing), biased to the boundaries."""
    annotation = field.annotation
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    base = args[0] if isinstance(annotation, types.UnionType) and len(args) == 1 else annotation
    origin = typing.get_origin(base)
    if origin is list:
        return _list_strategy(alias, field)
    if origin is dict:
        return PROPERTIES
    if base is int:
        return CONDITION
    if base is bool:
        return st.one_of(st.none(), st.booleans())
    raise AssertionError(f"no strategy for {alias}: {annotation}")


CRITERIA_VALUES = {str(f.alias): strategy_for(str(f.alias), f) for f in SearchCriteria.model_fields.values()}
CONDITION_MIXES: dict[str, dict[str, int]] = {
    "none": {},
    "zeros": {"keepLastNVersions": 0, "createdBeforeInMonths": 0},
    "keep": {"keepLastNVersions": 3},
    "keep-zero": {"keepLastNVersions": 0},
    "time": {"lastDownloadedBeforeInMonths": 6},
    "days": {"createdBeforeInDays": 30, "lastDownloadedBeforeInDays": 0},
    "sample": {"createdBeforeInMonths": 12, "lastDownloadedBeforeInMonths": 1, "keepLastNVersions": 0},
    "keep-and-time": {"keepLastNVersions": 2, "createdBeforeInDays": 30},
    "months-and-days": {"createdBeforeInMonths": 1, "createdBeforeInDays": 10},
    "zero-months-and-days": {"createdBeforeInMonths": 0, "createdBeforeInDays": 10},
}
BASIC = {"packageTypes": ["docker"], "repos": ["r"], "includedPackages": ["**"]}


KEYS = st.sampled_from(
    [
        "",
        "ab",
        "abc",
        "my_policy-1",
        "bad key!",
        "a.b",
        "ключ",
        "proj-stale",
        "other-stale",
        "x" * 256,
        "proj-",
    ]
)
QUARTZ = st.sampled_from(
    [
        *("", "0 0 3 ? * SUN", "0 15 10 * * ? 2024", "0 0/5 * * * ?", "0 0 3 ? * MON-FRI", "0 0 3 L * ?"),
        *("0 0 3 ? * 6#3", "0 0 3 1 * MON", "0 0 3 ? * ?", "? 0 3 ? * *", "0 60 3 ? * *", "0 0 24 ? * *"),
        *("0 0 3 32 * ?", "0 0 3 ? 13 *", "0 0 3 ? * 8", "0 0 3 * *", "every day", "0 0 3 ? * SUN!"),
    ]
)
VENDOR_SPEC = {
    "policyKey": st.one_of(st.none(), st.none(), KEYS),
    "projectKey": st.one_of(st.none(), st.none(), st.sampled_from(["proj", "p", "Proj", "", "proj-2"])),
    "description": st.one_of(st.none(), st.sampled_from(["", "cleanup", "x" * 256, "x" * 257])),
    "cronExp": st.one_of(st.none(), QUARTZ),
    "durationInMinutes": st.one_of(st.none(), st.sampled_from([0, -1, 1, 150])),
    "skipTrashcan": st.one_of(st.none(), st.booleans()),
}
NAMES = st.one_of(
    st.sampled_from(["valid-name", "ab", "abc", "a.b", "a-b", "proj-stale", "p-x", "docker.stale", "x" * 63]),
    st.from_regex(r"[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?(\.[a-z0-9]{1,4})?", fullmatch=True),
)


def policy(
    name: str, spec: dict[str, Any], criteria: dict[str, Any], connection: dict[str, Any]
) -> dict[str, Any]:
    return {
        "apiVersion": GROUP_VERSION,
        "kind": "CleanupPolicy",
        "metadata": {"name": name},
        "spec": {
            "connection": connection,
            **{k: v for k, v in spec.items() if v is not None},
            "searchCriteria": criteria,
        },
    }


Mutation = tuple[str, str, Any]
MUTATIONS: st.SearchStrategy[Mutation] = st.one_of(
    st.sampled_from(sorted(CRITERIA_VALUES)).flatmap(
        lambda a: CRITERIA_VALUES[a].map(lambda v: ("criteria", a, v))
    ),
    st.sampled_from(sorted(VENDOR_SPEC)).flatmap(lambda a: VENDOR_SPEC[a].map(lambda v: ("spec", a, v))),
    NAMES.map(lambda n: ("name", "", n)),
)


def mutated(name: str, mix: str, mutations: list[Mutation], connection: dict[str, Any]) -> dict[str, Any]:
    """A valid policy (a condition mix aside) with up to a few fields set to boundary values (None: missing)."""
    obj = policy(name, {}, {**BASIC, **CONDITION_MIXES[mix]}, connection)
    for where, field, value in mutations:
        target = obj["spec"] if where == "spec" else obj["spec"]["searchCriteria"]
        if where == "name":
            obj["metadata"]["name"] = value
        elif value is None:
            target.pop(field, None)
        else:
            target[field] = value
    return obj


def policies(connection: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    """CleanupPolicies: the vendor fields and searchCriteria mutated toward the boundaries."""
    return st.builds(
        mutated,
        st.sampled_from(["valid-name", "cleanup-docker", "x1"]),
        st.sampled_from(sorted(CONDITION_MIXES)),
        st.lists(MUTATIONS, max_size=3),
        connection,
    )


# Durations, schedules, Secrets: the operator's own fields.

#: Five-field cron schedules: ones that fire often, rarely, never, and ones out of range.
SCHEDULES = st.sampled_from(
    [
        *("* * * * *", "*/2 * * * *", "@hourly", "@daily", "@yearly", "0 0 1 1 *", "0 0 29 2 *"),
        *("59 23 31 12 *", "0 0 * * 7", "0 0 * * sun", "0-59/15 * * * *", "0 12 * jan-dec mon-fri"),
        *("61 * * * *", "0 24 * * *", "0 0 30 2 *", "0 0 31 4 *", "*/0 * * * *", "5-1 * * * *"),
        *("* * * *", "@reboot", "0 0 0 * *", "0 0 * 13 *", "0 0 * * 8"),
    ]
)
#: Intervals the fuzz test can wait two of, and ones admission must refuse.
SHORT_INTERVALS = st.sampled_from(["1s", "1s", "2s", "1.5s", "3s", "1s", "999ms", "0s", "0.5s", "1ms"])
LONG_INTERVALS = st.sampled_from(["10m", "168h", "168h1s", "169h", "1h30m"])
POLL_INTERVALS = st.sampled_from(["500ms", "500ms", "1s", "2s", "499ms", "0s", "1h1ms", "100ms"])
TIMEOUTS = st.sampled_from(["1s", "1s", "5s", "30s", "5m", "999ms", "5m1s", "0s"])
#: requested-at values: a time after creation (acted on), before it, and not a time.
REQUESTS = st.sampled_from(["future", "future", "0", "yesterday", "", "2001-01-01T00:00:00Z"])

#: Secrets the fuzz test creates (name → data); any other name is missing.
SECRETS: dict[str, dict[str, str]] = {
    "jfrog": {"token": "test-token"},
    "jfrog-basic": {"username": "admin", "password": "password"},
    "jfrog-wrong": {"token": "wrong-token"},
    "jfrog-wrong-user": {"username": "admin", "password": "nope"},
    "jfrog-odd": {"tok.en_-1": "test-token", "user-1.x": "admin", "PASS_word": "password"},
    "jfrog-empty-token": {"token": ""},
    "ca-garbage": {"ca.crt": "not a certificate"},
    "harness": {"apiKey": "test-key"},
    "harness-wrong": {"apiKey": "wrong-key"},
    "harness-odd": {"api.key-_1": "test-key"},
    "sourcecraft": {"token": "sc-token"},
    "sourcecraft-wrong": {"token": "bad-token"},
    "sourcecraft-odd": {"t.o-k_e.n": "sc-token"},
}

SECRET_REFS = st.sampled_from(
    [
        {"name": "jfrog"},
        {"name": "jfrog"},
        {"name": "jfrog-basic"},
        {"name": "jfrog-wrong"},
        {"name": "jfrog-wrong-user"},
        {"name": "jfrog-odd", "tokenKey": "tok.en_-1"},
        {"name": "jfrog-odd", "tokenKey": "absent", "usernameKey": "user-1.x", "passwordKey": "PASS_word"},
        {"name": "jfrog-odd"},  # neither the default token key nor username/password
        {"name": "jfrog-empty-token"},
        {"name": "no-such-secret"},
        {"name": ""},
        {"name": "x" * 254},
        {"name": "jfrog", "tokenKey": ""},
    ]
)
CA_REFS = st.one_of(
    st.none(),
    st.none(),
    st.none(),
    st.sampled_from(
        [
            {"name": "ca-garbage"},
            {"name": "ca-garbage", "key": "absent.crt"},
            {"name": "no-such-ca"},
            {"name": ""},
        ]
    ),
)


def connections(vendor: str) -> st.SearchStrategy[dict[str, Any]]:
    """A JFrog connection to the placeholder URL ``SIM_BASE/<vendor>``, credentials at the boundaries."""
    return st.builds(
        lambda secret, ca, insecure, timeout: {
            "url": f"{SIM_BASE}/{vendor}",
            "secretRef": secret,
            **({"caSecretRef": ca} if ca is not None else {}),
            **({"insecureSkipVerify": insecure} if insecure is not None else {}),
            **({"timeout": timeout} if timeout is not None else {}),
        },
        SECRET_REFS,
        CA_REFS,
        st.one_of(st.none(), st.none(), st.booleans()),
        st.one_of(st.none(), TIMEOUTS),
    )


def _optional(strategy: st.SearchStrategy[Any], weight: int = 1) -> st.SearchStrategy[Any]:
    return st.one_of(*([st.none()] * weight), strategy)


def _drop_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


# StoragePrune, from StoragePruneSpec's fields.

PRUNE_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "dryRun": _optional(st.booleans()),
    "binaryOlderThanDays": _optional(st.sampled_from([0, 1, 36500, -1]), 2),
    "startFromDirectory": _optional(st.sampled_from(["00", "80", "ff", "fe", "0f", "fg", "8", "100", "FF"])),
    "startFromBinary": _optional(st.sampled_from(["a" * 40, "0" * 40, "A" * 40, "a" * 39, "g" * 40]), 2),
    "schedule": _optional(SCHEDULES, 3),
    "suspend": _optional(st.booleans(), 3),
    "stopOnDelete": _optional(st.booleans(), 2),
    "pollInterval": _optional(POLL_INTERVALS),
    "historyLimit": _optional(st.sampled_from([0, 1, 50, 51, -1]), 2),
}


def _prune(connection: dict[str, Any], fields: dict[str, Any], request: str | None) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": GROUP_VERSION,
        "kind": "StoragePrune",
        "metadata": {"name": "prune"},
        "spec": {"connection": connection, **_drop_none(fields)},
    }
    if request is not None:
        obj["metadata"]["annotations"] = {REQUESTED_AT: request}
    return obj


def storage_prunes(connection: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    return st.builds(_prune, connection, st.fixed_dictionaries(PRUNE_FIELDS), _optional(REQUESTS, 3))


# ArtifactStreamSync, from HarnessSource, SourceCraftSource and ArtifactStreamSyncSpec.

#: Streams each Harness simulator of the fuzz test holds (others are unknown to it).
HARNESS_STREAMS = {"docker-1": "DOCKER", "ecr-1": "ECR", "jenkins-1": "JENKINS"}
STREAM_IDS = st.sampled_from(
    ["docker-1", "docker-1", "ecr-1", "jenkins-1", "ghost-1", "docker-1", "", "x" * 128, "x" * 129]
)
STREAM_LISTS: st.SearchStrategy[list[str]] = st.one_of(
    st.lists(STREAM_IDS, min_size=1, max_size=3),
    st.lists(STREAM_IDS, min_size=1, max_size=3),
    st.just([]),
    st.just(["docker-1", "docker-1"]),  # the same stream twice
    st.lists(st.just("docker-1"), min_size=201, max_size=201),  # too many
)
HARNESS_KEY_REFS = st.sampled_from(
    [
        {"name": "harness", "key": "apiKey"},
        {"name": "harness", "key": "apiKey"},
        {"name": "harness-wrong", "key": "apiKey"},
        {"name": "harness-odd", "key": "api.key-_1"},
        {"name": "harness", "key": "absent"},
        {"name": "no-such-secret", "key": "apiKey"},
        {"name": "harness", "key": ""},
        {"name": "harness"},
    ]
)
HARNESS_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "url": st.just(f"{SIM_BASE}/harness"),
    "accountId": st.sampled_from(["acc1", "acc1", "acc1", "other-account", "", "x" * 128, "x" * 129]),
    "apiKeySecretRef": HARNESS_KEY_REFS,
    "artifactStreamIds": STREAM_LISTS,
}
#: What each SourceCraft simulator of the fuzz test holds: repository acme/web, runs run-1 (finished,
#: artifacts in build/package/publish) and run-2 (the latest, still processing for a few seconds).
SC_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "url": st.just(f"{SIM_BASE}/sourcecraft"),
    "org": st.sampled_from(["acme", "acme", "acme", "ghost", "", "x" * 129]),
    "repo": st.sampled_from(["web", "web", "web", "nothing", ""]),
    "run": _optional(st.sampled_from(["run-1", "run-2", "run-404", ""])),
    "latestRun": _optional(st.booleans()),
    "workflow": st.sampled_from(["build", "build", "build", "deploy", ""]),
    "task": st.sampled_from(["package", "package", "lint"]),
    "cube": st.sampled_from(["publish", "publish", "other", "x" * 128]),
    "tokenSecretRef": st.sampled_from(
        [
            {"name": "sourcecraft", "key": "token"},
            {"name": "sourcecraft", "key": "token"},
            {"name": "sourcecraft-wrong", "key": "token"},
            {"name": "sourcecraft-odd", "key": "t.o-k_e.n"},
            {"name": "sourcecraft", "key": "absent"},
            {"name": "no-such-secret", "key": "token"},
        ]
    ),
}
SYNC_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "interval": _optional(st.one_of(SHORT_INTERVALS, SHORT_INTERVALS, LONG_INTERVALS)),
    "schedule": _optional(SCHEDULES, 3),
    "suspend": _optional(st.booleans(), 3),
}


def _sync(
    source: str, harness: dict[str, Any], sourcecraft: dict[str, Any], fields: dict[str, Any]
) -> dict[str, Any]:
    spec: dict[str, Any] = _drop_none(fields)
    if source in ("harness", "both"):
        spec["harness"] = _drop_none(harness)
    if source in ("sourceCraft", "both"):
        spec["sourceCraft"] = _drop_none(sourcecraft)
    return {
        "apiVersion": GROUP_VERSION,
        "kind": "ArtifactStreamSync",
        "metadata": {"name": "sync"},
        "spec": spec,
    }


ARTIFACT_STREAM_SYNCS = st.builds(
    _sync,
    st.sampled_from(["harness", "harness", "sourceCraft", "sourceCraft", "both", "neither"]),
    st.fixed_dictionaries(HARNESS_FIELDS),
    st.fixed_dictionaries(SC_FIELDS),
    st.fixed_dictionaries(SYNC_FIELDS),
)


# CleanupPolicy as the operator runs it: the vendor fields above plus the operator's own.

OPERATOR_POLICY_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "enabled": _optional(st.booleans()),
    "interval": _optional(st.one_of(SHORT_INTERVALS, SHORT_INTERVALS, LONG_INTERVALS)),
    "managementPolicy": _optional(st.sampled_from(["Manage", "ObserveOnly", "observeOnly"]), 3),
    "deletionPolicy": _optional(st.sampled_from(["Delete", "Orphan", "orphan"]), 2),
    "suspend": _optional(st.booleans(), 4),
    "onDemandRun": _optional(
        st.fixed_dictionaries({"dryRun": _optional(st.booleans()), "pollInterval": _optional(POLL_INTERVALS)})
    ),
}


def _operated(
    obj: dict[str, Any], fields: dict[str, Any], request: str | None, adopt: str | None
) -> dict[str, Any]:
    spec = obj["spec"]
    for key, value in _drop_none(fields).items():
        spec[key] = _drop_none(value) if isinstance(value, dict) else value
    annotations = _drop_none({REQUESTED_AT: request, ADOPT: adopt})
    if annotations:
        obj["metadata"]["annotations"] = annotations
    return obj


def operated_policies(connection: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    """CleanupPolicies with the operator's fields (enablement, intervals, policies, annotations) too."""
    return st.builds(
        _operated,
        policies(connection),
        st.fixed_dictionaries(OPERATOR_POLICY_FIELDS),
        _optional(REQUESTS, 3),
        _optional(st.sampled_from(["true", "false", "yes"]), 5),
    )


def doc_sample() -> tuple[str, dict[str, Any], dict[str, Any]]:
    """JFrog's documented sample policy, read from the vendor document: (key, spec fields, criteria)."""
    from tests.conftest import VENDOR_DOCS
    from tests.unit.test_jfrog_models import doc_policy_sample

    sample = doc_policy_sample(VENDOR_DOCS)
    spec = {k: sample[k] for k in ("cronExp", "durationInMinutes", "description")}
    return str(sample["key"]), spec, dict(sample["searchCriteria"])
