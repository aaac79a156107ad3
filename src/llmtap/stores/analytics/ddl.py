"""The analytics table, one definition for chDB and ClickHouse, generated from the logged fields
(``stores/fields.py``).

``ReplacingMergeTree(version)`` keyed by organization and request id keeps the newest copy of a
redelivered row once parts merge; queries never wait for that: they read with ``FINAL``
(docs/decisions/2026-11-25-analytics-dedup.md). ``created`` is in the sorting key for time-range
scans; it is part of every record and identical across redeliveries, so dedup still holds.

A table made by an older llmtap is brought up to this one by ``migrate.py``.
"""

from __future__ import annotations

from llmtap.stores.fields import FIELDS, INT_RANGES, Field

TABLE = "llmtap_requests"

_BASE_TYPES = {
    "text": "String",
    "int32": "Int32",
    "int64": "Int64",
    "nano_usd": "Int64",
    "float": "Float64",
    "time_ms": "DateTime64(3, 'UTC')",
    "bool": "Bool",
    "map": "Map(String, String)",
}


def column_type(field: Field) -> str:
    """The ClickHouse type of ``field``'s analytics column."""
    spelled = _BASE_TYPES[field.kind]
    if field.nullable:
        spelled = f"Nullable({spelled})"
    if field.low_cardinality:
        spelled = f"LowCardinality({spelled})"
    return spelled


KEPT = tuple(field for field in FIELDS if field.analytics is not None)
"""The logged fields the analytics table keeps."""


def _column_types() -> dict[str, str]:
    types: dict[str, str] = {}
    for field in KEPT:
        assert field.analytics is not None
        types[field.analytics] = column_type(field)
        if field.kind == "time_ms":
            # each copy of a row is stamped when written; the newest wins (ReplacingMergeTree)
            types["version"] = "UInt64"
    return types


COLUMN_TYPES = _column_types()
"""Every column of the table and its type, in table order."""

COLUMNS = tuple(field.name for field in KEPT if field.kind != "time_ms")
"""``RequestRow`` fields copied as they are (``created`` and ``version`` are computed)."""

INT_COLUMNS: tuple[tuple[str, int, int], ...] = tuple(
    (field.name, *INT_RANGES[field.kind]) for field in KEPT if field.kind in INT_RANGES
)
"""``(field, lowest, highest)`` of every integer column: what it can hold."""

GROUP_KEYS: dict[str, str] = {
    # numbers and booleans as ClickHouse spells them (``true``, not Python's ``True``)
    field.group: f"toString({field.analytics})"
    if field.kind in INT_RANGES or field.kind == "bool"
    else field.analytics
    for field in KEPT
    if field.group is not None and field.analytics is not None
}
"""Metrics ``group_by`` values and the expression each groups by (keys are read as text)."""

CREATE_REQUESTS = (
    f"CREATE TABLE IF NOT EXISTS {TABLE}\n(\n"
    + ",\n".join(f"    {name} {spelled}" for name, spelled in COLUMN_TYPES.items())
    + "\n)\nENGINE = ReplacingMergeTree(version)\n"
    "PARTITION BY toYYYYMM(created)\n"
    "ORDER BY (org_id, toStartOfHour(created), request_id)\n"
)

SCORES_TABLE = "llmtap_scores"

CREATE_SCORES = (
    f"CREATE TABLE IF NOT EXISTS {SCORES_TABLE}\n(\n"
    "    org_id String,\n"
    "    request_id String,\n"
    "    name String,\n"
    "    value Float64,\n"
    "    is_bool Bool,\n"
    "    version UInt64\n"
    ")\nENGINE = ReplacingMergeTree(version)\n"
    "ORDER BY (org_id, request_id, name)\n"
)
"""Scores and feedback (``stores/scores.py``), one row per (organization, request id, name):
the newest ``version`` (the time of the score's last write, in ms) wins. They are joined to
the calls at query time, so a score sent before its call arrives counts once the call does
(docs/decisions/2026-12-01-scores.md)."""
