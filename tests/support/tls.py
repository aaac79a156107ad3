"""A test certificate authority and the certificates the TLS tests serve, made with ``trustme``.

``pki`` (a session fixture, registered in ``tests/conftest.py``) writes them once into a
temporary directory: the CA to trust, a good server certificate for ``localhost`` and
``127.0.0.1``, and three bad ones for the same names (expired, issued for another host, issued by
a CA nobody trusts). Each is a ``CertFiles``: a PEM chain (leaf first) and its private key.
"""

from __future__ import annotations

import datetime
import shutil
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trustme

from llmtap.testing.mock_upstream import MockUpstream

SERVER_NAMES = ("localhost", "127.0.0.1")


@dataclass(frozen=True)
class CertFiles:
    cert_file: str
    key_file: str


@dataclass(frozen=True)
class Pki:
    ca_file: str
    """The test CA's certificate (PEM): what a client must trust."""
    ca_dir: str
    """A directory holding only the CA, hashed the way OpenSSL's ``capath`` looks it up."""
    server: CertFiles
    expired: CertFiles
    wrong_host: CertFiles
    """Valid and from the test CA, but for ``not-this-host.invalid``."""
    unknown_ca: CertFiles
    """For the right names, but issued by another CA."""

    def client_context(self) -> ssl.SSLContext:
        """A client context trusting the test CA only (verification on)."""
        return ssl.create_default_context(cafile=self.ca_file)


def _write(leaf: trustme.LeafCert, directory: Path, name: str) -> CertFiles:
    cert = directory / f"{name}.pem"
    key = directory / f"{name}.key"
    with cert.open("wb") as out:
        for blob in leaf.cert_chain_pems:
            out.write(blob.bytes())
    leaf.private_key_pem.write_to_path(str(key))
    return CertFiles(str(cert), str(key))


def _hashed_dir(ca_file: Path, directory: Path) -> str:
    """A ``capath`` directory: the CA under ``<subject hash>.0``, as ``c_rehash`` names it
    (OpenSSL's subject hash is computed by the ``openssl`` command that ``ca-certificates``
    brings)."""
    directory.mkdir()
    found = subprocess.run(
        ["openssl", "x509", "-noout", "-subject_hash", "-in", str(ca_file)],
        check=True,
        capture_output=True,
        text=True,
    )
    shutil.copyfile(ca_file, directory / f"{found.stdout.strip()}.0")
    return str(directory)


def make_pki(directory: Path) -> Pki:
    ca = trustme.CA()
    other_ca = trustme.CA()
    ca_file = directory / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    now = datetime.datetime.now(datetime.UTC)
    expired = ca.issue_cert(
        *SERVER_NAMES,
        not_before=now - datetime.timedelta(days=30),
        not_after=now - datetime.timedelta(days=1),
    )
    return Pki(
        ca_file=str(ca_file),
        ca_dir=_hashed_dir(ca_file, directory / "ca-dir"),
        server=_write(ca.issue_cert(*SERVER_NAMES), directory, "server"),
        expired=_write(expired, directory, "expired"),
        wrong_host=_write(ca.issue_cert("not-this-host.invalid"), directory, "wrong-host"),
        unknown_ca=_write(other_ca.issue_cert(*SERVER_NAMES), directory, "unknown-ca"),
    )


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pki]:
    yield make_pki(tmp_path_factory.mktemp("pki"))


class TrustedMock(MockUpstream):
    """The mock upstream over TLS with ``cert`` (default: the good server certificate), and the
    CA file a client must trust to talk to it."""

    def __init__(self, pki: Pki, cert: CertFiles | None = None, **options: Any) -> None:
        served = cert or pki.server
        super().__init__(tls_cert_file=served.cert_file, tls_key_file=served.key_file, **options)
        self.ca_file = pki.ca_file


def upstream_trust(mock: MockUpstream) -> dict[str, str]:
    """Settings that make llmtap trust ``mock``'s certificate (none for plain HTTP)."""
    return {"upstream_ca_file": mock.ca_file} if isinstance(mock, TrustedMock) else {}
