"""The one decoder for compressed bodies (proxy capture, ingestion, consumer): never more than
the caller's limit comes out, and it says whether the stream was whole."""

from __future__ import annotations

import gzip
import zlib

from llmtap.capture.decode import inflate

BODY = b'{"id": "chatcmpl-1", "choices": []}' * 200


def test_gzip_and_zlib_inflate_whole() -> None:
    for data in (gzip.compress(BODY), zlib.compress(BODY)):
        found = inflate(data, len(BODY))
        assert found is not None
        assert (found.data, found.complete, found.over_limit) == (BODY, True, False)


def test_a_bomb_stops_at_the_limit() -> None:
    bomb = gzip.compress(b"\0" * (64 * 1024 * 1024))  # 64 MiB from ~64 KiB
    found = inflate(bomb, 1024)
    assert found is not None and found.over_limit and len(found.data) == 1024


def test_a_cut_stream_yields_what_arrived_and_says_so() -> None:
    data = gzip.compress(BODY, mtime=0)
    found = inflate(data[: len(data) // 2], len(BODY))
    assert found is not None and not found.complete and BODY.startswith(found.data)


def test_gzip_members_are_read_one_after_another() -> None:
    found = inflate(gzip.compress(b"first ") + gzip.compress(b"second"), 100)
    assert found is not None and (found.data, found.complete) == (b"first second", True)


def test_raw_deflate_only_when_asked_and_plain_bytes_never() -> None:
    squeezer = zlib.compressobj(wbits=-15)
    raw = squeezer.compress(BODY) + squeezer.flush()
    assert inflate(raw, len(BODY)) is None
    found = inflate(raw, len(BODY), raw_deflate=True)
    assert found is not None and found.data == BODY
    assert inflate(b'{"plain": true}', 100) is None
