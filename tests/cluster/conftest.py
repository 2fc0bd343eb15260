"""Cluster tier: a real etcd + kube-apiserver, our CRDs, and the operator as a subprocess.

When ``CI`` is set, a missing binary or a control plane that does not start is a failure, never a skip.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from cleanup_operator.testing.controlplane import ControlPlane, ControlPlaneError

from ..conftest import harness, jfrog, sourcecraft, unique, wait_until

if TYPE_CHECKING:
    from cleanup_operator.testing.simulators import SimulatorServer
    from cleanup_operator.testing.tls import SimulatorCA

__all__ = ["harness", "jfrog", "sourcecraft", "unique", "wait_until"]

GROUP = "cleanup.artifacts.dev"
VERSION = "v1alpha1"
NS_PATTERN = "e2e-*"
CPOL = "cleanuppolicies"
SPRUNE = "storageprunes"
ASS = "artifactstreamsyncs"
REQUESTED_AT = "cleanup.artifacts.dev/requested-at"
RECONCILE_AT = "cleanup.artifacts.dev/reconcile-at"
CREDENTIALS_LABEL = "cleanup.artifacts.dev/credentials"
#: The simulators listen on loopback (https, with the session's test CA); the operator refuses
#: every host it is not told to allow. Plain http stays refused, as in production.
SIM_FLAGS = ("--allowed-hosts", "127.0.0.1")
#: The labelled Secret every test namespace gets, holding the simulators' CA (``sim_ca_pem``).
SIM_CA_SECRET = "sim-ca"
#: How the builders trust the simulators: ``caSecretRef`` naming that Secret.
SIM_CA_REF = {"name": SIM_CA_SECRET, "key": "ca.crt"}


def running_control_plane(workdir: Path) -> Iterator[ControlPlane]:
    """A started control plane with our CRDs, stopped afterwards (a fixture's body). Under ``CI`` a
    control plane that does not start fails the test; elsewhere it skips it."""
    cp = ControlPlane(workdir)
    try:
        cp.start()
    except ControlPlaneError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"control plane did not start: {exc}")
        pytest.skip(f"control plane not available: {exc}")
    try:
        cp.install_crds()
        yield cp
    finally:
        cp.stop()


def own_simulator(sim_ca: SimulatorCA) -> Iterator[SimulatorServer]:
    """An https simulator (the session CA's certificate) whose call log only its test writes to
    (a fixture's body): the session's simulator also serves other tests' objects still being deleted."""
    from cleanup_operator.testing.simulators import build_server

    server = build_server(ssl_context=sim_ca.server_context()).start_in_thread()
    try:
        yield server
    finally:
        server.stop_thread()


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    yield from running_control_plane(tmp_path_factory.mktemp("controlplane"))


class Operator:
    """The operator as users run it: the console entry point in its own process."""

    def __init__(self, cp: ControlPlane, log_path: Path, *args: str) -> None:
        self.cp = cp
        self.log_path = log_path
        self.args = args
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Operator:
        log = open(self.log_path, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cleanup_operator", *self.args, "--verbose"],
            env=self.cp.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        return self

    def kill(self) -> None:
        """SIGKILL: a crash, with no chance to clean up."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@pytest.fixture(scope="session")
def operator(
    control_plane: ControlPlane, sim_server: SimulatorServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Operator]:
    """One operator for the session, watching every ``e2e-*`` namespace."""
    log = tmp_path_factory.mktemp("operator") / "operator.log"
    op = Operator(
        control_plane,
        log,
        "--namespace",
        NS_PATTERN,
        "--harness-rate",
        "4",
        "--harness-window",
        "2",
        *SIM_FLAGS,
    ).start()
    yield op
    op.stop()


class Kube:
    """What a user does with kubectl, and reads back."""

    def __init__(self, cp: ControlPlane, namespace: str) -> None:
        self.cp = cp
        self.ns = namespace

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return self.cp.kubectl(*args, input=input, check=check)

    def apply(self, obj: dict[str, Any] | str, check: bool = True) -> subprocess.CompletedProcess[str]:
        text = obj if isinstance(obj, str) else yaml.safe_dump(obj)
        return self.kubectl("apply", "-n", self.ns, "-f", "-", input=text, check=check)

    def get(self, plural: str, name: str) -> dict[str, Any] | None:
        res = self.kubectl("get", f"{plural}.{GROUP}", name, "-n", self.ns, "-o", "json", check=False)
        if res.returncode != 0:
            return None
        return dict(json.loads(res.stdout))

    def annotate(self, plural: str, name: str, **annotations: str) -> None:
        pairs = [f"{k}={v}" for k, v in annotations.items()]
        self.kubectl("annotate", "--overwrite", "-n", self.ns, f"{plural}.{GROUP}", name, *pairs)

    def delete(self, plural: str, name: str, wait: bool = False) -> None:
        self.kubectl(
            "delete",
            "-n",
            self.ns,
            f"{plural}.{GROUP}",
            name,
            f"--wait={str(wait).lower()}",
            "--ignore-not-found",
        )

    def secret(self, name: str, labelled: bool = True, **data: str) -> None:
        """A Secret as the README says to write one: labelled for the operator (unless told not)."""
        args = [f"--from-literal={k}={v}" for k, v in data.items()]
        manifest = yaml.safe_load(
            self.kubectl(
                "create", "secret", "generic", name, "-n", self.ns, *args, "--dry-run=client", "-o", "yaml"
            ).stdout
        )
        if labelled:
            manifest["metadata"].setdefault("labels", {})[CREDENTIALS_LABEL] = "true"
        self.kubectl("apply", "-n", self.ns, "-f", "-", input=yaml.safe_dump(manifest))

    def events(self, name: str, reason: str | None = None) -> list[dict[str, Any]]:
        """The events on ``name`` (of ``reason`` only, when given)."""
        res = self.kubectl(
            "get", "events", "-n", self.ns, "--field-selector", f"involvedObject.name={name}", "-o", "json"
        )
        items = json.loads(res.stdout).get("items", [])
        return [e for e in items if reason is None or e["reason"] == reason]

    def wait_event(self, name: str, reason: str, timeout: float = 30.0) -> list[dict[str, Any]]:
        """The events of ``reason`` on ``name``, once there is one.

        Kopf posts events from a queue after the status write that a test waits on, so an event's
        presence is waited for, never asserted at once.
        """

        try:
            return wait_until(
                lambda: self.events(name, reason),
                f"a {reason} event on {name}",
                timeout=timeout,
                interval=0.3,
            )
        except AssertionError:
            seen = sorted({e["reason"] for e in self.events(name)})
            raise AssertionError(
                f"no {reason} event on {name} after {timeout}s; events seen: {seen}"
            ) from None

    def wait_for(
        self,
        plural: str,
        name: str,
        predicate: Callable[[dict[str, Any]], bool],
        timeout: float = 60.0,
        what: str = "",
    ) -> dict[str, Any]:
        """The object, once ``predicate`` holds for it; fails showing the last status seen."""
        last: dict[str, Any] | None = None

        def check() -> dict[str, Any] | None:
            nonlocal last
            last = self.get(plural, name)
            try:
                return last if last is not None and predicate(last) else None
            except (KeyError, TypeError, IndexError):
                return None

        try:
            return wait_until(check, what or "condition", timeout=timeout, interval=0.3)
        except AssertionError:
            raise AssertionError(
                f"timed out after {timeout}s waiting for {what or 'condition'} on {plural}/{name};"
                " last seen status:\n" + json.dumps((last or {}).get("status"), indent=2)
            ) from None

    def watch(
        self,
        plural: str,
        name: str,
        until: Callable[[dict[str, Any]], bool],
        timeout: float = 60.0,
        what: str = "",
        interval: float = 0.2,
    ) -> list[dict[str, Any]]:
        """Every version of the object seen while waiting for ``until`` (the last one satisfies it)."""
        seen: list[dict[str, Any]] = []

        def check() -> bool:
            obj = self.get(plural, name)
            if obj is None:
                return False
            if not seen or seen[-1]["metadata"]["resourceVersion"] != obj["metadata"]["resourceVersion"]:
                seen.append(obj)
            try:
                return until(obj)
            except (KeyError, TypeError, IndexError):
                return False

        wait_until(check, f"{what or 'condition'} on {plural}/{name}", timeout, interval)
        return seen

    def wait_gone(self, plural: str, name: str, timeout: float = 60.0) -> None:
        wait_until(
            lambda: self.get(plural, name) is None, f"{plural}/{name} to be gone", timeout, interval=0.3
        )

    def table(self, plural: str, name: str) -> dict[str, str]:
        """The row of ``kubectl get`` for one object, as {column header: cell}, read as a user reads it.

        Columns are cut at the header's positions (kubectl left-aligns every cell under its header),
        so a value is found in its own column, never in NAME or another one.
        """
        out = self.kubectl("get", plural, name, "-n", self.ns).stdout.splitlines()
        assert len(out) == 2, out
        header, row = out
        starts = [m.start() for m in re.finditer(r"(?:^|(?<=\s\s))\S", header)]
        bounds = [*starts[1:], None]
        return {
            header[a:b].strip(): row[a:b].strip() if b is not None else row[a:].strip()
            for a, b in zip(starts, bounds, strict=True)
        }


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == type_:
            return dict(cond)
    return {}


def is_true(obj: dict[str, Any], type_: str, reason: str | None = None) -> bool:
    cond = condition(obj, type_)
    return cond.get("status") == "True" and (reason is None or cond.get("reason") == reason)


def trust_simulators(kube: Kube, ca_pem: str) -> None:
    """The labelled Secret the builders' ``caSecretRef`` names: the simulators' CA, key ``ca.crt``."""
    kube.secret(SIM_CA_SECRET, **{"ca.crt": ca_pem})


@pytest.fixture
def kube(
    control_plane: ControlPlane, operator: Operator, request: pytest.FixtureRequest, sim_ca_pem: str
) -> Iterator[Kube]:
    """A fresh ``e2e-*`` namespace (watched by the session operator), with the ``sim-ca`` Secret."""
    ns = f"e2e-{uuid.uuid4().hex[:8]}"
    control_plane.kubectl("create", "namespace", ns)
    k = Kube(control_plane, ns)
    trust_simulators(k, sim_ca_pem)
    yield k
    if request.node.rep_call.failed if hasattr(request.node, "rep_call") else False:
        print(operator.logs()[-8000:])
    control_plane.kubectl("delete", "namespace", ns, "--wait=false", check=False)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Iterator[None]:
    outcome = yield
    rep = outcome.get_result()  # type: ignore[attr-defined]
    setattr(item, f"rep_{rep.when}", rep)


@pytest.fixture
def isolated(control_plane: ControlPlane, tmp_path: Path, sim_ca_pem: str) -> Iterator[tuple[Kube, Operator]]:
    """A namespace outside the session operator's pattern, with the ``sim-ca`` Secret and an
    operator of its own (not started; more flags: ``op.args += (...)`` before ``op.start()``)."""
    ns = f"iso-{uuid.uuid4().hex[:8]}"
    control_plane.kubectl("create", "namespace", ns)
    op = Operator(control_plane, tmp_path / "operator.log", "--namespace", ns, *SIM_FLAGS)
    k = Kube(control_plane, ns)
    trust_simulators(k, sim_ca_pem)
    yield k, op
    op.stop()
    control_plane.kubectl("delete", "namespace", ns, "--wait=false", check=False)


# Manifests, as users write them (one builder per kind), and what tests read back.


def policy(sim: SimulatorServer, name: str, **spec: Any) -> dict[str, Any]:
    """A CleanupPolicy against the JFrog simulator: 2 s drift checks, 1 s run polls; ``spec`` overrides."""
    criteria = spec.pop("searchCriteria", None) or {
        "packageTypes": ["docker"],
        "repos": ["docker-local"],
        "includedPackages": ["**"],
        "createdBeforeInMonths": 6,
    }
    body = {
        "connection": {
            "url": sim.url("jfrog"),
            "secretRef": {"name": "jfrog"},
            "caSecretRef": dict(SIM_CA_REF),
        },
        "description": "stale images",
        "enabled": True,
        "interval": "2s",
        "searchCriteria": criteria,
        "onDemandRun": {"pollInterval": "1s"},
    }
    body.update(spec)
    return manifest("CleanupPolicy", name, body)


def prune(sim: SimulatorServer, name: str, **spec: Any) -> dict[str, Any]:
    """A StoragePrune against the JFrog simulator, polled every 500 ms; ``spec`` overrides."""
    connection = {"url": sim.url("jfrog"), "secretRef": {"name": "jfrog"}, "caSecretRef": dict(SIM_CA_REF)}
    body = {"connection": connection, "pollInterval": "500ms"}
    body.update(spec)
    return manifest("StoragePrune", name, body)


def hsync(
    sim: SimulatorServer, name: str, ids: list[str], account: str = "acc1", interval: str = "2s"
) -> dict[str, Any]:
    """An ArtifactStreamSync of Harness streams ``ids`` in ``account``."""
    harness_spec = {
        "url": sim.url("harness"),
        "accountId": account,
        "apiKeySecretRef": {"name": "harness", "key": "apiKey"},
        "caSecretRef": dict(SIM_CA_REF),
        "artifactStreamIds": ids,
    }
    return manifest("ArtifactStreamSync", name, {"harness": harness_spec, "interval": interval})


def scsync(sim: SimulatorServer, name: str, **source: Any) -> dict[str, Any]:
    """An ArtifactStreamSync of a SourceCraft run's artifacts; ``source`` overrides."""
    src = {
        "url": sim.url("sourcecraft"),
        "org": "acme",
        "repo": "web",
        "workflow": "build",
        "task": "package",
        "cube": "publish",
        "tokenSecretRef": {"name": "sourcecraft", "key": "token"},
        "caSecretRef": dict(SIM_CA_REF),
    }
    src.update(source)
    return manifest("ArtifactStreamSync", name, {"sourceCraft": src, "interval": "2s"})


def manifest(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": kind, "metadata": {"name": name}, "spec": spec}


def ready(obj: dict[str, Any]) -> bool:
    """Ready, for the current generation."""
    return is_true(obj, "Ready") and obj["status"].get("observedGeneration") == obj["metadata"]["generation"]


def phase(value: str) -> Callable[[dict[str, Any]], bool]:
    return lambda o: (o.get("status") or {}).get("phase") == value


def last_run(obj: dict[str, Any]) -> dict[str, Any]:
    return dict((obj.get("status") or {}).get("lastRun") or {})


def calls(sim: SimulatorServer, key: str, method: str | None = None) -> list[tuple[str, str]]:
    """(method, path) of the JFrog calls naming policy ``key``."""
    return [(c.method, c.path) for c in sim.calls.calls(vendor="jfrog", method=method, path=f"/{key}(/|$)")]


def starts(sim: SimulatorServer) -> int:
    """Prune starts the JFrog simulator answered."""
    return len(sim.calls.calls(vendor="jfrog", method="POST", path="/prune/start$"))


def resync(kube: Kube, plural: str, name: str) -> None:
    """Ask for a harmless re-sync (reconcile-at) and wait until it was answered: a whole reconcile has
    passed since, the bounded window in which something unwanted (a run, a start) would have shown."""
    value = str(time.time_ns())
    kube.annotate(plural, name, **{"cleanup.artifacts.dev/reconcile-at": value})
    kube.wait_for(plural, name, lambda o: o["status"].get("lastHandledReconcileAt") == value, what="re-sync")


def now_value() -> str:
    """A requested-at value as the README says to set it: the current time in Unix seconds."""
    return str(int(time.time()))
