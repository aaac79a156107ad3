"""requests.cache_hit, requests.cache_saved_nano_usd: calls answered from the gateway's cache

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01

Rows written before this revision were not cache hits (false) and saved nothing (NULL).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "requests",
        sa.Column("cache_hit", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.add_column("requests", sa.Column("cache_saved_nano_usd", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    # SQLite cannot drop a column in place on every version: batch mode copies the table
    with op.batch_alter_table("requests") as batch:
        batch.drop_column("cache_saved_nano_usd")
        batch.drop_column("cache_hit")
