"""A filter tree as a SQLAlchemy condition on the records store's ``requests`` table.

Values are always bound parameters. Text in bodies is not in the database: with
``relax_text=True`` those leaves become "true" (the tree has no ``not``, so the result is a
superset) and the caller checks them on the candidates; otherwise they are refused.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal

import sqlalchemy as sa

from llmtap.stores.filter import Branch, Filter, FilterError, Leaf
from llmtap.stores.records.schema import requests, scores

_COLUMN_OF_FIELD = {"created": "created_unix_ms", "cost_usd": "cost_nano_usd"}

# SQLite puts the name inside a JSON path ('$."name"') with no way to escape a quote or a
# backslash, and compares it with the key as written in the JSON text (escapes and all): only
# names made of these characters are found that way for sure.
_PLAIN_PATH_NAME = re.compile(r"[A-Za-z0-9_\-.:/@ #$%&'()*+,;<=>?!^`{|}~\[\]]+")


def column_for(leaf: Leaf, dialect: str = "sqlite") -> sa.ColumnElement[object]:
    name = leaf.property_name
    if name is not None:
        return property_value(name, dialect)
    return requests.c[_COLUMN_OF_FIELD.get(leaf.field, leaf.field)]


def property_value(name: str, dialect: str) -> sa.ColumnElement[object]:
    """The property's value, NULL when missing; ``name`` is always a bound parameter."""
    if dialect == "sqlite" and not _PLAIN_PATH_NAME.fullmatch(name):
        # json_each decodes the keys, so any name compares exactly, as a bound value
        each = sa.func.json_each(requests.c.properties).table_valued("key", "value")
        found: sa.ColumnElement[object] = (
            sa.select(each.c.value).where(each.c.key == name).limit(1).scalar_subquery()
        )
        return found
    # JSON_EXTRACT on SQLite, ->> on Postgres; a missing property is NULL on both
    expr: sa.ColumnElement[object] = requests.c.properties[name].as_string()
    return expr


def to_sql(node: Filter, dialect: str, *, relax_text: bool = False) -> sa.ColumnElement[bool]:
    if isinstance(node, Branch):
        parts = [to_sql(item, dialect, relax_text=relax_text) for item in node.items]
        return sa.and_(*parts) if node.op == "and" else sa.or_(*parts)
    if node.kind == "text":
        if relax_text:
            return sa.true()
        raise FilterError(f"text search ({node.field!r}) is not available on this store")
    return _leaf(node, dialect)


def _contains(
    column: sa.ColumnElement[object], needle: str, dialect: str
) -> sa.ColumnElement[bool]:
    # Case-sensitive on both dialects (SQLite's LIKE folds ASCII case, Postgres' does not).
    position = sa.func.strpos if dialect == "postgresql" else sa.func.instr
    return position(column, needle) > 0


def _score(leaf: Leaf, name: str) -> sa.ColumnElement[bool]:
    """EXISTS over the call's score ``name``: a missing score matches no comparison."""
    found = sa.exists().where(
        scores.c.org_id == requests.c.org_id,
        scores.c.request_id == requests.c.request_id,
        scores.c.name == name,
    )
    if leaf.op == "exists":
        return found if leaf.value else sa.not_(found)
    value_column: sa.ColumnElement[object] = scores.c.value
    return found.where(_compare(value_column, leaf.op, leaf.score_value))


def _leaf(leaf: Leaf, dialect: str) -> sa.ColumnElement[bool]:
    score_name = leaf.score_name
    if score_name is not None:
        return _score(leaf, score_name)
    column = column_for(leaf, dialect)
    op, value = leaf.op, leaf.value
    if op == "exists":
        return column.is_not(None) if value else column.is_(None)
    if op == "contains":
        return _contains(column, value, dialect)
    if op == "not_contains":
        return sa.and_(column.is_not(None), sa.not_(_contains(column, value, dialect)))
    if op == "in":
        return column.in_(list(value))
    if isinstance(value, Decimal):
        return _cost(column, op, value)
    return _compare(column, op, value)


def _compare(column: sa.ColumnElement[object], op: str, value: object) -> sa.ColumnElement[bool]:
    if op == "eq":
        return column == value
    if op == "ne":
        # NULL != x is NULL in SQL: a missing value matches no comparison (see filters.py)
        return sa.and_(column.is_not(None), column != value)
    if op == "gt":
        return column > value
    if op == "gte":
        return column >= value
    if op == "lt":
        return column < value
    if op == "lte":
        return column <= value
    raise FilterError(f"operator {op!r} is not supported here")


def _cost(column: sa.ColumnElement[object], op: str, nano: Decimal) -> sa.ColumnElement[bool]:
    """Compare integer nano-dollars with a possibly fractional bound, exactly."""
    floor, ceil = math.floor(nano), math.ceil(nano)
    whole = floor == ceil
    if op == "eq":
        return column == floor if whole else sa.false()
    if op == "ne":
        return sa.and_(column.is_not(None), column != floor) if whole else column.is_not(None)
    if op == "gt":
        return column > floor
    if op == "gte":
        return column >= ceil
    if op == "lt":
        return column < ceil
    if op == "lte":
        return column <= floor
    raise FilterError(f"operator {op!r} is not supported for cost_usd")
