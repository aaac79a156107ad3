"""Stores are picked by URL in one place; a URL that cannot work is a ConfigError at start."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmtap.errors import ConfigError
from llmtap.settings import Settings
from llmtap.stores.bodies.file import FileBodyStore
from llmtap.stores.bodies.s3 import S3BodyStore
from llmtap.stores.factory import (
    open_analytics_store,
    open_body_store,
    open_records_store,
    open_sinks,
)
from llmtap.stores.records import RecordsStore


def test_embedded_defaults_open_sqlite_and_files(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    sinks = open_sinks(settings)
    assert [s.name for s in sinks] == ["records", "analytics"]
    assert (tmp_path / "data" / "records.db").is_file()
    assert (tmp_path / "data" / "analytics").is_dir()
    for sink in sinks:
        sink.close()
    bodies = open_body_store(settings.bodies_url)
    assert isinstance(bodies, FileBodyStore)
    bodies.put("org/ab/abc/request", b"x")
    assert (tmp_path / "data" / "bodies" / "org" / "ab" / "abc" / "request").read_bytes() == b"x"


def test_records_url_opens_a_migrated_store(tmp_path: Path) -> None:
    store = open_records_store(f"sqlite:///{tmp_path / 'nested' / 'records.db'}")
    assert isinstance(store, RecordsStore)
    assert store.dialect == "sqlite"
    assert store.recent_requests(None, 5) == []
    store.close()


@pytest.mark.parametrize(
    "url",
    ["mysql://root@localhost/db", "records.db", "sqlite+aiosqlite:///x.db", "redis://localhost"],
)
def test_unknown_records_urls_are_config_errors(url: str) -> None:
    with pytest.raises(ConfigError):
        open_records_store(url)


@pytest.mark.parametrize(
    "url",
    ["ftp://host/dir", "file://remote-host/dir", "bodies", "s3://", "s3://bucket?endpont=typo"],
)
def test_unknown_body_urls_are_config_errors(url: str) -> None:
    with pytest.raises(ConfigError):
        open_body_store(url)


@pytest.mark.parametrize("url", ["chdb://relative/dir", "chdb:", "duckdb:///x", "clickhouse"])
def test_unknown_analytics_urls_are_config_errors(url: str) -> None:
    with pytest.raises(ConfigError):
        open_analytics_store(url)


def test_s3_url_carries_bucket_prefix_endpoint_and_region() -> None:
    store = S3BodyStore.from_url(
        "s3://my-bucket/some/prefix/?endpoint=http://127.0.0.1:1&region=eu-west-3",
        create_bucket=False,
    )
    assert (store.bucket, store.prefix, store.region) == ("my-bucket", "some/prefix", "eu-west-3")
    assert store.endpoint == "http://127.0.0.1:1"
    store.close()
