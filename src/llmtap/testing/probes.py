"""Test probes: waiting on a condition with a timeout (instead of sleeping and hoping), and
looking for bytes on disk."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

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
