"""Searching logged calls for the API: filter, sort, cursor pagination, text in bodies.

The records reader (``stores/records/reader.py``) runs the SQL, scoped to one organization and
cut by keyset; the cursor given to clients is that keyset position (the sort value and request
id of the last row returned), encoded.

Text in bodies lives in the body store, not the database. A filter that asks for it runs the rest
of the tree in SQL (the text leaves relaxed to "true") and reads the candidates' bodies in sort
order until the page is full, ``scan_limit`` candidates were examined or ``scan_max_bytes`` of
bodies were read; the cursor then points after the last candidate examined, so the next page
continues the scan, and the page says it stopped early (``truncated``).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import math
from collections.abc import Callable, Iterator

from llmtap.api.filter_match import BodyText, matches
from llmtap.api.filters import INT64, check_text
from llmtap.stores.bodies.port import BodyStore
from llmtap.stores.filter import Filter, FilterError, has_scores, has_text
from llmtap.stores.records.reader import PageQuery, Position, RecordsReader, SortField, sort_value
from llmtap.stores.records.scores import ScoreTable
from llmtap.stores.row import RequestRow
from llmtap.stores.scores import Score

_BODY_TEXT_MAX_BYTES = 4 * 1024 * 1024
"""Text search reads at most this much of each body."""


@dataclasses.dataclass(frozen=True, slots=True)
class SearchQuery:
    org_id: str
    filter: Filter | None = None
    sort: SortField = "created"
    descending: bool = True
    limit: int = 50
    cursor: str | None = None
    offset: int = 0
    """Rows to skip first (Helicone-style paging); cursors are the stable way to page."""


@dataclasses.dataclass(frozen=True, slots=True)
class SearchPage:
    rows: list[RequestRow]
    next_cursor: str | None
    """Pass it back to get the next page; ``None`` when there is nothing after this page."""
    scanned: int
    """Candidates examined (more than ``len(rows)`` when a text filter dropped some)."""
    truncated: bool = False
    """A text search stopped at its scan budget before the page was full: ``next_cursor``
    continues it (the rows after it may still match)."""


def encode_cursor(query: SearchQuery, row: RequestRow) -> str:
    raw = {
        "s": query.sort,
        "d": "desc" if query.descending else "asc",
        "v": sort_value(query.sort, row),
        "i": row.request_id,
    }
    return base64.urlsafe_b64encode(json.dumps(raw).encode()).decode().rstrip("=")


def decode_cursor(query: SearchQuery) -> Position | None:
    if not query.cursor:
        return None
    try:
        padded = query.cursor + "=" * (-len(query.cursor) % 4)
        raw = json.loads(base64.urlsafe_b64decode(padded.encode()))
        sort, direction, value, request_id = raw["s"], raw["d"], raw["v"], raw["i"]
    except (binascii.Error, ValueError, KeyError, TypeError, RecursionError) as exc:
        # (RecursionError: a cursor of nested brackets, which json.loads recurses into)
        raise FilterError("cursor: not a cursor this API returned") from exc
    if sort != query.sort or direction != ("desc" if query.descending else "asc"):
        raise FilterError(
            f"cursor: it was made for sort={sort} order={direction}; repeat the same sort and order"
        )
    if (
        not isinstance(value, int | float)
        or isinstance(value, bool)
        or not isinstance(request_id, str)
        or not _in_range(value)
    ):
        raise FilterError("cursor: not a cursor this API returned")
    return Position(value, check_text(request_id, "cursor"))


def _in_range(value: int | float) -> bool:
    # what a sort column can hold: the databases refuse to bind anything else
    if isinstance(value, int):
        return INT64[0] <= value <= INT64[1]
    return math.isfinite(value)


class RequestSearch:
    """Searches calls for the API: the records reader's pages, and the bodies for text."""

    def __init__(
        self,
        reader: RecordsReader,
        bodies: BodyStore,
        *,
        scan_limit: int = 5000,
        scan_max_bytes: int = 64 * 1024 * 1024,
        scores: ScoreTable | None = None,
    ) -> None:
        self._reader = reader
        self._scores = scores
        self._bodies = bodies
        self._scan_limit = scan_limit
        self._scan_max_bytes = scan_max_bytes

    @property
    def bodies(self) -> BodyStore:
        return self._bodies

    def get(self, org_id: str, request_id: str) -> RequestRow | None:
        return self._reader.get(org_id, request_id)

    def scores_of(self, org_id: str, rows: list[RequestRow]) -> dict[str, list[Score]]:
        """The scores of these calls, by request id (none without a score table)."""
        if self._scores is None or not rows:
            return {}
        return self._scores.for_requests(org_id, [row.request_id for row in rows])

    def search(self, query: SearchQuery) -> SearchPage:
        if not 1 <= query.limit <= 1000:
            raise FilterError("limit: must be between 1 and 1000")
        page = PageQuery(
            query.org_id,
            query.filter,
            query.sort,
            query.descending,
            after=decode_cursor(query),
            relax_text=has_text(query.filter),
        )
        if not page.relax_text:
            rows = self._reader.page(
                dataclasses.replace(page, limit=query.limit + 1, offset=query.offset)
            )
            more = len(rows) > query.limit
            rows = rows[: query.limit]
            cursor = encode_cursor(query, rows[-1]) if more and rows else None
            return SearchPage(rows, cursor, len(rows))
        return self._search_with_text(query, page)

    def _search_with_text(self, query: SearchQuery, page: PageQuery) -> SearchPage:
        assert query.filter is not None
        found: list[RequestRow] = []
        skip = query.offset
        scanned = 0
        last: RequestRow | None = None
        chunk = max(100, query.limit * 2)
        page = dataclasses.replace(page, limit=chunk)
        exhausted = False
        reader = _BodyReader(self._bodies)

        def over_budget() -> bool:
            # checked before a candidate, so every page examines at least one: paging on with any
            # budget gets through; a page reads at most the budget plus one row's bodies
            return scanned >= self._scan_limit or reader.bytes_read >= self._scan_max_bytes

        while len(found) < query.limit and not over_budget():
            candidates = self._reader.page(page)
            if not candidates:
                exhausted = True
                break
            known = self.scores_of(query.org_id, candidates) if has_scores(query.filter) else {}
            scores_of = _lookup(known)
            for row in candidates:
                scanned += 1
                last = row
                if matches(query.filter, row, reader.text_of(row), scores_of):
                    if skip:
                        skip -= 1
                    else:
                        found.append(row)
                if len(found) == query.limit or over_budget():
                    break
            else:
                if len(candidates) < chunk:
                    exhausted = True
                    break
            if last is not None:
                after = Position(sort_value(query.sort, last), last.request_id)
                page = dataclasses.replace(page, after=after)
        cursor = None if exhausted or last is None else encode_cursor(query, last)
        truncated = cursor is not None and len(found) < query.limit
        return SearchPage(found, cursor, scanned, truncated)


