"""The bytes sent for a call: a webhook payload (made by the delivery worker as it tails the
stored calls, ``webhook_feed``) and a PostHog event (made by the consumer's export handler).

The webhook payload is Helicone's (``request_id``, ``request_body``, ``response_body``,
``request_response_url``, ``model``, ``provider``, ``user_id``, ``metadata`` with cost, tokens and
latency) with llmtap's own fields under ``llmtap``. A body over ``webhook_body_max_bytes`` is
replaced by a notice naming where to fetch it. Both are made from the row as stored (after the
records store settled its request id), so the payload and the stored call always agree.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import msgspec

from llmtap.stores.records.outbox import Delivery
from llmtap.stores.row import RequestRow

POSTHOG_EVENT = "llmtap_request"
ANONYMOUS = "llmtap-anonymous"

_encode = msgspec.json.Encoder().encode


@dataclass(frozen=True, slots=True)
class Links:
    base_url: str
    """The API as users reach it (``settings.public_url``), without a trailing slash."""

    def request_api(self, request_id: str) -> str:
        return f"{self.base_url}/v1/requests/{quote(request_id, safe='')}?bodies=true"

    def request_page(self, request_id: str) -> str:
        return f"{self.base_url}/requests/{quote(request_id, safe='')}"


@dataclass(frozen=True, slots=True)
class BodyText:
    text: str
    truncated: bool


def body_text(data: bytes | None, limit: int, what: str, link: str) -> BodyText:
    if data is None:
        return BodyText("", False)
    if len(data) > limit:
        notice = (
            f"[llmtap: the {what} body ({len(data)} bytes) is over the {limit}-byte webhook "
            f"limit; fetch it from {link}]"
        )
        return BodyText(notice, True)
    return BodyText(data.decode("utf-8", "replace"), False)


def _iso(unix_ms: float) -> str:
    return datetime.fromtimestamp(unix_ms / 1000, UTC).isoformat().replace("+00:00", "Z")


def _usd(row: RequestRow) -> float | None:
    return None if row.cost_nano_usd is None else row.cost_nano_usd / 1e9


def webhook_body(request: BodyText, response: BodyText, links: Links, row: RequestRow) -> bytes:
    """The payload (the same for every webhook of the organization that wants the call)."""
    payload: dict[str, Any] = {
        "request_id": row.request_id,
        "user_id": row.user_id,
        "request_body": request.text,
        "response_body": response.text,
        "request_response_url": links.request_api(row.request_id),
        "model": row.model or row.response_model,
        "provider": row.provider,
        "metadata": {
            "cost": _usd(row),
            "promptTokens": row.input_tokens,
            "completionTokens": row.output_tokens,
            "totalTokens": row.total_tokens,
            "latencyMs": row.latency_ms,
        },
        "llmtap": {
            "event": "request.logged",
            "org_id": row.org_id,
            "created_at": _iso(row.created_unix_ms),
            "status": row.status,
            "error": row.error,
            "method": row.method,
            "path": row.path,
            "endpoint": row.endpoint,
            "response_model": row.response_model,
            "finish_reason": row.finish_reason,
            "streamed": row.streamed,
            "ttft_ms": row.ttft_ms,
            "cost_nano_usd": row.cost_nano_usd,
            "cost_source": row.cost_source,
            "session_id": row.session_id,
            "properties": row.properties,
            "request_body_truncated": request.truncated,
            "response_body_truncated": response.truncated,
            "url": links.request_page(row.request_id),
        },
    }
    return _encode(payload)


def posthog_delivery(target_id: str, links: Links, row: RequestRow) -> Delivery:
    properties: dict[str, Any] = dict(row.properties)
    properties.update(
        {
            "request_id": row.request_id,
            "model": row.model or row.response_model,
            "response_model": row.response_model,
            "provider": row.provider,
            "path": row.path,
            "endpoint": row.endpoint,
            "status": row.status,
            "error": row.error,
            "streamed": row.streamed,
            "input_tokens": row.input_tokens,
            "output_tokens": row.output_tokens,
            "total_tokens": row.total_tokens,
            "cost_usd": _usd(row),
            "latency_ms": row.latency_ms,
            "ttft_ms": row.ttft_ms,
            "session_id": row.session_id,
            "request_size": row.request_size,
            "response_size": row.response_size,
            "llmtap_url": links.request_page(row.request_id),
        }
    )
    if row.user_id is None:
        # one shared id for calls without a user: no person profile for it
        properties["$process_person_profile"] = False
    event = {
        "event": POSTHOG_EVENT,
        "distinct_id": row.user_id or ANONYMOUS,
        "timestamp": _iso(row.created_unix_ms),
        # the same call always gets the same uuid: PostHog drops a re-sent copy
        "uuid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"llmtap:{row.org_id}:{row.request_id}")),
        "properties": properties,
    }
    return Delivery(
        target_id=target_id,
        org_id=row.org_id,
        dedup_key=row.request_id,
        body=_encode(event),
        request_id=row.request_id,
    )
