"""The records schema, one definition for SQLite and Postgres.

This is what the code reads and writes; the database is shaped by the Alembic migrations in
``stores/migrations`` (tests check the two agree). ``requests`` has one column per logged field
(``stores/fields.py``), named like the ``RequestRow`` attribute. Its key is ``(org_id, request_id)``: request ids can
be chosen by callers (``Helicone-Request-Id``), so one organization must never be able to
overwrite another's row by reusing an id.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.types import TypeDecorator, TypeEngine

from llmtap.stores.fields import FIELDS, Field

metadata = sa.MetaData()

TX = "tx"
"""``requests``' column of the storing transaction (see the table)."""

# JSONB on Postgres (indexable, compact), JSON text on SQLite
JsonDict = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on both dialects (SQLite keeps no zone: we put it back)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _sql_type(field: Field) -> TypeEngine[Any]:
    if field.kind == "text":
        return sa.String(field.length) if field.length else sa.Text()
    if field.kind == "int32":
        return sa.Integer()
    if field.kind in ("int64", "nano_usd"):
        return sa.BigInteger()
    if field.kind in ("float", "time_ms"):
        return sa.Double()
    if field.kind == "bool":
        return sa.Boolean()
    return JsonDict


organizations = sa.Table(
    "organizations",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("created", UtcDateTime(), nullable=False),
)

api_keys = sa.Table(
    "api_keys",
    metadata,
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
    sa.Column("created", UtcDateTime(), nullable=False),
    sa.Column("revoked_at", UtcDateTime(), nullable=True),
    # a rate-limit policy the proxy applies to every call made with the key (``llmtap keys
    # create --rate-limit``); checked when the key is created
    sa.Column("rate_limit", sa.String(256), nullable=True),
    sa.UniqueConstraint("key_hash", name="uq_api_keys_key_hash"),
    sa.Index("ix_api_keys_org_id", "org_id"),
)

requests = sa.Table(
    "requests",
    metadata,
    *(sa.Column(field.name, _sql_type(field), nullable=field.nullable) for field in FIELDS),
    # The transaction that first stored the row (not a logged field: never updated, never read
    # back into a ``RequestRow``). Postgres: the writer's transaction id, a column default;
    # SQLite: the row's rowid-to-be, its place in the single writer's order (``upsert``). The
    # delivery worker tails the calls in (tx, request_id) order from each webhook's cursor
    # (revision 0012, docs/decisions/2026-12-01-outbox-cursor.md).
    sa.Column(TX, sa.BigInteger(), nullable=True),
    sa.PrimaryKeyConstraint("org_id", "request_id", name="pk_requests"),
    # A negative count or size is a bug upstream; refusing the row makes it visible (poison)
    # instead of letting it skew every sum.
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
    sa.Index("ix_requests_org_created", "org_id", "created_unix_ms"),
    sa.Index("ix_requests_org_model_created", "org_id", "model", "created_unix_ms"),
    sa.Index("ix_requests_org_user_created", "org_id", "user_id", "created_unix_ms"),
    sa.Index("ix_requests_org_session", "org_id", "session_id", "created_unix_ms"),
    sa.Index("ix_requests_org_tx", "org_id", TX, "request_id"),
    # the reader's sort keys and their keyset (revision 0005; see ``reader._SORT_KEYS``)
    sa.Index(
        "ix_requests_org_cost", "org_id", sa.text("coalesce(cost_nano_usd, -1)"), "request_id"
    ),
    sa.Index(
        "ix_requests_org_latency", "org_id", sa.text("coalesce(latency_ms, -1)"), "request_id"
    ),
    sa.Index(
        "ix_requests_org_tokens", "org_id", sa.text("coalesce(total_tokens, -1)"), "request_id"
    ),
)

scores = sa.Table(
    "scores",
    metadata,
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
    sa.Index("ix_scores_pending", "pending", "org_id"),
    sa.Index("ix_scores_synced", "synced"),
)
"""Scores and feedback (``stores/records/scores.py``), keyed like the call they are about but
with no foreign key: a score may arrive before its call is logged (``pending``) and is joined on
read. ``synced``: the analytics store has this value (the consumer's ``ScoreSync`` sends it)."""

