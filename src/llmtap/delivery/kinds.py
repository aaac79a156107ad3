"""What one send to a target of each kind looks like: the URL, the bytes and the headers.

A kind says how many deliveries one request carries: a webhook one (signed, with its
idempotency key), PostHog up to ``posthog_batch_size`` events in one ``/batch/`` request.
Alerts are sent as webhooks (``WebhookKind`` for targets of kind ``alert``): signed the same way.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from llmtap import __version__
from llmtap.delivery.guard import TargetRefused, parse_endpoint
from llmtap.delivery.signing import signature_headers
from llmtap.stores.records.outbox import Claimed, Target

USER_AGENT = f"llmtap-outbox/{__version__}"
DEFAULT_POSTHOG_HOST = "https://us.i.posthog.com"


def posthog_base_url(host: str) -> str | None:
    """``eu.i.posthog.com`` or ``https://eu.i.posthog.com/`` -> ``https://eu.i.posthog.com``;
    None when it is not a usable base URL."""
    text = host.strip().rstrip("/")
    if "://" not in text:
        text = "https://" + text
    try:
        endpoint = parse_endpoint(text)
    except TargetRefused:
        return None
    return None if "?" in endpoint.path else text


@dataclass(frozen=True, slots=True)
class Outgoing:
    url: str
    body: bytes
    headers: dict[str, str]


class Kind(Protocol):
    batch_size: int

    def outgoing(self, target: Target, claimed: Sequence[Claimed], now_s: int) -> Outgoing: ...


class WebhookKind:
    """One delivery per request, signed with the webhook's secret; ``Idempotency-Key`` is the
    delivery's dedup key (the request id for a call), ``Llmtap-Delivery-Id`` its outbox id."""

    batch_size = 1

    def outgoing(self, target: Target, claimed: Sequence[Claimed], now_s: int) -> Outgoing:
        (delivery,) = claimed
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "Idempotency-Key": delivery.dedup_key,
            "Llmtap-Delivery-Id": delivery.id,
            **signature_headers(target.secret, delivery.body, now_s),
        }
        return Outgoing(target.url, delivery.body, headers)


class PostHogKind:
    """PostHog's batch capture: ``POST <host>/batch/ {"api_key": ..., "batch": [event, ...]}``;
    each stored body is one event, with its own ``uuid`` so PostHog can drop a re-sent one."""

    def __init__(self, batch_size: int) -> None:
        self.batch_size = batch_size

    def outgoing(self, target: Target, claimed: Sequence[Claimed], now_s: int) -> Outgoing:
        body = (
            b'{"api_key":'
            + json.dumps(target.secret).encode()
            + b',"batch":['
            + b",".join(c.body for c in claimed)
            + b"]}"
        )
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
        return Outgoing(target.url.rstrip("/") + "/batch/", body, headers)
