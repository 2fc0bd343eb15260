"""Cluster tier: a real etcd + kube-apiserver, our CRDs, and the operator as a subprocess.

When ``CI`` is set, a missing binary or a control plane that does not start is a failure, never a skip.
"""

from __future__ import annotations

import json
import os
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

if TYPE_CHECKING:
    from cleanup_operator.testing.simulators import JFrogSimulator, SimulatorServer

GROUP = "cleanup.artifacts.dev"
VERSION = "v1alpha1"
NS_PATTERN = "e2e-*"


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    workdir = tmp_path_factory.mktemp("controlplane")
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
def sim_server() -> Iterator[SimulatorServer]:
    """The cluster tier's own simulators: the operator outlives each test, so keep it apart from the sim tier."""
    from cleanup_operator.testing.simulators import build_server

    server = build_server().start_in_thread()
    yield server
    server.stop_thread()


@pytest.fixture(scope="session")
def operator(
    control_plane: ControlPlane, sim_server: SimulatorServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Operator]:
    """One operator for the session, watching every ``e2e-*`` namespace."""
    log = tmp_path_factory.mktemp("operator") / "operator.log"
    op = Operator(
        control_plane, log, "--namespace", NS_PATTERN, "--harness-rate", "4", "--harness-window", "2"
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

    def secret(self, name: str, **data: str) -> None:
        args = [f"--from-literal={k}={v}" for k, v in data.items()]
        manifest = self.kubectl(
            "create", "secret", "generic", name, "-n", self.ns, *args, "--dry-run=client", "-o", "yaml"
        ).stdout
        self.kubectl("apply", "-n", self.ns, "-f", "-", input=manifest)

    def events(self, name: str) -> list[dict[str, Any]]:
        res = self.kubectl(
            "get", "events", "-n", self.ns, "--field-selector", f"involvedObject.name={name}", "-o", "json"
        )
        return list(json.loads(res.stdout).get("items", []))

    def wait_for(
        self,
        plural: str,
        name: str,
        predicate: Callable[[dict[str, Any]], bool],
        timeout: float = 60.0,
        what: str = "",
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        last: dict[str, Any] | None = None
        while time.monotonic() < deadline:
            last = self.get(plural, name)
            if last is not None:
                try:
                    if predicate(last):
                        return last
                except (KeyError, TypeError, IndexError):
                    pass
            time.sleep(0.3)
        raise AssertionError(
            f"timed out after {timeout}s waiting for {what or 'condition'} on {plural}/{name}; last seen status:\n"
            + json.dumps((last or {}).get("status"), indent=2)
        )

    def wait_gone(self, plural: str, name: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.get(plural, name) is None:
                return
            time.sleep(0.3)
        raise AssertionError(f"{plural}/{name} still exists after {timeout}s: {self.get(plural, name)}")


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == type_:
            return dict(cond)
    return {}


def is_true(obj: dict[str, Any], type_: str, reason: str | None = None) -> bool:
    cond = condition(obj, type_)
    return cond.get("status") == "True" and (reason is None or cond.get("reason") == reason)


@pytest.fixture
def kube(control_plane: ControlPlane, operator: Operator, request: pytest.FixtureRequest) -> Iterator[Kube]:
    """A fresh ``e2e-*`` namespace (watched by the session operator)."""
    ns = f"e2e-{uuid.uuid4().hex[:8]}"
    control_plane.kubectl("create", "namespace", ns)
    yield Kube(control_plane, ns)
    if request.node.rep_call.failed if hasattr(request.node, "rep_call") else False:
        print(operator.logs()[-8000:])
    control_plane.kubectl("delete", "namespace", ns, "--wait=false", check=False)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Iterator[None]:
    outcome = yield
    rep = outcome.get_result()  # type: ignore[attr-defined]
    setattr(item, f"rep_{rep.when}", rep)


def jfrog(sim: SimulatorServer) -> JFrogSimulator:
    from cleanup_operator.testing.simulators import JFrogSimulator

    s = sim.simulator("jfrog")
    assert isinstance(s, JFrogSimulator)
    return s


@pytest.fixture
def isolated(control_plane: ControlPlane, tmp_path: Path) -> Iterator[tuple[Kube, Operator]]:
    """A namespace outside the session operator's pattern, with an operator of its own (not started)."""
    ns = f"iso-{uuid.uuid4().hex[:8]}"
    control_plane.kubectl("create", "namespace", ns)
    op = Operator(control_plane, tmp_path / "operator.log", "--namespace", ns)
    yield Kube(control_plane, ns), op
    op.stop()
    control_plane.kubectl("delete", "namespace", ns, "--wait=false", check=False)
