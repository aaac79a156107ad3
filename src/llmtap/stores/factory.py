"""Adapters picked by URL, in one place: records store, body store and the consumer's sinks.

Adding an adapter means one branch here; nothing that uses a store changes.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

from llmtap.consumer.sink import Sink
from llmtap.errors import ConfigError
from llmtap.settings import Settings
from llmtap.stores.bodies.port import BodyStore
from llmtap.stores.records.store import RecordsStore


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


def open_sinks(settings: Settings) -> list[Sink]:
    """The consumer's sinks, in the order they are written: records first."""
    sinks: list[Sink] = [open_records_store(settings.records_url)]
    return sinks
