"""The records store's key table on its own, for a process that only resolves keys (the proxy).

It connects to the records database and runs one indexed SELECT per lookup: no migrations (the
consumer, the API and ``llmtap migrate`` bring the schema up to date), no writes. Until the
schema exists, a lookup fails like an unreachable store (``StoreUnavailable``), which the proxy
treats as "not known yet" and lets the call through.
"""

from __future__ import annotations

from llmtap.keys import KeyGrant
from llmtap.stores.records.engine import create_engine
from llmtap.stores.records.keys import grant_for_key_hash, org_for_key_hash


class KeyTable:
    def __init__(self, url: str) -> None:
        """``ConfigError`` for a URL that is not a records-store URL; connects on first use."""
        self._engine = create_engine(url)

    @property
    def local(self) -> bool:
        """Lookups read a local file (SQLite): quick enough to make on the event loop."""
        return self._engine.dialect.name == "sqlite"

    def org_for_key_hash(self, key_hash: str) -> str | None:
        return org_for_key_hash(self._engine, key_hash)

    def grant_for_key_hash(self, key_hash: str) -> KeyGrant | None:
        """The key's organization and the rate limit it carries (the proxy's lookup)."""
        return grant_for_key_hash(self._engine, key_hash)

    def close(self) -> None:
        self._engine.dispose()
