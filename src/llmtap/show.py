"""``llmtap requests`` and ``llmtap request ID``: a look at what was logged, from a terminal.

These read the records store directly (its reader, as the API does) as the local administrator
(every organization); the query API is the tenant-filtered way in.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from decimal import Decimal

import msgspec

from llmtap.settings import Settings
from llmtap.stores.row import RequestRow

COLUMNS = (
    "time",
    "id",
    "model",
    "status",
    "in",
    "out",
    "cost",
    "latency",
    "ttft",
    "user",
    "properties",
)


def _when(row: RequestRow) -> str:
    moment = datetime.fromtimestamp(row.created_unix_ms / 1000.0, tz=UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def _num(value: int | None) -> str:
    return "?" if value is None else str(value)


def usd_text(nano: int | None) -> str:
    """Dollars to the micro-dollar, at least to the cent: ``$0.000123``, ``$12.50``."""
    if nano is None:
        return "unpriced"
    text = f"{Decimal(nano) / 1_000_000_000:.6f}".rstrip("0")
    whole, _, cents = text.partition(".")
    return f"${whole}.{cents.ljust(2, '0')}"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}ms"


def table_row(row: RequestRow) -> tuple[str, ...]:
    props = ",".join(f"{k}={v}" for k, v in sorted(row.properties.items()))
    return (
        _when(row),
        row.request_id[:8],
        row.model or row.response_model or "-",
        str(row.status) + (f" {row.error}" if row.error else ""),
        _num(row.input_tokens),
        _num(row.output_tokens),
        usd_text(row.cost_nano_usd),
        _ms(row.latency_ms),
        _ms(row.ttft_ms),
        row.user_id or "-",
        props or "-",
    )


def render_table(rows: list[RequestRow]) -> str:
    cells = [COLUMNS, *(table_row(r) for r in rows)]
    widths = [max(len(line[i]) for line in cells) for i in range(len(COLUMNS))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) for line in cells
    )


def print_requests(settings: Settings, limit: int, as_json: bool) -> int:
    from llmtap.stores.factory import open_records_store

    store = open_records_store(settings.records_url)
    try:
        rows = store.reader.latest(None, limit)
    finally:
        store.close()
    if as_json:
        sys.stdout.write(msgspec.json.encode(rows).decode() + "\n")
    elif rows:
        print(render_table(rows))
    else:
        print("no calls logged yet")
    return 0


def _body_text(data: bytes) -> object:
    try:
        return json.loads(data)
    except ValueError:
        return data.decode("utf-8", "replace")


def print_request(settings: Settings, request_id: str, as_json: bool) -> int:
    from llmtap.stores.factory import open_body_store, open_records_store

    store = open_records_store(settings.records_url)
    try:
        row = store.reader.get(None, request_id)
    finally:
        store.close()
    if row is None:
        print(f"no logged call with id {request_id}", file=sys.stderr)
        return 1
    bodies = open_body_store(settings.bodies_url)
    shown: dict[str, object] = {}
    try:
        for kind, key, omitted in (
            ("request_body", row.request_body_key, row.request_omitted),
            ("response_body", row.response_body_key, row.response_omitted),
        ):
            if omitted:
                shown[kind] = "<omitted by the caller>"
            elif key is None:
                shown[kind] = None
            else:
                try:
                    shown[kind] = _body_text(bodies.get(key))
                except KeyError:
                    shown[kind] = "<missing from the body store>"
    finally:
        bodies.close()
    if row.attempt_log is not None:
        shown["attempt_log"] = _body_text(row.attempt_log.encode())  # stored as JSON text
    document = {**msgspec.to_builtins(row), **shown}
    if as_json:
        print(json.dumps(document))
    else:
        print(json.dumps(document, indent=2))
    return 0
