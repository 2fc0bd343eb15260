"""The CRD admits exactly the CleanupPolicies JFrog accepts: a differential, property-based test.

Each generated CleanupPolicy is sent twice: to the real kube-apiserver as a server-side dry run
(``POST …?dryRun=All``: every schema and CEL rule runs, nothing is stored), and, as the vendor body
the operator would send (the key derived as the operator derives it), to the JFrog simulator's
validation, whose rules are the vendor documents' rules. The CRD must admit it exactly when the
simulator accepts it, except where the operator deliberately asks for more than JFrog does
(:func:`operator_only_refusal`; docs/vendor-rules.md says why). What the CRD admits must also parse
as the operator's model and pass its ``check_quartz``.

Strategies (tests/strategies.py) are built from the pydantic models (every field of
``SearchCriteria`` and the vendor fields of ``CleanupPolicySpec``, by type, with the models' own list
limits) and biased toward the boundaries: 0, negative, missing, both or neither of exclusive fields, too-long lists, odd keys.
``make test`` runs the "ci" hypothesis profile (fixed seed, 80 examples, tests/conftest.py);
``--hypothesis-profile=thorough`` runs many more.
"""

from __future__ import annotations

import re
import ssl
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import event, example, given, note
from hypothesis import strategies as st

from cleanup_operator.api.cleanup_policy import CleanupPolicySpec, SearchCriteria
from cleanup_operator.reconcile.cleanup_policy import check_quartz, derive_key, desired_policy
from cleanup_operator.testing.controlplane import ControlPlane
from cleanup_operator.testing.simulators.jfrog import JFrogSimulator, _Invalid
from tests import strategies

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
        limit, value = strategies.max_items(field), criteria.get(str(field.alias))
        if limit is not None and isinstance(value, list) and len(value) > limit:
            return f"{field.alias}: at most {limit} items"
    return None


# Strategies, from the models (tests/strategies.py, shared with the fuzz test).


def _policy(name: str, spec: dict[str, Any], criteria: dict[str, Any]) -> dict[str, Any]:
    return strategies.policy(name, spec, criteria, CONNECTION)


POLICIES = strategies.policies(st.just(CONNECTION))
BASIC = strategies.BASIC

SAMPLE = _policy(*strategies.doc_sample())  # read from the vendor document


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
