"""The logged columns of a call, declared once.

Every column of ``RequestRow`` is one ``Field`` here: its logical type, whether it may be
missing, whether the analytics table keeps it, and what the API may do with it. From this list
``stores/records/schema.py`` builds the records table's columns, ``stores/analytics/ddl.py``
the analytics table and the columns it is sent, and ``api/filters.py`` the fields a filter may
name. ``RequestRow`` itself stays a hand-written ``msgspec.Struct`` (mypy reads it); a test holds
the two, the migrated databases and the API together (tests/unit/test_logged_fields.py).

Adding a field: an entry here, the attribute on ``RequestRow``, an Alembic revision for the
records store (hand-written, frozen) and, when the analytics table keeps it, a step in
``stores/analytics/migrate.py``. docs/decisions/2026-12-01-one-field-declaration.md walks
through one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["text", "int32", "int64", "nano_usd", "float", "time_ms", "bool", "map"]
"""``nano_usd``: an integer number of 1e-9 USD; ``time_ms``: unix milliseconds (a float);
``map``: string keys to string values."""

INT_RANGES: dict[Kind, tuple[int, int]] = {
    "int32": (-(2**31), 2**31 - 1),
    "int64": (-(2**63), 2**63 - 1),
    "nano_usd": (-(2**63), 2**63 - 1),
}
"""What an integer column can hold on every store (ClickHouse wraps a wider value silently)."""


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    """The ``RequestRow`` attribute and the records column."""
    kind: Kind
    nullable: bool = False
    length: int | None = None
    """Records store: ``VARCHAR(length)`` for text (``None``: unbounded ``TEXT``)."""
    analytics: str | None = None
    """The analytics table's column for it (``None``: not kept there)."""
    low_cardinality: bool = False
    """Analytics: few distinct values (``LowCardinality``)."""
    filter: str | None = None
    """The name API filters use for it (``None``: not filterable). A filterable field is in
    both stores: searches run on the records store, filtered metrics on the analytics one."""
    group: str | None = None
    """The metrics ``group_by`` value that groups by it (``None``: not groupable)."""


def _same(
    name: str,
    kind: Kind,
    *,
    nullable: bool = False,
    length: int | None = None,
    low_cardinality: bool = False,
    group: str | None = None,
) -> Field:
    """A field kept under its own name in the analytics table and filterable by it."""
    return Field(
        name,
        kind,
        nullable=nullable,
        length=length,
        analytics=name,
        low_cardinality=low_cardinality,
        filter=name,
        group=group,
    )


FIELDS: tuple[Field, ...] = (
    Field("org_id", "text", length=64, analytics="org_id"),
    _same("request_id", "text", length=128),
    Field("created_unix_ms", "time_ms", analytics="created", filter="created"),
    _same("source", "text", length=32, low_cardinality=True),
    _same("provider", "text", length=200, low_cardinality=True, group="provider"),
    _same("method", "text", length=16, low_cardinality=True),
    Field("target_url", "text"),
    _same("path", "text"),
    _same("status", "int32", group="status"),
    _same("error", "text", nullable=True),
    _same("streamed", "bool"),
    _same("model", "text", nullable=True, length=200, low_cardinality=True, group="model"),
    _same("response_model", "text", nullable=True, length=200, low_cardinality=True),
    _same("endpoint", "text", nullable=True, length=64, low_cardinality=True, group="endpoint"),
    _same("finish_reason", "text", nullable=True, length=64, low_cardinality=True),
    _same("user_id", "text", nullable=True, length=256, group="user"),
    _same("session_id", "text", nullable=True, length=256, group="session"),
    _same("session_path", "text", nullable=True),
    _same("session_name", "text", nullable=True),
    Field("properties", "map", analytics="properties"),
    _same("usage_source", "text", length=32, low_cardinality=True),
    _same("input_tokens", "int64", nullable=True),
    _same("output_tokens", "int64", nullable=True),
    _same("total_tokens", "int64", nullable=True),
    _same("cache_read_tokens", "int64", nullable=True),
    _same("cache_write_tokens", "int64", nullable=True),
    _same("reasoning_tokens", "int64", nullable=True),
    Field("audio_input_tokens", "int64", nullable=True, analytics="audio_input_tokens"),
    Field("audio_output_tokens", "int64", nullable=True, analytics="audio_output_tokens"),
    Field("cost_nano_usd", "nano_usd", nullable=True, analytics="cost_nano_usd", filter="cost_usd"),
    _same("cost_source", "text", length=32, low_cardinality=True),
    _same("latency_ms", "float"),
    _same("ttft_ms", "float", nullable=True),
    Field("upstream_headers_ms", "float", nullable=True, analytics="upstream_headers_ms"),
    _same("request_size", "int64"),
    _same("response_size", "int64"),
    Field("request_body_key", "text", nullable=True),
    Field("response_body_key", "text", nullable=True),
    Field("request_omitted", "bool"),
    Field("response_omitted", "bool"),
    Field("request_headers", "map"),
    Field("response_headers", "map"),
    Field("trace_id", "text", nullable=True, length=64, analytics="trace_id"),
    Field("span_id", "text", nullable=True, length=64),
    Field("parent_span_id", "text", nullable=True, length=64),
    Field("record_digest", "text", nullable=True, length=64),
    _same("attempts", "int32", nullable=True, group="attempts"),
    Field("attempt_log", "text", nullable=True),
    _same("fallback_index", "int32", nullable=True, group="fallback_index"),
    _same("cache_hit", "bool", group="cache_hit"),
    Field("cache_saved_nano_usd", "nano_usd", nullable=True, analytics="cache_saved_nano_usd"),
    _same("prompt_id", "text", nullable=True, length=256, low_cardinality=True, group="prompt"),
    _same(
        "prompt_version",
        "text",
        nullable=True,
        length=128,
        low_cardinality=True,
        group="prompt_version",
    ),
)
"""In the records table's column order (new fields go last: that is where a migration adds
them)."""

BY_NAME: dict[str, Field] = {field.name: field for field in FIELDS}
