"""The ``scores`` table: scores and feedback on logged calls, in the records store.

A score is keyed on (organization, request id, name) and joined to its call on read, so it may
arrive before the call is logged: it is then kept ``pending`` and counts against the
organization's pending cap until the call lands. Who clears ``pending``:

* the records sink, after each batch is committed, for the batch's ids (one UPDATE per batch);
* the API, after it committed a pending score, if the call is there by then.

Each side looks after its own commit, so whichever commits second sees the other's work: a
score is never left pending beside its call. (``pending`` only counts; reads join on the key
whatever it says.) ``synced`` is cleared on every write and set by the consumer's ``ScoreSync``
once the analytics store has that value; the value's ``updated_unix_ms`` is its version there.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from llmtap.stores.records.engine import translated
from llmtap.stores.records.schema import requests, scores
from llmtap.stores.scores import Score, StoredScore

_KEY = ("org_id", "request_id", "name")
_IDS_PER_STATEMENT = 500
"""Request ids per ``IN`` list (SQLite allows 32,766 parameters; keep statements small)."""


class PendingCapReached(Exception):
    """The organization holds its maximum of scores for calls not logged yet."""


class ScoreTable:
    """Reads and writes of ``scores``, on the records store's engine."""

    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine

    def _upsert(self) -> sa.Insert:
        insert = postgresql.insert if self._engine.dialect.name == "postgresql" else sqlite.insert
        stmt = insert(scores)
        kept = ("created_unix_ms",)
        updates = {
            c.name: stmt.excluded[c.name] for c in scores.columns if c.name not in (*_KEY, *kept)
        }
        # last write wins; a replayed older write never overwrites a newer one
        return stmt.on_conflict_do_update(
            index_elements=list(_KEY),
            set_=updates,
            where=scores.c.updated_unix_ms <= stmt.excluded.updated_unix_ms,
        )

    def put(
        self,
        org_id: str,
        request_id: str,
        given: Sequence[Score],
        *,
        max_pending: int,
        now_ms: float | None = None,
    ) -> bool:
        """Store ``given`` for the call; True when the call is not logged yet (kept pending).

        ``PendingCapReached`` (nothing stored) when the call is not logged and the organization
        already holds ``max_pending`` pending scores.
        """
        now = time.time() * 1000.0 if now_ms is None else now_ms
        with translated("write scores"), self._engine.begin() as conn:
            pending = not _logged(conn, org_id, request_id)
            if pending and len(given) + _pending_count(conn, org_id) > max_pending:
                raise PendingCapReached(org_id)
            conn.execute(
                self._upsert(),
                [
                    {
                        "org_id": org_id,
                        "request_id": request_id,
                        "name": score.name,
                        "value": score.value,
                        "is_bool": score.is_bool,
                        "created_unix_ms": now,
                        "updated_unix_ms": now,
                        "pending": pending,
                        "synced": False,
                    }
                    for score in given
                ],
            )
        if pending:
            # the call may have been committed meanwhile, after its batch looked for our scores
            self.join_landed([(org_id, request_id)])
        return pending

    def join_landed(self, keys: Iterable[tuple[str, str]]) -> None:
        """Clear ``pending`` on the scores of these (organization, request id) that are logged
        now. The records sink calls it once per batch: one SELECT when no organization of the
        batch has a pending score (the usual case), else one UPDATE per few hundred ids."""
        by_org: dict[str, set[str]] = {}
        for org_id, request_id in keys:
            by_org.setdefault(org_id, set()).add(request_id)
        if not by_org:
            return
        # the usual case is no pending score at all: one read answers it, and no write
        # transaction (and its lock) is taken for the batch
        waiting = (
            sa.select(scores.c.org_id)
            .where(scores.c.pending.is_(True), scores.c.org_id.in_(sorted(by_org)))
            .distinct()
        )
        with translated("look for pending scores"), self._engine.connect() as conn:
            orgs = {str(org) for org in conn.execute(waiting).scalars()}
        if not orgs:
            return
        with translated("join pending scores"), self._engine.begin() as conn:
            for org_id in sorted(orgs):
                ids = by_org[org_id]
                ordered = sorted(ids)
                for start in range(0, len(ordered), _IDS_PER_STATEMENT):
                    chunk = ordered[start : start + _IDS_PER_STATEMENT]
                    logged = (
                        sa.select(requests.c.request_id)
                        .where(requests.c.org_id == org_id, requests.c.request_id.in_(chunk))
                        .scalar_subquery()
                    )
                    conn.execute(
                        sa.update(scores)
                        .where(
                            scores.c.pending.is_(True),
                            scores.c.org_id == org_id,
                            scores.c.request_id.in_(chunk),
                            scores.c.request_id.in_(logged),
                        )
                        .values(pending=False)
                    )

    def for_requests(self, org_id: str, request_ids: Sequence[str]) -> dict[str, list[Score]]:
        """The scores of each of these calls of the organization, by name."""
        found: dict[str, list[Score]] = {}
        if not request_ids:
            return found
        unique = sorted(set(request_ids))
        with translated("read scores"), self._engine.connect() as conn:
            for start in range(0, len(unique), _IDS_PER_STATEMENT):
                chunk = unique[start : start + _IDS_PER_STATEMENT]
                query = (
                    sa.select(scores.c.request_id, scores.c.name, scores.c.value, scores.c.is_bool)
                    .where(scores.c.org_id == org_id, scores.c.request_id.in_(chunk))
                    .order_by(scores.c.request_id, scores.c.name)
                )
                for row in conn.execute(query):
                    found.setdefault(row.request_id, []).append(
                        Score(row.name, float(row.value), bool(row.is_bool))
                    )
        return found

    def pending_count(self, org_id: str) -> int:
        with translated("count pending scores"), self._engine.connect() as conn:
            return _pending_count(conn, org_id)

    def unsynced(self, limit: int) -> list[StoredScore]:
        """Up to ``limit`` scores whose current value the analytics store does not have."""
        query = (
            sa.select(
                scores.c.org_id,
                scores.c.request_id,
                scores.c.name,
                scores.c.value,
                scores.c.is_bool,
                scores.c.updated_unix_ms,
            )
            .where(scores.c.synced.is_(False))
            .limit(limit)
        )
        with translated("read unsynced scores"), self._engine.connect() as conn:
            return [
                StoredScore(
                    r.org_id,
                    r.request_id,
                    r.name,
                    float(r.value),
                    bool(r.is_bool),
                    float(r.updated_unix_ms),
                )
                for r in conn.execute(query)
            ]

    def mark_synced(self, sent: Sequence[StoredScore]) -> None:
        """Set ``synced`` on these values, unless one was overwritten since it was read."""
        if not sent:
            return
        stmt = (
            sa.update(scores)
            .where(
                scores.c.org_id == sa.bindparam("k_org"),
                scores.c.request_id == sa.bindparam("k_request"),
                scores.c.name == sa.bindparam("k_name"),
                scores.c.updated_unix_ms == sa.bindparam("k_version"),
            )
            .values(synced=True)
        )
        params: list[dict[str, Any]] = [
            {
                "k_org": s.org_id,
                "k_request": s.request_id,
                "k_name": s.name,
                "k_version": s.updated_unix_ms,
            }
            for s in sent
        ]
        with translated("mark scores synced"), self._engine.begin() as conn:
            conn.execute(stmt, params)

    def prune_pending(self, older_than_unix_ms: float) -> int:
        """Delete pending scores last written before ``older_than_unix_ms`` whose call never
        arrived; how many."""
        logged = sa.exists().where(
            requests.c.org_id == scores.c.org_id, requests.c.request_id == scores.c.request_id
        )
        stmt = sa.delete(scores).where(
            scores.c.pending.is_(True),
            scores.c.updated_unix_ms < older_than_unix_ms,
            sa.not_(logged),
        )
        with translated("prune pending scores"), self._engine.begin() as conn:
            return int(conn.execute(stmt).rowcount or 0)


def _logged(conn: sa.Connection, org_id: str, request_id: str) -> bool:
    query = (
        sa.select(requests.c.request_id)
        .where(requests.c.org_id == org_id, requests.c.request_id == request_id)
        .limit(1)
    )
    return conn.execute(query).first() is not None


def _pending_count(conn: sa.Connection, org_id: str) -> int:
    query = (
        sa.select(sa.func.count())
        .select_from(scores)
        .where(scores.c.pending.is_(True), scores.c.org_id == org_id)
    )
    return int(conn.execute(query).scalar_one())
