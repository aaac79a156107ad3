"""Key resolution for the API against a real records store: both headers work, missing and
unknown keys are refused; and how bodies are shown (JSON, text, binary, omitted, missing, too
large). The cache rules are the key directory's (test_key_directory.py)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from llmtap.api.auth import KeyResolver, Unauthorized
from llmtap.api.rows import INLINE_BODY_MAX_BYTES, body_view
from llmtap.keys.directory import KeyDirectory
from llmtap.stores.factory import open_body_store
from llmtap.stores.records.store import RecordsStore


@pytest.fixture
def store(tmp_path: Path) -> Iterator[RecordsStore]:
    opened = RecordsStore(f"sqlite:///{tmp_path / 'records.db'}")
    yield opened
    opened.close()


def resolver_for(store: RecordsStore) -> KeyResolver:
    return KeyResolver(KeyDirectory(store.org_for_key_hash, ttl_s=5.0))


def test_both_headers_resolve_to_the_keys_organization(store: RecordsStore) -> None:
    org = store.create_org("acme")
    _, key = store.create_key(org, "k")
    resolver = resolver_for(store)
    assert resolver.org_for(f"Bearer {key}", None) == org
    assert resolver.org_for(None, f"Bearer {key}") == org
    assert resolver.org_for(key, None) == org  # without the Bearer word too


@pytest.mark.parametrize(
    ("authorization", "helicone", "message"),
    [
        (None, None, "missing API key"),
        ("  ", None, "missing API key"),
        ("Bearer sk-llmtap-nobody", None, "invalid or revoked"),
        (None, "Bearer sk-llmtap-nobody", "invalid or revoked"),
    ],
)
def test_no_usable_key_is_unauthorized(
    store: RecordsStore, authorization: str | None, helicone: str | None, message: str
) -> None:
    with pytest.raises(Unauthorized, match=message):
        resolver_for(store).org_for(authorization, helicone)


def test_bodies_are_shown_by_what_they_hold(tmp_path: Path) -> None:
    bodies = open_body_store(f"file://{tmp_path / 'bodies'}")
    try:
        bodies.put("o/r/json", json.dumps({"a": 1}).encode())
        bodies.put("o/r/text", b"data: chunk\n\n")
        bodies.put("o/r/binary", b"\xff\xfe\x00")
        bodies.put("o/r/big", b"x" * (INLINE_BODY_MAX_BYTES + 1))
        assert body_view(bodies, "o/r/json", False) == {
            "status": "stored",
            "size": 8,
            "json": {"a": 1},
        }
        assert body_view(bodies, "o/r/text", False)["text"] == "data: chunk\n\n"
        assert (
            body_view(bodies, "o/r/binary", False)["base64"]
            == base64.b64encode(b"\xff\xfe\x00").decode()
        )
        assert body_view(bodies, "o/r/big", False)["status"] == "too_large"
        assert body_view(bodies, "o/r/json", True)["status"] == "omitted"
        assert body_view(bodies, None, False)["status"] == "none"
        assert body_view(bodies, "o/r/gone", False)["status"] == "missing"
    finally:
        bodies.close()
