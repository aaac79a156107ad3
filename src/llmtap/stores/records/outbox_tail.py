"""The outbox's cursor: webhooks fed from the stored calls, off the consumer's path.

The consumer writes nothing for a webhook. Each call's row carries ``tx``, the transaction that
stored it (schema.py), and each webhook target its cursor, a place in the (``tx``,
``request_id``) order of its organization's calls. The delivery worker reads the calls after the
cursor (``read``) and, in one transaction, moves the cursor past them and adds their deliveries to
the outbox as ordinary pending rows (``advance``), from where they are claimed, sent, retried and
shown like any other. So a dead endpoint costs nothing per call anywhere: while it backs off its
calls simply wait in the log, and it holds at most a window of rows in the outbox. The order
and what is settled enough to be read: ``outbox_cursor.py``. Decision: docs/decisions/2026-12-01-outbox-cursor.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa

from llmtap.stores.records.engine import translated
from llmtap.stores.records.outbox import PENDING, Delivery, OutboxTable, Target, target_from_row
from llmtap.stores.records.outbox_cursor import Cursor, after, settled
from llmtap.stores.records.schema import outbox, outbox_targets, requests, webhooks
from llmtap.stores.records.upsert import row_from_mapping
from llmtap.stores.row import RequestRow


@dataclass(frozen=True, slots=True)
class Tailed:
    """A webhook with calls after its cursor, and what decides which of them it wants."""

    target: Target
    cursor: Cursor
    sample_rate: float
    property_filters: dict[str, str]


class OutboxTail:
    """The cursor's queries, on the records store's engines (``outbox`` adds the deliveries)."""

    def __init__(self, engine: sa.Engine, writer: sa.Engine, table: OutboxTable) -> None:
        self._engine = engine
        self._writer = writer
        self._table = table
        self._settled = settled(engine.dialect.name)

    def tailing(self, now_ms: int, limit: int) -> list[Tailed]:
        """Webhooks not paused, not backing off, with settled calls after their cursor."""
        t = outbox_targets.c
        # the first call after the cursor, as a scalar subquery: run per webhook as a range of
        # ``ix_requests_org_tx``. As ``EXISTS`` Postgres made it a semi-join that hashed every
        # call of the table on each poll.
        waiting = (
            sa.select(requests.c.tx)
            .where(
                requests.c.org_id == t.org_id,
                after(t.cursor_tx, t.cursor_request_id),
                self._settled,
            )
            .order_by(requests.c.tx)
            .limit(1)
            .scalar_subquery()
            .is_not(None)
        )
        query = (
            sa.select(outbox_targets, webhooks.c.sample_rate, webhooks.c.property_filters)
            .join(webhooks, webhooks.c.id == t.id)
            .where(t.cursor_tx.is_not(None), t.paused.is_(False), t.retry_at_ms <= now_ms, waiting)
            .order_by(t.retry_at_ms)
            .limit(limit)
        )
        with translated("read tailing webhooks"), self._engine.connect() as conn:
            return [
                Tailed(
                    target=target_from_row(row),
                    cursor=Cursor(int(row["cursor_tx"]), row["cursor_request_id"]),
                    sample_rate=float(row["sample_rate"]),
                    property_filters=dict(row["property_filters"] or {}),
                )
                for row in conn.execute(query).mappings()
            ]

    def pending(self, target_id: str) -> int:
        """Deliveries of the target in the outbox not yet delivered or given up."""
        query = sa.select(sa.func.count()).where(
            outbox.c.target_id == target_id, outbox.c.status == PENDING
        )
        with translated("count pending deliveries"), self._engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def read(self, org_id: str, cursor: Cursor, limit: int) -> list[tuple[RequestRow, Cursor]]:
        """Up to ``limit`` settled calls of the organization after ``cursor``, in order, each
        with the cursor that takes it."""
        query = (
            sa.select(requests)
            .where(
                requests.c.org_id == org_id,
                after(sa.literal(cursor.tx), sa.literal(cursor.request_id, sa.String())),
                self._settled,
            )
            .order_by(requests.c.tx, requests.c.request_id)
            .limit(limit)
        )
        with translated("read calls to deliver"), self._engine.connect() as conn:
            return [
                (row_from_mapping(m), Cursor(int(m["tx"]), str(m["request_id"])))
                for m in conn.execute(query).mappings()
            ]

    def advance(
        self, target_id: str, old: Cursor, new: Cursor, deliveries: Sequence[Delivery], now_ms: int
    ) -> bool:
        """Move the cursor from ``old`` to ``new`` and add ``deliveries``, together; False (and
        nothing done) when another worker moved it first."""
        t = outbox_targets.c
        with translated("advance a webhook's cursor"), self._writer.begin() as conn:
            moved = conn.execute(
                sa.update(outbox_targets)
                .where(
                    t.id == target_id,
                    t.cursor_tx == old.tx,
                    t.cursor_request_id.is_not_distinct_from(old.request_id),
                )
                .values(cursor_tx=new.tx, cursor_request_id=new.request_id)
            )
            if not moved.rowcount:
                return False
            if deliveries:
                self._table.add(conn, deliveries, now_ms)
        return True
