"""The one settings object, read once at start-up and passed down.

Every value can be set from the environment (``LLMTAP_<NAME>``), from a TOML file named by
``LLMTAP_CONFIG`` or ``--config``, or from CLI flags (which win). Adapters are picked by URL:
``queue_url``, ``records_url``, ``analytics_url`` and ``bodies_url``; left empty, they default to
the embedded adapters under ``data_dir``.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

TOPIC_LOGS = "request-response-logs"
TOPIC_DLQ = "request-response-logs-dlq"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LLMTAP_", extra="forbid", frozen=True)

    data_dir: Path = Path("llmtap-data")

    # adapters, chosen by URL (empty = embedded default under data_dir)
    queue_url: str = ""
    records_url: str = ""
    analytics_url: str = ""
    bodies_url: str = ""

    # proxy (hot path)
    proxy_host: str = "127.0.0.1"
    proxy_port: int = 8787
    proxy_processes: int = 1
    openai_base_url: str = "https://api.openai.com"
    anthropic_base_url: str = "https://api.anthropic.com"
    routes: dict[str, str] = Field(default_factory=dict)
    """Named OpenAI-compatible upstreams: ``/router/<name>/v1/...`` is forwarded to ``routes[name]``."""
    allowed_target_hosts: list[str] = Field(default_factory=list)
    """Hosts (``host`` or ``host:port``) a ``Helicone-Target-URL`` may name besides known providers."""
    allow_private_targets: bool = False
    """Let target URLs resolve to loopback/private/link-local addresses (tests, local models)."""
    max_request_body_bytes: int = 32 * 1024 * 1024
    max_capture_bytes: int = 16 * 1024 * 1024
    connect_timeout_s: float = 10.0
    idle_timeout_s: float = 300.0
    total_timeout_s: float = 900.0
    inject_stream_usage: bool = True
    spool_max_bytes: int = 256 * 1024 * 1024
    shipper_max_backlog: int = 100_000
    """Finished calls waiting in memory for the shipper; beyond it records are dropped and counted."""
    auth_gate: bool = True
    """Refuse (401, before forwarding) a call whose ``Helicone-Auth``/``Llmtap-Auth`` llmtap key no
    organization has (never issued, or revoked). Fails open when the records store is away."""
    auth_gate_ttl_s: float = 10.0
    """How long the proxy trusts its answer about one key (known or unknown): a revoked key is
    refused at most this long after ``llmtap keys revoke``."""

    # queue and consumer
    topic: str = TOPIC_LOGS
    dlq_topic: str = TOPIC_DLQ
    partitions: int = 4
    consumer_group: str = "llmtap-consumer"
    batch_max_records: int = 1000
    batch_max_wait_s: float = 0.2
    max_attempts: int = 3
    retry_backoff_s: float = 0.5
    retry_backoff_max_s: float = 30.0
    dlq_max_redrives: int = 3
    """Re-drives of a dead letter (``llmtap replay --dlq``) before it stays dead for good."""
    dlq_redrive_backoff_s: float = 60.0
    dlq_redrive_backoff_max_s: float = 3600.0
    """A following DLQ re-drive waits base * 2^re-drives (capped) after a letter's last failure."""

    # analytics
    analytics_retention_days: int = 0
    """Days of rows the analytics store keeps (0 = forever); the records store keeps everything."""

    # api
    api_host: str = "127.0.0.1"
    api_port: int = 8788
    max_ingest_body_bytes: int = 32 * 1024 * 1024
    """Largest async-log or OTLP body the ingestion endpoints accept (after decompression): 413."""

    # cost: user price overrides, model -> {"input": $/Mtok, "output": $/Mtok, ...}
    price_overrides: dict[str, dict[str, float]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _default_urls(self) -> Settings:
        data = self.data_dir.absolute()
        defaults = {
            "queue_url": f"sqlite:///{data / 'queue.db'}",
            "records_url": f"sqlite:///{data / 'records.db'}",
            "analytics_url": f"chdb:///{data / 'analytics'}",
            "bodies_url": f"file://{data / 'bodies'}",
        }
        for name, url in defaults.items():
            if not getattr(self, name):
                object.__setattr__(self, name, url)
        return self

    @property
    def spool_dir(self) -> Path:
        return self.data_dir.absolute() / "spool"


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build the settings: TOML file (if any) < environment < explicit overrides."""
    values: dict[str, Any] = {}
    if config_file is not None:
        with config_file.open("rb") as fh:
            values.update(tomllib.load(fh))
    values.update({k: v for k, v in overrides.items() if v is not None})
    env_only = Settings()
    merged = {**values}
    # environment wins over the file, explicit overrides win over both
    for name in Settings.model_fields:
        if name in env_only.model_fields_set and name not in overrides:
            merged[name] = getattr(env_only, name)
    return Settings(**merged)