def _lookup(known: dict[str, list[Score]]) -> Callable[[RequestRow], dict[str, float]]:
    def scores_of(row: RequestRow) -> dict[str, float]:
        return {score.name: score.value for score in known.get(row.request_id, ())}

    return scores_of


class _BodyReader:
    """Reads the bodies of candidate rows for one search, each row's once however many text
    leaves ask, and counts the bytes read against the request's budget."""

    def __init__(self, bodies: BodyStore) -> None:
        self._bodies = bodies
        self.bytes_read = 0

    def text_of(self, row: RequestRow) -> BodyText:
        cached: list[str] = []

        def text(_row: RequestRow) -> str:
            if not cached:
                cached.append("\n".join(self._read_text(key) for key in _stored_keys(row)))
            return cached[0]

        return text

    def _read_text(self, key: str) -> str:
        try:
            stream = self._bodies.open_stream(key)
        except KeyError:
            return ""
        try:
            data = stream.read(_BODY_TEXT_MAX_BYTES)
        finally:
            stream.close()
        self.bytes_read += len(data)
        return data.decode("utf-8", "replace")


def _stored_keys(row: RequestRow) -> Iterator[str]:
    if row.request_body_key and not row.request_omitted:
        yield row.request_body_key
    if row.response_body_key and not row.response_omitted:
        yield row.response_body_key
