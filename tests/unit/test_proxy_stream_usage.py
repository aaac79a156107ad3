"""The include_usage injection and the filter that hides its extra chunk from the client."""

from __future__ import annotations

import json

import pytest

from llmtap.proxy import stream_usage
from llmtap.proxy.stream_usage import UsageChunkFilter, inject_include_usage


def chunk(choices: list[object], usage: object = None, *, with_usage: bool = True) -> bytes:
    body: dict[str, object] = {"id": "c1", "object": "chat.completion.chunk", "choices": choices}
    if with_usage:
        body["usage"] = usage
    return b"data: " + json.dumps(body, separators=(",", ":")).encode() + b"\n\n"


DELTA = [{"index": 0, "delta": {"content": "hi"}, "finish_reason": None}]
USAGE = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}


def provider_stream(separator: bytes = b"\n\n") -> bytes:
    events = [chunk(DELTA), chunk(DELTA), chunk([], USAGE), b"data: [DONE]\n\n"]
    return b"".join(e.replace(b"\n\n", separator) for e in events)


def client_stream(separator: bytes = b"\n\n") -> bytes:
    events = [chunk(DELTA, with_usage=False)] * 2 + [b"data: [DONE]\n\n"]
    return b"".join(e.replace(b"\n\n", separator) for e in events)


@pytest.mark.parametrize("piece", [1, 3, 7, 64, 10_000])
@pytest.mark.parametrize("separator", [b"\n\n", b"\r\n\r\n"])
def test_filter_gives_the_client_the_stream_without_usage(piece: int, separator: bytes) -> None:
    stream = provider_stream(separator)
    flt = UsageChunkFilter()
    out = b"".join(flt.feed(stream[i : i + piece]) for i in range(0, len(stream), piece))
    out += flt.finish()
    assert out == client_stream(separator)


def test_usage_on_a_chunk_with_choices_is_stripped_but_the_chunk_kept() -> None:
    flt = UsageChunkFilter()
    out = flt.feed(chunk(DELTA, USAGE) + b"data: [DONE]\n\n") + flt.finish()
    events = [e for e in out.split(b"\n\n") if e]
    assert json.loads(events[0][6:]) == {
        "id": "c1",
        "object": "chat.completion.chunk",
        "choices": DELTA,
    }
    assert events[1] == b"data: [DONE]"


def test_events_without_usage_pass_byte_for_byte() -> None:
    raw = b'event: x\ndata: {"a": 1}\n\n: comment\n\n'
    flt = UsageChunkFilter()
    assert flt.feed(raw) + flt.finish() == raw


def test_an_unterminated_tail_is_released_at_the_end() -> None:
    flt = UsageChunkFilter()
    assert flt.feed(b"data: partial") == b""
    assert flt.finish() == b"data: partial"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"model":"m","stream":true}', {"include_usage": True}),
        (
            b'{"model":"m","stream":true,"stream_options":{"x":1}}',
            {"x": 1, "include_usage": True},
        ),
    ],
)
def test_injection_adds_include_usage(body: bytes, expected: dict[str, object]) -> None:
    injected = inject_include_usage(body)
    assert injected is not None
    assert json.loads(injected)["stream_options"] == expected


@pytest.mark.parametrize(
    "body",
    [
        b'{"model":"m"}',
        b'{"model":"m","stream":false}',
        b'{"model":"m","stream":true,"stream_options":{"include_usage":false}}',
        b'{"model":"m","stream":true,"stream_options":{"include_usage":true}}',
        b'{"stream": true, broken json',
        b'["stream", true]',
    ],
)
def test_injection_leaves_other_bodies_alone(body: bytes) -> None:
    assert inject_include_usage(body) is None


def general_path(complete: bytes) -> bytes:
    """What the filter gives for whole events without its fast path (event by event)."""
    parts = stream_usage._EVENT_END.split(complete)
    return b"".join(
        stream_usage._clean_event(parts[i], parts[i + 1]) for i in range(0, len(parts) - 1, 2)
    )


@pytest.mark.parametrize(
    "event",
    [
        chunk(DELTA),  # the fast path: one data line ending in "usage":null
        chunk([], USAGE),  # the usage chunk llmtap asked for: dropped
        b'data:{"choices":[],"usage":null}\n\n',  # no space after the colon
        b'data: {"a":"\\"usage\\":null","usage":null}\n\n',  # "usage" twice
        b'event: x\ndata: {"choices":[],"usage":null}\n\n',  # two lines
        b'data: {"choices":[]}\ndata: {"b":1,"usage":null}\n\n',  # two data lines
        b'data: {"choices":[],"usage":null}\r\n\r\n',  # CRLF
        b'data: {"choices":[], "usage":null}\n\n' + chunk(DELTA),  # two events in one piece
        b'data: [{"usage":null}]\n\n',  # not an object
        b'data: {"x":1,"usage":null} \n\n',  # a trailing space
        provider_stream(),  # a whole stream in one piece (a burst, a replayed cache hit)
        chunk(DELTA) + b"\n" + chunk(DELTA),  # three newlines between two events
        chunk(DELTA) + b'event: x\ndata: {"b":1,"usage":null}\n\n' + chunk([], USAGE),
        chunk(DELTA) + b"data: [DONE]\n\n",  # an event without usage after one with
        b': comment with "usage"\n\n' + chunk(DELTA),
    ],
)
def test_the_fast_path_gives_the_bytes_the_general_path_gives(event: bytes) -> None:
    assert UsageChunkFilter().feed(event) == general_path(event)
