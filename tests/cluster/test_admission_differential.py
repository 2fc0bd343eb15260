"""The CRD admits exactly the CleanupPolicies JFrog accepts: a differential, property-based test.

Each generated CleanupPolicy is sent twice: to the real kube-apiserver as a server-side dry run
(``POST …?dryRun=All``: every schema and CEL rule runs, nothing is stored), and, as the vendor body
the operator would send (the key derived as the operator derives it), to the JFrog simulator's
validation, whose rules are the vendor documents' rules. The CRD must admit it exactly when the
simulator accepts it, except where the operator deliberately asks for more than JFrog does
(:func:`operator_only_refusal`; docs/vendor-rules.md says why). What the CRD admits must also parse
as the operator's model and pass its ``check_quartz``.

Strategies are built from the pydantic models (every field of ``SearchCriteria`` and the vendor
fields of ``CleanupPolicySpec``, by type, with the models' own list limits) and biased toward the
boundaries: 0, negative, missing, both or neither of exclusive fields, too-long lists, odd keys.
``make test`` runs the "ci" hypothesis profile (fixed seed, 80 examples, tests/conftest.py);
``--hypothesis-profile=thorough`` runs many more.
"""

from __future__ import annotations

import re
import ssl
import types
import typing
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import event, example, given, note
from hypothesis import strategies as st
from pydantic.fields import FieldInfo

from cleanup_operator.api.cleanup_policy import CleanupPolicySpec, SearchCriteria
from cleanup_operator.reconcile.cleanup_policy import check_quartz, derive_key, desired_policy
from cleanup_operator.testing.controlplane import ControlPlane
from cleanup_operator.testing.simulators.jfrog import JFrogSimulator, _Invalid

GROUP_VERSION = "cleanup.artifacts.dev/v1alpha1"
#: New enough for every condition and filter (days: 7.111.2, properties: 7.129).
SIM_VERSION = "7.129.0"
CONNECTION = {"url": "https://jfrog.invalid", "secretRef": {"name": "jfrog"}}
#: Fields of CleanupPolicySpec that are sent to JFrog (desired_policy), besides the key.
VENDOR_FIELDS = ("description", "cronExp", "durationInMinutes", "skipTrashcan", "projectKey")


# The two judges.


@pytest.fixture(scope="module")
def apiserver(control_plane: ControlPlane) -> Iterator[tuple[httpx.Client, str]]:
    """A persistent HTTP client to the API server (the kubeconfig's token and CA) and a namespace."""
    ns = f"diff-{uuid.uuid4().hex[:8]}"
    control_plane.kubectl("create", "namespace", ns)
    ctx = ssl.create_default_context(cafile=str(control_plane.workdir / "certs" / "apiserver.crt"))
    client = httpx.Client(
        base_url=control_plane.url,
        verify=ctx,
        headers={"Authorization": f"Bearer {control_plane.token}"},
        timeout=30.0,
    )
    yield client, ns
    client.close()
    control_plane.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def admission(client: httpx.Client, ns: str, obj: dict[str, Any]) -> str | None:
    """None when the API server admits ``obj`` (dry run), else its refusal message."""
    res = client.post(
        f"/apis/{GROUP_VERSION}/namespaces/{ns}/cleanuppolicies", params={"dryRun": "All"}, json=obj
    )
    if res.status_code == 201:
        return None
    assert res.status_code == 422, f"unexpected answer {res.status_code}: {res.text}"
    return str(res.json().get("message", res.text))


SIMULATOR = JFrogSimulator()
SIMULATOR.version = SIM_VERSION


