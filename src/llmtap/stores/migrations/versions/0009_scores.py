"""scores, and requests.prompt_id / prompt_version

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01

Scores and feedback posted on a call (``stores/records/scores.py``), and the prompt a call says
it used (``Helicone-Prompt-Id``, ``Helicone-Prompt-Version``). Calls logged before have none.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("requests", sa.Column("prompt_id", sa.String(256), nullable=True))
    op.add_column("requests", sa.Column("prompt_version", sa.String(128), nullable=True))
    op.create_table(
        "scores",
        sa.Column("org_id", sa.String(64), nullable=False),
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("value", sa.Double(), nullable=False),
        sa.Column("is_bool", sa.Boolean(), nullable=False),
        sa.Column("created_unix_ms", sa.Double(), nullable=False),
        sa.Column("updated_unix_ms", sa.Double(), nullable=False),
        sa.Column("pending", sa.Boolean(), nullable=False),
        sa.Column("synced", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("org_id", "request_id", "name", name="pk_scores"),
    )
    op.create_index("ix_scores_pending", "scores", ["pending", "org_id"])
    op.create_index("ix_scores_synced", "scores", ["synced"])


def downgrade() -> None:
    op.drop_index("ix_scores_synced", table_name="scores")
    op.drop_index("ix_scores_pending", table_name="scores")
    op.drop_table("scores")
    # plain DROP COLUMN (SQLite 3.35+): batch mode would copy the table and lose the expression
    # indexes of revision 0005, which it cannot reflect
    op.execute("ALTER TABLE requests DROP COLUMN prompt_version")
    op.execute("ALTER TABLE requests DROP COLUMN prompt_id")
