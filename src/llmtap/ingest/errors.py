"""What an ingestion endpoint answers when a log cannot be taken."""

from __future__ import annotations

from llmtap.errors import LlmtapError


class BadLog(LlmtapError):
    """The body is not a log we can read (wrong type, missing field, bad protobuf): HTTP 400.

    The message names the problem and where it is, for the developer sending it.
    """

    retriable = False
    status = 400


class LogTooLarge(BadLog):
    status = 413


class UnsupportedMediaType(BadLog):
    status = 415
