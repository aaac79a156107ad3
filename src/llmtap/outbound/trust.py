"""What outbound TLS trusts, and how a failed handshake is described (docs/tls.md).

Outbound connections (the proxy's to providers, the delivery worker's to webhook, alert and
PostHog endpoints) always verify the certificate chain and the host name and send SNI; no setting
turns that off. What is trusted, built once at start:

* the base set: certifi's bundle; or, when ``SSL_CERT_FILE``/``SSL_CERT_DIR`` is set in the
  environment, those instead, as ``httpx`` and OpenSSL read them;
* plus ``upstream_ca_file``/``upstream_ca_dir`` (a private CA, e.g. a TLS-inspecting egress proxy's);
* plus the operating system's store when ``upstream_trust_system_store``.

A handshake that fails is described for the client and the log by ``describe_tls_error``:
``certificate verify failed: <OpenSSL's reason>`` or the TLS alert, never a silent retry in
plain text.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping

import certifi

from llmtap.errors import ConfigError
from llmtap.settings import Settings

# OpenSSL's X509_V_ERR_* codes, in the words an operator should read in the 502
_VERIFY_REASONS = {
    62: "hostname mismatch",  # X509_V_ERR_HOSTNAME_MISMATCH
    10: "certificate has expired",  # X509_V_ERR_CERT_HAS_EXPIRED
    9: "certificate is not yet valid",  # X509_V_ERR_CERT_NOT_YET_VALID
    18: "self-signed certificate",  # X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT
    19: "unknown certificate authority",  # X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN
    20: "unknown certificate authority",  # X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY
    21: "unknown certificate authority",  # X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE
    2: "unknown certificate authority",  # X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT
}


def outbound_context(settings: Settings, environ: Mapping[str, str] = os.environ) -> ssl.SSLContext:
    """The client context for every outbound connection (verification and SNI always on)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED and check_hostname
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    env_file = environ.get("SSL_CERT_FILE", "")
    env_dir = environ.get("SSL_CERT_DIR", "")
    if env_file or env_dir:
        _load(context, env_file, env_dir, "SSL_CERT_FILE/SSL_CERT_DIR")
    else:
        context.load_verify_locations(cafile=certifi.where())
    if settings.upstream_ca_file or settings.upstream_ca_dir:
        _load(
            context,
            settings.upstream_ca_file,
            settings.upstream_ca_dir,
            "LLMTAP_UPSTREAM_CA_FILE/LLMTAP_UPSTREAM_CA_DIR",
        )
    if settings.upstream_trust_system_store:
        paths = ssl.get_default_verify_paths()
        # OpenSSL's compiled-in locations, not the SSL_CERT_* variables already handled above
        cafile = paths.openssl_cafile if os.path.isfile(paths.openssl_cafile) else ""
        capath = paths.openssl_capath if os.path.isdir(paths.openssl_capath) else ""
        if not cafile and not capath:
            raise ConfigError(
                "LLMTAP_UPSTREAM_TRUST_SYSTEM_STORE is set but this system has no certificate "
                f"store at {paths.openssl_cafile} or {paths.openssl_capath}"
            )
        _load(context, cafile, capath, "the system certificate store")
    return context


def _load(context: ssl.SSLContext, cafile: str, capath: str, source: str) -> None:
    if capath and not os.path.isdir(capath):
        raise ConfigError(f"{source}: {capath!r} is not a directory")
    try:
        context.load_verify_locations(cafile=cafile or None, capath=capath or None)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"{source}: cannot load CA certificates from {cafile!r}: {exc}") from exc


def describe_tls_error(exc: ssl.SSLError) -> str:
    """Why a handshake failed, in a few words an operator can act on."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        reason = _VERIFY_REASONS.get(exc.verify_code)
        detail = (exc.verify_message or "").rstrip(".")
        if reason is None:
            return f"certificate verify failed: {detail or 'unknown reason'}"
        return f"certificate verify failed: {reason}" + (f" ({detail})" if detail else "")
    if exc.reason == "WRONG_VERSION_NUMBER":
        return "the server does not speak TLS on this port (wrong version number)"
    return exc.reason or str(exc) or type(exc).__name__
