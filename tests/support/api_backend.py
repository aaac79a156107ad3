"""The API over real stores in this process, for tests: what the backend process runs, minus the
queue and the consumer. Rows go in through the consumer's own sinks (``open_sinks``: records,
then chDB analytics; with a Postgres records store the metrics are read from it), bodies through the body store, and the API is served by uvicorn on a free
port, so tests talk HTTP to it like a user would.

chDB holds one data directory per process: close one ``ApiBackend`` before opening another.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy.engine import make_url

from llmtap.api.metrics_query import MetricsSource
from llmtap.api.server import ApiService
from llmtap.settings import Settings
from llmtap.stores.bodies.port import BodyStore, body_key
from llmtap.stores.factory import (
    analytics_from_records,
    open_analytics_reader,
    open_body_store,
    open_records_store,
    open_sinks,
)
from llmtap.stores.records.store import RecordsStore
from llmtap.stores.row import RequestRow
from support.processes import free_port


class ApiBackend:
    def __init__(
        self, data_dir: Path, *, records_url: str = "", analytics: bool = True, **settings: Any
    ) -> None:
        self.settings = Settings(
            data_dir=data_dir, records_url=records_url, api_port=free_port(), **settings
        )
        self.sinks = open_sinks(self.settings)
        self.records: RecordsStore = open_records_store(self.settings.records_url)
        self.bodies: BodyStore = open_body_store(self.settings.bodies_url)
        metrics: MetricsSource | None = next(
            (s for s in self.sinks if isinstance(s, MetricsSource)), None
        )
        self._reader = None
        if analytics_from_records(self.settings):
            # a Postgres records store: the metrics are computed there, as `llmtap api` does
            self._reader = metrics = open_analytics_reader(self.settings)
        self.api = ApiService(self.settings, metrics=metrics if analytics else None)
        self.api.start()
        if not self.api.wait_started():
            self.close()
            raise RuntimeError("the API did not start")

    @property
    def url(self) -> str:
        return self.api.url

    def write(self, rows: Sequence[RequestRow]) -> None:
        """One batch through every sink, in order, as the consumer writes it."""
        for sink in self.sinks:
            sink.write_batch(rows)

    def put_body(self, row: RequestRow, kind: str, data: bytes) -> str:
        key = body_key(row.org_id, row.request_id, kind)
        self.bodies.put(key, data)
        return key

    def new_org_key(self, name: str) -> tuple[str, str]:
        """``(org id, key)`` of a new organization."""
        org = self.records.create_org(name)
        _, key = self.records.create_key(org, f"{name}-key")
        return org, key

    def close(self) -> None:
        self.api.stop()
        self.bodies.close()
        self.records.close()
        if self._reader is not None:
            self._reader.close()
        for sink in self.sinks:
            sink.close()

    def __enter__(self) -> ApiBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextmanager
def postgres_schema(url: str) -> Iterator[str]:
    """A throwaway schema on the Postgres server at ``url``: yields a records URL whose
    ``search_path`` is that schema, and drops it afterwards (test runs never collide)."""
    parsed = make_url(url)
    schema = f"t_{secrets.token_hex(6)}"
    admin = psycopg.connect(
        host=parsed.host,
        port=parsed.port or 5432,
        user=parsed.username,
        password=parsed.password,
        dbname=parsed.database,
        autocommit=True,
        connect_timeout=5,
    )
    try:
        admin.execute(f'CREATE SCHEMA "{schema}"')
        try:
            scoped = parsed.update_query_dict({"options": f"-csearch_path={schema}"})
            yield scoped.render_as_string(hide_password=False)
        finally:
            admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
    finally:
        admin.close()
