"""Authenticate: which organization a record belongs to.

The proxy may already know (``record.org_id``). Otherwise the hash of the llmtap key it saw is
looked up; a call made without any llmtap key belongs to the default organization (single-tenant
installs). A key no organization has (revoked after the proxy let the call through, or the proxy
could not check it) does not make an answered call disappear: it is logged in the default
organization with ``llmtap-auth-error: unknown_key`` (docs/decisions/2026-12-01-unknown-keys.md).
"""

from __future__ import annotations

from collections.abc import Callable

from llmtap.consumer.context import Context
from llmtap.keys.directory import KeyDirectory
from llmtap.stores.notes import AUTH_ERROR


class Authenticate:
    name = "authenticate"

    def __init__(self, keys: KeyDirectory, default_org_id: Callable[[], str]) -> None:
        self._keys = keys
        self._default_org_id = default_org_id
        self._default_org: str | None = None

    def __call__(self, ctx: Context) -> None:
        record = ctx.record
        if record.org_id:
            ctx.row.org_id = record.org_id
            return
        org = self._keys.org_for_key_hash(record.auth_key_hash) if record.auth_key_hash else None
        if org is None:
            if record.auth_key_hash:
                ctx.row.properties[AUTH_ERROR] = "unknown_key"
            if self._default_org is None:
                self._default_org = self._default_org_id()
            org = self._default_org
        ctx.row.org_id = org
