"""``/v1/requests``: search logged calls, list them, get one with its bodies.

Every route takes the caller's organization (``Org``) and passes it to the search, which puts it
in every query's WHERE before anything else.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import StreamingResponse

from llmtap.api.context import Ctx, Org
from llmtap.api.filters import all_of, check_size, parse_filter, parse_time, query_time
from llmtap.api.rows import body_view, row_detail, row_summary
from llmtap.api.schemas import ERROR_RESPONSES, RequestDetailOut, SearchBody, SearchPageOut
from llmtap.api.scores import scores_json
from llmtap.api.search import SearchPage, SearchQuery
from llmtap.stores.filter import Filter, FilterError, Leaf
from llmtap.stores.row import RequestRow
from llmtap.stores.scores import Score

router = APIRouter(prefix="/v1/requests", tags=["requests"], responses=ERROR_RESPONSES)

_STREAM_CHUNK = 64 * 1024


def time_range(start: float | str | None, end: float | str | None) -> Filter | None:
    leaves: list[Filter] = []
    if start is not None:
        leaves.append(Leaf("created", "gte", parse_time(start, "start"), "time"))
    if end is not None:
        leaves.append(Leaf("created", "lt", parse_time(end, "end"), "time"))
    return all_of(*leaves)


def with_scores(data: dict[str, Any], given: list[Score]) -> dict[str, Any]:
    data["scores"], data["feedback"] = scores_json(given)
    return data


def page_json(ctx: Ctx, org: str, page: SearchPage) -> dict[str, Any]:
    known = ctx.search.scores_of(org, page.rows)
    return {
        "data": [with_scores(row_summary(r), known.get(r.request_id, [])) for r in page.rows],
        "next_cursor": page.next_cursor,
        "scanned": page.scanned,
        "scan_truncated": page.truncated,
    }


@router.post("/search", response_model=SearchPageOut, summary="Search logged calls")
def search_requests(body: SearchBody, org: Org, ctx: Ctx) -> dict[str, Any]:
    tree = None if body.filter is None else parse_filter(body.filter)
    check_size(tree, ctx.limits)
    query = SearchQuery(
        org_id=org,
        filter=all_of(time_range(body.start, body.end), tree),
        sort=body.sort,
        descending=body.order == "desc",
        limit=body.limit,
        cursor=body.cursor,
    )
    with ctx.gate.slot():
        return page_json(ctx, org, ctx.search.search(query))


@router.get("", response_model=SearchPageOut, summary="List logged calls (simple filters)")
def list_requests(
    org: Org,
    ctx: Ctx,
    start: Annotated[str | None, Query(description="unix ms or ISO-8601, inclusive")] = None,
    end: Annotated[str | None, Query(description="unix ms or ISO-8601, exclusive")] = None,
    model: str | None = None,
    provider: str | None = None,
    status: int | None = None,
    user_id: str | None = None,
    session_id: str | None = None,
    property: Annotated[
        list[str] | None, Query(description="name:value, repeatable (all must match)")
    ] = None,
    sort: Literal["created", "latency", "cost", "tokens"] = "created",
    order: Literal["desc", "asc"] = "desc",
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    cursor: str | None = None,
) -> dict[str, Any]:
    leaves: list[Filter | None] = [time_range(query_time(start), query_time(end))]
    for field, value in (
        ("model", model),
        ("provider", provider),
        ("status", status),
        ("user_id", user_id),
        ("session_id", session_id),
    ):
        if value is not None:
            # parsed like a filter leaf, so a value the store cannot hold is a 400 naming it
            leaves.append(parse_filter({"field": field, "op": "eq", "value": value}, field))
    for item in property or []:
        name, sep, value = item.partition(":")
        if not sep:
            raise FilterError(f"property: expected name:value, got {item!r}")
        leaves.append(
            parse_filter({"field": f"properties.{name}", "op": "eq", "value": value}, "property")
        )
    tree = all_of(*leaves)
    check_size(tree, ctx.limits)
    query = SearchQuery(
        org_id=org,
        filter=tree,
        sort=sort,
        descending=order == "desc",
        limit=limit,
        cursor=cursor,
    )
    with ctx.gate.slot():
        return page_json(ctx, org, ctx.search.search(query))


def _own_row(ctx: Ctx, org: str, request_id: str) -> RequestRow:
    row = ctx.search.get(org, request_id)
    if row is None:
        # the same answer whether the id does not exist or belongs to another organization
        raise HTTPException(404, "no logged call with this id")
    return row


@router.get(
    "/{request_id}",
    response_model=RequestDetailOut,
    response_model_by_alias=True,
    summary="One logged call, with its bodies on request",
)
def get_request(
    request_id: str,
    org: Org,
    ctx: Ctx,
    bodies: Annotated[bool, Query(description="include the stored bodies")] = False,
) -> dict[str, Any]:
    row = _own_row(ctx, org, request_id)
    data = with_scores(row_detail(row), ctx.search.scores_of(org, [row]).get(row.request_id, []))
    if bodies:
        store = ctx.search.bodies
        data["bodies"] = {
            "request": body_view(store, row.request_body_key, row.request_omitted),
            "response": body_view(store, row.response_body_key, row.response_omitted),
        }
    return data


@router.get(
    "/{request_id}/bodies/{kind}",
    summary="One body's raw bytes, streamed",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/octet-stream": {}}}},
)
def get_body(
    request_id: str, kind: Literal["request", "response"], org: Org, ctx: Ctx
) -> StreamingResponse:
    row = _own_row(ctx, org, request_id)
    key = row.request_body_key if kind == "request" else row.response_body_key
    omitted = row.request_omitted if kind == "request" else row.response_omitted
    if omitted:
        raise HTTPException(404, f"the {kind} body was omitted by the caller")
    if key is None:
        raise HTTPException(404, f"no {kind} body was stored")
    try:
        stream = ctx.search.bodies.open_stream(key)
    except KeyError:
        raise HTTPException(404, f"the {kind} body is missing from the body store") from None

    def chunks() -> Any:
        try:
            while chunk := stream.read(_STREAM_CHUNK):
                yield chunk
        finally:
            stream.close()

    return StreamingResponse(chunks(), media_type="application/octet-stream")
