"""requests.cache_hit, requests.cache_saved_nano_usd: calls answered from the gateway's cache

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01

Rows written before this revision were not cache hits (false) and saved nothing (NULL).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "requests",
        sa.Column("cache_hit", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.add_column("requests", sa.Column("cache_saved_nano_usd", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    # ALTER TABLE ... DROP COLUMN in place (SQLite >= 3.35): batch mode's copy of the table
    # would lose 0005's expression indexes, which SQLAlchemy cannot reflect
    op.drop_column("requests", "cache_saved_nano_usd")
    op.drop_column("requests", "cache_hit")
