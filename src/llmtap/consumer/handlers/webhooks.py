"""Webhooks, at the end of the chain: which of the organization's webhooks want this call.

Only decides and prepares (no network, no write): the deliveries are enqueued by the runner once
the sinks took the batch, and sent by the delivery worker. An organization without webhooks pays
one cached lookup. The sample is decided by a hash of (webhook, request id), so a redelivered
record makes the same choice.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from functools import partial

from llmtap.consumer.context import Context, PendingDelivery
from llmtap.consumer.handlers.export_payloads import Links, body_text, webhook_body
from llmtap.consumer.integrations import IntegrationDirectory
from llmtap.stores.records.integrations import WebhookRule
from llmtap.stores.records.outbox import Delivery
from llmtap.stores.row import RequestRow


def sampled(rule: WebhookRule, request_id: str) -> bool:
    if rule.sample_rate >= 100:
        return True
    if rule.sample_rate <= 0:
        return False
    digest = hashlib.sha256(f"{rule.id}\n{request_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 * 100 < rule.sample_rate


def matches(rule: WebhookRule, row: RequestRow) -> bool:
    """Every filter must match (property names compared without case, values exactly)."""
    if not rule.property_filters:
        return True
    properties = {k.lower(): v for k, v in row.properties.items()}
    return all(properties.get(k.lower()) == v for k, v in rule.property_filters.items())


class _Once:
    """The payload made once for all the webhooks that want the call."""

    def __init__(self, make: Callable[[RequestRow], bytes]) -> None:
        self._make = make
        self._made: tuple[str, bytes] | None = None

    def __call__(self, row: RequestRow) -> bytes:
        if self._made is None or self._made[0] != row.request_id:
            self._made = (row.request_id, self._make(row))
        return self._made[1]


def _delivery(webhook_id: str, body: _Once, row: RequestRow) -> Delivery:
    return Delivery(webhook_id, row.org_id, row.request_id, body(row), row.request_id)


class WebhookExport:
    name = "webhooks"

    def __init__(self, directory: IntegrationDirectory, links: Links, body_max: int) -> None:
        self._directory = directory
        self._links = links
        self._body_max = body_max

    def __call__(self, ctx: Context) -> None:
        rules = self._directory.webhooks(ctx.row.org_id)
        if not rules:
            return
        wanted = [r for r in rules if matches(r, ctx.row) and sampled(r, ctx.row.request_id)]
        if not wanted:
            return
        link = self._links.request_api(ctx.row.request_id)
        request = body_text(ctx.request_body, self._body_max, "request", link)
        response = body_text(ctx.response_body, self._body_max, "response", link)
        body = _Once(partial(webhook_body, request, response, self._links))
        for rule in wanted:
            ctx.deliveries.append(PendingDelivery(render=partial(_delivery, rule.id, body)))
