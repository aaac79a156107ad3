"""requests.attempt_log and requests.fallback_index: the attempts of a call that asked for
retries or fallbacks, and which fallback target answered

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01

Every other call (and every row written before this revision) has neither.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("requests", sa.Column("attempt_log", sa.Text(), nullable=True))
    op.add_column("requests", sa.Column("fallback_index", sa.Integer(), nullable=True))


def downgrade() -> None:
    # plain DROP COLUMN (SQLite 3.35+): batch mode would copy the table and lose the expression
    # indexes of revision 0005, which it cannot reflect
    op.execute("ALTER TABLE requests DROP COLUMN fallback_index")
    op.execute("ALTER TABLE requests DROP COLUMN attempt_log")
