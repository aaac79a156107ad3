"""Settings for a test on the shared Kafka broker: fresh topic, dead-letter topic and group names
each time, so tests never see each other's messages or offsets."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from llmtap.settings import Settings


def kafka_settings(bootstrap: str, data_dir: Path, prefix: str, **extra: Any) -> Settings:
    unique = uuid.uuid4().hex[:10]
    return Settings(
        data_dir=data_dir,
        queue_url=f"kafka://{bootstrap}",
        topic=f"{prefix}-logs-{unique}",
        dlq_topic=f"{prefix}-dlq-{unique}",
        consumer_group=f"{prefix}-{unique}",
        **extra,
    )
