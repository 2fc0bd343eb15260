"""The operator's Kubernetes client trusts only the cluster CA it was given, and keeps no key on disk."""

from __future__ import annotations

import datetime as dt
import os
import ssl
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from cleanup_operator.kube import tls_context

pytestmark = pytest.mark.unit


def self_signed(cn: str) -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def info(**kw: Any) -> SimpleNamespace:
    base = dict(
        insecure=False,
        ca_path=None,
        ca_data=None,
        certificate_path=None,
        certificate_data=None,
        private_key_path=None,
        private_key_data=None,
    )
    base.update(kw)
    return SimpleNamespace(**base)


def test_only_the_cluster_ca_is_trusted() -> None:
    ca, _ = self_signed("cluster-ca")
    ctx = tls_context(info(ca_data=ca.decode()))
    trusted = ctx.get_ca_certs()
    assert len(trusted) == 1, [c.get("subject") for c in trusted]  # not the system store as well
    assert trusted[0]["subject"] == ((("commonName", "cluster-ca"),),)
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname


def test_base64_ca_data_as_kubeconfigs_hold_it() -> None:
    import base64

    ca, _ = self_signed("cluster-ca")
    ctx = tls_context(info(ca_data=base64.b64encode(ca).decode()))
    assert len(ctx.get_ca_certs()) == 1


def test_an_inline_client_key_is_not_left_on_disk(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    ca, _ = self_signed("cluster-ca")
    cert, key = self_signed("system:admin")
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR
    ctx = tls_context(
        info(ca_data=ca.decode(), certificate_data=cert.decode(), private_key_data=key.decode())
    )
    assert isinstance(ctx, ssl.SSLContext)
    left = [p for p in tmp_path.rglob("*")]
    assert left == [], left  # loaded into the context, then removed
    assert all(key not in p.read_bytes() for p in Path(os.getcwd()).glob("*.pem"))


def test_insecure_still_loads_no_store() -> None:
    ctx = tls_context(info(insecure=True))
    assert ctx.verify_mode == ssl.CERT_NONE and not ctx.check_hostname
