"""What a page's URL holds, parsed once: the time range (``range=1h|24h|7d|30d`` or
``start``/``end``), the filter tree (``f=<compact JSON>``, the API's filter), and for Requests the
body text (``q``), sort, order and cursor. A link holds the whole state, so it can be shared and
Back works; ``PageState.url`` writes it back with some values changed.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import urlencode

from starlette.datastructures import QueryParams

from llmtap.api.filters import FIELDS, OPS_BY_KIND, FilterLimits, check_size, parse_filter
from llmtap.stores.filter import Branch, Filter, FilterError, Leaf
from llmtap.stores.records.reader import SORT_FIELDS, SortField

RANGES: dict[str, float] = {"1h": 3600.0, "24h": 86400.0, "7d": 7 * 86400.0, "30d": 30 * 86400.0}
DEFAULT_RANGE = "24h"
BUCKETS_S = (60, 300, 900, 3600, 3 * 3600, 6 * 3600, 86400, 7 * 86400)
MAX_CHART_BUCKETS = 200
MAX_PARAM_CHARS = 8000
"""Longest ``f`` or ``q`` accepted (the filter limits bound the tree itself)."""


@dataclass(frozen=True, slots=True)
class PageState:
    range: str = DEFAULT_RANGE
    """A key of ``RANGES`` or ``custom`` (then ``start``/``end`` hold it)."""
    start_ms: float = 0.0
    end_ms: float = 0.0
    start_text: str = ""
    end_text: str = ""
    filter_text: str = ""
    """``f`` as given (re-shown in the builder)."""
    filter: Filter | None = None
    text: str = ""
    """``q``: text to find in bodies."""
    sort: SortField = "created"
    order: Literal["desc", "asc"] = "desc"
    cursor: str = ""
    errors: list[str] = field(default_factory=list)
    """Problems with the URL, shown on the page (the rest of the state still applies)."""

    def url(self, path: str, **changes: Any) -> str:
        state = replace(self, **changes) if changes else self
        params: dict[str, str] = {}
        if state.range == "custom":
            params["start"] = state.start_text
            params["end"] = state.end_text
        elif state.range != DEFAULT_RANGE:
            params["range"] = state.range
        if state.filter_text:
            params["f"] = state.filter_text
        if state.text:
            params["q"] = state.text
        if state.sort != "created":
            params["sort"] = state.sort
        if state.order != "desc":
            params["order"] = state.order
        if state.cursor:
            params["cursor"] = state.cursor
        return path + ("?" + urlencode(params) if params else "")

    @property
    def time_filter(self) -> Filter:
        return Branch(
            "and",
            (
                Leaf("created", "gte", self.start_ms, "time"),
                Leaf("created", "lt", self.end_ms, "time"),
            ),
        )

    def with_filter(self, extra: dict[str, Any]) -> str:
        """``f`` with ``extra`` and-ed to the current tree (for drill-down links)."""
        if not self.filter_text or self.filter is None:
            return json.dumps(extra, separators=(",", ":"))
        current = json.loads(self.filter_text)
        return json.dumps({"and": [current, extra]}, separators=(",", ":"))

    @property
    def bucket_s(self) -> int:
        span_s = (self.end_ms - self.start_ms) / 1000.0
        for size in BUCKETS_S:
            if span_s / size <= MAX_CHART_BUCKETS:
                return size
        return BUCKETS_S[-1]


def _time(raw: str, where: str) -> float:
    text = raw.strip()
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise FilterError(f"{where}: {raw!r} is not a date and time") from None
    if moment.tzinfo is None:  # <input type=datetime-local> sends no zone: times are UTC here
        moment = moment.replace(tzinfo=UTC)
    try:
        return moment.timestamp() * 1000.0
    except (OverflowError, ValueError):
        raise FilterError(f"{where}: {raw!r} is out of range") from None


def parse_state(params: QueryParams, limits: FilterLimits, *, sortable: bool = False) -> PageState:
    errors: list[str] = []
    now_ms = time.time() * 1000.0
    start_text = params.get("start", "")[:64]
    end_text = params.get("end", "")[:64]
    range_name = params.get("range", DEFAULT_RANGE)
    start_ms = end_ms = 0.0
    if start_text or end_text:
        range_name = "custom"
        try:
            end_ms = _time(end_text, "end") if end_text else now_ms
            start_ms = _time(start_text, "start") if start_text else end_ms - 86400_000.0
            if end_ms <= start_ms:
                raise FilterError("end: must be after start")
        except FilterError as exc:
            errors.append(str(exc))
            range_name, start_text, end_text = DEFAULT_RANGE, "", ""
    if range_name != "custom":
        if range_name not in RANGES:
            errors.append(f"range: {range_name[:20]!r} is not one of {', '.join(RANGES)}")
            range_name = DEFAULT_RANGE
        end_ms = now_ms
        start_ms = now_ms - RANGES[range_name] * 1000.0
    filter_text = params.get("f", "").strip()
    tree: Filter | None = None
    if len(filter_text) > MAX_PARAM_CHARS:
        errors.append(f"filter: longer than {MAX_PARAM_CHARS} characters")
        filter_text = ""
    if filter_text:
        try:
            tree = parse_filter(json.loads(filter_text))
            check_size(tree, limits)
        except (ValueError, RecursionError, FilterError) as exc:
            reason = str(exc) if isinstance(exc, FilterError) else "not valid JSON"
            errors.append(f"filter: {reason}")
            tree = None
    text = params.get("q", "")
    if len(text) > MAX_PARAM_CHARS or "\x00" in text:
        errors.append("text search: too long or holds a NUL character")
        text = ""
    sort: SortField = "created"
    order: Literal["desc", "asc"] = "desc"
    cursor = ""
    if sortable:
        raw_sort = params.get("sort", "created")
        if raw_sort in SORT_FIELDS:
            sort = raw_sort
        else:
            errors.append(f"sort: one of {', '.join(SORT_FIELDS)}")
        order = "asc" if params.get("order") == "asc" else "desc"
        cursor = params.get("cursor", "")[:2000]
    return PageState(
        range=range_name,
        start_ms=start_ms,
        end_ms=end_ms,
        start_text=start_text,
        end_text=end_text,
        filter_text=filter_text,
        filter=tree,
        text=text.strip(),
        sort=sort,
        order=order,
        cursor=cursor,
        errors=errors,
    )


def builder_fields() -> dict[str, Any]:
    """What the filter builder offers: every filterable field with its operators (text in
    bodies has its own search box on Requests), and the operators of a property."""
    fields = {
        name: {"kind": kind, "ops": sorted(OPS_BY_KIND[kind])}
        for name, kind in sorted(FIELDS.items())
        if name != "body"
    }
    return {"fields": fields, "property_ops": sorted(OPS_BY_KIND["str"])}
