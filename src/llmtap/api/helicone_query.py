"""Helicone-compatible ``POST /v1/request/query``: their filter shape in, their row shape out.

Helicone's filter is ``"all"``, a leaf ``{<table>: {<field>: {<operator>: value}}}`` or a branch
``{"left": ..., "operator": "and"|"or", "right": ...}``; tables are ``request``, ``response``,
``request_response_rmt`` and ``properties`` (custom properties also sit under
``request_response_rmt.properties``, scores under ``request_response_rmt.scores``, feedback as
``{"feedback": {"rating": {"equals": true}}}``). It is translated into llmtap's filter tree
(``api/filters.py``), so it runs through the same tenant-scoped search as ``/v1/requests``.
Fields and operators llmtap does not have are refused with a 400 naming them, never ignored.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from llmtap.api.context import Ctx, Org
from llmtap.api.filters import MAX_NODES, check_size, parse_filter
from llmtap.api.rows import iso_time, nano_to_usd
from llmtap.api.schemas import ERROR_RESPONSES
from llmtap.api.search import SearchQuery
from llmtap.stores.filter import Branch, Filter, FilterError
from llmtap.stores.records.reader import SortField
from llmtap.stores.row import RequestRow
from llmtap.stores.scores import Score

router = APIRouter(tags=["helicone"], responses=ERROR_RESPONSES)

_OPERATORS = {
    "equals": "eq",
    "not-equals": "ne",
    "contains": "contains",
    "not-contains": "not_contains",
    "gt": "gt",
    "gte": "gte",
    "lt": "lt",
    "lte": "lte",
}

_COMMON = {
    "request_id": "request_id",
    "id": "request_id",
    "model": "model",
    "user_id": "user_id",
    "provider": "provider",
    "status": "status",
    "path": "path",
}
_FIELDS: dict[str, dict[str, str]] = {
    "request": {
        **_COMMON,
        "created_at": "created",
        "request_created_at": "created",
        "prompt": "body",
        "body": "body",
        "request_body": "body",
        "session_id": "session_id",
    },
    "response": {
        "status": "status",
        "model": "response_model",
        "created_at": "created",
        "body": "body",
        "completion": "body",
        "body_completion": "body",
        "response_body": "body",
        "delay_ms": "latency_ms",
    },
    "request_response_rmt": {
        **_COMMON,
        "request_created_at": "created",
        "response_created_at": "created",
        "created_at": "created",
        "latency": "latency_ms",
        "delay_ms": "latency_ms",
        "time_to_first_token": "ttft_ms",
        "cost": "cost_usd",
        "cost_usd": "cost_usd",
        "prompt_tokens": "input_tokens",
        "completion_tokens": "output_tokens",
        "total_tokens": "total_tokens",
        "prompt_cache_read_tokens": "cache_read_tokens",
        "prompt_cache_write_tokens": "cache_write_tokens",
        "session_id": "session_id",
        "request_body": "body",
        "response_body": "body",
        "target_url": "path",
        "prompt_id": "prompt_id",
        "prompt_version": "prompt_version",
    },
    "feedback": {"rating": "feedback"},
}

_SORTS: dict[str, SortField] = {
    "created_at": "created",
    "request_created_at": "created",
    "latency": "latency",
    "delay_ms": "latency",
    "cost": "cost",
    "cost_usd": "cost",
    "total_tokens": "tokens",
}


class HeliconeQuery(BaseModel):
    filter: Any = Field("all", description='"all", a leaf or {left, operator, right}')
    limit: int = Field(100, ge=1, le=1000)
    offset: int = Field(0, ge=0, le=100_000)
    sort: dict[str, str] | None = Field(None, examples=[{"created_at": "desc"}])
    isCached: bool | None = None
    isPartOfExperiment: bool | None = None
    isScored: bool | None = None


def translate(node: Any, where: str = "filter", _seen: list[int] | None = None) -> Filter | None:
    """llmtap's filter tree for a Helicone filter node (``None`` for ``"all"``)."""
    seen = [0] if _seen is None else _seen
    seen[0] += 1
    if seen[0] > MAX_NODES:
        raise FilterError(f"{where}: the filter has more than {MAX_NODES} nodes")
    if node == "all" or node is None or node == {}:
        return None
    if not isinstance(node, dict):
        raise FilterError(f'{where}: expected "all" or an object, got {type(node).__name__}')
    if "operator" in node or "left" in node or "right" in node:
        operator = node.get("operator")
        if operator not in ("and", "or"):
            raise FilterError(f"{where}.operator: expected 'and' or 'or', got {operator!r}")
        if "left" not in node or "right" not in node:
            raise FilterError(f"{where}: a branch needs both 'left' and 'right'")
        parts = [
            p
            for p in (
                translate(node["left"], f"{where}.left", seen),
                translate(node["right"], f"{where}.right", seen),
            )
            if p is not None
        ]
        if not parts:
            return None
        if len(parts) == 1:
            # "all" on one side: and -> the other side; or -> everything
            return parts[0] if operator == "and" else None
        return Branch("and" if operator == "and" else "or", tuple(parts))
    if len(node) != 1:
        raise FilterError(f"{where}: a leaf names exactly one table, got {sorted(node)}")
    [(table, fields)] = node.items()
    return _leaf(table, fields, f"{where}.{table}")


