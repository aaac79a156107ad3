"""api_keys: the rate-limit policy a key carries

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01

``llmtap keys create --rate-limit "1000;w=60"`` stores a policy with the key; the proxy applies
it to every call made with the key (docs/gateway.md, "Rate limits"). NULL: no limit.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("api_keys", sa.Column("rate_limit", sa.String(256), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("rate_limit")
