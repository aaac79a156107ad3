"""What an organization configured to receive its calls: webhooks and its PostHog project.

A webhook is an outbox target (``outbox_targets``: URL, signing secret, failure state) plus its
rules (``webhooks``: sample rate, property filters). Every query names the organization, so a
hand-edited id of another organization's webhook finds nothing (invariant 6).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from llmtap.stores.records.engine import translated
from llmtap.stores.records.outbox import Target
from llmtap.stores.records.outbox_cursor import start_cursor
from llmtap.stores.records.schema import outbox, outbox_targets, posthog_settings, webhooks

WEBHOOK = "webhook"
POSTHOG = "posthog"


@dataclass(frozen=True, slots=True)
class WebhookRule:
    """What the consumer needs to decide whether a call goes to a webhook."""

    id: str
    sample_rate: float
    property_filters: dict[str, str]


@dataclass(frozen=True, slots=True)
class Webhook:
    rule: WebhookRule
    target: Target


@dataclass(frozen=True, slots=True)
class PostHogProject:
    host: str
    api_key: str


def new_webhook_id() -> str:
    return "wh_" + secrets.token_hex(12)


def new_signing_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


def _rule(row: Any) -> WebhookRule:
    return WebhookRule(
        id=row["id"],
        sample_rate=float(row["sample_rate"]),
        property_filters=dict(row["property_filters"] or {}),
    )


class IntegrationTable:
    """The queries of ``webhooks`` and ``posthog_settings``, on an engine its owner opened."""

    def __init__(self, engine: sa.Engine, writer: sa.Engine | None = None) -> None:
        self._engine = engine
        self._writer = writer or engine
        """Transactions that write (SQLite: the write lock taken at BEGIN)."""

    # -- webhooks ------------------------------------------------------------------------------

    def create_webhook(
        self, org_id: str, url: str, sample_rate: float, property_filters: dict[str, str]
    ) -> tuple[str, str]:
        """``(webhook id, signing secret)``: the secret is shown to the user once."""
        webhook_id, secret = new_webhook_id(), new_signing_secret()
        with translated("create webhook"), self._writer.begin() as conn:
            # it is sent the calls stored from now on (the delivery worker tails them)
            cursor = start_cursor(conn, org_id)
            conn.execute(
                outbox_targets.insert().values(
                    id=webhook_id,
                    org_id=org_id,
                    kind=WEBHOOK,
                    url=url,
                    secret=secret,
                    created=datetime.now(UTC),
                    paused=False,
                    consecutive_failures=0,
                    failing_since_ms=None,
                    retry_at_ms=0,
                    last_error=None,
                    last_success_ms=None,
                    cursor_tx=cursor.tx,
                    cursor_request_id=cursor.request_id,
                )
            )
            conn.execute(
                webhooks.insert().values(
                    id=webhook_id,
                    org_id=org_id,
                    sample_rate=sample_rate,
                    property_filters=property_filters,
                )
            )
        return webhook_id, secret

    def count_webhooks(self, org_id: str) -> int:
        query = sa.select(sa.func.count()).where(webhooks.c.org_id == org_id)
        with translated("count webhooks"), self._engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def webhooks(self, org_id: str) -> list[Webhook]:
        """The organization's webhooks with their endpoint's state, oldest first."""
        query = (
            sa.select(webhooks.c.sample_rate, webhooks.c.property_filters, outbox_targets)
            .join(outbox_targets, outbox_targets.c.id == webhooks.c.id)
            .where(webhooks.c.org_id == org_id, outbox_targets.c.org_id == org_id)
            .order_by(outbox_targets.c.created, outbox_targets.c.id)
        )
        with translated("list webhooks"), self._engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        return [
            Webhook(
                rule=_rule(row),
                target=Target(**{name: row[name] for name in Target.__dataclass_fields__}),
            )
            for row in rows
        ]

    def webhook_rules(self, org_id: str) -> list[WebhookRule]:
        """The consumer's view: which webhooks the organization has and what each wants."""
        query = sa.select(webhooks).where(webhooks.c.org_id == org_id).order_by(webhooks.c.id)
        with translated("read webhook rules"), self._engine.connect() as conn:
            return [_rule(row) for row in conn.execute(query).mappings()]

    def delete_webhook(self, org_id: str, webhook_id: str) -> bool:
        """Delete the organization's webhook, its endpoint and its deliveries (sent or not)."""
        with translated("delete webhook"), self._writer.begin() as conn:
            found = conn.execute(
                sa.select(webhooks.c.id).where(
                    webhooks.c.org_id == org_id, webhooks.c.id == webhook_id
                )
            ).first()
            if found is None:
                return False
            # explicit, not left to ON DELETE CASCADE: SQLite enforces it only per connection
            conn.execute(sa.delete(outbox).where(outbox.c.target_id == webhook_id))
            conn.execute(sa.delete(webhooks).where(webhooks.c.id == webhook_id))
            conn.execute(
                sa.delete(outbox_targets).where(
                    outbox_targets.c.org_id == org_id, outbox_targets.c.id == webhook_id
                )
            )
        return True

    # -- PostHog -------------------------------------------------------------------------------

    def set_posthog(self, org_id: str, host: str, api_key: str) -> None:
        with translated("set PostHog project"), self._writer.begin() as conn:
            conn.execute(sa.delete(posthog_settings).where(posthog_settings.c.org_id == org_id))
            conn.execute(
                posthog_settings.insert().values(
                    org_id=org_id, host=host, api_key=api_key, updated=datetime.now(UTC)
                )
            )

    def posthog(self, org_id: str) -> PostHogProject | None:
        query = sa.select(posthog_settings.c.host, posthog_settings.c.api_key).where(
            posthog_settings.c.org_id == org_id
        )
        with translated("read PostHog project"), self._engine.connect() as conn:
            row = conn.execute(query).first()
        return None if row is None else PostHogProject(host=row[0], api_key=row[1])

    def delete_posthog(self, org_id: str) -> bool:
        with translated("delete PostHog project"), self._writer.begin() as conn:
            result = conn.execute(
                sa.delete(posthog_settings).where(posthog_settings.c.org_id == org_id)
            )
        return bool(result.rowcount)
