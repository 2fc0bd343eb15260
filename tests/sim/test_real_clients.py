"""Clients no one here wrote: each vendor at its real root paths on a port of its own.

JFrog's Terraform provider keeps only scheme, host and port of its URL and calls
``/artifactory/api/…`` at the root. The requests below follow what that provider's package cleanup
policy resource sends and reads back (create POST, enablement POST, read GET with 404 meaning
"gone", update PUT, delete expecting exactly 200, import by key, usage reports); the documented
curl lines from vendor-docs run against the root port as the documents give them, with
``--cacert`` added: every port serves https with a CA made for the session.
"""

from __future__ import annotations

import re
import shlex
import ssl
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cleanup_operator.testing.simulators import (
    Fault,
    HarnessSimulator,
    JFrogSimulator,
    ManualClock,
    SimulatorServer,
    SourceCraftSimulator,
    build_server,
)
from cleanup_operator.testing.tls import SimulatorCA

from ..conftest import jfrog

AUTH = {"Authorization": "Bearer test-token"}
POLICY = "/artifactory/api/cleanup/packages/policies/{key}"
USAGE = "/artifactory/api/system/usage"


@pytest.fixture(scope="module")
def rooted(sim_ca: SimulatorCA) -> Iterator[SimulatorServer]:
    """A server with every vendor also at its root paths, on ports of their own, all https."""
    server = build_server(
        root_ports={"jfrog": 0, "harness": 0, "sourcecraft": 0}, ssl_context=sim_ca.server_context()
    ).start_in_thread()
    yield server
    server.stop_thread()


