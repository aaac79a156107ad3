"""Feeding a webhook from the stored calls: which calls it wants, their payloads, its cursor.

The consumer does nothing for webhooks (a webhook on a dead endpoint used to cost it a payload and
an outbox row per call and target, halving its throughput: docs/decisions/2026-12-01-outbox-
cursor.md). The delivery worker, before claiming a webhook's deliveries, tops its pending ones up
to the window it can send at once: it reads the calls after the webhook's cursor, keeps those its
filters and sample want, makes their payloads from the rows as stored (bodies from the body store),
and moves the cursor and adds the deliveries in one transaction. A webhook backing off or paused is
not fed, so its calls wait in the log and cost nothing until it is tried again.

The sample is decided by a hash of (webhook, request id): the same call always gets the same
choice.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping

from llmtap.delivery.payloads import BodyText, Links, body_text, webhook_body
from llmtap.errors import StoreError
from llmtap.stores.bodies.port import BodyStore
from llmtap.stores.records.outbox import Delivery
from llmtap.stores.records.outbox_tail import OutboxTail, Tailed
from llmtap.stores.row import RequestRow

log = logging.getLogger(__name__)

WINDOW_MIN = 64
"""Deliveries a webhook may have pending at least (more when it may send more at once) once its
endpoint has answered 2xx: what a healthy one is fed per read. One that has not yet, or is
failing, gets only what one attempt sends (``worker.feed_window``)."""
READ_MAX = 500
"""Calls read per feed at most: a webhook whose filters want few calls still moves through
the log at this pace per round, not one window per poll."""


def sampled(webhook_id: str, sample_rate: float, request_id: str) -> bool:
    if sample_rate >= 100:
        return True
    if sample_rate <= 0:
        return False
    digest = hashlib.sha256(f"{webhook_id}\n{request_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 * 100 < sample_rate


def matches(property_filters: Mapping[str, str], row: RequestRow) -> bool:
    """Every filter must match (property names compared without case, values exactly)."""
    if not property_filters:
        return True
    properties = {k.lower(): v for k, v in row.properties.items()}
    return all(properties.get(k.lower()) == v for k, v in property_filters.items())


class WebhookFeed:
    def __init__(self, tail: OutboxTail, bodies: BodyStore, links: Links, body_max: int) -> None:
        self._tail = tail
        self._bodies = bodies
        self._links = links
        self._body_max = body_max
        self.skipped = 0
        """Calls left out of a webhook's feed because their payload could not be made (a bug)."""

    def tailing(self, now_ms: int, limit: int) -> dict[str, Tailed]:
        return {t.target.id: t for t in self._tail.tailing(now_ms, limit)}

    def feed(self, webhook: Tailed, window: int, now_ms: int) -> int:
        """Top the webhook's pending deliveries up to ``window`` from its next calls, once half
        of them are done (one read per half window, not per send); how many were added (0 too
        when another worker fed it meanwhile)."""
        pending = self._tail.pending(webhook.target.id)
        if pending > window // 2:
            return 0
        room = window - pending
        target = webhook.target
        cursor = webhook.cursor
        deliveries: list[Delivery] = []
        # every call wanted: the window is all there is to read
        wants_all = not webhook.property_filters and webhook.sample_rate >= 100
        for row, taken in self._tail.read(target.org_id, cursor, room if wants_all else READ_MAX):
            cursor = taken
            if matches(webhook.property_filters, row) and sampled(
                target.id, webhook.sample_rate, row.request_id
            ):
                try:
                    body = webhook_body(
                        self._body(row, row.request_body_key, row.request_omitted, "request"),
                        self._body(row, row.response_body_key, row.response_omitted, "response"),
                        self._links,
                        row,
                    )
                except StoreError:
                    raise  # the body store is away: this call is fed again once it is back
                except Exception:
                    # a payload bug must not stop the webhook for good: this call is skipped
                    self.skipped += 1
                    log.exception("outbox: no payload for request %s", row.request_id)
                    continue
                deliveries.append(
                    Delivery(target.id, target.org_id, row.request_id, body, row.request_id)
                )
                if len(deliveries) >= room:
                    break
        if cursor == webhook.cursor:
            return 0
        if not self._tail.advance(target.id, webhook.cursor, cursor, deliveries, now_ms):
            return 0
        return len(deliveries)

    def _body(self, row: RequestRow, key: str | None, omitted: bool, what: str) -> BodyText:
        data = None
        if key is not None and not omitted:
            try:
                data = self._bodies.get(key)
            except KeyError:
                # gone (retention, deletion): the payload says where it would have been
                data = None
        return body_text(data, self._body_max, what, self._links.request_api(row.request_id))