def vendor_body(obj: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The key and the create body the operator would send for ``obj`` (see desired_policy)."""
    spec = obj["spec"]
    key = derive_key(obj["metadata"]["name"], spec.get("policyKey"), spec.get("projectKey"))
    body: dict[str, Any] = {k: spec[k] for k in VENDOR_FIELDS if k in spec}
    body.update(key=key, enabled=False, searchCriteria=spec.get("searchCriteria"))
    return key, body


def vendor_refusal(obj: dict[str, Any]) -> str | None:
    """None when the JFrog simulator accepts the create, else its message."""
    key, body = vendor_body(obj)
    try:
        SIMULATOR._validate(key, body, creating=True)
    except _Invalid as exc:
        return str(exc)
    return None


def _max_items(field: FieldInfo) -> int | None:
    extra = field.json_schema_extra
    value = extra.get("maxItems") if isinstance(extra, dict) else None
    return value if isinstance(value, int) else None


def operator_only_refusal(obj: dict[str, Any]) -> str | None:
    """What the CRD refuses although JFrog would accept it, on purpose (docs/vendor-rules.md)."""
    name, spec = obj["metadata"]["name"], obj["spec"]
    project = spec.get("projectKey")
    if "policyKey" not in spec:
        if not re.fullmatch(r"[a-zA-Z0-9_-]+", name):
            return "without policyKey the name is the key: only letters, digits, '-' and '_'"
        if project and name.startswith(f"{project}-"):
            return "without policyKey a name must not carry the project prefix itself"
    if project is not None and not re.fullmatch(r"[a-z][a-z0-9-]{0,63}", project):
        return "projectKey: lowercase letters, digits and '-', starting with a letter, at most 64"
    if len(spec.get("policyKey") or "") > 255:
        return "policyKey: at most 255 characters"
    criteria = spec.get("searchCriteria") or {}
    for field in SearchCriteria.model_fields.values():
        limit, value = _max_items(field), criteria.get(str(field.alias))
        if limit is not None and isinstance(value, list) and len(value) > limit:
            return f"{field.alias}: at most {limit} items"
    return None


# Strategies, from the models.

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
    limit = _max_items(field) or 100
    lists = st.one_of(
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


def _policy(name: str, spec: dict[str, Any], criteria: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": GROUP_VERSION,
        "kind": "CleanupPolicy",
        "metadata": {"name": name},
        "spec": {
            "connection": CONNECTION,
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


def _mutated(name: str, mix: str, mutations: list[Mutation]) -> dict[str, Any]:
    """A valid policy (a condition mix aside) with up to a few fields set to boundary values (None: missing)."""
    obj = _policy(name, {}, {**BASIC, **CONDITION_MIXES[mix]})
    for where, field, value in mutations:
        target = obj["spec"] if where == "spec" else obj["spec"]["searchCriteria"]
        if where == "name":
            obj["metadata"]["name"] = value
        elif value is None:
            target.pop(field, None)
        else:
            target[field] = value
    return obj


POLICIES = st.builds(
    _mutated,
    st.sampled_from(["valid-name", "cleanup-docker", "x1"]),
    st.sampled_from(sorted(CONDITION_MIXES)),
    st.lists(MUTATIONS, max_size=3),
)

SAMPLE = _policy(
    "key1",
    {"cronExp": "0 15 10 * * ? 2024", "durationInMinutes": 150, "description": "some test description"},
    {
        "packageTypes": ["docker", "maven"],
        "repos": ["repo1", "repo2"],
        "excludedRepos": [],
        "includedPackages": ["com/jfrog"],
        "excludedPackages": ["com/jfrog/latest"],
        "includeAllProjects": False,
        "includedProjects": ["project1", "project2"],
        "createdBeforeInMonths": 12,
        "lastDownloadedBeforeInMonths": 1,
        "keepLastNVersions": 0,
    },
)


def test_vendor_body_is_what_the_operator_sends() -> None:
    """The simulator judges the body the operator's desired_policy makes, field for field."""
    raw = _policy(
        "proj-k",
        {"policyKey": "proj-k", "description": "d", "cronExp": "0 0 3 ? * SUN", "durationInMinutes": 5}
        | {"skipTrashcan": True, "projectKey": "proj"},
        {**BASIC, "keepLastNVersions": 1, "includedProperties": {"k": ["v"]}},
    )
    sent = desired_policy(CleanupPolicySpec.model_validate(raw["spec"]), "proj-k").model_dump(
        by_alias=True, exclude_none=True
    )
    key, body = vendor_body(raw)
    assert key == "proj-k" and set(body) == set(sent)
    assert body["searchCriteria"] == sent["searchCriteria"]


@given(POLICIES)
@example(SAMPLE)
@example(_policy("keep-zero", {}, {**BASIC, "keepLastNVersions": 0}))
@example(_policy("keep-one", {}, {**BASIC, "keepLastNVersions": 1}))
@example(_policy("a.b", {}, {**BASIC, "keepLastNVersions": 1}))
@example(_policy("ab", {}, {**BASIC, "keepLastNVersions": 1}))
@example(_policy("ab", {"projectKey": "p"}, {**BASIC, "keepLastNVersions": 1}))
@example(_policy("p-ab", {"projectKey": "p"}, {**BASIC, "keepLastNVersions": 1}))
@example(_policy("empty-key", {"policyKey": ""}, {**BASIC, "keepLastNVersions": 1}))
@example(_policy("props", {}, {**BASIC, "keepLastNVersions": 1, "includedProperties": {}}))
def test_crd_admits_exactly_what_jfrog_accepts(
    apiserver: tuple[httpx.Client, str], obj: dict[str, Any]
) -> None:
    client, ns = apiserver
    refused_by_crd = admission(client, ns, obj)
    refused_by_vendor = vendor_refusal(obj)
    on_purpose = operator_only_refusal(obj)
    note(f"CRD: {refused_by_crd}\nJFrog simulator: {refused_by_vendor}\noperator-only rule: {on_purpose}")
    expected_admitted = refused_by_vendor is None and on_purpose is None
    event(
        "admitted" if expected_admitted else "refused by JFrog" if refused_by_vendor else "refused on purpose"
    )
    assert (refused_by_crd is None) == expected_admitted, (
        f"the CRD {'admits' if refused_by_crd is None else 'refuses'} what JFrog"
        f" {'accepts' if refused_by_vendor is None else 'refuses'}:\n{obj}\n"
        f"CRD: {refused_by_crd}\nJFrog: {refused_by_vendor}\noperator-only: {on_purpose}"
    )
    if refused_by_crd is None:
        # What the API server admits, the operator's own checks accept too.
        spec = CleanupPolicySpec.model_validate(obj["spec"])
        if spec.cron_exp:
            check_quartz(spec.cron_exp)
