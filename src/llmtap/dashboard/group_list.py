"""What the Sessions and Users lists share: their sort, order and cursor in the URL, and a page
of groups from the analytics store (``AnalyticsStore.groups``, ``stores/analytics/groups.py``),
under the query gate, scoped to the viewer's organization.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, replace
from typing import Any, Literal, Protocol, runtime_checkable
from urllib.parse import urlencode

from starlette.datastructures import QueryParams

from llmtap.api.context import ApiContext
from llmtap.api.filters import INT64, all_of, check_size
from llmtap.api.query_gate import QueryBusy
from llmtap.dashboard.state import PageState
from llmtap.errors import StoreError
from llmtap.stores.analytics.groups import (
    GROUP_SORTS,
    GroupAfter,
    GroupKey,
    GroupQuery,
    GroupRow,
    GroupSort,
)
from llmtap.stores.filter import FilterError

PAGE_ROWS = 50
NO_ANALYTICS = (
    "This list needs the analytics store, and this API process has none (for example"
    " `llmtap api` started while `llmtap serve` holds the embedded one). Requests still work."
)


@runtime_checkable
class GroupSource(Protocol):
    """What the lists need of the analytics store."""

    def groups(self, query: GroupQuery) -> list[GroupRow]: ...


@dataclass(frozen=True, slots=True)
class ListOrder:
    sort: GroupSort = "last_seen"
    order: Literal["desc", "asc"] = "desc"
    cursor: str = ""

    def url(self, state: PageState, path: str, **changes: Any) -> str:
        """``path`` with the page's range and filter, and this sort/order/cursor (changed)."""
        me = replace(self, **changes) if changes else self
        base = state.url(path, cursor="", sort="created", order="desc")
        params: dict[str, str] = {}
        if me.sort != "last_seen":
            params["sort"] = me.sort
        if me.order != "desc":
            params["order"] = me.order
        if me.cursor:
            params["cursor"] = me.cursor
        if not params:
            return base
        return base + ("&" if "?" in base else "?") + urlencode(params)

    def heading(self, state: PageState, path: str, sort: GroupSort) -> str:
        """The URL a column heading links to: sort by it, again to reverse."""
        order = "asc" if self.sort == sort and self.order == "desc" else "desc"
        return self.url(state, path, sort=sort, order=order, cursor="")


def parse_order(params: QueryParams, errors: list[str]) -> ListOrder:
    raw = params.get("sort", "last_seen")
    sort: GroupSort = "last_seen"
    if raw in GROUP_SORTS:
        sort = raw
    else:
        errors.append(f"sort: one of {', '.join(GROUP_SORTS)}")
    order: Literal["desc", "asc"] = "asc" if params.get("order") == "asc" else "desc"
    return ListOrder(sort, order, params.get("cursor", "")[:1000])


def encode_cursor(order: ListOrder, row: GroupRow) -> str:
    raw = {"s": order.sort, "d": order.order, "v": row.sort_value(order.sort), "k": row.key}
    return base64.urlsafe_b64encode(json.dumps(raw).encode()).decode().rstrip("=")


def decode_cursor(order: ListOrder) -> GroupAfter | None:
    if not order.cursor:
        return None
    try:
        padded = order.cursor + "=" * (-len(order.cursor) % 4)
        raw = json.loads(base64.urlsafe_b64decode(padded.encode()))
        sort, direction, value, key = raw["s"], raw["d"], raw["v"], raw["k"]
    except (binascii.Error, ValueError, KeyError, TypeError, RecursionError):
        raise FilterError("cursor: not a cursor of this list") from None
    if sort != order.sort or direction != order.order:
        raise FilterError("cursor: made for another sort; go back to the first page")
    if (
        not isinstance(value, int)
        or isinstance(value, bool)
        or not INT64[0] <= value <= INT64[1]
        or not isinstance(key, str)
        or len(key) > 1024
    ):
        raise FilterError("cursor: not a cursor of this list")
    return GroupAfter(value, key)


@dataclass(frozen=True, slots=True)
class GroupPage:
    rows: list[GroupRow]
    next_cursor: str | None


def fetch_groups(
    api: ApiContext, org_id: str, key: GroupKey, state: PageState, order: ListOrder
) -> tuple[GroupPage | None, str | None]:
    """A page of the list, or why there is none (a notice for the page)."""
    source: object = api.metrics
    if not isinstance(source, GroupSource):
        return None, NO_ANALYTICS
    if state.errors:
        return None, None
    try:
        check_size(state.filter, api.limits)
        query = GroupQuery(
            org_id=org_id,
            key=key,
            start_unix_ms=state.start_ms,
            end_unix_ms=state.end_ms,
            filter=all_of(state.filter),
            sort=order.sort,
            descending=order.order == "desc",
            after=decode_cursor(order),
            limit=PAGE_ROWS + 1,
        )
        with api.gate.slot():
            rows = source.groups(query)
    except FilterError as exc:
        return None, str(exc)
    except QueryBusy as exc:
        return None, f"{exc}."
    except StoreError:
        return None, "The analytics store did not answer; try again in a moment."
    more = len(rows) > PAGE_ROWS
    rows = rows[:PAGE_ROWS]
    return GroupPage(rows, encode_cursor(order, rows[-1]) if more and rows else None), None
