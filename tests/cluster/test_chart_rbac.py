"""The operator runs under its own chart's RBAC, as users will run it.

For both modes (all namespaces; a list of namespaces) the chart is installed with the real helm,
a token of the release's ServiceAccount is minted with the TokenRequest API, and the operator runs
with the chart's own args and a kubeconfig holding only that token (not the suite's
``system:masters`` admin). Every kind reaches Ready against the simulators, a CleanupPolicy is
deleted through its finalizer, and the operator's log shows no refusal from the API server: a
missing rule would show up there (Kopf logs a 403 it can live with as "Not enough permissions").
In namespaced mode, a resource in a namespace the release does not list is never touched, and the
token cannot read a Secret there. The module has a control plane of its own (see ``control_plane``).
"""

from __future__ import annotations

import base64
import re
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import yaml

from cleanup_operator.api.common import FINALIZER
from cleanup_operator.testing.controlplane import ControlPlane, free_port
from cleanup_operator.testing.simulators import SimulatorServer

from .chart import ChartOperator, Helm, Release, find_helm, run_as_release
from .conftest import (
    ASS,
    CPOL,
    CREDENTIALS_LABEL,
    GROUP,
    SPRUNE,
    Kube,
    calls,
    harness,
    hsync,
    jfrog,
    policy,
    prune,
    ready,
    resync,
    running_control_plane,
    scsync,
    sourcecraft,
    trust_simulators,
    unique,
    wait_until,
)

#: What the API server's refusals look like in the operator's log: Kopf's APIForbiddenError and the
#: "Forbidden" status it carries, Kopf's own warning when it falls back, our client's "HTTP 403",
#: and a failed event post ("Code: 403"). A bare 403 inside a timestamp or an id is not one.
REFUSAL = re.compile(r"forbidden|not enough permissions|(?<![\w.:-])403(?![\w.:-])", re.IGNORECASE)


@pytest.fixture(scope="module")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """A cluster of this module's own (overriding the session's): "all namespaces" means every
    namespace of the cluster, and the other tests' objects (some still being deleted) must neither
    be touched by this operator nor stand in its way."""
    yield from running_control_plane(tmp_path_factory.mktemp("chart-rbac-controlplane"))


