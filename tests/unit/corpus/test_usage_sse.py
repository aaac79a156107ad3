"""The SSE parser on the byte streams providers and cut-off captures actually produce."""

from __future__ import annotations

from llmtap.consumer.handlers.sse import SseEvent, looks_like_sse, parse_sse


def test_line_ends_lf_crlf_and_cr_are_all_line_ends() -> None:
    for end in (b"\n", b"\r\n", b"\r"):
        body = b"event: a" + end + b"data: 1" + end + end + b"data: 2" + end + end
        assert parse_sse(body) == [SseEvent("a", "1"), SseEvent("message", "2")]


def test_comments_are_skipped_and_data_lines_join_with_newline() -> None:
    body = b': OPENROUTER PROCESSING\n\ndata: {"a":\ndata:1}\n: keep-alive\n\n'
    assert parse_sse(body) == [SseEvent("message", '{"a":\n1}')]


def test_only_one_space_after_the_colon_is_stripped() -> None:
    assert parse_sse(b"data:x\n\ndata:  y\n\n") == [
        SseEvent("message", "x"),
        SseEvent("message", " y"),
    ]


def test_event_without_data_is_dropped_and_event_name_does_not_leak() -> None:
    body = b"event: ping\n\ndata: after\n\n"
    assert parse_sse(body) == [SseEvent("message", "after")]


def test_cut_off_tail_is_kept_but_marked_incomplete() -> None:
    events = parse_sse(b'data: {"a":1}\n\ndata: {"b":')
    assert events == [SseEvent("message", '{"a":1}'), SseEvent("message", '{"b":', complete=False)]


def test_last_event_without_blank_line_is_incomplete_even_if_its_line_ended() -> None:
    events = parse_sse(b"event: message_stop\ndata: {}\n")
    assert events == [SseEvent("message_stop", "{}", complete=False)]


def test_bom_and_a_multibyte_character_split_by_the_cut() -> None:
    body = "\ufeffdata: caf\u00e9\n\ndata: caf\u00e9".encode()[:-1]
    events = parse_sse(body)
    assert events[0] == SseEvent("message", "caf\u00e9")
    assert events[1].data.startswith("caf") and not events[1].complete


def test_empty_and_non_sse_bodies() -> None:
    assert parse_sse(b"") == []
    assert parse_sse(b"\n\n\n") == []
    assert looks_like_sse(b"\xef\xbb\xbf\ndata: x") is True
    assert looks_like_sse(b": comment\n") is True
    assert looks_like_sse(b'{"data": 1}') is False
