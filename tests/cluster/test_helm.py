"""The Helm chart with the real helm binary (hack/tools.sh) and a real kube-apiserver.

Rendering is checked for what users and auditors rely on (two replicas under leader election, rolled one at a time, the hardened
security contexts, least-privilege RBAC per mode, CRDs from the models); the API server then accepts
every rendered object (``kubectl apply --dry-run=server``), and a release goes through install,
upgrade and uninstall. There are no nodes, so the Deployment's pod never runs: the objects must be
accepted, and the RBAC they grant is verified with ``kubectl auth can-i`` as the ServiceAccount
(test_chart_rbac.py runs the operator itself with a token of that ServiceAccount).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from cleanup_operator import crdgen
from cleanup_operator.api import ALL_KINDS, GROUP
from cleanup_operator.cli import parse_args
from cleanup_operator.testing.controlplane import ControlPlane

from .chart import CHART, Helm, find_helm, write_values
from .conftest import unique

PLURALS = [info.plural for info in ALL_KINDS]
CRD_NAMES = {info.crd_name for info in ALL_KINDS}
KEEP = "helm.sh/resource-policy"

# Least privilege, as (apiGroup, resource) -> verbs. Anything else granted is a failure.
# test_chart_rbac.py runs the operator with exactly these (and sees no refusal).
NAMESPACED_RULES: dict[tuple[str, str], set[str]] = {
    **{(GROUP, p): {"get", "list", "watch", "patch"} for p in PLURALS},
    **{(GROUP, f"{p}/status"): {"patch"} for p in PLURALS},
    ("", "secrets"): {"get", "list", "watch"},
    ("", "events"): {"create"},
}
#: The leader election's Role, in the release namespace only: the one Lease by name, and create.
LEASE_RULES = [
    {
        "apiGroups": ["coordination.k8s.io"],
        "resources": ["leases"],
        "resourceNames": ["rel-cleanup-operator"],
        "verbs": ["get", "update"],
    },
    {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
]
CLUSTER_RULES = {
    **NAMESPACED_RULES,
    ("apiextensions.k8s.io", "customresourcedefinitions"): {"list", "watch"},
}


@pytest.fixture(scope="module")
def helm(control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Helm:
    return find_helm(control_plane, tmp_path_factory)


@pytest.fixture(scope="module")
def namespaces(control_plane: ControlPlane) -> Iterator[dict[str, str]]:
    """The release namespace and two namespaces to watch, for the server-side dry runs."""
    names = {"release": unique("helm-rel"), "a": unique("helm-a"), "b": unique("helm-b")}
    for ns in names.values():
        control_plane.kubectl("create", "namespace", ns)
    yield names
    for ns in names.values():
        control_plane.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def namespaced_values(*watched: str, **extra: Any) -> dict[str, Any]:
    return {"watch": {"allNamespaces": False, "namespaces": list(watched)}, **extra}


def docs_of(manifest: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(manifest) if d]


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = by_kind(docs, kind)
    assert len(found) == 1, f"expected one {kind}, got {[d['metadata']['name'] for d in found]}"
    return found[0]


def rules_map(rules: list[dict[str, Any]]) -> dict[tuple[str, str], set[str]]:
    out: dict[tuple[str, str], set[str]] = {}
    for rule in rules:
        assert "resourceNames" not in rule and "nonResourceURLs" not in rule, rule
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                out.setdefault((group, resource), set()).update(rule["verbs"])
    return out


# helm lint and the values schema.


@pytest.mark.parametrize(
    "values",
    [
        {},
        namespaced_values("team-a", "team-b"),
        {"crds": {"install": False, "keep": False}},
        {
            "allowedHosts": ["*.jfrog.io", "127.0.0.1:8443"],
            "allowInsecureHttp": True,
            "allowInsecureTls": True,
        },
        {"watch": {"allNamespaces": False, "namespaces": [], "shard": "team-a"}},
    ],
    ids=["cluster-wide", "namespaced", "no-crds", "endpoints", "shard"],
)
def test_lint(helm: Helm, tmp_path: Path, values: dict[str, Any]) -> None:
    res = helm.run("lint", "--strict", str(CHART), "--values", str(write_values(tmp_path, values)))
    assert "1 chart(s) linted, 0 chart(s) failed" in res.stdout
    assert "[ERROR]" not in res.stdout and "[WARNING]" not in res.stdout


@pytest.mark.parametrize(
    ("values", "error"),
    [
        (namespaced_values(), "minItems"),
        ({"watch": {"allNamespaces": True, "namespaces": ["team-a"]}}, "maxItems"),
        (namespaced_values("team-*"), "pattern"),  # a Role needs an exact namespace, not a glob
        ({"crds": {"install": "yes", "keep": True}}, "/crds/install"),
        ({"replicaCount": 2}, "replicaCount"),  # one replica is not a choice: Kopf has no leader election
        ({"logFormat": "xml"}, "/logFormat"),
        ({"metrics": {"enabled": True, "port": 8080}}, "metrics.port and liveness.port must differ"),
        ({"allowedHosts": ["https://acme.jfrog.io"]}, "/allowedHosts/0"),  # a host, not a URL
        ({"allowedHosts": ["a.jfrog.io,b.jfrog.io"]}, "/allowedHosts/0"),  # one host per entry
        ({"allowedHosts": ["admin@acme.jfrog.io"]}, "/allowedHosts/0"),
        ({"allowedHosts": [""]}, "/allowedHosts/0"),
        ({"allowedHosts": "*.jfrog.io"}, "/allowedHosts"),
        ({"allowInsecureHttp": "true"}, "/allowInsecureHttp"),
        ({"allowInsecureTls": 1}, "/allowInsecureTls"),
        ({"watch": {"allNamespaces": True, "namespaces": [], "shard": "a"}}, "/watch/allNamespaces"),
        ({"watch": {"allNamespaces": False, "namespaces": ["team-a"], "shard": "a"}}, "maxItems"),
        ({"watch": {"allNamespaces": False, "namespaces": [], "shard": "team a"}}, "/watch/shard"),
    ],
    ids=[
        "namespaced-without-namespaces",
        "namespaces-when-cluster-wide",
        "glob",
        "crds-not-bool",
        "unknown-key",
        "bad-log-format",
        "port-clash",
        "allowed-host-url",
        "allowed-hosts-comma",
        "allowed-host-userinfo",
        "allowed-host-empty",
        "allowed-hosts-not-a-list",
        "insecure-http-not-bool",
        "insecure-tls-not-bool",
        "shard-when-cluster-wide",
        "shard-and-namespaces",
        "shard-not-a-label-value",
    ],
)
def test_bad_values_are_refused(helm: Helm, tmp_path: Path, values: dict[str, Any], error: str) -> None:
    res = helm.run(
        "template",
        "rel",
        str(CHART),
        "--kube-version",
        helm.kube_version,
        "--values",
        str(write_values(tmp_path, values)),
        check=False,
    )
    assert res.returncode != 0, res.stdout[:500]
    assert error in res.stderr


# Rendering, in both modes, with and without the CRDs.


@dataclass(frozen=True)
class Mode:
    name: str
    cluster_wide: bool
    crds: bool


MODES = [
    Mode(f"{scope}-crds-{crds}", scope == "cluster", crds)
    for scope in ("cluster", "namespaced")
    for crds in (True, False)
]


def mode_values(mode: Mode, ns: dict[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {} if mode.cluster_wide else namespaced_values(ns["a"], ns["b"])
    values["crds"] = {"install": mode.crds, "keep": True}
    return values


def check_deployment(docs: list[dict[str, Any]], release_ns: str, watched: list[str] | None) -> list[str]:
    deploy = one(docs, "Deployment")
    assert deploy["metadata"]["namespace"] == release_ns
    spec = deploy["spec"]
    # Leader election is on by default: two replicas, one acting, rolled one pod at a time.
    assert spec["replicas"] == 2
    assert spec["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }
    pod = spec["template"]["spec"]
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 65532,
        "runAsGroup": 65532,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert pod["serviceAccountName"] == one(docs, "ServiceAccount")["metadata"]["name"]
    (container,) = pod["containers"]
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["privileged"] is False
    assert sc["runAsNonRoot"] is True
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["resources"]["limits"]["memory"] == "192Mi"
    assert container["resources"]["requests"]["memory"]
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]

    args = container["args"]
    scope = ["--all-namespaces"] if watched is None else [a for ns in watched for a in ("--namespace", ns)]
    assert args[: len(scope)] == scope
    assert args[len(scope) : len(scope) + 4] == [
        "--liveness",
        "http://0.0.0.0:8080/healthz",
        "--log-format",
        "json",
    ]
    # The operator's own parser accepts exactly these flags.
    options = parse_args(args)
    assert options.all_namespaces is (watched is None)
    assert list(options.namespaces) == (watched or [])
    assert options.log_format == "json"
    assert options.liveness == "http://0.0.0.0:8080/healthz"
    assert options.leader_elect and options.leader_elect_namespace == release_ns
    # By default no vendor host is allowed, and neither plain http nor insecureSkipVerify.
    assert "--allowed-hosts" not in args
    assert (options.allowed_hosts, options.allow_insecure_http, options.allow_insecure_tls) == (
        (),
        False,
        False,
    )

    probe = container["livenessProbe"]["httpGet"]
    assert probe == {"path": "/healthz", "port": "health"}
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["health"] == 8080
    return list(args)


@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.name)
def test_render(helm: Helm, namespaces: dict[str, str], tmp_path: Path, mode: Mode) -> None:
    release_ns = namespaces["release"]
    manifest = helm.template(mode_values(mode, namespaces), release_ns, tmp_path)
    docs = docs_of(manifest)
    watched = None if mode.cluster_wide else [namespaces["a"], namespaces["b"]]
    check_deployment(docs, release_ns, watched)

    sa = one(docs, "ServiceAccount")
    assert sa["metadata"] == {**sa["metadata"], "name": "rel-cleanup-operator", "namespace": release_ns}
    subject = {"kind": "ServiceAccount", "name": "rel-cleanup-operator", "namespace": release_ns}
    lease_role, lease_binding = (
        docs.pop(
            next(
                i
                for i, d in enumerate(docs)
                if d["kind"] == k and d["metadata"]["name"].endswith("-leader-election")
            )
        )
        for k in ("Role", "RoleBinding")
    )
    assert lease_role["metadata"]["namespace"] == lease_binding["metadata"]["namespace"] == release_ns
    assert lease_role["rules"] == LEASE_RULES
    assert lease_binding["roleRef"]["name"] == lease_role["metadata"]["name"]
    assert lease_binding["subjects"] == [subject]
    # rules_map equality: no wildcard, no extra verb or resource, nothing missing.
    if mode.cluster_wide:
        role = one(docs, "ClusterRole")
        assert rules_map(role["rules"]) == CLUSTER_RULES
        binding = one(docs, "ClusterRoleBinding")
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": role["metadata"]["name"],
        }
        assert binding["subjects"] == [subject]
        assert not by_kind(docs, "Role") and not by_kind(docs, "RoleBinding")
    else:
        assert not by_kind(docs, "ClusterRole") and not by_kind(docs, "ClusterRoleBinding")
        roles = {r["metadata"]["namespace"]: r for r in by_kind(docs, "Role")}
        bindings = {b["metadata"]["namespace"]: b for b in by_kind(docs, "RoleBinding")}
        assert set(roles) == set(bindings) == set(watched or [])
        for ns, role in roles.items():
            assert rules_map(role["rules"]) == NAMESPACED_RULES, ns
            assert bindings[ns]["roleRef"]["name"] == role["metadata"]["name"]
            assert bindings[ns]["roleRef"]["kind"] == "Role"
            assert bindings[ns]["subjects"] == [subject]

    crds = {c["metadata"]["name"]: c for c in by_kind(docs, "CustomResourceDefinition")}
    if mode.crds:
        assert set(crds) == CRD_NAMES
        for info in ALL_KINDS:
            crd = crds[info.crd_name]
            assert crd["metadata"]["annotations"] == {KEEP: "keep"}
            assert crd["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"
            assert crd["spec"] == crdgen.crd_for(info)["spec"], f"{info.crd_name} differs from the models"
    else:
        assert crds == {}


def test_render_without_keep(helm: Helm, namespaces: dict[str, str], tmp_path: Path) -> None:
    docs = docs_of(helm.template({"crds": {"install": True, "keep": False}}, namespaces["release"], tmp_path))
    crds = by_kind(docs, "CustomResourceDefinition")
    assert {c["metadata"]["name"] for c in crds} == CRD_NAMES
    for crd in crds:
        assert KEEP not in (crd["metadata"].get("annotations") or {})


def test_render_metrics_and_extra_args(helm: Helm, namespaces: dict[str, str], tmp_path: Path) -> None:
    values = {
        "metrics": {"enabled": True, "port": 9100},
        "logFormat": "text",
        "extraArgs": ["--vendor-concurrency", "20"],
        "image": {"repository": "registry.example/cleanup-operator", "tag": "1.2.3", "pullPolicy": "Always"},
    }
    docs = docs_of(helm.template(values, namespaces["release"], tmp_path))
    (container,) = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "registry.example/cleanup-operator:1.2.3"
    args = container["args"]
    assert args[args.index("--metrics-port") + 1] == "9100"
    assert args[args.index("--log-format") + 1] == "text"
    assert args[-2:] == ["--vendor-concurrency", "20"]
    options = parse_args(args)
    assert (options.metrics_port, options.vendor_concurrency, options.log_format) == (9100, 20, "text")
    assert {"name": "metrics", "containerPort": 9100, "protocol": "TCP"} in container["ports"]
    service = one(docs, "Service")
    assert service["spec"]["ports"] == [
        {"name": "metrics", "port": 9100, "targetPort": "metrics", "protocol": "TCP"}
    ]
    assert not by_kind(docs_of(helm.template({}, namespaces["release"], tmp_path)), "Service")


def test_render_endpoint_values(helm: Helm, namespaces: dict[str, str], tmp_path: Path) -> None:
    hosts = ["*.jfrog.io", "app.harness.io", "127.0.0.1:8443", "[::1]:*"]
    values = {"allowedHosts": hosts, "allowInsecureHttp": True, "allowInsecureTls": True}
    docs = docs_of(helm.template(values, namespaces["release"], tmp_path))
    (container,) = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    args = container["args"]
    # One --allowed-hosts per entry, in order (each a glob the operator matches on its own).
    flagged = [args[i + 1] for i, a in enumerate(args) if a == "--allowed-hosts"]
    assert flagged == hosts
    assert args.count("--allow-insecure-http") == 1 and args.count("--allow-insecure-tls") == 1
    options = parse_args(args)
    assert options.allowed_hosts == tuple(hosts)
    assert options.allow_insecure_http is True and options.allow_insecure_tls is True
    policy = options.endpoints()
    assert policy.host_allowed("acme.jfrog.io", 443) and policy.host_allowed("::1", 6443)
    assert not policy.host_allowed("127.0.0.1", 443) and not policy.host_allowed("jfrog.io.evil", 443)

    # Each flag on its own, and off when false.
    args = one(
        docs_of(helm.template({"allowInsecureTls": True}, namespaces["release"], tmp_path)), "Deployment"
    )["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--allow-insecure-tls" in args and "--allow-insecure-http" not in args
    assert "--allowed-hosts" not in args


# The API server accepts what is rendered.


@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.name)
def test_server_side_dry_run(
    helm: Helm, control_plane: ControlPlane, namespaces: dict[str, str], tmp_path: Path, mode: Mode
) -> None:
    manifest = helm.template(mode_values(mode, namespaces), namespaces["release"], tmp_path)
    res = control_plane.kubectl("apply", "--dry-run=server", "-f", "-", input=manifest, check=False)
    assert res.returncode == 0, res.stderr
    accepted = [line for line in res.stdout.splitlines() if line.endswith("(server dry run)")]
    assert len(accepted) == len(docs_of(manifest)), res.stdout
    assert "deployment.apps/rel-cleanup-operator" in res.stdout
    for name in CRD_NAMES:
        assert (f"customresourcedefinition.apiextensions.k8s.io/{name}" in res.stdout) is mode.crds
    # Nothing was created.
    assert control_plane.kubectl("get", "deployment", "-n", namespaces["release"], "-o", "name").stdout == ""


# A release: install, upgrade, uninstall.


def can_i(cp: ControlPlane, sa: str, *args: str) -> bool:
    res = cp.kubectl("auth", "can-i", *args, f"--as=system:serviceaccount:{sa}", check=False)
    assert res.stdout.strip() in ("yes", "no"), res.stderr
    return res.stdout.strip() == "yes"


def get_json(cp: ControlPlane, *args: str) -> dict[str, Any] | None:
    res = cp.kubectl("get", *args, "-o", "json", check=False)
    if res.returncode != 0:
        assert "NotFound" in res.stderr, res.stderr
        return None
    return dict(json.loads(res.stdout))


def crd_uids(cp: ControlPlane) -> dict[str, str]:
    return {name: (get_json(cp, "crd", name) or {})["metadata"]["uid"] for name in CRD_NAMES}


def test_release_cluster_wide(helm: Helm, control_plane: ControlPlane, tmp_path: Path) -> None:
    cp = control_plane
    ns = unique("helm-cw")
    release = unique("cw")
    name = f"{release}-cleanup-operator"
    sa = f"{ns}:{name}"
    cp.kubectl("create", "namespace", ns)
    before = crd_uids(cp)  # installed by the session fixture with `kubectl apply --server-side`
    try:
        # The CRDs exist already (as after `kubectl apply -f crds/`): the release takes them over.
        res = helm.run("install", release, str(CHART), "--namespace", ns, "--take-ownership")
        assert "STATUS: deployed" in res.stdout
        assert "kubectl get cleanup -A" in res.stdout  # NOTES.txt
        # The default allows no vendor host, and NOTES say so and how to set it.
        assert "WARNING: allowedHosts is empty, so the operator refuses every vendor host" in res.stdout
        assert f"helm upgrade {release} <chart> -n {ns} --reuse-values --set 'allowedHosts=" in res.stdout
        deploy = get_json(cp, "deployment", name, "-n", ns)
        assert deploy is not None
        assert deploy["spec"]["strategy"]["type"] == "RollingUpdate" and deploy["spec"]["replicas"] == 2
        assert get_json(cp, "serviceaccount", name, "-n", ns) is not None
        assert get_json(cp, "clusterrolebinding", name) is not None
        for crd_name in CRD_NAMES:
            crd = get_json(cp, "crd", crd_name)
            assert crd is not None
            assert crd["metadata"]["annotations"][KEEP] == "keep"
            assert crd["metadata"]["annotations"]["meta.helm.sh/release-name"] == release
            assert crd["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"
            established = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
            assert established["Established"] == "True"

        # RBAC as the API server evaluates it for the operator's ServiceAccount.
        for resource in PLURALS:
            assert can_i(cp, sa, "watch", f"{resource}.{GROUP}", "--all-namespaces")
            assert can_i(cp, sa, "patch", f"{resource}.{GROUP}", "--subresource=status", "-n", "default")
            assert not can_i(cp, sa, "delete", f"{resource}.{GROUP}", "-n", "default")
            assert not can_i(cp, sa, "create", f"{resource}.{GROUP}", "-n", "default")
            assert not can_i(cp, sa, "update", f"{resource}.{GROUP}", "--subresource=status", "-n", "default")
        for verb in ("get", "list", "watch"):  # the label-selector watch of labelled Secrets
            assert can_i(cp, sa, verb, "secrets", "-n", "default")
        assert not can_i(cp, sa, "create", "secrets", "-n", "default")
        assert can_i(cp, sa, "create", "events", "-n", "default")
        assert not can_i(cp, sa, "patch", "events", "-n", "default")
        assert not can_i(cp, sa, "create", "events.events.k8s.io", "-n", "default")
        assert can_i(cp, sa, "watch", "customresourcedefinitions.apiextensions.k8s.io")
        assert not can_i(cp, sa, "list", "namespaces")  # cluster-wide, Kopf never lists them
        assert not can_i(cp, sa, "update", "customresourcedefinitions.apiextensions.k8s.io")
        assert not can_i(cp, sa, "get", "configmaps", "-n", "default")
        assert can_i(cp, sa, "update", f"leases.coordination.k8s.io/{name}", "-n", ns)
        assert can_i(cp, sa, "create", "leases.coordination.k8s.io", "-n", ns)
        assert not can_i(cp, sa, "get", "leases.coordination.k8s.io", "-n", "default")

        res = helm.run(
            "upgrade",
            release,
            str(CHART),
            "--namespace",
            ns,
            "--values",
            str(
                write_values(
                    tmp_path, {"metrics": {"enabled": True, "port": 9100}, "allowedHosts": ["*.jfrog.io"]}
                )
            ),
        )
        assert "STATUS: deployed" in res.stdout and "REVISION: 2" in res.stdout
        assert "allowedHosts is empty" not in res.stdout
        assert "Vendor hosts the operator may send credentials to (allowedHosts): *.jfrog.io." in res.stdout
        deploy = get_json(cp, "deployment", name, "-n", ns)
        assert deploy is not None
        args = deploy["spec"]["template"]["spec"]["containers"][0]["args"]
        assert args[args.index("--metrics-port") + 1] == "9100"
        assert parse_args(args).allowed_hosts == ("*.jfrog.io",)
        assert get_json(cp, "service", f"{name}-metrics", "-n", ns) is not None
        assert crd_uids(cp) == before  # updated in place, never recreated

        res = helm.run("uninstall", release, "--namespace", ns)
        assert "These resources were kept due to the resource policy" in res.stdout
        for crd_name in CRD_NAMES:
            assert f"[CustomResourceDefinition] {crd_name}" in res.stdout
        assert get_json(cp, "deployment", name, "-n", ns) is None
        assert get_json(cp, "service", f"{name}-metrics", "-n", ns) is None
        assert get_json(cp, "clusterrole", name) is None
        assert get_json(cp, "clusterrolebinding", name) is None
        assert get_json(cp, "serviceaccount", name, "-n", ns) is None
        # The CRDs (and so every resource of our kinds) survive, the very same objects.
        assert crd_uids(cp) == before
    finally:
        helm.run("uninstall", release, "--namespace", ns, "--ignore-not-found", check=False)
        cp.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def test_release_namespaced(helm: Helm, control_plane: ControlPlane, tmp_path: Path) -> None:
    cp = control_plane
    ns, team_a, team_b, other = (unique(p) for p in ("helm-op", "helm-ta", "helm-tb", "helm-other"))
    release = unique("ns")
    name = f"{release}-cleanup-operator"
    sa = f"{ns}:{name}"
    for n in (ns, team_a, team_b, other):
        cp.kubectl("create", "namespace", n)
    try:
        # CRDs managed outside the release (crds.install=false): no ownership to take.
        values = namespaced_values(team_a, crds={"install": False, "keep": True})
        helm.run(
            "install", release, str(CHART), "--namespace", ns, "--values", str(write_values(tmp_path, values))
        )
        assert get_json(cp, "role", name, "-n", team_a) is not None
        assert get_json(cp, "rolebinding", name, "-n", team_a) is not None
        assert get_json(cp, "clusterrole", name) is None
        assert get_json(cp, "clusterrolebinding", name) is None
        deploy = get_json(cp, "deployment", name, "-n", ns)
        assert deploy is not None
        assert deploy["spec"]["template"]["spec"]["containers"][0]["args"][:2] == ["--namespace", team_a]

        assert can_i(cp, sa, "patch", f"storageprunes.{GROUP}", "--subresource=status", "-n", team_a)
        assert can_i(cp, sa, "watch", f"cleanuppolicies.{GROUP}", "-n", team_a)
        for verb in ("get", "list", "watch"):
            assert can_i(cp, sa, verb, "secrets", "-n", team_a)
        assert can_i(cp, sa, "create", "events", "-n", team_a)
        assert not can_i(cp, sa, "get", "secrets", "-n", other)
        assert not can_i(cp, sa, "list", "secrets", "-n", other)
        assert not can_i(cp, sa, "list", "secrets", "--all-namespaces")
        assert not can_i(cp, sa, "watch", f"cleanuppolicies.{GROUP}", "-n", other)
        assert not can_i(cp, sa, "watch", f"cleanuppolicies.{GROUP}", "--all-namespaces")
        assert not can_i(cp, sa, "list", "customresourcedefinitions.apiextensions.k8s.io")
        assert not can_i(cp, sa, "list", "namespaces")
        assert not can_i(cp, sa, "get", f"artifactstreamsyncs.{GROUP}", "-n", team_b)

        values = namespaced_values(team_a, team_b, crds={"install": False, "keep": True})
        helm.run(
            "upgrade", release, str(CHART), "--namespace", ns, "--values", str(write_values(tmp_path, values))
        )
        assert can_i(cp, sa, "get", f"artifactstreamsyncs.{GROUP}", "-n", team_b)
        deploy = get_json(cp, "deployment", name, "-n", ns)
        assert deploy is not None
        assert deploy["spec"]["template"]["spec"]["containers"][0]["args"][:4] == [
            "--namespace",
            team_a,
            "--namespace",
            team_b,
        ]

        res = helm.run("uninstall", release, "--namespace", ns)
        assert "kept due to the resource policy" not in res.stdout
        for n in (team_a, team_b):
            assert get_json(cp, "role", name, "-n", n) is None
            assert get_json(cp, "rolebinding", name, "-n", n) is None
        assert get_json(cp, "deployment", name, "-n", ns) is None
        assert set(crd_uids(cp)) == CRD_NAMES  # untouched: the release never owned them
    finally:
        helm.run("uninstall", release, "--namespace", ns, "--ignore-not-found", check=False)
        for n in (ns, team_a, team_b, other):
            cp.kubectl("delete", "namespace", n, "--wait=false", check=False)


def release(helm: Helm, tmp_path: Path, verb: str, name: str, namespace: str, values: dict[str, Any]) -> Any:
    """``helm install`` or ``helm upgrade`` of the chart with these values (not checked)."""
    path = write_values(tmp_path, values)
    return helm.run(verb, name, str(CHART), "--namespace", namespace, "--values", str(path), check=False)


def test_releases_with_overlapping_namespaces_are_refused(
    helm: Helm, control_plane: ControlPlane, tmp_path: Path
) -> None:
    """Shards: each release watches namespaces of its own. A second release naming a namespace the
    first watches (or every namespace) is refused at install; a disjoint one installs, and the first
    release's own upgrade is never refused by itself."""
    cp = control_plane
    ops, team_a, team_b, team_c = (unique(p) for p in ("helm-sh", "helm-sa", "helm-sb", "helm-sc"))
    first, second, third = unique("sh1"), unique("sh2"), unique("sh3")
    for n in (ops, team_a, team_b, team_c):
        cp.kubectl("create", "namespace", n)
    crds = {"crds": {"install": False, "keep": True}}

    def install(name: str, values: dict[str, Any]) -> Any:
        return release(helm, tmp_path, "install", name, ops, values)

    try:
        assert install(first, namespaced_values(team_a, team_b, **crds)).returncode == 0
        deploy = get_json(cp, "deployment", f"{first}-cleanup-operator", "-n", ops)
        assert deploy is not None
        assert (
            deploy["metadata"]["annotations"]["cleanup.artifacts.dev/watched-namespaces"]
            == f"{team_a},{team_b}"
        )

        refused = install(second, namespaced_values(team_b, team_c, **crds))
        assert refused.returncode != 0
        assert (
            f"release {first} in namespace {ops} already watches {team_b}: two operators would reconcile"
            " the same resources" in refused.stderr
        ), refused.stderr
        assert get_json(cp, "deployment", f"{second}-cleanup-operator", "-n", ops) is None

        everything = install(third, {"watch": {"allNamespaces": True}, **crds})
        assert everything.returncode != 0
        assert f"release {first} in namespace {ops} already watches {team_a}, {team_b}" in everything.stderr

        assert install(second, namespaced_values(team_c, **crds)).returncode == 0  # disjoint: a shard
        upgrade = release(helm, tmp_path, "upgrade", first, ops, namespaced_values(team_a, team_b, **crds))
        assert "STATUS: deployed" in upgrade.stdout, upgrade.stderr
    finally:
        for name in (first, second, third):
            helm.run("uninstall", name, "--namespace", ops, "--ignore-not-found", check=False)
        for n in (ops, team_a, team_b, team_c):
            cp.kubectl("delete", "namespace", n, "--wait=false", check=False)