dashboard_sessions = sa.Table(
    "dashboard_sessions",
    metadata,
    sa.Column("token_hash", sa.String(64), nullable=False),
    sa.Column("key_hash", sa.String(64), nullable=False),
    sa.Column(
        "org_id",
        sa.String(64),
        sa.ForeignKey("organizations.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("csrf_token", sa.String(64), nullable=False),
    sa.Column("created", UtcDateTime(), nullable=False),
    sa.Column("expires", UtcDateTime(), nullable=False),
    sa.Column("last_seen", UtcDateTime(), nullable=False),
    sa.PrimaryKeyConstraint("token_hash", name="pk_dashboard_sessions"),
    sa.Index("ix_dashboard_sessions_expires", "expires"),
)
"""Signed-in dashboard browsers (``stores/records/sessions.py``)."""

# -- the outbox: signed deliveries to endpoints outside llmtap (stores/records/outbox.py) -------

outbox_targets = sa.Table(
    "outbox_targets",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column(
        "org_id",
        sa.String(64),
        sa.ForeignKey("organizations.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("url", sa.Text(), nullable=False),
    sa.Column("secret", sa.Text(), nullable=False),
    sa.Column("created", UtcDateTime(), nullable=False),
    sa.Column("paused", sa.Boolean(), nullable=False),
    sa.Column("consecutive_failures", sa.Integer(), nullable=False),
    sa.Column("failing_since_ms", sa.BigInteger(), nullable=True),
    sa.Column("retry_at_ms", sa.BigInteger(), nullable=False),
    sa.Column("last_error", sa.Text(), nullable=True),
    sa.Column("last_success_ms", sa.BigInteger(), nullable=True),
    # a webhook's place in the calls it is sent (``requests.tx``, ``request_id``): None for
    # endpoints fed by enqueued deliveries only (PostHog, alerts)
    sa.Column("cursor_tx", sa.BigInteger(), nullable=True),
    sa.Column("cursor_request_id", sa.String(128), nullable=True),
    sa.Index("ix_outbox_targets_org", "org_id"),
)
"""Where deliveries go: a webhook endpoint (secret = its signing secret) or a PostHog project
(secret = its project API key); the endpoint's failure streak, backoff and pause."""

outbox = sa.Table(
    "outbox",
    metadata,
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
    # the due lookup and the claim: one index seek per endpoint, in the order claimed
    sa.Index("ix_outbox_due", "target_id", "status", "next_attempt_ms"),
    sa.Index("ix_outbox_target_created", "target_id", "created_ms"),
    sa.Index("ix_outbox_done", "done_ms"),
)
"""One delivery: the exact bytes to send, its state and its history (attempts, last error)."""

webhooks = sa.Table(
    "webhooks",
    metadata,
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
    sa.Column("sample_rate", sa.Double(), nullable=False),
    sa.Column("property_filters", JsonDict, nullable=False),
    sa.Index("ix_webhooks_org", "org_id"),
)
"""Which calls an organization's webhook wants; its endpoint is the ``outbox_targets`` row of the
same id."""

posthog_settings = sa.Table(
    "posthog_settings",
    metadata,
    sa.Column(
        "org_id",
        sa.String(64),
        sa.ForeignKey("organizations.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("host", sa.Text(), nullable=False),
    sa.Column("api_key", sa.Text(), nullable=False),
    sa.Column("updated", UtcDateTime(), nullable=False),
)
"""An organization's PostHog project, for calls that name none (``Helicone-Posthog-Key``)."""

# -- alerts: rules evaluated over the metrics, their episodes (stores/records/alerts.py) --------

alert_rules = sa.Table(
    "alert_rules",
    metadata,
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
    sa.Column("filter", JsonDict, nullable=True),
    sa.Column("group_by", sa.String(300), nullable=True),
    sa.Column("created", UtcDateTime(), nullable=False),
    sa.Column("next_eval_ms", sa.BigInteger(), nullable=False),
    sa.Column("last_eval_ms", sa.BigInteger(), nullable=True),
    sa.Column("last_error", sa.Text(), nullable=True),
    sa.Index("ix_alert_rules_org", "org_id"),
    sa.Index("ix_alert_rules_due", "next_eval_ms"),
)
"""An organization's alert rule; where it is delivered is the ``outbox_targets`` row of the same
id (kind ``alert``: URL and signing secret). ``next_eval_ms`` is the evaluators' claim."""

alert_episodes = sa.Table(
    "alert_episodes",
    metadata,
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
    # at most one open episode per rule and group, whatever evaluators race: the state itself
    sa.Index(
        "uq_alert_episodes_open",
        "rule_id",
        "group_key",
        unique=True,
        postgresql_where=sa.text("resolved_ms IS NULL"),
        sqlite_where=sa.text("resolved_ms IS NULL"),
    ),
    sa.Index("ix_alert_episodes_rule_fired", "rule_id", "fired_ms"),
)
"""One episode of a rule (per group): open (firing) until ``resolved_ms`` is set."""
