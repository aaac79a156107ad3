"""requests.record_digest: tell a redelivery from a different call claiming a logged id

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01

Rows written before this revision have no digest; the first record that claims their id adopts
them (docs/decisions/2026-12-01-request-id-collisions.md).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("requests", sa.Column("record_digest", sa.String(64), nullable=True))


def downgrade() -> None:
    # SQLite cannot drop a column in place on every version: batch mode copies the table
    with op.batch_alter_table("requests") as batch:
        batch.drop_column("record_digest")
