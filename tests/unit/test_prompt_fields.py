"""``Helicone-Prompt-Id`` / ``-Version``: read from the tap headers (with their ``Llmtap-``
aliases), carried on the record, and cut to what the records column holds."""

from __future__ import annotations

from llmtap.capture.tap import read_tap, split_headers
from llmtap.consumer.handlers.row_builder import RowBuilder
from llmtap.record import LogRecord, Timing, decode, encode


def test_prompt_headers_are_read_and_never_forwarded() -> None:
    forward, tap = split_headers(
        [
            (b"Helicone-Prompt-Id", b"greeting"),
            (b"Llmtap-Prompt-Version", b"7"),
            (b"Helicone-Prompt-Version", b"6"),
            (b"Content-Type", b"application/json"),
        ]
    )
    assert (tap.prompt_id, tap.prompt_version) == ("greeting", "7")  # Llmtap wins
    assert forward == [(b"Content-Type", b"application/json")]


def test_an_async_logs_meta_carries_the_prompt() -> None:
    _, tap = read_tap([[(b"helicone-prompt-id", "café".encode())]])
    assert tap.prompt_id == "café"


def test_a_prompt_id_the_column_cannot_hold_is_cut_not_refused() -> None:
    record = LogRecord(
        request_id="r",
        source="async-log",
        provider="openai",
        method="POST",
        target_url="https://api.openai.com/v1/chat/completions",
        status=200,
        timing=Timing(start_unix_ms=1.0, total_ms=1.0),
        prompt_id="a\x00" + "p" * 1000,
        prompt_version="v" * 500,
    )
    row = RowBuilder()(decode(encode(record)))
    assert row.prompt_id == "a" + "p" * 255
    assert row.prompt_version == "v" * 128
    # a record from before prompts were recorded decodes with none
    old = encode(record).replace(b',"prompt_id"', b',"x_prompt_id"')
    assert decode(old.replace(b',"prompt_version"', b',"x_prompt_version"')).prompt_id is None
