"""The Helm chart in the test control plane, and the operator run as the chart's ServiceAccount.

Shared by the chart's tests: the real helm binary (hack/tools.sh) with a home of its own; a release
read back from the API server; a token of the release's ServiceAccount minted with the TokenRequest
API (``kubectl create token``) and a kubeconfig that holds only the server, the cluster CA and that
token; and the operator's command line taken from the installed Deployment, so that a test runs the
operator with exactly the chart's args (what a test needs, such as ``allowedHosts``, goes through
the chart's own values).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
import yaml

from cleanup_operator.testing.controlplane import CACHE_BIN, REPO_ROOT, ControlPlane

from .conftest import Operator

CHART = REPO_ROOT / "charts" / "cleanup-operator"
HELM = CACHE_BIN / "helm"


@dataclass
class Helm:
    binary: Path
    cp: ControlPlane
    home: Path
    kube_version: str

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "KUBECONFIG": str(self.cp.kubeconfig),
            "HELM_CACHE_HOME": str(self.home / "cache"),
            "HELM_CONFIG_HOME": str(self.home / "config"),
            "HELM_DATA_HOME": str(self.home / "data"),
        }

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        res = subprocess.run(
            [str(self.binary), *args], env=self.env(), capture_output=True, text=True, timeout=180
        )
        if check and res.returncode != 0:
            raise AssertionError(
                f"helm {' '.join(args)} failed ({res.returncode}):\n{res.stderr}{res.stdout}"
            )
        return res

    def template(self, values: dict[str, Any], namespace: str, tmp: Path, release: str = "rel") -> str:
        return self.run(
            "template",
            release,
            str(CHART),
            "--namespace",
            namespace,
            "--kube-version",
            self.kube_version,
            "--values",
            str(write_values(tmp, values)),
        ).stdout

    def install(self, release: str, namespace: str, values: dict[str, Any], tmp: Path) -> Release:
        """``helm install`` into ``namespace`` (which must exist); the release and its NOTES."""
        res = self.run(
            "install",
            release,
            str(CHART),
            "--namespace",
            namespace,
            "--values",
            str(write_values(tmp, values)),
        )
        assert "STATUS: deployed" in res.stdout, res.stdout
        return Release(self, release, namespace, res.stdout)


def write_values(tmp: Path, values: dict[str, Any]) -> Path:
    path = tmp / f"values-{uuid.uuid4().hex[:6]}.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def find_helm(cp: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Helm:
    """The helm hack/tools.sh built, told the control plane's version; skipped (failed under CI)
    when it was not built."""
    if not (HELM.is_file() and os.access(HELM, os.X_OK)):
        message = f"helm not found at {HELM}: run `bash hack/tools.sh` (or `make tools`) to build it"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    version = json.loads(cp.kubectl("version", "-o", "json").stdout)["serverVersion"]
    # The chart declares kubeVersion; `helm template` must be told the cluster's, as Argo CD does.
    return Helm(HELM, cp, tmp_path_factory.mktemp("helm-home"), version["gitVersion"])


@dataclass
class Release:
    """An installed release, read back from the API server."""

    helm: Helm
    name: str
    namespace: str
    notes: str

    @property
    def cp(self) -> ControlPlane:
        return self.helm.cp

    def deployment(self) -> dict[str, Any]:
        """The release's Deployment as the API server stores it (what a kubelet would run)."""
        (deploy,) = [
            d
            for d in json.loads(
                self.cp.kubectl("get", "deployments", "-n", self.namespace, "-o", "json").stdout
            )["items"]
            if d["metadata"].get("annotations", {}).get("meta.helm.sh/release-name") == self.name
        ]
        return dict(deploy)

    def container(self) -> dict[str, Any]:
        (container,) = self.deployment()["spec"]["template"]["spec"]["containers"]
        return dict(container)

    def service_account(self) -> str:
        return str(self.deployment()["spec"]["template"]["spec"]["serviceAccountName"])

    def uninstall(self) -> None:
        self.helm.run("uninstall", self.name, "--namespace", self.namespace, "--ignore-not-found")


def mint_token(cp: ControlPlane, namespace: str, service_account: str, duration: str = "1h") -> str:
    """A token of ``service_account`` from the TokenRequest API, as the kubelet mounts into the pod."""
    token = cp.kubectl(
        "create", "token", service_account, "--namespace", namespace, "--duration", duration
    ).stdout.strip()
    assert token.count(".") == 2, "not a JWT"
    return token


def cluster_ca(cp: ControlPlane) -> str:
    """The cluster CA (base64 of the PEM), as the control plane's admin kubeconfig holds it."""
    config = yaml.safe_load(cp.kubeconfig.read_text())
    (cluster,) = config["clusters"]
    return str(cluster["cluster"]["certificate-authority-data"])


def token_kubeconfig(cp: ControlPlane, token: str, path: Path) -> Path:
    """A kubeconfig with the server, the cluster CA and ``token``: no other credential."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "cluster", "cluster": {"server": cp.url, "certificate-authority-data": cluster_ca(cp)}}
        ],
        "users": [{"name": "operator", "user": {"token": token}}],
        "contexts": [{"name": "operator", "context": {"cluster": "cluster", "user": "operator"}}],
        "current-context": "operator",
    }
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(config, f, indent=2)
    return path


def operator_args(container: dict[str, Any], liveness_port: int) -> list[str]:
    """The container's args, with the liveness endpoint moved to loopback on ``liveness_port``
    (the only change: the pod's port is not free on a shared machine, nor is 0.0.0.0 loopback)."""
    args = list(container["args"])
    i = args.index("--liveness") + 1
    url = urlsplit(args[i])
    args[i] = urlunsplit(url._replace(netloc=f"127.0.0.1:{liveness_port}"))
    return args


def container_env(container: dict[str, Any]) -> dict[str, str]:
    """The container's literal env values (the chart sets no valueFrom)."""
    env = container.get("env") or []
    assert all("value" in e for e in env), env
    return {e["name"]: e["value"] for e in env}


class ChartOperator(Operator):
    """The operator as the chart's Deployment runs it (``cleanup-operator`` is the image's entry
    point; ``python -m cleanup_operator`` is the same), with the chart's env and a kubeconfig of its own."""

    def __init__(self, cp: ControlPlane, log_path: Path, args: list[str], env: dict[str, str]) -> None:
        super().__init__(cp, log_path, *args)
        self.env = env

    def start(self) -> ChartOperator:
        log = open(self.log_path, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cleanup_operator", *self.args],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        return self


def run_as_release(release: Release, workdir: Path, liveness_port: int) -> ChartOperator:
    """Start the operator with the release's args and env, logged in with a token of its
    ServiceAccount only (``KUBECONFIG``), and nothing else from the test's environment that
    would change what it may do."""
    container = release.container()
    token = mint_token(release.cp, release.namespace, release.service_account())
    kubeconfig = token_kubeconfig(release.cp, token, workdir / "operator.kubeconfig")
    env = {**os.environ, **container_env(container), "KUBECONFIG": str(kubeconfig)}
    return ChartOperator(
        release.cp, workdir / "operator.log", operator_args(container, liveness_port), env
    ).start()
