"""initial schema: organizations, api keys, requests

Revision ID: 0001
Revises:
Create Date: 2026-11-25

Migrations are frozen: they spell out their types instead of importing them from the live schema,
so a later change to ``schema.py`` cannot rewrite history.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
_when = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "organizations",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("created", _when, nullable=False),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column(
            "org_id",
            sa.String(64),
            sa.ForeignKey("organizations.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("prefix", sa.String(32), nullable=False),
        sa.Column("created", _when, nullable=False),
        sa.Column("revoked_at", _when, nullable=True),
        sa.UniqueConstraint("key_hash", name="uq_api_keys_key_hash"),
    )
    op.create_index("ix_api_keys_org_id", "api_keys", ["org_id"])
    op.create_table(
        "requests",
        sa.Column("org_id", sa.String(64), nullable=False),
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column("created_unix_ms", sa.Double(), nullable=False),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("provider", sa.String(200), nullable=False),
        sa.Column("method", sa.String(16), nullable=False),
        sa.Column("target_url", sa.Text(), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("streamed", sa.Boolean(), nullable=False),
        sa.Column("model", sa.String(200), nullable=True),
        sa.Column("response_model", sa.String(200), nullable=True),
        sa.Column("endpoint", sa.String(64), nullable=True),
        sa.Column("finish_reason", sa.String(64), nullable=True),
        sa.Column("user_id", sa.String(256), nullable=True),
        sa.Column("session_id", sa.String(256), nullable=True),
        sa.Column("session_path", sa.Text(), nullable=True),
        sa.Column("session_name", sa.Text(), nullable=True),
        sa.Column("properties", _json, nullable=False),
        sa.Column("usage_source", sa.String(32), nullable=False),
        sa.Column("input_tokens", sa.BigInteger(), nullable=True),
        sa.Column("output_tokens", sa.BigInteger(), nullable=True),
        sa.Column("total_tokens", sa.BigInteger(), nullable=True),
        sa.Column("cache_read_tokens", sa.BigInteger(), nullable=True),
        sa.Column("cache_write_tokens", sa.BigInteger(), nullable=True),
        sa.Column("reasoning_tokens", sa.BigInteger(), nullable=True),
        sa.Column("audio_input_tokens", sa.BigInteger(), nullable=True),
        sa.Column("audio_output_tokens", sa.BigInteger(), nullable=True),
        sa.Column("cost_nano_usd", sa.BigInteger(), nullable=True),
        sa.Column("cost_source", sa.String(32), nullable=False),
        sa.Column("latency_ms", sa.Double(), nullable=False),
        sa.Column("ttft_ms", sa.Double(), nullable=True),
        sa.Column("upstream_headers_ms", sa.Double(), nullable=True),
        sa.Column("request_size", sa.BigInteger(), nullable=False),
        sa.Column("response_size", sa.BigInteger(), nullable=False),
        sa.Column("request_body_key", sa.Text(), nullable=True),
        sa.Column("response_body_key", sa.Text(), nullable=True),
        sa.Column("request_omitted", sa.Boolean(), nullable=False),
        sa.Column("response_omitted", sa.Boolean(), nullable=False),
        sa.Column("request_headers", _json, nullable=False),
        sa.Column("response_headers", _json, nullable=False),
        sa.Column("trace_id", sa.String(64), nullable=True),
        sa.Column("span_id", sa.String(64), nullable=True),
        sa.Column("parent_span_id", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("org_id", "request_id", name="pk_requests"),
        sa.CheckConstraint(
            "input_tokens >= 0 AND output_tokens >= 0 AND total_tokens >= 0"
            " AND cache_read_tokens >= 0 AND cache_write_tokens >= 0 AND reasoning_tokens >= 0"
            " AND audio_input_tokens >= 0 AND audio_output_tokens >= 0",
            name="ck_requests_tokens_not_negative",
        ),
        sa.CheckConstraint(
            "request_size >= 0 AND response_size >= 0 AND latency_ms >= 0",
            name="ck_requests_sizes_not_negative",
        ),
    )
    op.create_index("ix_requests_org_created", "requests", ["org_id", "created_unix_ms"])
    op.create_index(
        "ix_requests_org_model_created", "requests", ["org_id", "model", "created_unix_ms"]
    )
    op.create_index(
        "ix_requests_org_user_created", "requests", ["org_id", "user_id", "created_unix_ms"]
    )
    op.create_index(
        "ix_requests_org_session", "requests", ["org_id", "session_id", "created_unix_ms"]
    )


def downgrade() -> None:
    op.drop_table("requests")
    op.drop_index("ix_api_keys_org_id", table_name="api_keys")
    op.drop_table("api_keys")
    op.drop_table("organizations")
