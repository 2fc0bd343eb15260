"""A throw-away CA and a loopback server certificate, made at test time, for https simulators.

>>> ca = SimulatorCA()                                   # a new CA (and key) in memory
>>> server = build_server(ssl_context=ca.server_context())
>>> ca.ca_pem                                            # what a caSecretRef Secret holds (key ca.crt)

The server certificate names ``127.0.0.1``, ``localhost`` and ``::1``; nothing is written to disk
unless asked (:meth:`SimulatorCA.write_ca`). Keys live only in this process. Made with ``trustme``
(the ``dev`` extra): importing this module without it fails with a message saying so.
"""

from __future__ import annotations

import ssl
from pathlib import Path

try:
    import trustme
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "https simulators need the trustme package: pip install 'cleanup-operator[dev]'"
    ) from exc

__all__ = ["CA_FILE", "SERVER_NAMES", "SimulatorCA"]

#: The names the server certificate is valid for: every loopback spelling a test may use.
SERVER_NAMES = ("127.0.0.1", "localhost", "::1")
#: The file :meth:`SimulatorCA.write_ca` writes, the key a caSecretRef Secret uses by default.
CA_FILE = "ca.crt"


class SimulatorCA:
    """A CA of its own and one server certificate it signed for :data:`SERVER_NAMES`."""

    def __init__(self, names: tuple[str, ...] = SERVER_NAMES) -> None:
        self._ca = trustme.CA(organization_name="cleanup-operator simulators")
        self._leaf = self._ca.issue_cert(*names)
        self.names = names

    @property
    def ca_pem(self) -> str:
        """The CA certificate, PEM: what a client trusts (never the key)."""
        return self._ca.cert_pem.bytes().decode("ascii")

    def server_context(self) -> ssl.SSLContext:
        """A server-side context presenting the certificate (TLS 1.2 or later)."""
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        self._leaf.configure_cert(ctx)
        return ctx

    def client_context(self) -> ssl.SSLContext:
        """A client-side context trusting this CA only (hostname checks on)."""
        return ssl.create_default_context(cadata=self.ca_pem)

    def write_ca(self, directory: Path | str) -> Path:
        """Write the CA certificate to ``directory/ca.crt`` (the directory is created) and return its path."""
        path = Path(directory) / CA_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.ca_pem)
        return path
