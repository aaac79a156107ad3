"""The dead-letter envelope: what the consumer publishes for a record it gave up on.

The value is JSON (readable with Kafka's console tools) holding the original message bytes
(base64), the error, how many times the record was tried, where it came from and when it failed.
The same facts ride in the headers so a DLQ can be triaged without decoding values. A dead letter
is decoded back into the original (``decode_dead_letter``) to re-drive it onto the logs topic
once the cause is fixed (``llmtap replay --dlq``).
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from llmtap.queue.port import Message

DLQ_VERSION = 1

HEADER_ERROR_TYPE = "llmtap-dlq-error-type"
HEADER_ERROR = "llmtap-dlq-error"
HEADER_ATTEMPTS = "llmtap-dlq-attempts"
HEADER_SOURCE = "llmtap-dlq-source"
HEADER_STAGE = "llmtap-dlq-stage"

# Header values are for humans skimming a topic; the full message is in the value.
_HEADER_ERROR_MAX = 512


class DeadLetterDecodeError(ValueError):
    """The bytes are not a dead-letter envelope this version understands."""

    retriable = False


class DeadLetter(msgspec.Struct, frozen=True, kw_only=True):
    """One record the consumer gave up on, with everything needed to understand and re-drive it."""

    original: bytes
    """The message value exactly as it was read (JSON-encoded as base64)."""
    original_key: bytes | None
    original_headers: dict[str, bytes] = msgspec.field(default_factory=dict)
    error_type: str
    error: str
    stage: str
    """Where it failed: ``decode``, ``handler:<name>`` or ``sink:<name>``."""
    attempts: int
    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    """When the original message was put on the queue."""
    first_failure_unix_ms: int
    last_failure_unix_ms: int
    request_id: str | None = None
    """The record's request id when it could be decoded."""
    v: int = DLQ_VERSION


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(DeadLetter)


def dead_letter_for(
    message: Message,
    error: BaseException,
    *,
    stage: str,
    attempts: int,
    first_failure_unix_ms: int,
    last_failure_unix_ms: int,
    request_id: str | None = None,
) -> DeadLetter:
    return DeadLetter(
        original=message.value,
        original_key=message.key,
        original_headers=dict(message.headers),
        error_type=type(error).__name__,
        error=str(error),
        stage=stage,
        attempts=attempts,
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        timestamp_ms=message.timestamp_ms,
        first_failure_unix_ms=first_failure_unix_ms,
        last_failure_unix_ms=last_failure_unix_ms,
        request_id=request_id,
    )


def encode_dead_letter(letter: DeadLetter) -> bytes:
    return _encoder.encode(letter)


def dead_letter_headers(letter: DeadLetter) -> dict[str, bytes]:
    return {
        HEADER_ERROR_TYPE: letter.error_type.encode(),
        HEADER_ERROR: letter.error[:_HEADER_ERROR_MAX].encode(),
        HEADER_ATTEMPTS: str(letter.attempts).encode(),
        HEADER_SOURCE: f"{letter.topic}/{letter.partition}/{letter.offset}".encode(),
        HEADER_STAGE: letter.stage.encode(),
    }


def decode_dead_letter(value: bytes) -> DeadLetter:
    """The envelope of a DLQ message value; its ``original``/``original_key`` re-drive the record."""
    try:
        letter = _decoder.decode(value)
    except msgspec.DecodeError as exc:
        raise DeadLetterDecodeError(f"not a dead letter: {exc}") from exc
    if letter.v != DLQ_VERSION:
        raise DeadLetterDecodeError(f"unknown dead-letter version {letter.v}")
    return letter


def original_message(letter: DeadLetter) -> tuple[bytes | None, bytes, Mapping[str, bytes]]:
    """``(key, value, headers)`` to publish back onto ``letter.topic`` for a re-drive."""
    return letter.original_key, letter.original, letter.original_headers
