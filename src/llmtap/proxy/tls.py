"""The TLS context of the proxy's own listener (what outbound connections trust is
``llmtap.outbound.trust``)."""

from __future__ import annotations

import ssl

from llmtap.errors import ConfigError


def listener_context(cert_file: str, key_file: str, what: str) -> ssl.SSLContext | None:
    """The server context for one of llmtap's own listeners, or None when it serves plain HTTP."""
    if not cert_file:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert_file, key_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"{what}: cannot load {cert_file!r} / {key_file!r}: {exc}") from exc
    return context
