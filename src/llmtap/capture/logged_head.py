"""A response head as a record logs it, made once for an answer llmtap serves many times.

A cache hit replays the same stored answer to every call that hits it: the shipper would
otherwise redact the same headers and look up the same ``Content-Type`` for each of them
(issue 14: a hit must cost less than relaying a call). ``logged_head`` does that work once per
cached slot; the records of its hits share the one redacted dict, which nothing changes after.
"""

from __future__ import annotations

from dataclasses import dataclass

from llmtap.capture.redaction import redact_headers
from llmtap.capture.tap import HeaderList, header_value


@dataclass(frozen=True, slots=True)
class LoggedHead:
    headers: dict[str, str]
    """``redact_headers`` of the head (shared by the records: never changed)."""
    content_type: str | None
    encoding: bytes | None
    """``Content-Encoding`` as sent (the shipper logs a compressed body inflated)."""


def logged_head(headers: HeaderList) -> LoggedHead:
    ctype = header_value(headers, b"content-type")
    return LoggedHead(
        redact_headers(headers),
        ctype.decode("latin-1") if ctype else None,
        header_value(headers, b"content-encoding"),
    )
