"""AnalyticsStore: processed calls in ClickHouse (chDB or a server) for metrics over time.

A sink (``name = "analytics"``) written after the records store. Rows go in as one JSONEachRow
insert per batch; a redelivered row is a second copy with a higher ``version`` that every query
collapses with ``FINAL``, so replays never count twice. Every query takes the caller's
organization (``None`` only for the local admin CLI).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from llmtap.stores.analytics.client import ClickHouseClient, RowRejected
from llmtap.stores.analytics.ddl import COLUMNS, CREATE_REQUESTS, TABLE
from llmtap.stores.row import RequestRow
from llmtap.stores.sink import PoisonRows

# what ``breakdown`` may group by: fixed column names, never text from a request
GROUPABLE = ("model", "provider", "endpoint", "user_id", "session_id", "status", "cost_source")

_encoder = msgspec.json.Encoder()
_INT64 = (-(2**63), 2**63 - 1)
_INT_RANGES = [("status", -(2**31), 2**31 - 1)] + [
    (name, *_INT64)
    for name in COLUMNS
    if name.endswith(("_tokens", "_size")) or name == "cost_nano_usd"
]


@dataclass(frozen=True, slots=True)
class Summary:
    requests: int
    errors: int
    input_tokens: int
    output_tokens: int
    cost_nano_usd: int
    """Sum over priced calls only; ``unpriced`` says how many calls it leaves out."""
    unpriced: int
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    ttft_avg_ms: float | None


@dataclass(frozen=True, slots=True)
class Bucket:
    start_unix_ms: int
    requests: int
    errors: int
    input_tokens: int
    output_tokens: int
    cost_nano_usd: int


@dataclass(frozen=True, slots=True)
class Breakdown:
    key: str | None
    requests: int
    errors: int
    input_tokens: int
    output_tokens: int
    cost_nano_usd: int
    latency_p50_ms: float | None


_AGGREGATES = """
    count() AS n_requests,
    countIf(status >= 400 OR status = 0 OR error IS NOT NULL) AS n_errors,
    toInt64(ifNull(sum(input_tokens), 0)) AS sum_input_tokens,
    toInt64(ifNull(sum(output_tokens), 0)) AS sum_output_tokens,
    toInt64(ifNull(sum(cost_nano_usd), 0)) AS sum_cost_nano_usd
