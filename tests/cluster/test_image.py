"""The operator's container image, built from the Dockerfile with podman and run as the chart runs it.

``hack/image.sh build`` builds the image (the Debian-built Python base CI uses; the layer cache makes an
unchanged tree a matter of seconds). The chart is installed with the real helm in namespaced mode,
naming that image; the container then runs with what the installed Deployment says: its image, args
and env, the user and group of its security contexts, a read-only root filesystem with only the
chart's ``emptyDir`` volumes writable, every capability dropped, no privilege escalation, the memory
limit; and, for credentials, a kubeconfig holding only a token of the release's ServiceAccount
(TokenRequest API, ``kubectl create token``). The kubelet's part is played by podman: ``--init``, and
``--network host`` (the test kube-apiserver and the simulators listen on loopback).

A missing podman fails under ``CI`` (as a missing kube-apiserver does) and skips elsewhere.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from cleanup_operator.testing.controlplane import REPO_ROOT, ControlPlane, _die_with_parent, free_port

from .chart import Helm, find_helm, mint_token, token_kubeconfig
from .conftest import (
    ASS,
    CPOL,
    SPRUNE,
    Kube,
    Operator,
    harness,
    hsync,
    jfrog,
    policy,
    prune,
    ready,
    scsync,
    sourcecraft,
    trust_simulators,
    unique,
    wait_until,
)

if TYPE_CHECKING:
    from cleanup_operator.testing.simulators import SimulatorServer

IMAGE_SH = REPO_ROOT / "hack" / "image.sh"
#: The secrets the test hands the operator: none may reach its log.
SECRETS = {
    "jfrog": {"token": "test-token"},
    "harness": {"apiKey": "test-key"},
    "sourcecraft": {"token": "sc-token"},
}
#: Where the kubeconfig is mounted in the container (the root filesystem itself stays read-only).
KUBECONFIG_IN_CONTAINER = "/var/run/cleanup-operator/kubeconfig"


def missing(message: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@dataclass(frozen=True)
class Podman:
    """podman with hack/image.sh's configuration (CONTAINERS_CONF, CONTAINERS_STORAGE_CONF, ...)."""

    env: dict[str, str]

    def __call__(
        self, *args: str, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        res = subprocess.run(
            ["podman", *args], env=self.env, capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and res.returncode != 0:
            raise AssertionError(f"podman {shlex.join(args)} failed ({res.returncode}):\n{res.stderr}")
        return res


@dataclass(frozen=True)
class Image:
    ref: str
    podman: Podman

    def inspect(self) -> dict[str, Any]:
        (info,) = json.loads(self.podman("image", "inspect", self.ref).stdout)
        return dict(info)

    def python(self, code: str) -> str:
        """Run ``code`` with the image's Python, as the image's user, and return what it printed."""
        return self.podman(
            "run", "--rm", "--network", "none", "--entrypoint", "python3", self.ref, "-c", code
        ).stdout


@pytest.fixture(scope="module")
def image() -> Image:
    """The image of this tree, built by hack/image.sh (the build `make image` and CI run)."""
    if shutil.which("podman") is None:
        missing(
            "podman not found: run `make image` (bash hack/image.sh setup installs it, with runc and mmdebstrap)"
        )
    env_lines = subprocess.run(
        ["bash", str(IMAGE_SH), "env"], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    env = dict(os.environ)
    for line in env_lines:
        _, assignment = shlex.split(line)
        key, _, value = assignment.partition("=")
        env[key] = value
    started = time.monotonic()
    res = subprocess.run(["bash", str(IMAGE_SH), "build"], capture_output=True, text=True, timeout=1800)
    if res.returncode != 0:
        pytest.fail(f"hack/image.sh build failed ({res.returncode}):\n{res.stderr[-6000:]}")
    ref = res.stdout.strip().splitlines()[-1]
    print(f"image {ref} built in {time.monotonic() - started:.1f}s")
    return Image(ref, Podman(env))


# What ships in the image.


def test_image_config(image: Image) -> None:
    """Non-root by number (so runAsNonRoot can be verified), the console entry point, the chart's port."""
    config = image.inspect()["Config"]
    user, _, group = config["User"].partition(":")
    assert user.isdigit() and int(user) != 0 and group.isdigit(), config["User"]
    assert config["Entrypoint"] == ["cleanup-operator"]
    assert "8080/tcp" in config["ExposedPorts"]
    assert config["Cmd"][:1] == ["--all-namespaces"]
    assert image.python("import os; print(os.getuid(), os.getgid())").split() == [user, group]


#: Installed distributions of the image's virtualenv with their requirements, and the marker
#: environment of the image's Python (packaging's ``default_environment``, which the image lacks).
INVENTORY = r"""
import json, os, platform, sys
from importlib import metadata
dists = {d.metadata["Name"]: {"version": d.version, "requires": d.requires or []}
         for d in metadata.distributions(path=[p for p in sys.path if p.startswith("/opt/venv/")])}
impl = sys.implementation
env = {
    "implementation_name": impl.name,
    "implementation_version": "{0.major}.{0.minor}.{0.micro}".format(impl.version),
    "os_name": os.name, "platform_machine": platform.machine(), "platform_release": platform.release(),
    "platform_system": platform.system(), "platform_version": platform.version(),
    "python_full_version": platform.python_version(),
    "platform_python_implementation": platform.python_implementation(),
    "python_version": ".".join(platform.python_version_tuple()[:2]), "sys_platform": sys.platform,
}
print(json.dumps({"dists": dists, "env": env}))
"""


def test_image_ships_the_runtime_dependencies_only(image: Image) -> None:
    """The virtualenv holds the operator's wheel and exactly what its dependencies require, at the
    versions constraints.txt pins: no `kubernetes` (the operator never imports it), no pip."""
    inventory = json.loads(image.python(INVENTORY))
    dists = {canonicalize_name(name): info for name, info in inventory["dists"].items()}
    marker_env = {**inventory["env"], "extra": ""}

    needed: set[str] = set()
    todo = [Requirement("cleanup-operator")]
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        if name in needed or (req.marker is not None and not req.marker.evaluate(marker_env)):
            continue
        assert name in dists, f"{name} is required ({req}) but not installed"
        needed.add(name)
        todo.extend(Requirement(r) for r in dists[name]["requires"])

    assert set(dists) == needed, f"installed but required by nothing: {sorted(set(dists) - needed)}"
    assert "kubernetes" not in dists
    assert not {"pip", "setuptools", "wheel"} & set(dists)

    declared = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    shipped = {
        canonicalize_name(req.name)
        for req in map(Requirement, dists["cleanup-operator"]["requires"])
        if req.marker is None or req.marker.evaluate(marker_env)  # not the extras (dev)
    }
    assert shipped == {canonicalize_name(Requirement(r).name) for r in declared}

    pins = {
        canonicalize_name(name): version
        for name, _, version in (
            line.split("#")[0].strip().partition("==")
            for line in (REPO_ROOT / "constraints.txt").read_text().splitlines()
        )
        if version
    }
    unpinned = sorted(n for n in needed - {"cleanup-operator"} if n not in pins)
    assert not unpinned, f"shipped without a pin in constraints.txt: {unpinned}"
    wrong = {
        n: (dists[n]["version"], pins[n])
        for n in needed - {"cleanup-operator"}
        if dists[n]["version"] != pins[n]
    }
    assert not wrong, f"(installed, pinned) differ: {wrong}"


# The image run as the chart's Deployment says.


@pytest.fixture(scope="module")
def helm(control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Helm:
    return find_helm(control_plane, tmp_path_factory)


def quantity_bytes(value: str) -> int:
    """A Kubernetes memory quantity (the chart's: Ki, Mi, Gi, or plain bytes) in bytes."""
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "": 1}
    match = re.fullmatch(r"(\d+)(Ki|Mi|Gi|)", value)
    assert match, f"unexpected quantity {value!r}"
    return int(match[1]) * units[match[2]]


def run_flags(pod: dict[str, Any], container: dict[str, Any]) -> list[str]:
    """`podman run` flags for what the pod spec asks of the container runtime. A field of the chart's
    security contexts or volumes that is not translated here fails the test: the run must keep up
    with the chart."""
    flags: list[str] = []
    pod_sc = dict(pod.get("securityContext") or {})
    sc = {**pod_sc, **(container.get("securityContext") or {})}
    handled = {
        "runAsNonRoot",
        "runAsUser",
        "runAsGroup",
        "seccompProfile",
        "allowPrivilegeEscalation",
        "readOnlyRootFilesystem",
        "privileged",
        "capabilities",
    }
    assert set(sc) <= handled, f"security context fields not translated to podman: {set(sc) - handled}"
    assert sc["runAsNonRoot"] is True and int(sc["runAsUser"]) != 0
    flags += ["--user", f"{sc['runAsUser']}:{sc['runAsGroup']}"]
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}  # podman's default profile
    assert sc["privileged"] is False  # podman's default
    if sc["allowPrivilegeEscalation"] is False:
        flags += ["--security-opt", "no-new-privileges"]
    assert sc["capabilities"] == {"drop": ["ALL"]}, sc["capabilities"]
    flags += ["--cap-drop", "all"]
    if sc["readOnlyRootFilesystem"]:
        # Only the pod's volumes are writable: not podman's own tmpfs on /tmp, /var/tmp and /run.
        flags += ["--read-only", "--read-only-tmpfs=false"]

    volumes = {v["name"]: v for v in pod.get("volumes") or []}
    for mount in container.get("volumeMounts") or []:
        volume = volumes[mount["name"]]
        assert set(volume) == {"name", "emptyDir"}, f"volume {volume} not translated to podman"
        size = (volume["emptyDir"] or {}).get("sizeLimit")
        options = ["rw", "mode=1777", *([f"size={quantity_bytes(size)}"] if size else [])]
        flags += ["--tmpfs", f"{mount['mountPath']}:{','.join(options)}"]

    memory = ((container.get("resources") or {}).get("limits") or {}).get("memory")
    if memory:
        flags += ["--memory", str(quantity_bytes(memory))]
    for env in container.get("env") or []:
        assert set(env) == {"name", "value"}, f"env {env} not translated to podman"
        flags += ["--env", f"{env['name']}={env['value']}"]
    return flags


class Container(Operator):
    """The operator in its container; ``podman run`` in the foreground, its output the log."""

    def __init__(self, cp: ControlPlane, podman: Podman, name: str, log_path: Path, argv: list[str]) -> None:
        super().__init__(cp, log_path)
        self.podman = podman
        self.name = name
        self.argv = argv

    def start(self) -> Container:
        log = open(self.log_path, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            ["podman", "run", "--name", self.name, *self.argv],
            env=self.podman.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            # A test run that dies takes the container with it: podman passes the SIGTERM on.
            preexec_fn=_die_with_parent,
        )
        log.close()
        return self

    def terminate(self, grace: int) -> float:
        """What the kubelet does to stop the pod: SIGTERM, then SIGKILL after the grace period.
        Returns the seconds the operator took to exit."""
        started = time.monotonic()
        self.podman("stop", "--time", str(grace), self.name, check=False, timeout=grace + 30)
        assert self.proc is not None
        self.proc.wait(30)
        return time.monotonic() - started

    def stop(self) -> None:
        self.podman("rm", "--force", "--time", "2", "--ignore", self.name, check=False)
        super().stop()


@dataclass
class Deployed:
    container: Container
    kube: Kube
    health: str
    metrics: str
    grace: int
    memory_limit: int


@pytest.fixture
def deployed(
    image: Image,
    helm: Helm,
    control_plane: ControlPlane,
    sim: SimulatorServer,
    sim_ca_pem: str,
    tmp_path: Path,
) -> Iterator[Deployed]:
    """The chart installed (namespaced, watching one namespace), and its Deployment's container run
    from the image with the release ServiceAccount's token."""
    cp = control_plane
    release_ns, watched = unique("img-op"), unique("img-ns")
    for ns in (release_ns, watched):
        cp.kubectl("create", "namespace", ns)
    release = unique("img")
    repository, _, tag = image.ref.rpartition(":")
    health_port, metrics_port = free_port(), free_port()
    url = urlsplit(sim.url("jfrog"))
    assert url.hostname == "127.0.0.1", url  # only loopback targets
    values = {
        "image": {"repository": repository, "tag": tag, "pullPolicy": "Never"},
        # What the test must add, through the chart's own values: the simulators' host.
        "allowedHosts": [url.hostname],
        "allowInsecureHttp": url.scheme == "http",
        "extraArgs": ["--verbose"],
        "crds": {"install": False, "keep": True},  # the session installed them
        "watch": {"allNamespaces": False, "namespaces": [watched]},
        "liveness": {"port": health_port},
        "metrics": {"enabled": True, "port": metrics_port},
    }
    installed = helm.install(release, release_ns, values, tmp_path)
    container: Container | None = None
    try:
        pod = installed.deployment()["spec"]["template"]["spec"]
        (spec,) = pod["containers"]
        assert spec["image"] == image.ref

        # Only a token of the release's ServiceAccount, readable by the container's user only (as the
        # kubelet's projected token is).
        token = mint_token(cp, release_ns, installed.service_account())
        kubeconfig = token_kubeconfig(cp, token, tmp_path / "kubeconfig")
        sc = {**pod.get("securityContext", {}), **spec.get("securityContext", {})}
        os.chown(kubeconfig, int(sc["runAsUser"]), int(sc["runAsGroup"]))
        kubeconfig.chmod(0o400)

        args = list(spec["args"])
        # The one change to the chart's args: the pod's 0.0.0.0 is this machine's every address here
        # (host network), so the liveness endpoint listens on loopback, on the port the chart was given.
        i = args.index("--liveness") + 1
        health = urlsplit(args[i])
        assert health.port == health_port
        args[i] = urlunsplit(health._replace(netloc=f"127.0.0.1:{health_port}"))

        argv = [
            "--rm",
            "--init",
            "--network",
            "host",
            "--pull",
            "never",
            *run_flags(pod, spec),
            "--volume",
            f"{kubeconfig}:{KUBECONFIG_IN_CONTAINER}:ro",
            "--env",
            f"KUBECONFIG={KUBECONFIG_IN_CONTAINER}",
            spec["image"],
            *args,
        ]
        container = Container(
            cp, image.podman, f"cleanup-operator-{release}", tmp_path / "operator.log", argv
        ).start()
        kube = Kube(cp, watched)
        trust_simulators(kube, sim_ca_pem)  # the Secret the builders' caSecretRef names
        yield Deployed(
            container,
            kube,
            f"http://127.0.0.1:{health_port}/healthz",
            f"http://127.0.0.1:{metrics_port}/metrics",
            int(pod.get("terminationGracePeriodSeconds", 30)),
            quantity_bytes(spec["resources"]["limits"]["memory"]),
        )
    finally:
        if container is not None:
            container.stop()
            print(container.logs()[-8000:])
        installed.uninstall()
        for ns in (release_ns, watched):
            cp.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def answers(url: str) -> httpx.Response | None:
    try:
        resp = httpx.get(url, timeout=2.0)
    except httpx.HTTPError:
        return None
    return resp if resp.status_code == 200 else None


def metric(text: str, name: str, **labels: str) -> float:
    """A sample's value from Prometheus text, or 0 when absent."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        sample, _, value = line.rpartition(" ")
        if sample == (f"{name}{{{want}}}" if want else name):
            return float(value)
    return 0.0


#: The container's memory limit and peak use, under cgroup v2 or v1.
CGROUP_MEMORY = {
    "limit": ("memory.max", "memory/memory.limit_in_bytes"),
    "peak": ("memory.peak", "memory/memory.max_usage_in_bytes"),
}


def cgroup_memory(container: Container, what: str) -> int:
    v2, v1 = CGROUP_MEMORY[what]
    script = f"cat /sys/fs/cgroup/{v2} 2>/dev/null || cat /sys/fs/cgroup/{v1}"
    return int(container.podman("exec", container.name, "sh", "-c", script).stdout.strip())


def test_image_runs_as_the_chart_deploys_it(image: Image, deployed: Deployed, sim: SimulatorServer) -> None:
    kube, container = deployed.kube, deployed.container
    wait_until(lambda: answers(deployed.health), "/healthz to answer from the container", timeout=60)

    # The container runs as the chart says: the chart's user, nothing writable but its volumes.
    assert container.podman("exec", container.name, "id", "-u").stdout.strip() == "65532"
    res = container.podman("exec", container.name, "touch", "/opt/venv/x", check=False)
    assert res.returncode != 0 and "Read-only file system" in res.stderr, res.stderr
    container.podman("exec", container.name, "touch", "/tmp/x")  # the chart's emptyDir
    status = dict(
        line.split(":\t", 1)
        for line in container.podman("exec", container.name, "cat", "/proc/self/status").stdout.splitlines()
    )
    assert int(status["CapBnd"], 16) == 0, status["CapBnd"]  # every capability dropped
    assert status["NoNewPrivs"].strip() == "1"  # allowPrivilegeEscalation: false
    assert cgroup_memory(container, "limit") == deployed.memory_limit

    stream = unique("s")
    jfrog(sim).prune_seconds_per_directory = 0.001
    harness(sim).add_stream("acc1", stream, "DOCKER")
    sourcecraft(sim).add_run(
        "acme", "web", "run-1", workflow="build", task="package", cube="publish", artifacts=["dist/app.tar"]
    )
    for name, data in SECRETS.items():
        kube.secret(name, **data)
    names = {"policy": unique("pol"), "prune": unique("prune"), "hsync": unique("hs"), "scsync": unique("sc")}
    kube.apply(policy(sim, names["policy"]))
    kube.apply(prune(sim, names["prune"]))
    kube.apply(hsync(sim, names["hsync"], [stream]))
    kube.apply(scsync(sim, names["scsync"], run="run-1"))
    for plural, name in (
        (CPOL, names["policy"]),
        (SPRUNE, names["prune"]),
        (ASS, names["hsync"]),
        (ASS, names["scsync"]),
    ):
        kube.wait_for(plural, name, ready, timeout=90, what="Ready")

    # What the operator did is at the vendors, and the events reached the API server.
    assert jfrog(sim).policy(names["policy"]) is not None
    assert harness(sim).cleanup_count(stream) >= 1
    wait_until(
        lambda: [e for e in kube.events(names["policy"]) if e["reason"] == "Created"], "a Created event"
    )

    metrics = wait_until(lambda: answers(deployed.metrics), "/metrics to answer from the container").text
    for kind in ("CleanupPolicy", "StoragePrune", "ArtifactStreamSync"):
        assert metric(metrics, "cleanup_operator_reconciles_total", kind=kind, result="ok") >= 1, metrics

    print(f"container memory peak {cgroup_memory(container, 'peak') / 2**20:.0f} MiB")

    # SIGTERM, as the kubelet stops a pod: the operator exits by itself within the grace period.
    took = container.terminate(deployed.grace)
    assert container.proc is not None
    assert container.proc.returncode == 0, container.logs()[-3000:]
    assert took < deployed.grace

    # The chart's --log-format json: one JSON object a line, and no credential in any of them.
    log = container.logs()
    lines = [line for line in log.splitlines() if line.strip()]
    assert lines, "the container logged nothing"
    not_json = [line for line in lines if not line.startswith("{")]
    assert not not_json, not_json[:5]
    for line in lines:
        json.loads(line)
    for data in SECRETS.values():
        for value in data.values():
            assert value not in log
