"""The body store contract, on a directory and on a real S3-compatible server (SeaweedFS).

S3 tests use a bucket of their own (emptied and removed afterwards) and the credentials that
``scripts/services/seaweedfs.sh env`` prints, unless the environment already has some.
"""

from __future__ import annotations

import os
import secrets
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

from llmtap.errors import StoreError, StoreUnavailable
from llmtap.stores.bodies.file import FileBodyStore
from llmtap.stores.bodies.port import BodyStore, body_key, pack_bodies, pack_key, split_key
from llmtap.stores.bodies.s3 import MULTIPART_THRESHOLD, S3BodyStore

S3_ENDPOINT = os.environ.get("LLMTAP_TEST_S3_ENDPOINT", "http://127.0.0.1:8333")


@pytest.fixture
def s3_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in (
        ("AWS_ACCESS_KEY_ID", "llmtap-test"),
        ("AWS_SECRET_ACCESS_KEY", "llmtap-test-secret"),
        ("AWS_REGION", "us-east-1"),
    ):
        if not os.environ.get(name):
            monkeypatch.setenv(name, value)


def _remove_bucket(bucket: str) -> None:
    client = boto3.client(
        "s3", endpoint_url=S3_ENDPOINT, config=Config(s3={"addressing_style": "path"})
    )
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for obj in page.get("Contents", []):
            client.delete_object(Bucket=bucket, Key=obj["Key"])
    client.delete_bucket(Bucket=bucket)


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.fixture
def s3_bucket(s3_env: None) -> Iterator[str]:
    bucket = f"llmtap-test-{secrets.token_hex(6)}"
    try:
        S3BodyStore(bucket, endpoint=S3_ENDPOINT).close()
    except StoreUnavailable as err:
        pytest.skip(f"no S3 server at {S3_ENDPOINT} (scripts/services/seaweedfs.sh): {err}")
    yield bucket
    _remove_bucket(bucket)


@pytest.fixture(params=["file", pytest.param("s3", marks=pytest.mark.s3)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BodyStore]:
    if request.param == "file":
        opened: BodyStore = FileBodyStore(tmp_path / "bodies")
    else:
        bucket = request.getfixturevalue("s3_bucket")
        opened = S3BodyStore.from_url(f"s3://{bucket}/llmtap?endpoint={S3_ENDPOINT}")
    yield opened
    opened.close()


def test_body_reads_back_byte_for_byte(store: BodyStore) -> None:
    key = body_key("org_1", "0f3c9a", "request")
    data = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"h\xc3\xa9"}]}\x00\xff'
    store.put(key, data, "application/json")
    assert store.get(key) == data
    assert store.get(body_key("org_1", "0f3c9a", "request")) == data


def test_replayed_put_overwrites(store: BodyStore) -> None:
    key = body_key("org_1", "req-1", "response")
    store.put(key, b"first")
    store.put(key, b"second, longer")
    assert store.get(key) == b"second, longer"


def test_request_and_response_are_kept_apart(store: BodyStore) -> None:
    store.put(body_key("org_1", "req-1", "request"), b"asked")
    store.put(body_key("org_1", "req-1", "response"), b"answered")
    store.put(body_key("org_2", "req-1", "response"), b"another org")
    assert store.get(body_key("org_1", "req-1", "request")) == b"asked"
    assert store.get(body_key("org_1", "req-1", "response")) == b"answered"
    assert store.get(body_key("org_2", "req-1", "response")) == b"another org"


def test_missing_body_is_key_error(store: BodyStore) -> None:
    with pytest.raises(KeyError):
        store.get(body_key("org_1", "never-written", "request"))
    with pytest.raises(KeyError):
        store.open_stream(body_key("org_1", "never-written", "request"))


