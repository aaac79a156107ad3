"""What one request may cost the API process, tried with raw sockets against the real API: the
key is checked before any body is read, bodies are capped per route (declared or chunked), heads
and bodies that arrive too slowly are cut off, and connections past the concurrency limit get
503. The API shares its process with the consumer in ``llmtap serve``, so each of these bounds
what a caller can take from the consumer too."""

from __future__ import annotations

import json
import select
import socket
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from support.api_backend import ApiBackend
from support.probes import wait_for
from support.processes import LlmtapProcess, free_port, llmtap_env

MiB = 1024 * 1024
HUGE = 600_000_000


@contextmanager
def running_api(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **env: str
) -> Iterator[tuple[ApiBackend, str]]:
    for name, value in env.items():
        monkeypatch.setenv(f"LLMTAP_{name.upper()}", value)
    with ApiBackend(tmp_path / "data", analytics=False) as api:
        yield api, api.new_org_key("acme")[1]


def connect(api: ApiBackend) -> socket.socket:
    return socket.create_connection(("127.0.0.1", api.settings.api_port), timeout=10)


def head(path: str, *lines: str) -> bytes:
    return ("\r\n".join([f"POST {path} HTTP/1.1", "Host: api", *lines]) + "\r\n\r\n").encode()


def readable(sock: socket.socket, timeout_s: float = 0.0) -> bool:
    # poll, not select: late in a full run the test process's descriptors pass 1024, which
    # select() cannot watch ("filedescriptor out of range")
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(timeout_s * 1000))


def response_of(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of the one response on ``sock`` (read until it closes or the
    declared length is in)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"closed before a response head: {data!r}"
        data += chunk
    raw_head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = raw_head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines)}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(status_line.split()[1]), headers, body


def send_until_answered(
    sock: socket.socket, chunks: Iterator[bytes], *, max_bytes: int, deadline_s: float
) -> int:
    """Send ``chunks`` until the server answers (or stops taking them); bytes sent. Fails if
    ``max_bytes`` went out or ``deadline_s`` passed without an answer."""
    sent = 0
    deadline = time.monotonic() + deadline_s
    for chunk in chunks:
        if readable(sock):
            return sent
        assert sent < max_bytes, f"no answer after {sent} body bytes"
        assert time.monotonic() < deadline, f"no answer within {deadline_s}s ({sent} bytes)"
        try:
            sock.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            return sent
        sent += len(chunk)
    raise AssertionError("the body ran out before an answer")


def slow_bytes(size: int = 1024, pause_s: float = 0.01) -> Iterator[bytes]:
    """Body bytes from a client that is slow on purpose (pacing, not waiting for a result)."""
    while True:
        yield b"x" * size
        select.select([], [], [], pause_s)


def test_an_unauthenticated_huge_body_gets_the_401_before_it_is_sent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with running_api(tmp_path, monkeypatch) as (api, _key):
        expected = httpx.post(f"{api.url}/v1/metrics", json={})
        assert expected.status_code == 401
        for auth in ("", "Authorization: Bearer sk-llmtap-nobody"):
            with connect(api) as sock:
                lines = [f"Content-Length: {HUGE}", "Content-Type: application/json"]
                sock.sendall(head("/v1/metrics", *filter(None, [*lines, auth])))
                sent = send_until_answered(sock, slow_bytes(), max_bytes=MiB, deadline_s=10)
                status, headers, body = response_of(sock)
            assert status == 401, body
            assert sent < MiB
            assert json.loads(body)["error"]["type"] == "unauthorized"
            if not auth:
                assert json.loads(body) == expected.json()
            assert headers["www-authenticate"] == "Bearer"
            assert headers["connection"] == "close"


