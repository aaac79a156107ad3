"""A filter tree as a ClickHouse condition on the analytics table, with the records store's
meaning (``stores/records/filter_sql.py``): a missing value matches no comparison, ``contains`` is
case-sensitive, costs compare exactly in nano-dollars.

Values are always ``{name:Type}`` parameters bound by the engine; column names come from the
fixed field list, property names are parameters too. Properties are a ``Map``, where a missing
key reads as ``''``: presence is asked with ``mapContains``, never inferred from the value.
"""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

from llmtap.stores.analytics.ddl import SCORES_TABLE
from llmtap.stores.filter import Branch, Filter, FilterError, Leaf

_COLUMN_OF_FIELD = {"created": "toUnixTimestamp64Milli(created)", "cost_usd": "cost_nano_usd"}
_TYPE_OF_KIND = {
    "str": "String",
    "int": "Int64",
    "float": "Float64",
    "time": "Float64",
    "cost": "Int64",
    "bool": "UInt8",
}
_COMPARE = {"eq": "=", "ne": "!=", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}


class _Params:
    def __init__(self, params: dict[str, Any]) -> None:
        self.params = params

    def bind(self, value: Any, ch_type: str) -> str:
        name = f"f{len(self.params)}"
        while name in self.params:
            name += "_"
        self.params[name] = int(value) if ch_type == "UInt8" else value
        return f"{{{name}:{ch_type}}}"


def to_clickhouse(node: Filter, params: dict[str, Any]) -> str:
    """The condition for ``node``; its values are added to ``params``."""
    return _node(node, _Params(params))


def _node(node: Filter, params: _Params) -> str:
    if isinstance(node, Branch):
        joiner = " AND " if node.op == "and" else " OR "
        return "(" + joiner.join(_node(item, params) for item in node.items) + ")"
    if node.kind == "text":
        raise FilterError(f"{node.field!r}: text in bodies cannot filter metrics")
    score_name = node.score_name
    if score_name is not None:
        return _score(node, score_name, params)
    name = node.property_name
    if name is not None:
        return _property(node, params.bind(name, "String"), params)
    return _leaf(node, _COLUMN_OF_FIELD.get(node.field, node.field), params)


def _score(leaf: Leaf, score_name: str, params: _Params) -> str:
    # (org_id, request_id) of the calls having the score: the outer query's organization
    # condition still applies, and no other organization's score can match a call
    scored = (
        f"SELECT org_id, request_id FROM {SCORES_TABLE} FINAL"
        f" WHERE name = {params.bind(score_name, 'String')}"
    )
    if leaf.op == "exists":
        return f"((org_id, request_id) {'' if leaf.value else 'NOT '}IN ({scored}))"
    compared = Leaf(leaf.field, leaf.op, leaf.score_value, "float")
    return f"((org_id, request_id) IN ({scored} AND {_compare(compared, 'value', params)}))"


def _property(leaf: Leaf, name: str, params: _Params) -> str:
    present = f"mapContains(properties, {name})"
    if leaf.op == "exists":
        return present if leaf.value else f"NOT {present}"
    return f"({present} AND {_compare(leaf, f'properties[{name}]', params)})"


def _leaf(leaf: Leaf, column: str, params: _Params) -> str:
    if leaf.op == "exists":
        return f"({column} IS NOT NULL)" if leaf.value else f"({column} IS NULL)"
    return f"({column} IS NOT NULL AND {_compare(leaf, f'assumeNotNull({column})', params)})"


def _compare(leaf: Leaf, column: str, params: _Params) -> str:
    op, value = leaf.op, leaf.value
    ch_type = _TYPE_OF_KIND[leaf.kind]
    if op == "contains":
        return f"position({column}, {params.bind(value, ch_type)}) > 0"
    if op == "not_contains":
        return f"position({column}, {params.bind(value, ch_type)}) = 0"
    if op == "in":
        return "(" + " OR ".join(f"{column} = {params.bind(v, ch_type)}" for v in value) + ")"
    if isinstance(value, Decimal):
        return _cost(column, op, value, params)
    if op not in _COMPARE:
        raise FilterError(f"operator {op!r} is not supported for metrics")
    return f"{column} {_COMPARE[op]} {params.bind(value, ch_type)}"


def _cost(column: str, op: str, nano: Decimal, params: _Params) -> str:
    floor, ceil = math.floor(nano), math.ceil(nano)
    whole = floor == ceil
    if op == "eq":
        return f"{column} = {params.bind(floor, 'Int64')}" if whole else "0"
    if op == "ne":
        return f"{column} != {params.bind(floor, 'Int64')}" if whole else "1"
    bound = {"gt": floor, "gte": ceil, "lt": ceil, "lte": floor}[op]
    return f"{column} {_COMPARE[op]} {params.bind(bound, 'Int64')}"