def _leaf(table: str, fields: Any, where: str) -> Filter:
    if not isinstance(fields, dict) or len(fields) != 1:
        raise FilterError(
            f'{where}: expected exactly one field, like {{"model": {{"equals": ...}}}}'
        )
    [(field, condition)] = fields.items()
    if table == "properties" or (field == "properties" and table == "request_response_rmt"):
        return _property(table, field, condition, where)
    if field == "scores" and table == "request_response_rmt":
        if not isinstance(condition, dict) or len(condition) != 1:
            raise FilterError(f'{where}.scores: expected {{"<name>": {{"gte": ...}}}}')
        [(name, inner)] = condition.items()
        return _condition(f"score.{name}", inner, f"{where}.scores.{name}")
    known = _FIELDS.get(table)
    if known is None:
        raise FilterError(
            f"{where}: unknown table {table!r}; llmtap knows {', '.join([*_FIELDS, 'properties'])}"
        )
    if field not in known:
        raise FilterError(f"{where}.{field}: not a field llmtap can filter on in {table!r}")
    return _condition(known[field], condition, f"{where}.{field}")


def _property(table: str, field: str, condition: Any, where: str) -> Filter:
    if table == "properties":
        return _condition(f"properties.{field}", condition, f"{where}.{field}")
    if not isinstance(condition, dict) or len(condition) != 1:
        raise FilterError(f'{where}.properties: expected {{"<name>": {{"equals": ...}}}}')
    [(name, inner)] = condition.items()
    return _condition(f"properties.{name}", inner, f"{where}.properties.{name}")


def _condition(field: str, condition: Any, where: str) -> Filter:
    if not isinstance(condition, dict) or len(condition) != 1:
        raise FilterError(f'{where}: expected one operator, like {{"equals": value}}')
    [(operator, value)] = condition.items()
    if operator in ("like", "ilike") and isinstance(value, str):
        inner = value.strip("%")
        if operator == "like" and value == f"%{inner}%" and "%" not in inner and "_" not in inner:
            operator, value = "contains", inner
    op = _OPERATORS.get(operator)
    if op is None:
        raise FilterError(
            f"{where}: operator {operator!r} is not supported; use one of {', '.join(_OPERATORS)}"
        )
    if field == "created" and op == "eq":
        raise FilterError(f"{where}: compare times with gt/gte/lt/lte")
    return parse_filter({"field": field, "op": op, "value": value}, where)


def helicone_row(row: RequestRow, scores: list[Score] | None = None) -> dict[str, Any]:
    created = iso_time(row.created_unix_ms)
    return {
        "request_id": row.request_id,
        "request_created_at": created,
        "request_path": row.path,
        "request_user_id": row.user_id,
        "request_properties": dict(row.properties),
        "request_model": row.model,
        "request_body": None,
        "response_id": row.request_id,
        "response_created_at": iso_time(row.created_unix_ms + row.latency_ms),
        "response_status": row.status,
        "response_model": row.response_model,
        "response_body": None,
        "delay_ms": row.latency_ms,
        "time_to_first_token": row.ttft_ms,
        "total_tokens": row.total_tokens,
        "prompt_tokens": row.input_tokens,
        "completion_tokens": row.output_tokens,
        "prompt_cache_read_tokens": row.cache_read_tokens,
        "prompt_cache_write_tokens": row.cache_write_tokens,
        "provider": row.provider,
        "model": row.response_model or row.model,
        "cost": nano_to_usd(row.cost_nano_usd),
        "cost_usd": nano_to_usd(row.cost_nano_usd),
        "properties": dict(row.properties),
        "target_url": row.target_url,
        "session_id": row.session_id,
        "error": row.error,
        "prompt_id": row.prompt_id,
        "prompt_version": row.prompt_version,
        # Helicone's numbers: a boolean score is 1 or 0 here
        "scores": {score.name: score.value for score in scores or ()},
    }


def _sort(sort: dict[str, str] | None) -> tuple[SortField, bool]:
    if not sort:
        return "created", True
    if len(sort) != 1:
        raise FilterError('sort: name one field, like {"created_at": "desc"}')
    [(field, direction)] = sort.items()
    if field not in _SORTS:
        raise FilterError(f"sort: cannot sort by {field!r}; use one of {', '.join(_SORTS)}")
    if direction not in ("asc", "desc"):
        raise FilterError(f"sort.{field}: expected 'asc' or 'desc'")
    return _SORTS[field], direction == "desc"


@router.post("/v1/request/query", summary="Helicone-compatible request query")
def helicone_request_query(body: HeliconeQuery, org: Org, ctx: Ctx) -> JSONResponse:
    try:
        tree = translate(body.filter)
        check_size(tree, ctx.limits)
        sort, descending = _sort(body.sort)
        query = SearchQuery(
            org_id=org,
            filter=tree,
            sort=sort,
            descending=descending,
            limit=body.limit,
            offset=body.offset,
        )
        with ctx.gate.slot():
            page = ctx.search.search(query)
            known = ctx.search.scores_of(org, page.rows)
    except FilterError as exc:
        return JSONResponse({"data": None, "error": str(exc)}, status_code=400)
    rows = [helicone_row(r, known.get(r.request_id)) for r in page.rows]
    return JSONResponse({"data": rows, "error": None})
