"""The "through TLS" row: the same gateways and loads, with the mock upstream served over TLS
from a throwaway CA (``trustme``) that each gateway is told to trust. Clients still speak plain
HTTP to the gateway; the difference to the plain rows is the gateway's TLS to the provider."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import trustme

from bench.procs import Service
from bench.targets import LOAD_CORE, MOCK_TLS_PORT, PYTHON

TLS_GATEWAYS = ("nginx-tls", "llmtap-proxy-tls", "llmtap-tls")


@dataclass(frozen=True)
class BenchCerts:
    ca_file: Path
    cert_file: Path
    key_file: Path


def make_certs(directory: Path) -> BenchCerts:
    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    leaf = ca.issue_cert("localhost", "127.0.0.1")
    certs = BenchCerts(directory / "ca.pem", directory / "mock.pem", directory / "mock.key")
    ca.cert_pem.write_to_path(str(certs.ca_file))
    certs.cert_file.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(certs.key_file))
    return certs


def tls_mock_service(logs: Path, certs: BenchCerts) -> Service:
    argv = [PYTHON, "-m", "llmtap", "mock-upstream", "--host", "127.0.0.1"]
    argv += ["--port", str(MOCK_TLS_PORT), "--tls-cert", str(certs.cert_file)]
    argv += ["--tls-key", str(certs.key_file)]
    return Service("mock-tls", argv, MOCK_TLS_PORT, LOAD_CORE, logs / "mock-tls.log")
