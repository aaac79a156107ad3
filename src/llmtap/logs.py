"""How every llmtap process logs: one format, set once per process at its entry point."""

from __future__ import annotations

import logging


def configure_logging(level: str = "INFO") -> None:
    """Timestamps, level, process and logger name; quiet third-party start-up chatter. A process
    that already has handlers (a test runner, an embedding application) keeps them."""
    if logging.getLogger().handlers:
        return
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(processName)s %(name)s: %(message)s",
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)
