"""What llmtap itself says about a logged call, as properties named ``llmtap-*``.

Properties are stored in both stores, searchable (``properties.<name>``) and groupable in the
metrics (``group_by=property:<name>``), so a note costs no schema change and is filtered like
anything a caller tagged. Callers cannot write these names: properties they send with the
``llmtap-`` prefix are dropped when the row is built, so a note is always llmtap's.
"""

from __future__ import annotations

from collections.abc import Mapping

PREFIX = "llmtap-"

CLAIMED_REQUEST_ID = "llmtap-claimed-request-id"
"""The request id the call asked for, when another call already owned it: the row was stored
under a fresh id instead (docs/decisions/2026-12-01-request-id-collisions.md)."""

AUTH_ERROR = "llmtap-auth-error"
"""``unknown_key``: the call carried an llmtap key no organization has (revoked or never
issued); it was logged in the default organization (docs/decisions/2026-12-01-unknown-keys.md)."""

BODY_ERROR = "llmtap-body-error"
"""``store_refused``: the proxy could not write the call's bodies (the body store was down, or
its disk full), so the row has none; counted in ``llmtap_proxy_bodies_dropped_total``. The
store's own error stays in the proxy's log, never in the row."""
BODY_STORE_REFUSED = "store_refused"

RATELIMIT_IGNORED = "llmtap-ratelimit-ignored"
"""Why the call's ``Helicone-RateLimit-Policy`` was ignored (it could not be read): the call went
through unlimited, as Helicone lets it (docs/gateway.md, "Rate limits")."""

REQUEST_PARSE_ERROR = "llmtap-request-parse-error"
RESPONSE_PARSE_ERROR = "llmtap-response-parse-error"
"""Why a body could not be read: ``invalid_utf8``, ``too_deep``, ``not_json``, ``wrong_shape``.
The row (status, timings, sizes, the raw body) is stored all the same."""


def callers_own(properties: Mapping[str, str]) -> dict[str, str]:
    """``properties`` without any a caller sent under llmtap's reserved prefix."""
    if not properties:
        return {}  # most calls: no generator for an empty mapping
    if not any(name[:7].lower() == PREFIX for name in properties):
        return dict(properties)
    return {k: v for k, v in properties.items() if k[:7].lower() != PREFIX}
