"""Reading a captured body as JSON without ever failing the record.

A body is what a client or a provider sent, so anything goes: bytes that are not UTF-8, JSON
nested deeper than the interpreter's stack (msgspec raises ``RecursionError``), a document cut
off at capture. Each ends as a short reason the row keeps (``stores.notes``), never as an
exception that would dead-letter an answered call.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import msgspec

from llmtap.consumer.handlers.sse import SseEvent
from llmtap.consumer.handlers.usage import ParsedResponse

INVALID_UTF8 = "invalid_utf8"
TOO_DEEP = "too_deep"
NOT_JSON = "not_json"
WRONG_SHAPE = "wrong_shape"

_decoder = msgspec.json.Decoder()


def read_json(data: bytes) -> tuple[Any, str | None]:
    """``(document, None)``, or ``(None, reason)`` when ``data`` is not readable JSON."""
    try:
        return _decoder.decode(data), None
    except UnicodeDecodeError:
        return None, INVALID_UTF8
    except RecursionError:
        return None, TOO_DEEP
    except msgspec.DecodeError:
        # only on failure: tell "not text at all" from "text, but not JSON"
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            return None, INVALID_UTF8
        return None, NOT_JSON


def json_events(
    events: Iterable[SseEvent],
    parsed: ParsedResponse,
    skip: Callable[[str], bool] | None = None,
) -> Iterator[tuple[SseEvent, dict[str, Any]]]:
    """Each event of a stream whose data is a JSON object, with that object.

    Every event counts in ``parsed.events``; one that is not JSON, or not an object, is passed
    over (a cut-off last event is never valid JSON). ``skip`` sees an event's data first and
    passes over it without decoding (a stream parser's fast path).
    """
    for event in events:
        parsed.events += 1
        if skip is not None and skip(event.data):
            continue
        try:
            doc = _decoder.decode(event.data)
        except msgspec.DecodeError:
            continue
        if type(doc) is dict:
            yield event, doc
