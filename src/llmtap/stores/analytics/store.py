"""AnalyticsStore: processed calls in ClickHouse (chDB or a server) for metrics over time.

A sink (``name = "analytics"``) written after the records store. Rows go in as one
JSONCompactEachRow insert per batch (arrays in column order, encoded in one call); a redelivered row is a second copy with a higher ``version`` that every query
collapses with ``FINAL``, so replays never count twice. The queries (``metrics``,
``stores/analytics/metrics.py``) take the caller's organization.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from operator import attrgetter
from typing import Any

import msgspec

from llmtap.stores.analytics.client import ClickHouseClient, RowRejected
from llmtap.stores.analytics.ddl import COLUMNS, INT_COLUMNS, SCORES_TABLE, TABLE
from llmtap.stores.analytics.groups import GroupQuery, GroupRow, group_of
from llmtap.stores.analytics.groups import build_sql as build_groups_sql
from llmtap.stores.analytics.metrics import MetricsQuery, MetricsResult, build_sql, result_of
from llmtap.stores.analytics.migrate import migrate
from llmtap.stores.analytics.overview import (
    Overview,
    build_breakdowns_sql,
    build_timeline_sql,
    overview_of,
)
from llmtap.stores.analytics.score_metrics import ScoreResult, any_scores_sql
from llmtap.stores.analytics.score_metrics import build_sql as build_scores_sql
from llmtap.stores.analytics.score_metrics import result_of as scores_result_of
from llmtap.stores.row import RequestRow
from llmtap.stores.scores import StoredScore
from llmtap.stores.sink import PoisonRows

_encoder = msgspec.json.Encoder()
# one C call for the row's kept values (a getattr per column was a third of the encoding)
_values = attrgetter(*COLUMNS)
INSERT_COLUMNS = (*COLUMNS, "created", "version")
"""The columns of a row as ``_encode`` lays them out."""
# where each integer column sits in ``_values``: checked by position, no dict per row
_INT_AT = tuple((COLUMNS.index(name), name, low, high) for name, low, high in INT_COLUMNS)


PRUNE_EVERY_S = 3600.0


class AnalyticsStore:
    """The analytics sink and its queries.

    ``retention_days`` (0 = keep forever) sets the table's TTL, which a ClickHouse server applies
    as it merges; chDB may never merge on its own, so the sink also deletes expired rows itself,
    at most once per ``PRUNE_EVERY_S``, after a write. ``None`` (readers such as the API) leaves
    the table's retention as the consumer set it.
    """

    name = "analytics"

    def __init__(self, client: ClickHouseClient, retention_days: int | None = None) -> None:
        self._client = client
        migrate(self._client)
        self._retention_days = retention_days or 0
        self._next_prune = 0.0
        if retention_days is not None:
            self._apply_ttl()
            # chDB only (a server's own settings are its operator's): see chdb_client.py
            tune = getattr(client, "tune_table", None)
            if tune is not None:
                tune(TABLE)

    def _apply_ttl(self) -> None:
        if self._retention_days > 0:
            self._client.command(
                f"ALTER TABLE {TABLE} MODIFY TTL toDateTime(created) + "
                f"INTERVAL {int(self._retention_days)} DAY"
            )
        elif "TTL" in self._client.query_rows(f"SHOW CREATE TABLE {TABLE}", {})[0]["statement"]:
            self._client.command(f"ALTER TABLE {TABLE} REMOVE TTL")

    def prune(self) -> None:
        """Delete rows past the retention period now (nothing when retention is off)."""
        if self._retention_days > 0:
            self._client.command(
                f"DELETE FROM {TABLE} WHERE created < now64(3) - "
                f"INTERVAL {int(self._retention_days)} DAY"
            )

    # -- the sink ---------------------------------------------------------------------------

    def write_batch(self, rows: Sequence[RequestRow]) -> None:
        """One insert for the batch; ``PoisonRows`` for rows ClickHouse cannot take."""
        if not rows:
            return
        version = time.time_ns()
        refused: dict[str, str] = {}
        kept: list[tuple[str, tuple[Any, ...]]] = []
        for row in rows:
            try:
                kept.append((row.request_id, _values_of(row, version)))
            except RowRejected as err:
                refused[row.request_id] = str(err)
        if kept:
            try:
                # the batch as one newline-separated block, encoded in one call
                data = _encoder.encode_lines([values for _, values in kept])
                self._client.insert_json_compact(TABLE, INSERT_COLUMNS, data)
            except RowRejected:
                # find which rows: the others go in one by one (copies collapse anyway)
                for request_id, values in kept:
                    try:
                        self._client.insert_json_compact(
                            TABLE, INSERT_COLUMNS, _encoder.encode(values)
                        )
                    except RowRejected as err:
                        refused[request_id] = str(err)
        if self._retention_days > 0 and time.monotonic() >= self._next_prune:
            self._next_prune = time.monotonic() + PRUNE_EVERY_S
            self.prune()
        if refused:
            raise PoisonRows(refused)

    def write_scores(self, scores: Sequence[StoredScore]) -> None:
        """One insert of scores (idempotent: the newest version of a name wins)."""
        if not scores:
            return
        lines = [
            _encoder.encode(
                {
                    "org_id": s.org_id,
                    "request_id": s.request_id,
                    "name": s.name,
                    "value": s.value,
                    "is_bool": s.is_bool,
                    "version": int(s.updated_unix_ms * 1000),
                }
            )
            for s in scores
        ]
        self._client.insert_json_each_row(SCORES_TABLE, b"\n".join(lines))

    def close(self) -> None:
        self._client.close()

    # -- queries ----------------------------------------------------------------------------

    def metrics(self, query: MetricsQuery) -> MetricsResult:
        """Totals over the query's range and, with ``bucket_s`` or ``group_by``, the series."""
        return result_of(self._client.query_rows(*build_sql(query)))

    def score_metrics(self, query: MetricsQuery) -> ScoreResult:
        """Score figures per name over the query's calls, as totals and per bucket/group
        (``score_metrics.py``)."""
        if not self._client.query_rows(*any_scores_sql(query.org_id)):
            return ScoreResult()
        return scores_result_of(self._client.query_rows(*build_scores_sql(query)))

    def overview(self, query: MetricsQuery) -> Overview:
        """Every Overview panel of the query's range and filter, from two scans
        (``overview.py``); ``group_by`` is not used."""
        timeline = self._client.query_rows(*build_timeline_sql(query))
        return overview_of(timeline, self._client.query_rows(*build_breakdowns_sql(query)))

    def table_definition(self) -> str:
        """The table's ``CREATE TABLE`` statement as the engine holds it (its TTL, say)."""
        return str(self._client.query_rows(f"SHOW CREATE TABLE {TABLE}", {})[0]["statement"])

    def column_types(self) -> dict[str, str]:
        """Each column of the table and its type, as the engine holds them (after migrations)."""
        rows = self._client.query_rows(f"DESCRIBE TABLE {TABLE}", {})
        return {str(row["name"]): str(row["type"]) for row in rows}

    def groups(self, query: GroupQuery) -> list[GroupRow]:
        """A page of sessions or users with their figures (``groups.py``)."""
        return [group_of(row) for row in self._client.query_rows(*build_groups_sql(query))]


def _values_of(row: RequestRow, version: int) -> tuple[Any, ...]:
    """The row's values in ``INSERT_COLUMNS`` order."""
    values = _values(row)
    # ClickHouse wraps integers that do not fit its column without a word: refuse them here
    for index, name, low, high in _INT_AT:
        value = values[index]
        if value is not None and not low <= value <= high:
            raise RowRejected(f"analytics store: {name}={value} does not fit the column")
    # DateTime64 reads seconds
    return (*values, row.created_unix_ms / 1000.0, version)