@pytest.fixture(scope="module")
def helm(control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Helm:
    return find_helm(control_plane, tmp_path_factory)


def chart_values(sim: SimulatorServer, **values: Any) -> dict[str, Any]:
    """What a test must add to the chart's defaults, through the chart's own values: the
    simulators' host (and plain http, should they serve it), and --verbose for the log check."""
    url = urlsplit(sim.url("jfrog"))
    assert url.hostname in ("127.0.0.1", "::1", "localhost"), url  # only loopback targets
    return {
        "crds": {"install": False, "keep": True},  # installed with the cluster; the release leaves them be
        "allowedHosts": [url.hostname],
        "allowInsecureHttp": url.scheme == "http",
        "extraArgs": ["--verbose"],
        **values,
    }


@dataclass
class Installed:
    release: Release
    operator: ChartOperator
    kubeconfig: Path
    liveness: str


Install = Callable[[dict[str, Any]], Installed]


@pytest.fixture
def install(helm: Helm, control_plane: ControlPlane, tmp_path: Path) -> Iterator[Install]:
    """Install a release (values) into a fresh namespace and run the operator as its
    ServiceAccount; stopped, uninstalled and its namespace deleted afterwards."""
    made: list[tuple[Release, ChartOperator]] = []

    def _install(values: dict[str, Any]) -> Installed:
        ns = unique("chart-op")
        control_plane.kubectl("create", "namespace", ns)
        release = helm.install(unique("rbac"), ns, values, tmp_path)
        port = free_port()
        op = run_as_release(release, tmp_path, port)
        made.append((release, op))
        return Installed(release, op, tmp_path / "operator.kubeconfig", f"http://127.0.0.1:{port}")

    yield _install
    for release, op in made:
        op.stop()
        print(op.logs()[-6000:])
        release.uninstall()
        control_plane.kubectl("delete", "namespace", release.namespace, "--wait=false", check=False)


@pytest.fixture
def namespaces(control_plane: ControlPlane, install: Install, sim_ca_pem: str) -> Iterator[dict[str, Kube]]:
    """Two namespaces with workloads, and one the namespaced release does not list, each with the
    ``sim-ca`` Secret the builders' ``caSecretRef`` names.

    Torn down before ``install`` (which it names for that): our objects are deleted while the
    operator still runs, so their finalizers are released and the namespaces do not hang.
    """
    kubes = {key: Kube(control_plane, unique(f"chart-{key}")) for key in ("a", "b", "other")}
    for kube in kubes.values():
        control_plane.kubectl("create", "namespace", kube.ns)
        trust_simulators(kube, sim_ca_pem)
    yield kubes
    kinds = ",".join(f"{plural}.{GROUP}" for plural in (CPOL, SPRUNE, ASS))
    for kube in kubes.values():
        kube.kubectl("delete", kinds, "--all", "-n", kube.ns, "--timeout=60s", check=False)
        control_plane.kubectl("delete", "namespace", kube.ns, "--wait=false", check=False)


def token_client(kubeconfig: Path) -> httpx.Client:
    """An API client from the operator's kubeconfig alone: its server, CA and token."""
    config = yaml.safe_load(kubeconfig.read_text())
    (cluster,) = config["clusters"]
    (user,) = config["users"]
    assert set(user["user"]) == {"token"}, "the operator's kubeconfig holds a credential besides its token"
    pem = base64.b64decode(cluster["cluster"]["certificate-authority-data"]).decode()
    return httpx.Client(
        base_url=cluster["cluster"]["server"],
        verify=ssl.create_default_context(cadata=pem),
        headers={"Authorization": f"Bearer {user['user']['token']}"},
        timeout=10.0,
    )


def whoami(client: httpx.Client) -> str:
    resp = client.post(
        "/apis/authentication.k8s.io/v1/selfsubjectreviews",
        json={"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
    )
    resp.raise_for_status()
    return str(resp.json()["status"]["userInfo"]["username"])


@dataclass
class Workload:
    """A CleanupPolicy and a StoragePrune in one namespace, a Harness and a SourceCraft
    ArtifactStreamSync in another, each with its labelled Secret."""

    jfrog_ns: Kube
    streams_ns: Kube
    policy: str
    prune: str
    hsync: str
    scsync: str
    stream: str


def deploy_workload(sim: SimulatorServer, jfrog_ns: Kube, streams_ns: Kube) -> Workload:
    w = Workload(
        jfrog_ns, streams_ns, unique("pol"), unique("prune"), unique("hsync"), unique("scsync"), unique("s")
    )
    jfrog(sim).prune_seconds_per_directory = 0.001
    harness(sim).add_stream("acc1", w.stream, "DOCKER")
    sourcecraft(sim).add_run(
        "acme", "web", "run-1", workflow="build", task="package", cube="publish", artifacts=["dist/app.tar"]
    )
    jfrog_ns.secret("jfrog", token="test-token")
    streams_ns.secret("harness", apiKey="test-key")
    streams_ns.secret("sourcecraft", token="sc-token")
    jfrog_ns.apply(policy(sim, w.policy))
    jfrog_ns.apply(prune(sim, w.prune))
    streams_ns.apply(hsync(sim, w.hsync, [w.stream]))
    streams_ns.apply(scsync(sim, w.scsync, run="run-1"))
    return w


def assert_workload_works(sim: SimulatorServer, w: Workload) -> None:
    """Every kind Ready for its generation, events posted, and a deletion through the finalizer."""
    for kube, plural, name in (
        (w.jfrog_ns, CPOL, w.policy),
        (w.jfrog_ns, SPRUNE, w.prune),
        (w.streams_ns, ASS, w.hsync),
        (w.streams_ns, ASS, w.scsync),
    ):
        obj = kube.wait_for(plural, name, ready, timeout=90, what="Ready")
        assert FINALIZER in obj["metadata"]["finalizers"]  # Kopf's patch of the object
    assert jfrog(sim).policy(w.policy) is not None, "the policy is not in Artifactory"
    assert harness(sim).cleanup_count(w.stream) >= 1
    prune_obj = w.jfrog_ns.get(SPRUNE, w.prune)
    assert prune_obj is not None and prune_obj["status"]["phase"] == "Succeeded"
    # Events reach the API server (Kopf posts them: `create` on core events).
    created = wait_until(
        lambda: [e for e in w.jfrog_ns.events(w.policy) if e["reason"] == "Created"], "a Created event"
    )
    assert w.policy in created[0]["message"]
    # Patches of our own (annotations are Kopf's, status is ours) and the GET before clean-up.
    resync(w.jfrog_ns, CPOL, w.policy)
    w.jfrog_ns.delete(CPOL, w.policy)
    w.jfrog_ns.wait_gone(CPOL, w.policy, timeout=60)
    assert calls(sim, w.policy, "DELETE"), "the policy was not deleted in Artifactory"
    assert jfrog(sim).policy(w.policy) is None


def assert_no_refusals(installed: Installed) -> None:
    logs = installed.operator.logs()
    assert "reconcil" in logs.lower() or "handler" in logs.lower(), logs[-2000:]  # it logged its work
    refused = [line for line in logs.splitlines() if REFUSAL.search(line)]
    assert not refused, "the API server refused the operator:\n" + "\n".join(refused[:10])
    assert installed.operator.proc is not None and installed.operator.proc.poll() is None, "it exited"
    # The chart's livenessProbe path answers on the port the test gave it.
    probe = installed.release.container()["livenessProbe"]["httpGet"]["path"]
    assert httpx.get(installed.liveness + probe, timeout=5).status_code == 200


def check_identity(installed: Installed) -> None:
    """The operator's kubeconfig authenticates as the release's ServiceAccount, and as nothing more."""
    release = installed.release
    with token_client(installed.kubeconfig) as client:
        assert whoami(client) == f"system:serviceaccount:{release.namespace}:{release.service_account()}"


def test_all_namespaces(install: Install, namespaces: dict[str, Kube], sim: SimulatorServer) -> None:
    installed = install(chart_values(sim))
    args = list(installed.operator.args)
    assert "--all-namespaces" in args and "--namespace" not in args
    assert args[args.index("--allowed-hosts") + 1] == urlsplit(sim.url("jfrog")).hostname
    check_identity(installed)

    w = deploy_workload(sim, namespaces["a"], namespaces["b"])
    assert_workload_works(sim, w)
    assert_no_refusals(installed)


def test_listed_namespaces(install: Install, namespaces: dict[str, Kube], sim: SimulatorServer) -> None:
    a, b, other = namespaces["a"], namespaces["b"], namespaces["other"]
    installed = install(chart_values(sim, watch={"allNamespaces": False, "namespaces": [a.ns, b.ns]}))
    args = list(installed.operator.args)
    assert args[:4] == ["--namespace", a.ns, "--namespace", b.ns] and "--all-namespaces" not in args
    check_identity(installed)

    # A resource in a namespace the release does not list, with a Secret labelled for the operator.
    other.secret("jfrog", token="test-token")
    stranger = unique("pol-other")
    other.apply(policy(sim, stranger))

    w = deploy_workload(sim, a, b)
    assert_workload_works(sim, w)
    # The stranger was there before the workload, which was reconciled through (a whole resync
    # answered since): had its namespace been watched, it would have been handled by now. It has no status, none of the operator's bookkeeping, no events, and Artifactory never heard of it.
    obj = other.get(CPOL, stranger)
    assert obj is not None
    assert "status" not in obj, obj.get("status")
    assert not obj["metadata"].get("finalizers")
    assert not [k for k in obj["metadata"].get("annotations") or {} if k.startswith(GROUP)]
    assert other.events(stranger) == []
    assert calls(sim, stranger) == []
    assert jfrog(sim).policy(stranger) is None

    # The token cannot read a Secret there (RBAC, not authentication: the same GET in a listed
    # namespace answers 200, and the Secret exists).
    with token_client(installed.kubeconfig) as client:
        assert client.get(f"/api/v1/namespaces/{a.ns}/secrets/jfrog").status_code == 200
        resp = client.get(f"/api/v1/namespaces/{other.ns}/secrets/jfrog")
        assert resp.status_code == 403, resp.text
        assert resp.json()["reason"] == "Forbidden"
        assert client.get(f"/api/v1/namespaces/{other.ns}/secrets").status_code == 403
    secret = other.kubectl("get", "secret", "jfrog", "-n", other.ns, "-o", "json").stdout
    assert CREDENTIALS_LABEL in secret

    assert_no_refusals(installed)