@pytest.mark.parametrize("path", ["/v1/metrics", "/v1/requests/search", "/v1/request/query"])
def test_an_authenticated_oversized_query_gets_413_before_the_body(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    with running_api(tmp_path, monkeypatch) as (api, key), connect(api) as sock:
        sock.sendall(head(path, f"Authorization: Bearer {key}", f"Content-Length: {HUGE}"))
        assert readable(sock, 5.0), "no answer to the head alone"
        status, headers, body = response_of(sock)
    assert status == 413
    error = json.loads(body)["error"]
    assert error["type"] == "too_large"
    assert str(MiB) in error["message"]
    assert headers["connection"] == "close"


def test_a_body_just_under_the_cap_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with running_api(tmp_path, monkeypatch) as (api, key):
        body = json.dumps({"filter": "all", "pad": "x" * (MiB - 100)})
        response = httpx.post(
            f"{api.url}/v1/requests/search",
            content=body,
            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        )
    assert response.status_code in (200, 400), response.text  # read and judged, not refused


@pytest.mark.parametrize("path", ["/v1/metrics", "/oai/v1/log"])
def test_a_chunked_oversized_body_gets_413_while_it_is_sent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    limit = 2 * MiB  # ingestion routes keep their own, larger cap
    with running_api(tmp_path, monkeypatch, max_ingest_body_bytes=str(limit)) as (api, key):
        cap = limit if path.endswith("/log") else MiB
        with connect(api) as sock:
            lines = [f"Authorization: Bearer {key}", "Transfer-Encoding: chunked"]
            sock.sendall(head(path, *lines))
            piece = b"x" * 65536
            chunk = b"%x\r\n%s\r\n" % (len(piece), piece)
            sent = send_until_answered(
                sock, iter(lambda: chunk, None), max_bytes=cap + 8 * MiB, deadline_s=20
            )
            status, _, body = response_of(sock)
        assert status == 413, body
        assert sent > cap
        assert json.loads(body)["error"]["type"] == "too_large"


def test_a_slow_body_is_cut_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with running_api(tmp_path, monkeypatch, api_body_read_timeout_s="1") as (api, key):
        with connect(api) as sock:
            sock.sendall(
                head("/v1/metrics", f"Authorization: Bearer {key}", "Content-Length: 1000")
            )
            started = time.monotonic()
            send_until_answered(sock, slow_bytes(1, 0.1), max_bytes=900, deadline_s=10)
            status, _, body = response_of(sock)
        assert status == 408, body
        assert time.monotonic() - started < 5


def closed(sock: socket.socket) -> bool:
    """Read what the server sent (a 408 is fine); True once it closed the connection."""
    try:
        while readable(sock):
            if not sock.recv(65536):
                return True
    except ConnectionResetError:
        return True
    return False


def test_slowloris_heads_are_closed_and_others_are_served(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with running_api(tmp_path, monkeypatch, api_header_read_timeout_s="1") as (api, key):
        idle = [connect(api) for _ in range(5)]  # connect and say nothing
        slow = [connect(api) for _ in range(15)]  # a head one header at a time, never finished
        for sock in slow:
            sock.sendall(b"POST /v1/metrics HTTP/1.1\r\nHost: api\r\n")
        open_ = set(idle + slow)
        deadline = time.monotonic() + 10
        served = False
        for n in range(500):  # at most ~10 s of dribbling
            for sock in list(open_):
                if readable(sock) and closed(sock):
                    open_.discard(sock)
                    continue
                if sock in slow:
                    try:
                        sock.sendall(f"X-Slow-{n}: 1\r\n".encode())
                    except (BrokenPipeError, ConnectionResetError):
                        open_.discard(sock)
            if not served:
                ok = httpx.get(f"{api.url}/v1/requests", headers={"Authorization": f"Bearer {key}"})
                assert ok.status_code == 200, ok.text
                served = True
            if not open_ or time.monotonic() > deadline:
                break
            select.select([], [], [], 0.02)
        assert not open_, f"{len(open_)} of 20 half-open connections still open after 10 s"
        for sock in idle + slow:
            sock.close()


def test_connections_past_the_limit_get_503(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with running_api(tmp_path, monkeypatch, api_max_concurrency="4") as (api, _key):
        held = [connect(api) for _ in range(4)]
        wait_for(lambda: httpx.get(f"{api.url}/v1/health").status_code == 503, timeout_s=5)
        for sock in held:
            sock.close()
        wait_for(lambda: httpx.get(f"{api.url}/v1/health").status_code == 200, timeout_s=5)


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_an_unauthenticated_100mb_body_does_not_grow_the_api_process(tmp_path: Path) -> None:
    port = free_port()
    env = llmtap_env({"LLMTAP_DATA_DIR": str(tmp_path / "data"), "LLMTAP_API_PORT": str(port)})
    api = LlmtapProcess(["api"], env, tmp_path / "api.log").start()
    try:
        url = f"http://127.0.0.1:{port}"

        def health() -> bool:
            assert api.alive, api.output()[-3000:]
            try:
                return httpx.get(f"{url}/v1/health").status_code == 200
            except httpx.TransportError:
                return False

        wait_for(health, timeout_s=60, what="llmtap api")
        assert api.process is not None
        before = _rss_kib(api.process.pid)
        size = 100 * MiB
        sent = 0
        with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
            sock.sendall(head("/v1/metrics", f"Content-Length: {size}"))
            piece = b"x" * MiB
            try:  # all of it, unless the server answers (and closes) first
                while sent < size and not readable(sock):
                    sock.sendall(piece)
                    sent += len(piece)
            except (BrokenPipeError, ConnectionResetError):
                pass
            status, _, _ = response_of(sock)
        assert status == 401
        grown = _rss_kib(api.process.pid) - before
        assert grown < 8 * 1024, f"the API grew by {grown} KiB on {sent} unauthenticated bytes"
    finally:
        api.stop(30)


def test_a_failing_key_store_is_answered_in_the_api_shape(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with running_api(tmp_path, monkeypatch) as (api, _key):
        with sqlite3.connect(tmp_path / "data" / "records.db") as db:
            db.execute("DROP TABLE api_keys")  # every key lookup now fails in the store
        response = httpx.post(
            f"{api.url}/v1/metrics", json={}, headers={"Authorization": "Bearer sk-llmtap-x"}
        )
    assert response.status_code in (500, 503), response.text
    assert response.json()["error"]["type"] in ("store_error", "unavailable")
