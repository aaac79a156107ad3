"""Test probes: waiting on a condition with a timeout (instead of sleeping and hoping), and
looking for bytes on disk."""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from llmtap.queue.factory import open_consumer
from llmtap.settings import Settings

T = TypeVar("T")


def wait_for(
    probe: Callable[[], T | None],
    *,
    timeout_s: float = 60.0,
    interval_s: float = 0.02,
    what: str = "condition",
) -> T:
    """Call ``probe`` until it returns something truthy and return that; TimeoutError after
    ``timeout_s`` naming ``what``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(interval_s)


def files_containing(root: Path, needle: bytes) -> list[Path]:
    """Every file under ``root`` whose bytes contain ``needle`` (e.g. a canary secret).

    Files that vanish while we look (chDB's temporary merge parts, SQLite's journals) are
    skipped: their bytes live on in the files they were merged or checkpointed into.
    """
    found = []
    for folder, _, names in os.walk(root):  # os.walk skips folders that vanish mid-walk
        for name in names:
            path = Path(folder) / name
            try:
                if needle in path.read_bytes():
                    found.append(path)
            except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
                continue
    return found


def published_records(settings: Settings) -> dict[str, dict[str, Any]]:
    """Every record a proxy published on ``settings.topic`` so far, by request id, read by a
    consumer group of its own (so the gateway's consumer, if any, is not disturbed)."""
    consumer = open_consumer(settings, group=f"probe-{uuid.uuid4()}")
    try:
        records: dict[str, dict[str, Any]] = {}
        while batch := consumer.poll_batch(1000, 0.2):
            for message in batch:
                record = json.loads(message.value)
                records[record["request_id"]] = record
        return records
    finally:
        consumer.close()