def test_large_body_round_trips_and_streams(store: BodyStore) -> None:
    # above the multipart threshold: S3 uploads it in parts
    data = secrets.token_bytes(2 * MULTIPART_THRESHOLD + 12345)
    key = body_key("org_1", "big", "response")
    store.put(key, data, "text/event-stream")
    assert store.get(key) == data
    stream = store.open_stream(key)
    chunks = []
    try:
        while chunk := stream.read(1 << 20):
            assert len(chunk) <= 1 << 20
            chunks.append(chunk)
    finally:
        stream.close()
    assert len(chunks) > 1
    assert b"".join(chunks) == data


def test_concurrent_writers_of_one_key_leave_a_whole_body(store: BodyStore) -> None:
    key = body_key("org_1", "race", "response")
    bodies = [bytes([i]) * 300_000 for i in range(6)]
    threads = [threading.Thread(target=store.put, args=(key, body)) for body in bodies]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert store.get(key) in bodies


def test_pack_slices_read_back_as_their_own_bodies(store: BodyStore) -> None:
    bodies = [b'{"messages": []}', b"", bytes(range(256)) * 40, b"data: [DONE]\n\n"]
    pack = pack_key("org", "0f" + "a" * 30)
    blob, keys = pack_bodies(pack, bodies)
    store.put(pack, blob, "application/octet-stream")
    assert [store.get(k) for k in keys] == bodies
    for key, body in zip(keys, bodies, strict=True):
        stream = store.open_stream(key)
        try:
            assert stream.read() == body
        finally:
            stream.close()
    with pytest.raises(KeyError):
        store.get(pack_key("org", "0f" + "b" * 30) + "#0+3")


def test_split_key_tells_slices_from_objects() -> None:
    assert split_key("org/ab/abc.request") == ("org/ab/abc.request", None, None)
    assert split_key("org/packs/ab/abcd.pack#10+5") == ("org/packs/ab/abcd.pack", 10, 5)
    with pytest.raises(KeyError):
        split_key("org/packs/ab/abcd.pack#ten+5")


def test_file_store_refuses_keys_that_climb_out(tmp_path: Path) -> None:
    store = FileBodyStore(tmp_path / "bodies")
    (tmp_path / "secret").write_bytes(b"do not read")
    for key in ("../secret", "org/../../secret", "/etc/passwd", "org//x", ""):
        with pytest.raises(KeyError):
            store.get(key)
        with pytest.raises(StoreError):
            store.put(key, b"x")
    assert (tmp_path / "secret").read_bytes() == b"do not read"
    # a caller-chosen request id cannot climb out either: body_key keeps it inside one folder
    with pytest.raises(StoreError):
        store.put(body_key("org", "../../../secret", "request"), b"x")


def test_file_store_leaves_no_temporary_files(tmp_path: Path) -> None:
    store = FileBodyStore(tmp_path / "bodies")
    for i in range(5):
        store.put(body_key("org", f"req-{i}", "request"), b"x" * i)
    files = [p for p in (tmp_path / "bodies").rglob("*") if p.is_file()]
    assert not [p for p in files if p.name.startswith(".tmp-")]
    assert sorted(p.relative_to(tmp_path / "bodies").as_posix() for p in files) == sorted(
        body_key("org", f"req-{i}", "request") for i in range(5)
    )


@pytest.mark.s3
def test_s3_server_away_is_unavailable(s3_env: None) -> None:
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    with pytest.raises(StoreUnavailable) as caught:
        S3BodyStore("llmtap-test-away", endpoint=endpoint)
    assert caught.value.retriable
    store = S3BodyStore("llmtap-test-away", endpoint=endpoint, create_bucket=False)
    with pytest.raises(StoreUnavailable):
        store.put("org/re/req/request", b"x")
    with pytest.raises(StoreUnavailable):
        store.get("org/re/req/request")
    with pytest.raises(StoreUnavailable):  # a pack window, read without botocore when it can be
        store.get(pack_key("org", "0123abcd") + "#10+5")
    store.close()


