"""How a logged call looks in the API's JSON: the row's fields, its time in ISO-8601, and its cost
in USD next to the exact integer nano-dollars. Bodies are read from the body store on request.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import msgspec

from llmtap.stores.bodies.port import BodyStore
from llmtap.stores.row import RequestRow

INLINE_BODY_MAX_BYTES = 4 * 1024 * 1024
"""Bodies up to this size are inlined in ``GET /v1/requests/{id}?bodies=true``; larger ones are
fetched whole from ``/v1/requests/{id}/bodies/{kind}``."""

JSON_VIEW_MAX_DEPTH = 100
"""A stored body nested deeper than this is shown as text: parsing and rendering it recurse
once per level (a 100,000-deep body stopped both with RecursionError: a 500); bodies real
calls carry nest a few dozen levels at most."""

_DETAIL_ONLY = ("request_headers", "response_headers", "attempt_log")


def iso_time(unix_ms: float) -> str:
    return datetime.fromtimestamp(unix_ms / 1000.0, tz=UTC).isoformat(timespec="milliseconds")


def nano_to_usd(nano: int | None) -> float | None:
    """The nearest float to the exact amount (Decimal division first, one rounding)."""
    return None if nano is None else float(Decimal(nano) / 1_000_000_000)


def row_summary(row: RequestRow) -> dict[str, Any]:
    data: dict[str, Any] = msgspec.to_builtins(row)
    for name in _DETAIL_ONLY:
        data.pop(name, None)
    data["created_at"] = iso_time(row.created_unix_ms)
    data["cost_usd"] = nano_to_usd(row.cost_nano_usd)
    return data


def row_detail(row: RequestRow) -> dict[str, Any]:
    data = row_summary(row)
    data["request_headers"] = dict(row.request_headers)
    data["response_headers"] = dict(row.response_headers)
    data["attempt_log"] = attempt_list(row.attempt_log)
    return data


def attempt_list(raw: str | None) -> list[dict[str, Any]] | None:
    """The stored attempts (a JSON array written by the consumer) as the API shows them."""
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, list) else None


def body_view(store: BodyStore, key: str | None, omitted: bool) -> dict[str, Any]:
    """``{"status": "stored", "json"|"text"|"base64": ...}`` (with a ``note`` when JSON is shown
    as text), or why there is no body."""
    if omitted:
        return {"status": "omitted", "reason": "the caller asked for it not to be stored"}
    if key is None:
        return {"status": "none", "reason": "the call had no body, or it was not captured"}
    try:
        stream = store.open_stream(key)
    except KeyError:
        return {"status": "missing", "reason": "not found in the body store"}
    try:
        data = stream.read(INLINE_BODY_MAX_BYTES + 1)
    finally:
        stream.close()
    if len(data) > INLINE_BODY_MAX_BYTES:
        return {
            "status": "too_large",
            "reason": f"over {INLINE_BODY_MAX_BYTES} bytes: fetch it from the bodies endpoint",
        }
    view: dict[str, Any] = {"status": "stored", "size": len(data)}
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        view["base64"] = base64.b64encode(data).decode()
        return view
    try:
        parsed = json.loads(text)
    except ValueError:
        view["text"] = text
        return view
    except RecursionError:
        parsed = None
        too_deep = True
    else:
        too_deep = _deeper_than(parsed, JSON_VIEW_MAX_DEPTH)
    if too_deep:
        view["text"] = text
        view["note"] = f"JSON nested deeper than {JSON_VIEW_MAX_DEPTH} levels: shown as text"
    else:
        view["json"] = parsed
    return view


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether containers nest more than ``limit`` deep (a loop, not recursion)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False
