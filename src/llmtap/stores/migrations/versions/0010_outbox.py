"""outbox: webhooks, PostHog settings and the durable outbox of signed deliveries

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01

``outbox_targets`` are endpoints (a webhook, a PostHog project) with their failure streak and
pause; ``outbox`` holds each delivery's exact bytes, unique per (target, dedup key) so a
redelivered batch enqueues nothing twice; ``webhooks`` and ``posthog_settings`` are what an
organization configured. Decision: docs/decisions/2026-12-01-outbox.md.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _org() -> sa.Column[str]:
    return sa.Column(
        "org_id",
        sa.String(64),
        sa.ForeignKey("organizations.id", ondelete="CASCADE"),
        nullable=False,
    )


def upgrade() -> None:
    op.create_table(
        "outbox_targets",
        sa.Column("id", sa.String(64), primary_key=True),
        _org(),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("secret", sa.Text(), nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column("consecutive_failures", sa.Integer(), nullable=False),
        sa.Column("failing_since_ms", sa.BigInteger(), nullable=True),
        sa.Column("retry_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_success_ms", sa.BigInteger(), nullable=True),
    )
    op.create_index("ix_outbox_targets_org", "outbox_targets", ["org_id"])
    op.create_table(
        "outbox",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column(
            "target_id",
            sa.String(64),
            sa.ForeignKey("outbox_targets.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("org_id", sa.String(64), nullable=False),
        sa.Column("dedup_key", sa.String(200), nullable=False),
        sa.Column("request_id", sa.String(128), nullable=True),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("next_attempt_ms", sa.BigInteger(), nullable=False),
        sa.Column("lease_until_ms", sa.BigInteger(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_status", sa.Integer(), nullable=True),
        sa.Column("done_ms", sa.BigInteger(), nullable=True),
        sa.UniqueConstraint("target_id", "dedup_key", name="uq_outbox_target_dedup"),
    )
    op.create_index("ix_outbox_due", "outbox", ["target_id", "status", "next_attempt_ms"])
    op.create_index("ix_outbox_target_created", "outbox", ["target_id", "created_ms"])
    op.create_index("ix_outbox_done", "outbox", ["done_ms"])
    op.create_table(
        "webhooks",
        sa.Column(
            "id",
            sa.String(64),
            sa.ForeignKey("outbox_targets.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        _org(),
        sa.Column("sample_rate", sa.Double(), nullable=False),
        sa.Column("property_filters", _JSON, nullable=False),
    )
    op.create_index("ix_webhooks_org", "webhooks", ["org_id"])
    op.create_table(
        "posthog_settings",
        sa.Column(
            "org_id",
            sa.String(64),
            sa.ForeignKey("organizations.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("host", sa.Text(), nullable=False),
        sa.Column("api_key", sa.Text(), nullable=False),
        sa.Column("updated", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("posthog_settings")
    op.drop_index("ix_webhooks_org", table_name="webhooks")
    op.drop_table("webhooks")
    op.drop_index("ix_outbox_done", table_name="outbox")
    op.drop_index("ix_outbox_target_created", table_name="outbox")
    op.drop_index("ix_outbox_due", table_name="outbox")
    op.drop_table("outbox")
    op.drop_index("ix_outbox_targets_org", table_name="outbox_targets")
    op.drop_table("outbox_targets")
