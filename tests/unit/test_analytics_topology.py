"""Which analytics a configuration gets, and the configurations refused because they would split
the numbers across processes (docs/decisions/2026-12-01-distributed-analytics.md). URLs only:
nothing here connects to a server."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmtap.errors import ConfigError
from llmtap.settings import Settings
from llmtap.stores.factory import (
    analytics_from_records,
    open_analytics_store,
    open_sinks,
    refuse_split_analytics,
)

PG = "postgresql://llmtap:secret@db.invalid:5432/llmtap"


def test_beside_postgres_the_default_is_the_records_store(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, records_url=PG)
    assert settings.analytics_url == "records://"
    assert analytics_from_records(settings)
    refuse_split_analytics(settings, "api")


def test_embedded_records_keep_embedded_chdb(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    assert settings.analytics_url.startswith("chdb:///")
    assert not analytics_from_records(settings)
    refuse_split_analytics(settings, "the consumer")


def test_a_clickhouse_server_is_kept_beside_postgres(tmp_path: Path) -> None:
    url = "clickhouse://default:@ch.invalid:8123/llmtap"
    settings = Settings(data_dir=tmp_path, records_url=PG, analytics_url=url)
    assert settings.analytics_url == url
    assert not analytics_from_records(settings)
    refuse_split_analytics(settings, "api")


@pytest.mark.parametrize("command", ["the consumer", "api"])
def test_a_private_chdb_beside_postgres_is_refused_saying_what_to_set(
    tmp_path: Path, command: str
) -> None:
    settings = Settings(data_dir=tmp_path, records_url=PG, analytics_url=f"chdb:///{tmp_path}/a")
    with pytest.raises(ConfigError) as refused:
        refuse_split_analytics(settings, command)
    message = str(refused.value)
    assert message.startswith(command)
    assert "LLMTAP_ANALYTICS_URL=clickhouse://" in message
    assert "leave LLMTAP_ANALYTICS_URL unset" in message
    assert "secret" not in message  # the records URL's password is never repeated


def test_records_analytics_need_postgres(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, analytics_url="records://")
    with pytest.raises(ConfigError, match="Postgres records store"):
        open_sinks(settings)
    with pytest.raises(ConfigError, match="never written"):
        open_analytics_store("records://")
