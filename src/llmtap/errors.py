"""llmtap's error tree. Third-party errors are translated into these at the adapter boundary.

LlmtapError                 (retriable: bool)
├── QueueError              queue adapter failures (broker down, disk full, ...)
├── StoreError              records / analytics / body store failures
│   └── StoreUnavailable    transient outage: the consumer waits and retries, never dead-letters
├── PoisonRecord            a record that can never be processed: dead-lettered at once
└── ConfigError             a setting or URL that cannot work
"""

from __future__ import annotations


class LlmtapError(Exception):
    retriable: bool = False

    def __init__(self, message: str, *, retriable: bool | None = None) -> None:
        super().__init__(message)
        if retriable is not None:
            self.retriable = retriable


class QueueError(LlmtapError):
    retriable = True


class StoreError(LlmtapError):
    retriable = False


class StoreUnavailable(StoreError):
    retriable = True


class PoisonRecord(LlmtapError):
    retriable = False


class ConfigError(LlmtapError):
    retriable = False
