"""Parsing of ``queue_url``: the adapter, where it lives, and its options from the query string.

* ``sqlite:///relative/queue.db`` or ``sqlite:////absolute/queue.db`` (SQLAlchemy's spelling),
  options ``retention_ms`` (default 7 days; ``-1`` keeps everything), ``busy_timeout_ms``,
  ``lease_s``, ``poll_interval_ms``.
* ``kafka://host:9092[,host:9092...]``; query keys are librdkafka settings with ``_`` for ``.``
  (``security_protocol=SASL_SSL&sasl_mechanism=PLAIN&sasl_username=...``), except the topic
  options ``retention_ms`` and ``replication_factor`` used when llmtap creates its topics.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, unquote

from llmtap.errors import ConfigError

SQLITE_OPTIONS = {"retention_ms", "busy_timeout_ms", "lease_s", "poll_interval_ms"}
KAFKA_TOPIC_OPTIONS = {"retention_ms", "replication_factor"}


@dataclass(frozen=True, slots=True)
class QueueUrl:
    scheme: str
    location: str
    """The database path (sqlite) or the bootstrap servers (kafka)."""
    options: dict[str, str] = field(default_factory=dict)

    def number(self, name: str, default: float) -> float:
        raw = self.options.get(name)
        if raw is None:
            return default
        try:
            return float(raw)
        except ValueError:
            raise ConfigError(f"queue_url option {name}={raw!r} is not a number") from None


def parse_queue_url(url: str) -> QueueUrl:
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ConfigError(f"queue_url {url!r} has no scheme (sqlite:// or kafka://)")
    location, _, query = rest.partition("?")
    try:
        options = dict(parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query)))
    except ValueError:
        raise ConfigError(f"queue_url {url!r} has a malformed query string") from None
    if scheme == "sqlite":
        if not location.startswith("/") or location == "/":
            raise ConfigError(f"queue_url {url!r}: expected sqlite:///<path to queue.db>")
        unknown = set(options) - SQLITE_OPTIONS
        if unknown:
            raise ConfigError(f"queue_url {url!r}: unknown option(s) {sorted(unknown)}")
        return QueueUrl("sqlite", str(Path(unquote(location[1:]))), options)
    if scheme == "kafka":
        servers = location.strip("/")
        if not servers:
            raise ConfigError(f"queue_url {url!r}: expected kafka://host:port[,host:port]")
        return QueueUrl("kafka", servers, options)
    raise ConfigError(f"queue_url {url!r}: unknown scheme {scheme!r} (use sqlite:// or kafka://)")
