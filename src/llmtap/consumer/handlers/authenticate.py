"""Authenticate: which organization a record belongs to.

The proxy may already know (``record.org_id``). Otherwise the hash of the llmtap key it saw is
looked up; a key nobody issued is poison (a row without a real owner must never be stored), and a
call made without any llmtap key belongs to the default organization (single-tenant installs).
"""

from __future__ import annotations

import time
from typing import Protocol

from llmtap.consumer.context import Context
from llmtap.errors import PoisonRecord

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
        self._known: dict[str, tuple[str, float]] = {}

    def __call__(self, ctx: Context) -> None:
        record = ctx.record
        if record.org_id:
            ctx.row.org_id = record.org_id
        elif record.auth_key_hash:
            ctx.row.org_id = self._org_for(record.auth_key_hash)
        else:
            if self._default_org is None:
                self._default_org = self._directory.default_org_id()
            ctx.row.org_id = self._default_org

    def _org_for(self, key_hash: str) -> str:
        now = time.monotonic()
        cached = self._known.get(key_hash)
        if cached is not None and cached[1] > now:
            return cached[0]
        org = self._directory.org_for_key_hash(key_hash)
        if org is None:
            raise PoisonRecord("unknown llmtap key")
        if len(self._known) >= _CACHE_MAX:
            self._known.clear()
        self._known[key_hash] = (org, now + _CACHE_TTL_S)
        return org
