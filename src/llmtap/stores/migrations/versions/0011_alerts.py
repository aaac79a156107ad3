"""alerts: alert rules and their episodes

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01

``alert_rules`` are an organization's rules (metric, comparison, threshold, window, minimum
requests, filter, group-by) with the evaluators' claim (``next_eval_ms``); each is delivered
through the outbox target of the same id. ``alert_episodes`` keep each firing until it resolves,
at most one open per rule and group (a partial unique index). Decision:
docs/decisions/2026-12-01-alerts.md.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "alert_rules",
        sa.Column(
            "id",
            sa.String(64),
            sa.ForeignKey("outbox_targets.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column(
            "org_id",
            sa.String(64),
            sa.ForeignKey("organizations.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("metric", sa.String(32), nullable=False),
        sa.Column("comparison", sa.String(8), nullable=False),
        sa.Column("threshold", sa.Double(), nullable=False),
        sa.Column("window_s", sa.Integer(), nullable=False),
        sa.Column("min_requests", sa.Integer(), nullable=False),
        sa.Column("filter", _JSON, nullable=True),
        sa.Column("group_by", sa.String(300), nullable=True),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.Column("next_eval_ms", sa.BigInteger(), nullable=False),
        sa.Column("last_eval_ms", sa.BigInteger(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
    )
    op.create_index("ix_alert_rules_org", "alert_rules", ["org_id"])
    op.create_index("ix_alert_rules_due", "alert_rules", ["next_eval_ms"])
    op.create_table(
        "alert_episodes",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column(
            "rule_id",
            sa.String(64),
            sa.ForeignKey("alert_rules.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("org_id", sa.String(64), nullable=False),
        sa.Column("group_key", sa.String(64), nullable=False),
        sa.Column("group_value", sa.Text(), nullable=True),
        sa.Column("threshold", sa.Double(), nullable=False),
        sa.Column("fired_ms", sa.BigInteger(), nullable=False),
        sa.Column("fired_value", sa.Double(), nullable=True),
        sa.Column("resolved_ms", sa.BigInteger(), nullable=True),
        sa.Column("resolved_value", sa.Double(), nullable=True),
    )
    op.create_index(
        "uq_alert_episodes_open",
        "alert_episodes",
        ["rule_id", "group_key"],
        unique=True,
        postgresql_where=sa.text("resolved_ms IS NULL"),
        sqlite_where=sa.text("resolved_ms IS NULL"),
    )
    op.create_index("ix_alert_episodes_rule_fired", "alert_episodes", ["rule_id", "fired_ms"])


def downgrade() -> None:
    op.drop_index("ix_alert_episodes_rule_fired", table_name="alert_episodes")
    op.drop_index("uq_alert_episodes_open", table_name="alert_episodes")
    op.drop_table("alert_episodes")
    op.drop_index("ix_alert_rules_due", table_name="alert_rules")
    op.drop_index("ix_alert_rules_org", table_name="alert_rules")
    op.drop_table("alert_rules")