@pytest.mark.s3
def test_s3_bucket_is_created_when_missing(s3_env: None) -> None:
    bucket = f"llmtap-test-{secrets.token_hex(6)}"
    store = S3BodyStore.from_url(f"s3://{bucket}?endpoint={S3_ENDPOINT}&region=us-east-1")
    try:
        store.put("org/ab/abc/request", b"hello")
        client = boto3.client(
            "s3", endpoint_url=S3_ENDPOINT, config=Config(s3={"addressing_style": "path"})
        )
        assert client.get_object(Bucket=bucket, Key="org/ab/abc/request")["Body"].read() == (
            b"hello"
        )
        # a second process opening the same bucket finds it there
        S3BodyStore.from_url(f"s3://{bucket}?endpoint={S3_ENDPOINT}").close()
    finally:
        store.close()
        _remove_bucket(bucket)


@pytest.mark.s3
def test_s3_reads_neighbouring_slices_with_one_request(s3_env: None) -> None:
    """The consumer reads a batch's bodies in pack order: one ranged GET serves them all."""
    store = S3BodyStore(f"llmtap-test-{secrets.token_hex(6)}", endpoint=S3_ENDPOINT)
    try:
        bodies = [f'{{"call": {i}, "text": "{"x" * (i % 50)}"}}'.encode() for i in range(200)]
        pack = pack_key("org", secrets.token_hex(16))
        blob, keys = pack_bodies(pack, bodies)
        store.put(pack, blob)
        assert [store.get(k) for k in keys] == bodies
        assert store.window_reads == 1
        with pytest.raises(KeyError):
            store.get(pack_key("org", secrets.token_hex(16)) + "#0+5")
    finally:
        store.close()


@pytest.mark.s3
def test_s3_reads_a_pack_once_when_partitions_read_it_interleaved(s3_env: None) -> None:
    """A pack's records are spread over the topic's partitions, and a batch brings each
    partition's share in turn, each in pack order: one ranged GET still serves the pack,
    whichever partition reaches it first."""
    store = S3BodyStore(f"llmtap-test-{secrets.token_hex(6)}", endpoint=S3_ENDPOINT)
    try:
        bodies = [f'{{"call": {i}, "text": "{"x" * (i % 50)}"}}'.encode() for i in range(200)]
        pack = pack_key("org", secrets.token_hex(16))
        blob, keys = pack_bodies(pack, bodies)
        store.put(pack, blob)
        for partition in (2, 0, 3, 1):  # the later partitions' first records come earlier
            assert [store.get(k) for k in keys[partition::4]] == bodies[partition::4]
        assert store.window_reads == 1
    finally:
        store.close()


@pytest.mark.s3
def test_s3_pack_windows_are_read_without_botocore_s_get_object(s3_env: None) -> None:
    """A window is a signed ranged GET on the client's own HTTP session; botocore's
    ``get_object`` (~0.9 ms of CPU a call) is left for failures and whole objects."""
    store = S3BodyStore(f"llmtap-test-{secrets.token_hex(6)}", endpoint=S3_ENDPOINT)
    calls: list[str] = []
    store._client.meta.events.register(
        "provide-client-params.s3.GetObject", lambda **kwargs: calls.append(kwargs["params"]["Key"])
    )
    try:
        bodies = [os.urandom(n) for n in (0, 1, 300, 70_000, 5, 1_200_000, 17)]
        pack = pack_key("org id/with spaces+plus", secrets.token_hex(16))
        blob, keys = pack_bodies(pack, bodies)
        store.put(pack, blob)
        assert [store.get(k) for k in reversed(keys)] == bodies[::-1]
        assert calls == []
        # the 1.2 MB body crosses the first window's edge: its read covers it, the 17 bytes after
        # it are in the next window
        assert store.window_reads == 2
        with pytest.raises(KeyError):  # missing: botocore asked again, and it says so
            store.get(pack_key("org", secrets.token_hex(16)) + "#0+5")
        assert len(calls) == 1
    finally:
        store.close()
        _remove_bucket(store.bucket)