@pytest.fixture(scope="module")
def ca_file(sim_ca: SimulatorCA, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The CA certificate as a file, for ``curl --cacert``."""
    return sim_ca.write_ca(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def verify(sim_ca: SimulatorCA) -> ssl.SSLContext:
    """Trust the session CA only (what a client is configured with for a private CA)."""
    return sim_ca.client_context()


@pytest.fixture
def srv(rooted: SimulatorServer) -> Iterator[SimulatorServer]:
    rooted.reset()
    yield rooted
    rooted.reset()


@pytest.fixture
def jsim(srv: SimulatorServer) -> JFrogSimulator:
    simulator = jfrog(srv)
    return simulator


@pytest.fixture
async def root(srv: SimulatorServer, verify: ssl.SSLContext) -> AsyncIterator[httpx.AsyncClient]:
    """Talks to the JFrog root port, with the provider's fixed headers."""
    headers = {**AUTH, "content-type": "application/json", "accept": "*/*"}
    async with httpx.AsyncClient(base_url=srv.root_url("jfrog"), headers=headers, verify=verify) as client:
        yield client


def test_root_ports_are_distinct_loopback_ports(srv: SimulatorServer) -> None:
    urls = [srv.root_url(p) for p in ("jfrog", "harness", "sourcecraft")]
    assert all(re.fullmatch(r"https://127\.0\.0\.1:\d+", u) for u in urls)
    ports = {srv.port, *(srv.root_ports.values())}
    assert len(ports) == 4 and 0 not in ports


def doc_curl_lines(vendor_docs: Path) -> list[str]:
    return [
        line.strip()
        for doc in sorted(vendor_docs.glob("jfrog-*.txt"))
        for line in doc.read_text().splitlines()
        if line.strip().startswith("curl ") and "<" not in line  # skip the templated usage line
    ]


def with_cacert(line: str, ca_file: Path) -> str:
    """The documented line with ``--cacert`` added: the one change https with a private CA needs."""
    return f"{line} --cacert {shlex.quote(str(ca_file))}"


async def run_curl_line(line: str, base: str) -> httpx.Response:
    """Run a ``curl -u user:password -XMETHOD URL [--cacert FILE]`` line with its scheme, host and
    port replaced by ``base``; as curl, without ``--cacert`` only the system's CAs are trusted."""
    args = shlex.split(line)[1:]
    method, auth, url = "GET", None, ""
    verify: ssl.SSLContext | bool = True
    while args:
        arg = args.pop(0)
        if arg == "-u":
            user, _, password = args.pop(0).partition(":")
            auth = (user, password)
        elif arg.startswith("-X"):
            method = arg[2:] or args.pop(0)
        elif arg == "--cacert":
            verify = ssl.create_default_context(cafile=args.pop(0))
        else:
            url = arg
    path = re.sub(r"^https?://[^/]+", "", url)
    async with httpx.AsyncClient(base_url=base, auth=auth, verify=verify) as client:
        return await client.request(method, path)


async def test_documented_curl_lines_work_at_the_root(
    srv: SimulatorServer, jsim: JFrogSimulator, vendor_docs: Path, ca_file: Path
) -> None:
    documented = doc_curl_lines(vendor_docs)
    assert documented, "the vendor docs lost their curl samples"
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        await run_curl_line(documented[0], srv.root_url("jfrog"))  # the private CA is not the system's
    lines = [with_cacert(line, ca_file) for line in documented]
    for line in lines:
        before = await run_curl_line(line, srv.root_url("jfrog"))
        assert before.status_code == 412 and before.json() == {"info": "No Prune task found"}, line
    jsim.clock = ManualClock()  # the prune stays "running" however slow the machine
    jsim.start_prune(dry_run=True)
    for line in lines:
        during = await run_curl_line(line, srv.root_url("jfrog"))
        assert during.status_code == 200 and during.json()["status"] == "running", line
        # The symptom: the same line against the shared port's root finds nothing there.
        shared = await run_curl_line(line, srv.origin())
        assert shared.status_code == 404, line


async def test_one_simulator_behind_both_ports(
    srv: SimulatorServer, jsim: JFrogSimulator, root: httpx.AsyncClient, verify: ssl.SSLContext
) -> None:
    body = {
        "key": "from-root",
        "searchCriteria": {"packageTypes": ["docker"], "repos": ["r"], "includedPackages": ["**"]},
    }
    body["searchCriteria"]["keepLastNVersions"] = 2
    assert (await root.post(POLICY.format(key="from-root"), json=body)).status_code == 201
    async with httpx.AsyncClient(base_url=srv.url("jfrog"), headers=AUTH, verify=verify) as prefixed:
        seen = await prefixed.get(POLICY.format(key="from-root"))
        assert seen.status_code == 200 and seen.json()["key"] == "from-root"
        assert (await prefixed.delete(POLICY.format(key="from-root"))).status_code == 200
    assert (await root.get(POLICY.format(key="from-root"))).status_code == 404
    assert jsim.policy("from-root") is None
    # One call log and one set of faults for both listeners; paths as each client asked for them.
    assert [(c.method, c.path) for c in srv.calls.calls("jfrog", path="/from-root$")] == [
        ("POST", "/artifactory/api/cleanup/packages/policies/from-root"),
        ("GET", "/jfrog/artifactory/api/cleanup/packages/policies/from-root"),
        ("DELETE", "/jfrog/artifactory/api/cleanup/packages/policies/from-root"),
        ("GET", "/artifactory/api/cleanup/packages/policies/from-root"),
    ]
    jsim.faults.add(Fault("status", path="/system/version$", status=503, body={}))
    assert (await root.get("/artifactory/api/system/version")).status_code == 503
    assert (await root.get("/artifactory/api/system/version")).status_code == 200


async def test_harness_and_sourcecraft_at_their_root_paths(
    srv: SimulatorServer, verify: ssl.SSLContext
) -> None:
    harness = srv.simulator("harness")
    sourcecraft = srv.simulator("sourcecraft")
    assert isinstance(harness, HarnessSimulator) and isinstance(sourcecraft, SourceCraftSimulator)
    harness.add_stream("acc1", "bOgdZBYQS2-oHZMwEZTeIQ", "ECR")
    sourcecraft.add_run("acme", "web", "run-1", artifacts=["dist/web.tar.gz"])
    mutation = 'mutation { artifactCleanup(input: {artifactStreamId: "bOgdZBYQS2-oHZMwEZTeIQ"}) { message } }'
    async with httpx.AsyncClient(base_url=srv.root_url("harness"), verify=verify) as client:
        answer = await client.post(
            "/gateway/api/graphql",
            params={"accountId": "acc1"},
            headers={"x-api-key": "test-key"},
            json={"query": mutation},
        )
    assert answer.json() == {
        "data": {
            "artifactCleanup": {
                "message": "Cleanup successful for Artifact stream with id: bOgdZBYQS2-oHZMwEZTeIQ"
            }
        }
    }
    async with httpx.AsyncClient(
        base_url=srv.root_url("sourcecraft"), headers={"Authorization": "Bearer sc-token"}, verify=verify
    ) as client:
        artifacts = await client.get("/repos/acme/web/cicd/artifacts/run-1/build/build/default")
    assert artifacts.status_code == 200
    assert [a["local_path"] for a in artifacts.json()["artifacts"]] == ["dist/web.tar.gz"]


# JFrog's Terraform provider, request by request ---------------------------------------------------


def provider_body(**criteria: Any) -> dict[str, Any]:
    """The body the provider serialises for a policy with no description, excluded repos or packages.

    Its API model always writes ``cronExp``, ``durationInMinutes``, ``skipTrashcan``, ``projectKey``
    and ``includeAllProjects``, and omits empty ``description``, false ``enabled`` and unset
    pointers (``excludedRepos``, ``excludedPackages``, conditions, property filters).
    """
    return {
        "key": "tf-policy",
        "cronExp": "",
        "durationInMinutes": 0,
        "skipTrashcan": False,
        "projectKey": "",
        "searchCriteria": {
            "packageTypes": ["docker"],
            "repos": ["docker-local"],
            "includedPackages": ["**"],
            "includeAllProjects": False,
            "includedProjects": [],
            **criteria,
        },
    }


def read_back_consistent(sent: dict[str, Any], answer: dict[str, Any]) -> list[str]:
    """The fields the provider would find changed after apply (its read of each field, in short).

    Null-when-absent fields (sets and numbers behind pointers) must be absent when not sent and
    equal when sent; ``includedProjects`` and ``includeAllProjects`` must come back as sent;
    ``enabled``, ``skipTrashcan``, the package type, repo and included package sets must match.
    """
    problems: list[str] = []
    want, got = sent["searchCriteria"], answer.get("searchCriteria", {})
    for name in (
        "excludedRepos",
        "excludedPackages",
        "includedProperties",
        "excludedProperties",
        "createdBeforeInMonths",
        "lastDownloadedBeforeInMonths",
        "keepLastNVersions",
        "createdBeforeInDays",
        "lastDownloadedBeforeInDays",
    ):
        if want.get(name) != got.get(name):
            problems.append(f"searchCriteria.{name}")
    for name in ("packageTypes", "repos", "includedPackages", "includedProjects"):
        if sorted(want.get(name) or []) != sorted(got.get(name) or []) or (name in want) != (name in got):
            problems.append(f"searchCriteria.{name}")
    if want.get("includeAllProjects") != got.get("includeAllProjects"):
        problems.append("searchCriteria.includeAllProjects")
    if bool(sent.get("skipTrashcan")) != bool(answer.get("skipTrashcan")):
        problems.append("skipTrashcan")
    if answer.get("key") != sent["key"]:
        problems.append("key")
    return problems


async def test_terraform_provider_lifecycle_at_the_root(
    srv: SimulatorServer, jsim: JFrogSimulator, root: httpx.AsyncClient
) -> None:
    path = POLICY.format(key="tf-policy")
    usage = {
        "productId": "terraform-provider-artifactory/12",
        "features": [{"featureId": "Partner/ACC-007450"}],
    }
    # Configure: version, then a usage report (sent on configure and on every CRUD call).
    assert (await root.get("/artifactory/api/system/version")).json()["version"]
    assert (await root.post(USAGE, json=usage)).status_code == 200

    sent = provider_body(keepLastNVersions=3)
    created = await root.post(path, json=sent)
    assert created.is_success  # the provider takes any 2xx
    assert (await root.post(f"{path}/enablement", json={"enabled": True})).is_success
    read = await root.get(path)
    assert read.status_code == 200
    assert read_back_consistent(sent, read.json()) == []
    assert "description" not in read.json()  # read as "" by the provider either way; never sent here
    assert read.json()["enabled"] is True

    # Update: the full body again, with enabled as the state holds it (true is sent, false omitted).
    changed = provider_body(excludedRepos=["docker-keep"], createdBeforeInMonths=6)
    changed |= {"description": "stale images", "enabled": True}
    assert (await root.put(path, json=changed)).is_success
    after = (await root.get(path)).json()
    assert read_back_consistent(changed, after) == []
    assert after["description"] == "stale images" and after["enabled"] is True

    # Import by key is a read of the same path.
    assert (await root.get(path)).json()["key"] == "tf-policy"

    deleted = await root.delete(path)
    assert deleted.status_code == 200  # the provider accepts nothing else
    gone = await root.get(path)
    assert gone.status_code == 404  # the provider's signal to drop the resource from state
    assert (await root.delete(path)).status_code == 404
    assert (await root.post(USAGE, json=usage)).status_code == 200

    counted = [(c.method, c.path.rsplit("/", 1)[-1]) for c in srv.calls.calls("jfrog")]
    assert counted == [
        ("GET", "version"),
        ("POST", "tf-policy"),
        ("POST", "enablement"),
        ("GET", "tf-policy"),
        ("PUT", "tf-policy"),
        ("GET", "tf-policy"),
        ("GET", "tf-policy"),
        ("DELETE", "tf-policy"),
        ("GET", "tf-policy"),
        ("DELETE", "tf-policy"),
    ]
    assert len(srv.calls) == len(counted)
    reports = [c for c in srv.calls.calls("jfrog", include_telemetry=True) if c.telemetry]
    assert [(c.method, c.path, c.status, c.json) for c in reports] == [("POST", USAGE, 200, usage)] * 2


async def test_sample_shape_would_break_the_provider(jsim: JFrogSimulator, root: httpx.AsyncClient) -> None:
    """The control for the test above: echoing the doc sample's empty lists is what the provider rejects."""
    jsim.echo_empty_defaults = True
    sent = provider_body(keepLastNVersions=3)
    await root.post(POLICY.format(key="tf-policy"), json=sent)
    answer = (await root.get(POLICY.format(key="tf-policy"))).json()
    assert read_back_consistent(sent, answer) == [
        "searchCriteria.excludedRepos",
        "searchCriteria.excludedPackages",
        "searchCriteria.createdBeforeInMonths",
        "searchCriteria.lastDownloadedBeforeInMonths",
    ]
    assert answer["description"] == ""


async def test_usage_reports_are_never_faulted(
    srv: SimulatorServer, jsim: JFrogSimulator, root: httpx.AsyncClient, verify: ssl.SSLContext
) -> None:
    jsim.faults.add(Fault("status", status=503, body={}))  # any path, once
    assert (await root.post(USAGE, json={"productId": "x", "features": []})).status_code == 200
    assert (await root.get("/artifactory/api/system/version")).status_code == 503  # the fault is still there
    assert [c.status for c in srv.calls.calls()] == [503]
    async with httpx.AsyncClient(base_url=srv.url(""), verify=verify) as control:
        plain = (await control.get("/_sim/calls")).json()
        everything = (await control.get("/_sim/calls", params={"include_telemetry": "true"})).json()
    assert [c["path"] for c in plain] == ["/artifactory/api/system/version"]
    assert [(c["path"], c["telemetry"]) for c in everything] == [
        (USAGE, True),
        ("/artifactory/api/system/version", False),
    ]
