"""outbox cursor: webhooks are fed from the stored calls, not from rows the consumer enqueues

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01

``requests.tx`` orders the calls by the transaction that stored them (Postgres: the writer's
transaction id as a column default, so the consumer writes nothing more; SQLite, one writer at a
time: the largest rowid plus one, in the upsert); ``ix_requests_org_tx`` lets the delivery worker tail one organization's calls.
``outbox_targets.cursor_tx``/``cursor_request_id`` is each webhook's place in that order, set to
the end of the log for the webhooks that exist now (their earlier calls were enqueued already).
Decision: docs/decisions/2026-12-01-outbox-cursor.md.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    # no default on the rows there are: they were stored (and enqueued) before; a NULL is never
    # after a cursor
    op.add_column("requests", sa.Column("tx", sa.BigInteger(), nullable=True))
    if postgres:
        op.alter_column(
            "requests",
            "tx",
            server_default=sa.text("(pg_current_xact_id()::text)::bigint"),
        )
    op.create_index("ix_requests_org_tx", "requests", ["org_id", "tx", "request_id"])
    op.add_column("outbox_targets", sa.Column("cursor_tx", sa.BigInteger(), nullable=True))
    op.add_column("outbox_targets", sa.Column("cursor_request_id", sa.String(128), nullable=True))
    # existing webhooks start at the end: what was stored before was enqueued by the consumer
    op.execute("UPDATE outbox_targets SET cursor_tx = 0 WHERE kind = 'webhook'")


def downgrade() -> None:
    op.drop_column("outbox_targets", "cursor_request_id")
    op.drop_column("outbox_targets", "cursor_tx")
    op.drop_index("ix_requests_org_tx", table_name="requests")
    op.drop_column("requests", "tx")
