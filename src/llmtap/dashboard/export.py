"""``/export.csv`` and ``/export.jsonl``: every call of the Requests page's filter, range, body
text and sort (the same ``f``, ``range``/``start``/``end``, ``q``, ``sort``, ``order``), streamed.

The answer is written as it is read: a keyset page of ``PAGE_ROWS`` calls at a time through the
API's ``RequestSearch`` (so text in bodies pages on past its scan budget too), each page under
the query gate and let go before the client is sent it. Memory stays at about one page whatever
the export's size; the end of the range is fixed when the export starts, so calls logged while
it runs are not in it.

JSONL lines are the API's search rows (``row_summary``). CSV has the Requests table's columns,
the ids and the properties as JSON; a text cell starting with ``= + - @``, a tab or a carriage
return gets a leading ``'`` (OWASP's advice against formula injection in spreadsheets).
"""

from __future__ import annotations

import csv
import io
import itertools
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import msgspec
from fastapi import APIRouter, Request
from starlette.responses import Response, StreamingResponse

from llmtap.api.filters import all_of, check_size
from llmtap.api.query_gate import QueryBusy
from llmtap.api.rows import iso_time, nano_to_usd
from llmtap.api.scores import scores_json
from llmtap.api.search import SearchQuery
from llmtap.dashboard.auth import Signed
from llmtap.dashboard.context import DashboardContext, dashboard
from llmtap.dashboard.state import PageState, parse_state
from llmtap.errors import StoreError
from llmtap.stores.filter import Filter, FilterError, Leaf, has_text
from llmtap.stores.records.reader import PageQuery, Position, SortField
from llmtap.stores.row import RequestRow

router = APIRouter(include_in_schema=False)

PAGE_ROWS = 1000
"""Calls read per keyset page (and per chunk sent)."""
CSV_COLUMNS = (
    "request_id",
    "created_at",
    "status",
    "model",
    "response_model",
    "provider",
    "endpoint",
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "cost_usd",
    "cost_source",
    "latency_ms",
    "ttft_ms",
    "user_id",
    "session_id",
    "session_name",
    "session_path",
    "trace_id",
    "error",
    "properties",
    "prompt_id",
    "prompt_version",
    "feedback",
    "scores",
)
_STORED_AS = {"created_at": "created_unix_ms", "cost_usd": "cost_nano_usd"}
_JOINED = frozenset({"feedback", "scores"})
"""Not columns of the call: joined from the scores table, page by page (``_with_scores``)."""
CSV_READS = tuple(_STORED_AS.get(column, column) for column in CSV_COLUMNS if column not in _JOINED)
"""The columns ``csv_cells`` reads (and every sort key): a CSV export reads only these."""
_FORMULA_STARTS = frozenset("=+-@\t\r")
_encoder = msgspec.json.Encoder()


def neutralize(cell: str) -> str:
    """A text cell a spreadsheet will not run as a formula."""
    return "'" + cell if cell and cell[0] in _FORMULA_STARTS else cell


def _text(value: str | None) -> str:
    # called for a dozen cells of every exported row: neutralize() inlined
    if not value:
        return ""
    return "'" + value if value[0] in _FORMULA_STARTS else value


def _number(value: float | int | None) -> Any:
    return "" if value is None else value


Row = dict[str, Any]
"""A call's columns but its headers (``RecordsStore.export_page``)."""


def csv_cells(row: Row) -> list[Any]:
    cost = nano_to_usd(row["cost_nano_usd"])
    return [
        _text(row["request_id"]),
        iso_time(row["created_unix_ms"]),
        row["status"],
        _text(row["model"]),
        _text(row["response_model"]),
        _text(row["provider"]),
        _text(row["endpoint"]),
        _number(row["input_tokens"]),
        _number(row["output_tokens"]),
        _number(row["total_tokens"]),
        "" if cost is None else repr(cost),
        _text(row["cost_source"]),
        repr(row["latency_ms"]),
        "" if row["ttft_ms"] is None else repr(row["ttft_ms"]),
        _text(row["user_id"]),
        _text(row["session_id"]),
        _text(row["session_name"]),
        _text(row["session_path"]),
        _text(row["trace_id"]),
        _text(row["error"]),
        # JSON starts with "{": never a formula (compact, UTF-8 unescaped, as json.dumps with
        # ensure_ascii=False and no spaces, at a fraction of its cost)
        _encoder.encode(row["properties"]).decode(),
        _text(row["prompt_id"]),
        _text(row["prompt_version"]),
        "" if row["feedback"] is None else str(row["feedback"]).lower(),
        # JSON again: a score name is letters, digits and _ . : - (stores/scores.py)
        _encoder.encode(row["scores"]).decode(),
    ]


def _sort_value(sort: SortField, row: Row) -> float | int:
    if sort == "created":
        return float(row["created_unix_ms"])
    if sort == "latency":
        return float(row["latency_ms"])
    value = row["cost_nano_usd" if sort == "cost" else "total_tokens"]
    return -1 if value is None else int(value)


