"""Adapters picked by URL, in one place: records, analytics and body stores, the consumer's sinks.

Adding an adapter means one branch here; nothing that uses a store changes.
"""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from urllib.parse import unquote, urlsplit

from llmtap.errors import ConfigError
from llmtap.settings import Settings
from llmtap.stores.analytics.client import ClickHouseClient
from llmtap.stores.analytics.store import AnalyticsStore
from llmtap.stores.bodies.port import BodyStore
from llmtap.stores.records.analytics import RecordsAnalytics
from llmtap.stores.records.store import RecordsStore
from llmtap.stores.sink import Sink

RECORDS_ANALYTICS = "records://"
"""``analytics_url`` of a deployment whose metrics are computed from its (Postgres) records store."""

AnalyticsReader = AnalyticsStore | RecordsAnalytics
"""What the API and the dashboard read metrics, the Overview and the group lists from."""


def open_records_store(url: str) -> RecordsStore:
    """``sqlite:///path`` or ``postgresql://...``, migrated to the latest schema."""
    scheme = url.partition(":")[0].lower()
    if scheme.partition("+")[0] not in ("sqlite", "postgresql", "postgres"):
        raise ConfigError(
            f"records store URL {url!r}: expected sqlite:///<path> or postgresql://user:pw@host/db"
        )
    return RecordsStore(url)


def open_body_store(url: str) -> BodyStore:
    """``file:///dir`` or ``s3://bucket[/prefix]?endpoint=...&region=...``."""
    parts = urlsplit(url)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost") or not parts.path:
            raise ConfigError(f"body store URL {url!r}: expected file:///<absolute dir>")
        from llmtap.stores.bodies.file import FileBodyStore

        return FileBodyStore(Path(unquote(parts.path)))
    if parts.scheme == "s3":
        # imported here: boto3 takes a while to import and embedded installs never need it
        from llmtap.stores.bodies.s3 import S3BodyStore

        return S3BodyStore.from_url(url)
    raise ConfigError(f"body store URL {url!r}: expected file:///<dir> or s3://bucket?endpoint=...")


def open_analytics_store(
    url: str, retention_days: int | None = None, release_above_mb: int = 0
) -> AnalyticsStore:
    """``chdb:///dir`` (embedded; one process per directory) or ``clickhouse://...``.

    ``retention_days`` is applied by the consumer's sink; readers pass nothing (see AnalyticsStore).
    ``release_above_mb``: chDB only (``ChdbClient``; settings.analytics_chdb_release_above_mb).
    """
    parts = urlsplit(url)
    if parts.scheme == "records":
        raise ConfigError(
            f"analytics store URL {url!r}: analytics from the records store are read"
            " (open_analytics_reader), never written"
        )
    if parts.scheme == "chdb":
        if parts.netloc or not parts.path:
            raise ConfigError(f"analytics store URL {url!r}: expected chdb:///<absolute dir>")
        from llmtap.stores.analytics.chdb_client import ChdbClient

        # Settings joins "chdb:///" and an absolute path, which doubles the slash
        client: ClickHouseClient = ChdbClient(
            Path("/" + unquote(parts.path).lstrip("/")), release_above_mb
        )
    elif parts.scheme == "clickhouse":
        from llmtap.stores.analytics.clickhouse_client import ClickHouseHttpClient

        client = ClickHouseHttpClient(url)
    else:
        raise ConfigError(
            f"analytics store URL {url!r}: expected chdb:///<dir> or clickhouse://host/db"
        )
    try:
        return AnalyticsStore(client, retention_days)
    except BaseException:
        # chDB holds its directory until closed: never leave it held by a store that failed
        client.close()
        raise


def open_records_and_bodies(
    settings: Settings, resources: ExitStack
) -> tuple[RecordsStore, BodyStore]:
    """The records and body stores of ``settings``, each closed by ``resources`` (in reverse
    order); what the consumer and the API both read. If the second cannot open, the first is
    closed when ``resources`` unwinds."""
    records = open_records_store(settings.records_url)
    resources.callback(records.close)
    bodies = open_body_store(settings.bodies_url)
    resources.callback(bodies.close)
    return records, bodies


def analytics_from_records(settings: Settings) -> bool:
    """Whether the metrics are computed from the records store (no analytics store to write)."""
    return urlsplit(settings.analytics_url).scheme == "records"


def open_analytics_reader(settings: Settings) -> AnalyticsReader:
    """What the API reads metrics from: the records store's Postgres, or the analytics store."""
    if analytics_from_records(settings):
        return RecordsAnalytics(settings.records_url)
    return open_analytics_store(
        settings.analytics_url, release_above_mb=settings.analytics_chdb_release_above_mb
    )


def refuse_split_analytics(settings: Settings, command: str) -> None:
    """``ConfigError`` when ``command`` (``llmtap consume``, ``api``, ``replay``) would keep
    analytics of its own while its calls are in a records store other processes share.

    chDB is one process's: each consumer's would hold the part of the calls it consumed and the
    API's none of them, so the metrics would be silently wrong. Only ``llmtap serve``, whose
    backend process holds both the consumer and the API, may pair chDB with Postgres.
    """
    embedded_records = urlsplit(settings.records_url).scheme.startswith("sqlite")
    if embedded_records or urlsplit(settings.analytics_url).scheme != "chdb":
        return
    raise ConfigError(
        f"{command}: the embedded analytics store ({settings.analytics_url}) belongs to this"
        " process alone, while the records store is shared: each consumer would count only the"
        " calls it consumed and the API none. Set LLMTAP_ANALYTICS_URL=clickhouse://host:8123/db"
        " (a ClickHouse server every process shares), or leave LLMTAP_ANALYTICS_URL unset to"
        " compute the metrics from the records store."
    )


def open_sinks(settings: Settings) -> list[Sink]:
    """The consumer's sinks, in the order they are written: records first, then analytics
    (none when the metrics are computed from the records store)."""
    records = open_records_store(settings.records_url)
    if analytics_from_records(settings):
        if records.dialect != "postgresql":
            records.close()
            raise ConfigError(
                f"analytics store URL {settings.analytics_url!r}: analytics from the records"
                " store need a Postgres records store (LLMTAP_RECORDS_URL=postgresql://…)"
            )
        return [records]
    try:
        analytics = open_analytics_store(
            settings.analytics_url,
            settings.analytics_retention_days,
            settings.analytics_chdb_release_above_mb,
        )
    except BaseException:
        records.close()
        raise
    return [records, analytics]
