"""RecordsStore: processed calls, organizations and API keys in SQLite or Postgres.

One class for both databases; the URL picks (``sqlite:///path``, ``postgresql://...``). It is the
consumer's first sink (``write_batch``), the consumer's key directory (``org_for_key_hash``) and
what the api and the CLI read from. Every read of calls takes the caller's organization;
``None`` is only for the local admin CLI, which sees everything.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from llmtap.stores.records import keys
from llmtap.stores.records.engine import create_engine, translated
from llmtap.stores.records.keys import ApiKeyInfo, OrgInfo
from llmtap.stores.records.migrate import upgrade_with
from llmtap.stores.records.schema import requests
from llmtap.stores.records.upsert import row_from_mapping, write_rows
from llmtap.stores.row import RequestRow


class RecordsStore:
    """A records store on ``url``; brings the schema up to date first unless ``migrate=False``."""

    name = "records"

    def __init__(self, url: str, *, migrate: bool = True) -> None:
        self.url = url
        if migrate:
            migration_engine = create_engine(url, immediate=True)
            try:
                upgrade_with(migration_engine)
            finally:
                migration_engine.dispose()
        self._engine = create_engine(url)

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self._engine.dialect.name

    # -- the sink ---------------------------------------------------------------------------

    def write_batch(self, rows: Sequence[RequestRow]) -> None:
        """Upsert ``rows`` in one transaction (idempotent on org and request id).

        ``StoreUnavailable`` when the database cannot be reached (nothing written);
        ``PoisonRows`` naming the rows it refused, after the others were committed.
        """
        write_rows(self._engine, rows)

    def close(self) -> None:
        self._engine.dispose()

    # -- reads ------------------------------------------------------------------------------

    def get_request(self, org_id: str | None, request_id: str) -> RequestRow | None:
        query = sa.select(requests).where(requests.c.request_id == request_id)
        if org_id is not None:
            query = query.where(requests.c.org_id == org_id)
        with translated("read request"), self._engine.connect() as conn:
            found = conn.execute(query.limit(1)).mappings().first()
        return None if found is None else row_from_mapping(found)

    def recent_requests(
        self,
        org_id: str | None,
        limit: int,
        *,
        before_unix_ms: float | None = None,
        model: str | None = None,
        user_id: str | None = None,
        session_id: str | None = None,
    ) -> list[RequestRow]:
        """Calls newest first; ``before_unix_ms`` pages back in time (exclusive)."""
        query = sa.select(requests)
        if org_id is not None:
            query = query.where(requests.c.org_id == org_id)
        if before_unix_ms is not None:
            query = query.where(requests.c.created_unix_ms < before_unix_ms)
        if model is not None:
            query = query.where(requests.c.model == model)
        if user_id is not None:
            query = query.where(requests.c.user_id == user_id)
        if session_id is not None:
            query = query.where(requests.c.session_id == session_id)
        query = query.order_by(
            requests.c.created_unix_ms.desc(), requests.c.request_id.desc()
        ).limit(max(0, limit))
        with translated("read requests"), self._engine.connect() as conn:
            return [row_from_mapping(m) for m in conn.execute(query).mappings()]

    def count_requests(self, org_id: str | None) -> int:
        query = sa.select(sa.func.count()).select_from(requests)
        if org_id is not None:
            query = query.where(requests.c.org_id == org_id)
        with translated("count requests"), self._engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    # -- organizations and keys -------------------------------------------------------------

    def default_org_id(self) -> str:
        return keys.default_org_id(self._engine)

    def create_org(self, name: str) -> str:
        return keys.create_org(self._engine, name)

    def list_orgs(self) -> list[OrgInfo]:
        return keys.list_orgs(self._engine)

    def create_key(self, org_id: str, name: str) -> tuple[str, str]:
        """``(key id, plaintext key)``: show the key once, it is stored only hashed."""
        return keys.create_key(self._engine, org_id, name)

    def list_keys(self, org_id: str) -> list[ApiKeyInfo]:
        return keys.list_keys(self._engine, org_id)

    def revoke_key(self, key_id: str) -> bool:
        return keys.revoke_key(self._engine, key_id)

    def org_for_key_hash(self, key_hash: str) -> str | None:
        return keys.org_for_key_hash(self._engine, key_hash)
