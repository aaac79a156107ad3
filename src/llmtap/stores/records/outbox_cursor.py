"""A webhook's cursor in the stored calls: the order, where one starts, what is settled.

Each call's row carries ``tx``, the transaction that stored it (schema.py); calls are taken in
(``tx``, ``request_id``) order. On Postgres several consumers write at once and a transaction id
is taken before its rows commit, so only the calls of transactions older than every one still
running (``tx`` under the snapshot's ``xmin``) are settled: none can appear behind a cursor later.
SQLite has one writer at a time, so every committed row is settled. The worker's side is
``outbox_tail.py``. Decision: docs/decisions/2026-12-01-outbox-cursor.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from llmtap.stores.records.schema import outbox_targets, requests

_PG_HORIZON = "(pg_snapshot_xmin(pg_current_snapshot())::text)::bigint"


@dataclass(frozen=True, slots=True)
class Cursor:
    tx: int
    request_id: str | None
    """The last call taken within ``tx``; None: every call of ``tx`` was taken."""


def after(
    cursor_tx: sa.ColumnElement[int], cursor_id: sa.ColumnElement[str]
) -> sa.ColumnElement[bool]:
    """The calls after the cursor. The leading ``tx >=`` makes it a range of
    ``ix_requests_org_tx`` (an ``OR`` alone has the planners scan every call of the
    organization)."""
    tx = requests.c.tx
    return sa.and_(
        tx >= cursor_tx,
        sa.or_(tx > cursor_tx, sa.and_(cursor_id.is_not(None), requests.c.request_id > cursor_id)),
    )


def settled(dialect: str) -> sa.ColumnElement[bool]:
    """The calls no running transaction can still add to (on SQLite: all committed ones)."""
    if dialect == "postgresql":
        return requests.c.tx < sa.literal_column(_PG_HORIZON)
    return requests.c.tx.is_not(None)


def start_cursor(conn: sa.Connection, org_id: str) -> Cursor:
    """Where a webhook created now starts: after the calls stored so far (on Postgres, after the
    settled ones: a call being stored meanwhile is sent rather than missed)."""
    if conn.dialect.name == "postgresql":
        horizon = conn.execute(sa.text(f"SELECT {_PG_HORIZON}")).scalar_one()
        return Cursor(int(horizon) - 1, None)
    last = conn.execute(
        sa.select(sa.func.max(requests.c.tx)).where(requests.c.org_id == org_id)
    ).scalar()
    return Cursor(int(last or 0), None)


def backlog_counts(conn: sa.Connection, org_id: str) -> dict[str, int]:
    """Settled calls after each of the organization's webhooks' cursor (before its filters and
    sample: at most what it still has to be sent)."""
    t = outbox_targets.c
    counted = (
        sa.select(sa.func.count())
        .where(
            requests.c.org_id == t.org_id,
            after(t.cursor_tx, t.cursor_request_id),
            settled(conn.dialect.name),
        )
        .scalar_subquery()
    )
    query = sa.select(t.id, counted).where(t.org_id == org_id, t.cursor_tx.is_not(None))
    return {str(i): int(n) for i, n in conn.execute(query).all()}
