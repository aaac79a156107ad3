"""requests.attempts: how many times the proxy sent the call upstream

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01

Rows written before this revision (and calls that did not go through the proxy) have none.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("requests", sa.Column("attempts", sa.Integer(), nullable=True))


def downgrade() -> None:
    # SQLite cannot drop a column in place on every version: batch mode copies the table
    with op.batch_alter_table("requests") as batch:
        batch.drop_column("attempts")
