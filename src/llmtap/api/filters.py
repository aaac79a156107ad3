"""Filters as the query API accepts them (JSON), parsed and checked into the tree of
``stores/filter.py`` before any store sees it.

A filter is a leaf or an ``and``/``or`` of filters::

    {"and": [
        {"field": "model", "op": "eq", "value": "gpt-4o"},
        {"or": [{"field": "properties.env", "op": "eq", "value": "prod"},
                {"field": "latency_ms", "op": "gt", "value": 2000}]},
        {"field": "body", "op": "contains", "value": "refund"}
    ]}

There is no ``not``: without it the tree is monotone, so a leaf the database cannot evaluate (text
in bodies) can be relaxed to "true" in SQL and checked afterwards on the candidates (see
``api/search.py``). A missing value (``NULL``) matches no comparison, as in SQL; ``exists`` asks
for presence. Anything malformed raises ``FilterError`` naming where, which the API answers 400.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from llmtap.stores.fields import FIELDS as LOGGED_FIELDS
from llmtap.stores.fields import INT_RANGES, Kind
from llmtap.stores.filter import (
    FEEDBACK_FIELD,
    PROPERTY_PREFIX,
    SCORE_PREFIX,
    Branch,
    FieldKind,
    Filter,
    FilterError,
    Leaf,
)
from llmtap.stores.scores import ScoreError, check_name

_KIND_OF: dict[Kind, FieldKind] = {
    "text": "str",
    "int32": "int",
    "int64": "int",
    "nano_usd": "cost",
    "float": "float",
    "time_ms": "time",
    "bool": "bool",
}

FIELDS: dict[str, FieldKind] = {
    **{f.filter: _KIND_OF[f.kind] for f in LOGGED_FIELDS if f.filter is not None},
    "body": "text",
    FEEDBACK_FIELD: "bool",
}
"""Every filterable field (the logged fields declared filterable in ``stores/fields.py``, text
in bodies, and ``feedback``); ``properties.<name>`` (a string) and ``score.<name>`` (a number)
are accepted besides these."""

_FEEDBACK_OPS = frozenset({"eq", "ne", "exists"})

_OPS_BY_KIND: dict[FieldKind, frozenset[str]] = {
    "str": frozenset({"eq", "ne", "in", "contains", "not_contains", "exists"}),
    "int": frozenset({"eq", "ne", "in", "gt", "gte", "lt", "lte", "exists"}),
    "float": frozenset({"eq", "ne", "gt", "gte", "lt", "lte", "exists"}),
    "cost": frozenset({"eq", "ne", "gt", "gte", "lt", "lte", "exists"}),
    "time": frozenset({"eq", "gt", "gte", "lt", "lte"}),
    "bool": frozenset({"eq", "ne"}),
    "text": frozenset({"contains", "not_contains"}),
}

OPS_BY_KIND = _OPS_BY_KIND
"""The operators each kind of field takes (the dashboard's filter builder offers these)."""

MAX_NODES = 200
"""A bound on the tree's size while parsing; ``FilterLimits`` is the tighter one a query runs with."""

INT64 = INT_RANGES["int64"]
_INT_RANGES: dict[str, tuple[int, int]] = {
    f.filter: INT_RANGES[f.kind] for f in LOGGED_FIELDS if f.filter and f.kind in INT_RANGES
}
"""What each integer field's columns can hold (``stores/fields.py``)."""
TIME_MIN_MS = -62_135_596_800_000.0
TIME_MAX_MS = 253_402_300_799_999.0
"""0001-01-01 to 9999-12-31: the times a date can name (and an ISO string can spell)."""


@dataclass(frozen=True, slots=True)
class FilterLimits:
    """How big a filter may be when it runs (settings ``api_filter_max_*``): every leaf and every
    value is parsed and planned by the engine, so an unbounded tree is unbounded CPU."""

    max_values: int = 1000
    max_leaves: int = 100
    max_depth: int = 12


def check_size(node: Filter | None, limits: FilterLimits) -> None:
    """``FilterError`` naming the limit when ``node`` is over one of ``limits``."""
    if node is None:
        return
    leaves, values, depth = _size(node)
    if values > limits.max_values:
        raise FilterError(
            f"filter: {values} values in all; at most {limits.max_values} (api_filter_max_values)"
        )
    if leaves > limits.max_leaves:
        raise FilterError(
            f"filter: {leaves} comparisons; at most {limits.max_leaves} (api_filter_max_leaves)"
        )
    if depth > limits.max_depth:
        raise FilterError(
            f"filter: nested {depth} deep; at most {limits.max_depth} (api_filter_max_depth)"
        )


def _size(node: Filter) -> tuple[int, int, int]:
    """(leaves, values, depth) of ``node``."""
    if isinstance(node, Leaf):
        return 1, len(node.value) if isinstance(node.value, tuple) else 1, 1
    leaves = values = depth = 0
    for item in node.items:
        item_leaves, item_values, item_depth = _size(item)
        leaves += item_leaves
        values += item_values
        depth = max(depth, item_depth)
    return leaves, values, depth + 1


def check_text(raw: str, where: str) -> str:
    """``raw``, unless it holds a NUL: Postgres cannot store one, and SQLite cuts JSON paths at
    it, so no store could answer the same for it."""
    if "\x00" in raw:
        raise FilterError(f"{where}: NUL characters are not accepted")
    return raw


def check_property_name(name: str, where: str) -> str:
    if not name:
        raise FilterError(f"{where}: needs a property name")
    if "\x00" in name:
        raise FilterError(f"{where}: a property name cannot hold a NUL character")
    return name


def parse_filter(data: Any, where: str = "filter") -> Filter:
    """The tree for a decoded JSON filter; ``FilterError`` naming the first problem found."""
    counter = [0]
    return _parse(data, where, counter)


def _parse(data: Any, where: str, counter: list[int]) -> Filter:
    counter[0] += 1
    if counter[0] > MAX_NODES:
        raise FilterError(f"{where}: the filter has more than {MAX_NODES} nodes")
    if not isinstance(data, dict):
        raise FilterError(f"{where}: expected an object, got {type(data).__name__}")
    branch_keys = [k for k in ("and", "or") if k in data]
    if branch_keys:
        if len(data) != 1:
            raise FilterError(
                f"{where}: an 'and'/'or' node takes no other keys, got {sorted(data)}"
            )
        op: Literal["and", "or"] = "and" if branch_keys[0] == "and" else "or"
        items = data[op]
        if not isinstance(items, list) or not items:
            raise FilterError(f"{where}.{op}: expected a non-empty list of filters")
        return Branch(
            op, tuple(_parse(x, f"{where}.{op}[{i}]", counter) for i, x in enumerate(items))
        )
    return _parse_leaf(data, where)


def _parse_leaf(data: dict[str, Any], where: str) -> Leaf:
    unknown = set(data) - {"field", "op", "value"}
    if unknown:
        raise FilterError(
            f"{where}: unknown key(s) {sorted(unknown)}; a leaf is {{field, op, value}}"
            " and a branch is {and: [...]} or {or: [...]}"
        )
    field = data.get("field")
    if not isinstance(field, str):
        raise FilterError(f"{where}.field: expected a field name")
    if field.startswith(PROPERTY_PREFIX):
        check_property_name(field[len(PROPERTY_PREFIX) :], f"{where}.field")
        kind: FieldKind = "str"
    elif field.startswith(SCORE_PREFIX):
        try:
            check_name(field[len(SCORE_PREFIX) :], f"{where}.field")
        except ScoreError as exc:
            raise FilterError(str(exc)) from None
        kind = "float"
    elif field in FIELDS:
        kind = FIELDS[field]
    else:
        raise FilterError(
            f"{where}.field: unknown field {field!r}; known: {', '.join(sorted(FIELDS))},"
            " properties.<name>, score.<name>"
        )
    op = data.get("op", "eq")
    ops = _FEEDBACK_OPS if field == FEEDBACK_FIELD else _OPS_BY_KIND[kind]
    if op not in ops:
        raise FilterError(
            f"{where}.op: {op!r} does not apply to {field!r}; use one of {', '.join(sorted(ops))}"
        )
    if "value" not in data:
        raise FilterError(f"{where}.value: missing")
    value = _value(data["value"], field, kind, op, f"{where}.value")
    if field.startswith(PROPERTY_PREFIX):
        # the proxy stores property names lower-cased (Helicone-Property-Env -> "env")
        field = PROPERTY_PREFIX + field[len(PROPERTY_PREFIX) :].lower()
    return Leaf(field, op, value, kind)


def _value(raw: Any, field: str, kind: FieldKind, op: str, where: str) -> Any:
    if op == "exists":
        if not isinstance(raw, bool):
            raise FilterError(f"{where}: 'exists' takes true or false")
        return raw
    if op == "in":
        if not isinstance(raw, list) or not raw or len(raw) > 1000:
            raise FilterError(f"{where}: 'in' takes a list of 1 to 1000 values")
        return tuple(_scalar(x, field, kind, f"{where}[{i}]") for i, x in enumerate(raw))
    return _scalar(raw, field, kind, where)


def _scalar(raw: Any, field: str, kind: FieldKind, where: str) -> Any:
    if kind in ("str", "text"):
        if not isinstance(raw, str):
            raise FilterError(f"{where}: expected a string")
        if kind == "text" and not raw:
            raise FilterError(f"{where}: the text to look for is empty")
        return check_text(raw, where)
    if kind == "bool":
        if not isinstance(raw, bool):
            raise FilterError(f"{where}: expected true or false")
        return raw
    if kind == "time":
        return parse_time(raw, f"{where} ({field})")
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise FilterError(f"{where}: expected a number")
    if kind == "int":
        return _whole(raw, field, where)
    if kind == "cost":
        return usd_to_nano(raw, where)
    return _finite(raw, field, where)


def _finite(raw: int | float, field: str, where: str) -> float:
    # float(int) overflows past ~1.8e308; math.isfinite(int) does too
    try:
        number = float(raw)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise FilterError(f"{where}: {field} must be a finite number")
    return number


def _whole(raw: int | float, field: str, where: str) -> int:
    if isinstance(raw, float):
        if not math.isfinite(raw) or not raw.is_integer():
            raise FilterError(f"{where}: {field}: expected a whole number")
        raw = int(raw)
    low, high = _INT_RANGES[field]
    if not low <= raw <= high:
        raise FilterError(f"{where}: {field} must be between {low} and {high}")
    return raw


def usd_to_nano(raw: int | float | str, where: str, field: str = "cost_usd") -> Decimal:
    """US dollars as given (a JSON number) to nano-dollars, exactly (may be fractional), within
    what the Int64 nano-dollar column can hold."""
    try:
        nano = Decimal(str(raw)) * 1_000_000_000
    except InvalidOperation as exc:
        raise FilterError(f"{where}: {raw!r} is not an amount in USD") from exc
    low, high = INT64
    if not nano.is_finite() or not low <= nano <= high:
        raise FilterError(
            f"{where}: {field} must be between {Decimal(low) / 10**9} and"
            f" {Decimal(high) / 10**9} USD"
        )
    return nano


def query_time(value: str | None) -> float | str | None:
    """A time from a query parameter as ``parse_time`` takes it: a number is unix milliseconds,
    anything else is kept as text (an ISO-8601 time, or an error ``parse_time`` names)."""
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return value


def parse_time(raw: Any, where: str) -> float:
    """Unix milliseconds from a number (unix ms) or an ISO-8601 string with a time zone, within
    years 1 to 9999."""
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        try:
            moment_ms = float(raw)
        except OverflowError:
            moment_ms = math.inf
        if not TIME_MIN_MS <= moment_ms <= TIME_MAX_MS:
            raise FilterError(
                f"{where}: {raw!r} is out of range; unix milliseconds between"
                f" {TIME_MIN_MS:.0f} (year 1) and {TIME_MAX_MS:.0f} (year 9999)"
            )
        return moment_ms
    if isinstance(raw, str):
        try:
            moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError as exc:
            raise FilterError(f"{where}: {raw!r} is not an ISO-8601 time") from exc
        if moment.tzinfo is None:
            raise FilterError(f"{where}: {raw!r} needs a time zone (e.g. 'Z')")
        try:
            moment_ms = moment.timestamp() * 1000.0
        except (OverflowError, ValueError) as exc:  # 0001-01-01T00:00+01:00 is before year 1
            raise FilterError(f"{where}: {raw!r} is out of range") from exc
        return min(max(moment_ms, TIME_MIN_MS), TIME_MAX_MS)
    raise FilterError(f"{where}: expected unix milliseconds or an ISO-8601 time")


def all_of(*filters: Filter | None) -> Filter | None:
    """``and`` of the given filters, skipping ``None``; ``None`` when there is nothing."""
    present = [f for f in filters if f is not None]
    if not present:
        return None
    if len(present) == 1:
        return present[0]
    return Branch("and", tuple(present))
