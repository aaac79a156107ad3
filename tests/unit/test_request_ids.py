"""The proxy's own request ids (``new_request_id``, built from random bytes without
``uuid.UUID``; ``RequestIds``, the same from a pool of random bytes): canonical random UUIDs,
exactly what ``str(uuid.uuid4())`` produced before."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest

from llmtap.capture.tap import RequestIds, new_request_id, split_headers


@pytest.mark.parametrize("make", [new_request_id, RequestIds()], ids=["one-by-one", "pooled"])
def test_new_request_ids_are_canonical_version_4_uuids_and_unique(make: Callable[[], str]) -> None:
    # 20,000 ids: the pool (256 ids) is drawn again many times
    ids = [make() for _ in range(20_000)]
    assert len(set(ids)) == len(ids)
    for text in ids:
        parsed = uuid.UUID(text)
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122
        assert str(parsed) == text  # lower-case, hyphenated: the form stored and shown


def test_a_call_without_an_id_gets_a_new_one_and_a_call_with_one_keeps_it() -> None:
    _, tap = split_headers([(b"Content-Type", b"application/json")])
    assert uuid.UUID(tap.request_id).version == 4
    own = "6F9619FF-8B86-D011-B42D-00C04FC964FF"
    _, tap = split_headers([(b"Helicone-Request-Id", own.encode())])
    assert tap.request_id == own.lower()


def test_a_plain_call_takes_its_id_from_the_ids_it_is_given() -> None:
    ids = RequestIds()
    _, tap = split_headers([(b"Content-Type", b"application/json")], ids)
    _, other = split_headers([(b"Helicone-User-Id", b"u1")], ids)
    assert uuid.UUID(tap.request_id).version == uuid.UUID(other.request_id).version == 4
    assert tap.request_id != other.request_id
