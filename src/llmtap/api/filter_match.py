"""A filter tree evaluated on one ``RequestRow`` in Python, with the same meaning as the SQL.

Used for the leaves the database cannot answer (text in bodies): the SQL query returns
candidates, this decides. ``tests/unit/test_api_filters.py`` checks it agrees with ``filter_sql``
on generated rows and filters.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from llmtap.stores.filter import Branch, Filter, Leaf
from llmtap.stores.row import RequestRow

BodyText = Callable[[RequestRow], str]
"""The text of a row's stored bodies (request and response), fetched only when needed."""
ScoresOf = Callable[[RequestRow], dict[str, float]]
"""A row's scores by name (``stores/records/scores.py``)."""


def _no_scores(_row: RequestRow) -> dict[str, float]:
    return {}


_ATTR_OF_FIELD = {"created": "created_unix_ms", "cost_usd": "cost_nano_usd"}


def matches(
    node: Filter, row: RequestRow, body_text: BodyText, scores_of: ScoresOf = _no_scores
) -> bool:
    if isinstance(node, Branch):
        if node.op == "and":
            return all(matches(item, row, body_text, scores_of) for item in node.items)
        return any(matches(item, row, body_text, scores_of) for item in node.items)
    if node.kind == "text":
        found = node.value in body_text(row)
        return found if node.op == "contains" else not found
    score_name = node.score_name
    if score_name is not None:
        compared = Leaf(node.field, node.op, node.score_value, "float")
        return _leaf(compared, scores_of(row).get(score_name))
    return _leaf(node, _value_of(node, row))


def _value_of(leaf: Leaf, row: RequestRow) -> object:
    name = leaf.property_name
    if name is not None:
        return row.properties.get(name)
    return getattr(row, _ATTR_OF_FIELD.get(leaf.field, leaf.field))


def _leaf(leaf: Leaf, actual: Any) -> bool:
    op, value = leaf.op, leaf.value
    if op == "exists":
        return (actual is not None) is value
    if actual is None:
        return False
    if op == "contains":
        return bool(value in actual)
    if op == "not_contains":
        return bool(value not in actual)
    if op == "in":
        return actual in value
    if isinstance(value, Decimal):
        actual = Decimal(actual)
    if op == "eq":
        return bool(actual == value)
    if op == "ne":
        return bool(actual != value)
    if op == "gt":
        return bool(actual > value)
    if op == "gte":
        return bool(actual >= value)
    if op == "lt":
        return bool(actual < value)
    if op == "lte":
        return bool(actual <= value)
    raise ValueError(f"unknown operator {op!r}")