"""
# aliases differ from column names: ClickHouse substitutes an alias wherever its name appears"


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
        self._client.command(CREATE_REQUESTS)
        self._retention_days = retention_days or 0
        self._next_prune = 0.0
        if retention_days is not None:
            self._apply_ttl()

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
        encoded: list[tuple[str, bytes]] = []
        for row in rows:
            try:
                encoded.append((row.request_id, _encode(row, version)))
            except RowRejected as err:
                refused[row.request_id] = str(err)
        if encoded:
            try:
                self._client.insert_json_each_row(TABLE, b"\n".join(line for _, line in encoded))
            except RowRejected:
                # find which rows: the others go in one by one (copies collapse anyway)
                for request_id, line in encoded:
                    try:
                        self._client.insert_json_each_row(TABLE, line)
                    except RowRejected as err:
                        refused[request_id] = str(err)
        if self._retention_days > 0 and time.monotonic() >= self._next_prune:
            self._next_prune = time.monotonic() + PRUNE_EVERY_S
            self.prune()
        if refused:
            raise PoisonRows(refused)

    def close(self) -> None:
        self._client.close()

    # -- queries ----------------------------------------------------------------------------

    def query_rows(self, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        """Rows of a SELECT over ``TABLE`` with ``{name:Type}`` parameters (the API's metrics).

        The caller must filter by organization and read with ``FINAL`` like the queries below.
        """
        return self._client.query_rows(sql, params)

    def count(self, org_id: str | None) -> int:
        where, params = _where(org_id, None, None)
        rows = self._client.query_rows(
            f"SELECT count() AS n FROM {TABLE} FINAL WHERE {where}", params
        )
        return int(rows[0]["n"])

    def summary(
        self,
        org_id: str | None,
        since_unix_ms: float | None = None,
        until_unix_ms: float | None = None,
    ) -> Summary:
        where, params = _where(org_id, since_unix_ms, until_unix_ms)
        [row] = self._client.query_rows(
            f"""
            SELECT {_AGGREGATES},
                countIf(cost_nano_usd IS NULL) AS n_unpriced,
                quantile(0.5)(latency_ms) AS p50_latency,
                quantile(0.95)(latency_ms) AS p95_latency,
                avg(ttft_ms) AS avg_ttft
            FROM {TABLE} FINAL WHERE {where}
            """,
            params,
        )
        return Summary(
            requests=int(row["n_requests"]),
            errors=int(row["n_errors"]),
            input_tokens=int(row["sum_input_tokens"]),
            output_tokens=int(row["sum_output_tokens"]),
            cost_nano_usd=int(row["sum_cost_nano_usd"]),
            unpriced=int(row["n_unpriced"]),
            latency_p50_ms=_float(row["p50_latency"]) if row["n_requests"] else None,
            latency_p95_ms=_float(row["p95_latency"]) if row["n_requests"] else None,
            ttft_avg_ms=_float(row["avg_ttft"]),
        )

    def timeseries(
        self,
        org_id: str | None,
        since_unix_ms: float,
        until_unix_ms: float,
        bucket_s: int,
    ) -> list[Bucket]:
        """Calls per time bucket (only buckets that have calls), oldest first."""
        where, params = _where(org_id, since_unix_ms, until_unix_ms)
        params["bucket_s"] = max(1, int(bucket_s))
        rows = self._client.query_rows(
            f"""
            SELECT toUnixTimestamp64Milli(toDateTime64(
                       toStartOfInterval(created, toIntervalSecond({{bucket_s:UInt32}})), 3, 'UTC'
                   )) AS bucket_start,
                   {_AGGREGATES}
            FROM {TABLE} FINAL WHERE {where}
            GROUP BY bucket_start ORDER BY bucket_start
            """,
            params,
        )
        return [
            Bucket(
                start_unix_ms=int(r["bucket_start"]),
                requests=int(r["n_requests"]),
                errors=int(r["n_errors"]),
                input_tokens=int(r["sum_input_tokens"]),
                output_tokens=int(r["sum_output_tokens"]),
                cost_nano_usd=int(r["sum_cost_nano_usd"]),
            )
            for r in rows
        ]

    def breakdown(
        self,
        org_id: str | None,
        by: str,
        since_unix_ms: float | None = None,
        until_unix_ms: float | None = None,
        *,
        limit: int = 50,
    ) -> list[Breakdown]:
        """Calls grouped by a column in ``GROUPABLE`` or ``property:<name>``, busiest first."""
        where, params = _where(org_id, since_unix_ms, until_unix_ms)
        if by.startswith("property:"):
            params["property"] = by.removeprefix("property:")
            key = "nullIf(properties[{property:String}], '')"
        elif by in GROUPABLE:
            key = f"toString({by})" if by == "status" else by
        else:
            raise ValueError(f"cannot group by {by!r}: one of {GROUPABLE} or property:<name>")
        params["limit"] = max(0, int(limit))
        rows = self._client.query_rows(
            f"""
            SELECT {key} AS key, {_AGGREGATES}, quantile(0.5)(latency_ms) AS p50_latency
            FROM {TABLE} FINAL WHERE {where}
            GROUP BY key ORDER BY n_requests DESC, key LIMIT {{limit:UInt32}}
            """,
            params,
        )
        return [
            Breakdown(
                key=None if r["key"] is None else str(r["key"]),
                requests=int(r["n_requests"]),
                errors=int(r["n_errors"]),
                input_tokens=int(r["sum_input_tokens"]),
                output_tokens=int(r["sum_output_tokens"]),
                cost_nano_usd=int(r["sum_cost_nano_usd"]),
                latency_p50_ms=_float(r["p50_latency"]),
            )
            for r in rows
        ]


def _encode(row: RequestRow, version: int) -> bytes:
    values: dict[str, Any] = {name: getattr(row, name) for name in COLUMNS}
    # ClickHouse wraps integers that do not fit its column without a word: refuse them here
    for name, low, high in _INT_RANGES:
        value = values[name]
        if value is not None and not low <= value <= high:
            raise RowRejected(f"analytics store: {name}={value} does not fit the column")
    values["created"] = row.created_unix_ms / 1000.0  # DateTime64 reads seconds
    values["version"] = version
    return _encoder.encode(values)


def _where(
    org_id: str | None, since_unix_ms: float | None, until_unix_ms: float | None
) -> tuple[str, dict[str, Any]]:
    clauses = ["1"]
    params: dict[str, Any] = {}
    if org_id is not None:
        clauses.append("org_id = {org:String}")
        params["org"] = org_id
    if since_unix_ms is not None:
        clauses.append("created >= fromUnixTimestamp64Milli({since:Int64}, 'UTC')")
        params["since"] = int(since_unix_ms)
    if until_unix_ms is not None:
        clauses.append("created < fromUnixTimestamp64Milli({until:Int64}, 'UTC')")
        params["until"] = int(until_unix_ms)
    return " AND ".join(clauses), params


def _float(value: Any) -> float | None:
    if value is None:
        return None
    result = float(value)
    return None if result != result else result  # NaN: no data
