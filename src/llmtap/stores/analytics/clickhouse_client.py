"""A ClickHouse server over HTTP (clickhouse-connect): ``clickhouse://user:pw@host:8123/db``.

The same SQL and the same JSONEachRow bytes as chDB: rows are inserted with ``raw_insert`` and
read back as JSONEachRow, so both engines hand the store identical Python values.
``?secure=true`` for TLS. The server being unreachable is ``StoreUnavailable``.

Not exercised by the test suite on these machines (no ClickHouse server runs here); the contract
tests run against it when ``LLMTAP_TEST_CLICKHOUSE_URL`` is set.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import clickhouse_connect
import msgspec
from clickhouse_connect.driver.exceptions import ClickHouseError, OperationalError

from llmtap.errors import ConfigError, StoreError, StoreUnavailable
from llmtap.stores.analytics.client import classify

_decode_row = msgspec.json.Decoder(dict[str, Any])
# see client.SESSION_SETTINGS: a column's own name wins over a same-named alias
_SETTINGS = {"prefer_column_name_to_alias": 1}


class ClickHouseHttpClient:
    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme != "clickhouse" or not parts.hostname:
            raise ConfigError(f"analytics store URL {url!r}: expected clickhouse://host[:port]/db")
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        unknown = set(query) - {"secure"}
        if unknown:
            raise ConfigError(f"analytics store URL {url!r}: unknown options {sorted(unknown)}")
        secure = query.get("secure", "").lower() in ("1", "true", "yes")
        try:
            self._client = clickhouse_connect.get_client(
                host=parts.hostname,
                port=parts.port or (8443 if secure else 8123),
                username=unquote(parts.username or "default"),
                password=unquote(parts.password or ""),
                database=parts.path.strip("/") or "default",
                secure=secure,
                settings=_SETTINGS,
                connect_timeout=5,
                send_receive_timeout=60,
            )
        except ClickHouseError as err:
            raise _translate(err, "connect") from err

    def command(self, sql: str) -> None:
        try:
            self._client.command(sql)
        except ClickHouseError as err:
            raise _translate(err, "run DDL") from err

    def insert_json_each_row(self, table: str, data: bytes) -> None:
        try:
            self._client.raw_insert(table, insert_block=data, fmt="JSONEachRow")
        except ClickHouseError as err:
            raise _translate(err, "insert") from err

    def insert_json_compact(self, table: str, columns: Sequence[str], data: bytes) -> None:
        try:
            self._client.raw_insert(
                table, column_names=list(columns), insert_block=data, fmt="JSONCompactEachRow"
            )
        except ClickHouseError as err:
            raise _translate(err, "insert") from err

    def query_rows(self, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        try:
            raw = self._client.raw_query(sql, parameters=params, fmt="JSONEachRow")
        except ClickHouseError as err:
            raise _translate(err, "query") from err
        return [_decode_row.decode(line) for line in raw.splitlines() if line]

    def close(self) -> None:
        self._client.close()


def _translate(err: ClickHouseError, what: str) -> StoreError:
    if isinstance(err, OperationalError):
        return StoreUnavailable(f"analytics store: cannot {what}: {err}")
    return classify(str(err), what)
