"""Authenticate: which organization a record belongs to.

The proxy may already know (``record.org_id``). Otherwise the hash of the llmtap key it saw is
looked up; a call made without any llmtap key belongs to the default organization (single-tenant
installs). A key no organization has (revoked after the proxy let the call through, or the proxy
could not check it) does not make an answered call disappear: it is logged in the default
organization with ``llmtap-auth-error: unknown_key`` (docs/decisions/2026-12-01-unknown-keys.md).
"""

from __future__ import annotations

import time
from typing import Protocol

from llmtap.consumer.context import Context
from llmtap.stores.notes import AUTH_ERROR

# Keys are looked up once per batch-heavy burst, not once per record; a short life keeps a
# revoked key from being honoured for long.
_CACHE_TTL_S = 60.0
_CACHE_MAX = 10_000


class OrgDirectory(Protocol):
    """The part of the records store this handler needs."""

    def org_for_key_hash(self, key_hash: str) -> str | None: ...

    def default_org_id(self) -> str: ...


class Authenticate:
    name = "authenticate"

    def __init__(self, directory: OrgDirectory) -> None:
        self._directory = directory
        self._default_org: str | None = None
        self._known: dict[str, tuple[str | None, float]] = {}

    def __call__(self, ctx: Context) -> None:
        record = ctx.record
        if record.org_id:
            ctx.row.org_id = record.org_id
            return
        org = self._org_for(record.auth_key_hash) if record.auth_key_hash else None
        if org is None:
            if record.auth_key_hash:
                ctx.row.properties[AUTH_ERROR] = "unknown_key"
            if self._default_org is None:
                self._default_org = self._directory.default_org_id()
            org = self._default_org
        ctx.row.org_id = org

    def _org_for(self, key_hash: str) -> str | None:
        now = time.monotonic()
        cached = self._known.get(key_hash)
        if cached is not None and cached[1] > now:
            return cached[0]
        # unknown answers are cached too: a burst of records with a bogus key costs one lookup
        org = self._directory.org_for_key_hash(key_hash)
        if len(self._known) >= _CACHE_MAX:
            self._known.clear()
        self._known[key_hash] = (org, now + _CACHE_TTL_S)
        return org