def test_shard_releases_follow_a_label_and_never_overlap(
    helm: Helm, control_plane: ControlPlane, tmp_path: Path
) -> None:
    """A shard release (watch.shard) watches the namespaces labelled with its name, with cluster-wide
    grants and list/watch on namespaces; a second release of the same shard, or one listing a
    namespace that carries the shard's label, is refused; another shard installs."""
    cp = control_plane
    ops, labelled = unique("helm-shops"), unique("helm-shl")
    first, second, third = unique("shd1"), unique("shd2"), unique("shd3")
    name_a, name_b = unique("team"), unique("team")
    for n in (ops, labelled):
        cp.kubectl("create", "namespace", n)
    cp.kubectl("label", "namespace", labelled, f"cleanup.artifacts.dev/shard={name_a}")
    crds = {"crds": {"install": False, "keep": True}}

    def shard_values(name: str) -> dict[str, Any]:
        return {"watch": {"allNamespaces": False, "namespaces": [], "shard": name}, **crds}

    def install(name: str, values: dict[str, Any]) -> Any:
        return release(helm, tmp_path, "install", name, ops, values)

    try:
        assert install(first, shard_values(name_a)).returncode == 0
        deploy = get_json(cp, "deployment", f"{first}-cleanup-operator", "-n", ops)
        assert deploy is not None
        assert (
            deploy["metadata"]["annotations"]["cleanup.artifacts.dev/watched-namespaces"] == f"shard:{name_a}"
        )
        args = deploy["spec"]["template"]["spec"]["containers"][0]["args"]
        assert args[args.index("--namespace-selector") + 1] == f"cleanup.artifacts.dev/shard={name_a}"
        sa = f"{ops}:{first}-cleanup-operator"
        assert can_i(cp, sa, "watch", "namespaces")
        assert can_i(cp, sa, "get", "secrets", "-n", unique("any"))
        assert not can_i(cp, sa, "create", "namespaces")
        assert not can_i(cp, sa, "list", "customresourcedefinitions")

        same = install(second, shard_values(name_a))
        assert same.returncode != 0
        assert f"release {first} in namespace {ops} already watches shard {name_a}" in same.stderr, (
            same.stderr
        )
        listing = install(third, namespaced_values(labelled, **crds))
        assert listing.returncode != 0
        assert f"release {first} in namespace {ops} already watches {labelled}" in listing.stderr, (
            listing.stderr
        )

        assert install(second, shard_values(name_b)).returncode == 0  # another shard
        upgrade = release(helm, tmp_path, "upgrade", first, ops, shard_values(name_a))
        assert "STATUS: deployed" in upgrade.stdout, upgrade.stderr
    finally:
        for name in (first, second, third):
            helm.run("uninstall", name, "--namespace", ops, "--ignore-not-found", check=False)
        for n in (ops, labelled):
            cp.kubectl("delete", "namespace", n, "--wait=false", check=False)
