"""RecordsStore: processed calls, organizations and API keys in SQLite or Postgres.

One class for both databases; the URL picks (``sqlite:///path``, ``postgresql://...``). It is the
consumer's first sink (``write_batch``), the consumer's key directory (``org_for_key_hash``) and
what the api and the CLI read from (``reader``, ``stores/records/reader.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from llmtap.stores.records import keys
from llmtap.stores.records.alerts import AlertTable
from llmtap.stores.records.engine import create_engine
from llmtap.stores.records.export_reader import export_page
from llmtap.stores.records.integrations import IntegrationTable
from llmtap.stores.records.keys import ApiKeyInfo, OrgInfo
from llmtap.stores.records.migrate import upgrade_with
from llmtap.stores.records.outbox import OutboxTable
from llmtap.stores.records.outbox_tail import OutboxTail
from llmtap.stores.records.property_lookup import Lookup, property_names, property_values
from llmtap.stores.records.reader import PageQuery, RecordsReader
from llmtap.stores.records.scores import ScoreTable
from llmtap.stores.records.session_calls import PathFigures, session_calls, session_paths
from llmtap.stores.records.sessions import SessionTable
from llmtap.stores.records.upsert import prepare, write_rows
from llmtap.stores.row import RequestRow
from llmtap.stores.sink import PoisonRows


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
        # SQLite: a writer that reads before it writes (the batch upsert settles ids first) and
        # sees another writer commit in between (the delivery worker) fails at once with
        # "database is locked"; taking the write lock at BEGIN makes it wait its turn instead
        self._writer = (
            create_engine(url, immediate=True)
            if self._engine.dialect.name == "sqlite"
            else self._engine
        )
        self._upsert = prepare(self._writer)
        self.reader = RecordsReader(self._engine)
        """Every read of logged calls (the CLI's and the API's), on this store's engine."""
        self.sessions = SessionTable(self._engine)
        """Signed-in dashboard browsers."""
        self.scores = ScoreTable(self._engine)
        """Scores and feedback on logged calls."""
        self.outbox = OutboxTable(self._engine, self._writer)
        """Signed deliveries waiting for (or done with) their webhook or PostHog endpoint."""
        self.outbox_tail = OutboxTail(self._engine, self._writer, self.outbox)
        """Each webhook's cursor in the stored calls (the delivery worker feeds it from there)."""
        self.integrations = IntegrationTable(self._engine, self._writer)
        """Each organization's webhooks and PostHog project."""
        self.alerts = AlertTable(self._engine, self._writer, self.outbox)
        """Each organization's alert rules and their episodes."""

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self._engine.dialect.name

    # -- the sink ---------------------------------------------------------------------------

    def write_batch(self, rows: Sequence[RequestRow]) -> None:
        """Upsert ``rows`` in one transaction (idempotent on org and request id).

        ``StoreUnavailable`` when the database cannot be reached (nothing written);
        ``PoisonRows`` naming the rows it refused, after the others were committed. Scores
        that were waiting for these calls are joined once the rows are committed.
        """
        self.write_batch_alongside(rows, None)

    def write_batch_alongside(
        self, rows: Sequence[RequestRow], alongside: Callable[[], None] | None
    ) -> None:
        """``write_batch``, running ``alongside`` (which must not raise) on another thread while
        the batch commits, once the rows have their final ids (``upsert.write_rows``)."""
        try:
            write_rows(self._writer, rows, self._upsert, alongside)
        except PoisonRows:
            self.scores.join_landed((row.org_id, row.request_id) for row in rows)
            raise
        # ids the claims moved are changed in place on the rows: read them after the write
        self.scores.join_landed((row.org_id, row.request_id) for row in rows)

    def close(self) -> None:
        self._engine.dispose()
        self._writer.dispose()

    # -- reads (``reader``; these name it for the callers that hold the store) ---------------

    def get_request(self, org_id: str | None, request_id: str) -> RequestRow | None:
        return self.reader.get(org_id, request_id)

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
        return self.reader.latest(
            org_id,
            limit,
            before_unix_ms=before_unix_ms,
            model=model,
            user_id=user_id,
            session_id=session_id,
        )

    def count_requests(self, org_id: str | None) -> int:
        return self.reader.count(org_id)

    def property_names(self, lookup: Lookup) -> list[str]:
        """Property names logged in the range containing ``lookup.contains`` (a few, sorted)."""
        return property_names(self._engine, lookup)

    def property_values(self, lookup: Lookup, name: str) -> list[str]:
        """Values of property ``name`` logged in the range containing ``lookup.contains``."""
        return property_values(self._engine, lookup, name)

    def export_page(
        self, query: PageQuery, columns: tuple[str, ...] | None = None
    ) -> list[dict[str, Any]]:
        """A page of calls as dicts of ``columns`` (default: all but the headers), for exports
        (``export_reader.py``)."""
        return export_page(self._engine, query, columns)

    def session_calls(self, org_id: str, session_id: str, limit: int) -> list[RequestRow]:
        """The session's first ``limit`` calls in start order."""
        return session_calls(self._engine, org_id, session_id, limit)

    def session_paths(self, org_id: str, session_id: str) -> list[PathFigures]:
        """Figures per ``session_path`` over every call of the session."""
        return session_paths(self._engine, org_id, session_id)

    # -- organizations and keys -------------------------------------------------------------

    def default_org_id(self) -> str:
        return keys.default_org_id(self._engine)

    def create_org(self, name: str) -> str:
        return keys.create_org(self._engine, name)

    def list_orgs(self) -> list[OrgInfo]:
        return keys.list_orgs(self._engine)

    def org_name(self, org_id: str) -> str | None:
        return keys.org_name(self._engine, org_id)

    def create_key(self, org_id: str, name: str, rate_limit: str | None = None) -> tuple[str, str]:
        """``(key id, plaintext key)``: show the key once, it is stored only hashed."""
        return keys.create_key(self._engine, org_id, name, rate_limit)

    def list_keys(self, org_id: str) -> list[ApiKeyInfo]:
        return keys.list_keys(self._engine, org_id)

    def revoke_key(self, key_id: str) -> bool:
        return keys.revoke_key(self._engine, key_id)

    def revoke_org_key(self, org_id: str, key_id: str) -> str | None:
        """Revoke the organization's key; its hash, or ``None`` if it has no such key."""
        return keys.revoke_org_key(self._engine, org_id, key_id)

    def org_for_key_hash(self, key_hash: str) -> str | None:
        return keys.org_for_key_hash(self._engine, key_hash)