def _pages(
    ctx: DashboardContext,
    org_id: str,
    tree: Filter | None,
    state: PageState,
    columns: tuple[str, ...] | None,
) -> Iterator[list[Row]]:
    """Keyset pages of the export; each read holds a gate slot, none while bytes are sent."""
    api = ctx.api
    if has_text(tree):  # text in bodies: the API's search, which reads the bodies
        cursor: str | None = None
        while True:
            query = SearchQuery(
                org_id=org_id,
                filter=tree,
                sort=state.sort,
                descending=state.order == "desc",
                limit=PAGE_ROWS,
                cursor=cursor,
            )
            with api.gate.slot():
                page = api.search.search(query)
                rows = _scored(ctx, org_id, [_without_headers(row) for row in page.rows])
            if rows:
                yield rows
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def read(after: Position | None) -> list[Row]:
        query = PageQuery(
            org_id, tree, state.sort, state.order == "desc", after=after, limit=PAGE_ROWS
        )
        with api.gate.slot():
            return _scored(ctx, org_id, ctx.records.export_page(query, columns))

    # The next page is read on a second thread while this one is formatted and sent: the
    # database steps without the GIL, so on two cores an export is up to ~1.5x faster. Still
    # one read at a time per export, each under its own gate slot.
    ahead = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llmtap-export")
    try:
        rows = read(None)
        while True:
            upcoming = None
            if len(rows) == PAGE_ROWS:
                last = rows[-1]
                after = Position(_sort_value(state.sort, last), last["request_id"])
                upcoming = ahead.submit(read, after)
            if rows:
                yield rows
            if upcoming is None:
                return
            rows = upcoming.result()
    finally:
        # a client gone mid-export: a read under way finishes on its own and is dropped
        ahead.shutdown(wait=False, cancel_futures=True)


def _without_headers(row: RequestRow) -> Row:
    data: Row = msgspec.structs.asdict(row)
    data.pop("request_headers", None)
    data.pop("response_headers", None)
    data.pop("attempt_log", None)  # as the API's list rows: the attempts are on the detail
    return data


def _scored(ctx: DashboardContext, org_id: str, rows: list[Row]) -> list[Row]:
    """``rows`` with their ``scores`` (name -> value) and ``feedback``: one read of the scores
    table, made under the page read's gate slot (a slot of its own would wait on the read of
    the next page, which holds one)."""
    known = ctx.records.scores.for_requests(org_id, [str(row["request_id"]) for row in rows])
    for row in rows:
        row["scores"], row["feedback"] = scores_json(known.get(row["request_id"], []))
    return rows


def csv_chunks(pages: Iterator[list[Row]]) -> Iterator[bytes]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    yield buffer.getvalue().encode()
    for rows in pages:
        buffer.seek(0)
        buffer.truncate()
        writer.writerows(csv_cells(row) for row in rows)
        yield buffer.getvalue().encode()


def jsonl_chunks(pages: Iterator[list[Row]]) -> Iterator[bytes]:
    """Each line is the API's search row (``row_summary``): the columns but the headers, the
    time in ISO-8601 and the cost in USD."""
    for rows in pages:
        lines = []
        for row in rows:
            row["created_at"] = iso_time(row["created_unix_ms"])
            row["cost_usd"] = nano_to_usd(row["cost_nano_usd"])
            lines.append(_encoder.encode(row))
        yield b"\n".join(lines) + b"\n"


Chunks = Callable[[Iterator[list[Row]]], Iterator[bytes]]
FORMATS: dict[str, tuple[str, Chunks, tuple[str, ...] | None]] = {
    "csv": ("text/csv; charset=utf-8", csv_chunks, CSV_READS),
    "jsonl": ("application/x-ndjson", jsonl_chunks, None),
}
"""Format -> (media type, the writer, the columns it reads; ``None``: all but the headers)."""


def _export(request: Request, signed: Signed, kind: str) -> Response:
    ctx = dashboard(request)
    state = parse_state(request.query_params, ctx.api.limits, sortable=True)
    leaves: list[Filter | None] = [state.time_filter, state.filter]
    if state.text:
        leaves.append(Leaf("body", "contains", state.text, "text"))
    tree = all_of(*leaves)
    problem = "; ".join(state.errors)
    if not problem:
        try:
            check_size(tree, ctx.api.limits)
        except FilterError as exc:
            problem = str(exc)
    if problem:
        return Response(
            f"cannot export: {problem}\n",
            status_code=400,
            media_type="text/plain; charset=utf-8",
            headers={"Cache-Control": "no-store"},
        )
    media_type, chunks, columns = FORMATS[kind]
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    headers = {
        "Content-Disposition": f'attachment; filename="llmtap-requests-{stamp}.{kind}"',
        "Cache-Control": "no-store",
    }
    pages = _pages(ctx, signed.org_id, tree, state, columns)
    # the first page is read before answering, so a busy or failing store is a proper status
    try:
        first = next(pages, None)
    except (QueryBusy, StoreError) as exc:
        reason = str(exc) if isinstance(exc, QueryBusy) else "the records store did not answer"
        return Response(
            f"cannot export now: {reason}\n",
            status_code=503,
            media_type="text/plain; charset=utf-8",
            headers={"Cache-Control": "no-store", "Retry-After": "5"},
        )
    rows = itertools.chain([first] if first else [], pages)
    return StreamingResponse(chunks(rows), media_type=media_type, headers=headers)


@router.get("/export.csv")
def export_csv(request: Request, signed: Signed) -> Response:
    return _export(request, signed, "csv")


@router.get("/export.jsonl")
def export_jsonl(request: Request, signed: Signed) -> Response:
    return _export(request, signed, "jsonl")
