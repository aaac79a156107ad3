"""Attacks on the provider connection pool: no caller ever sees another's answer, and every
answered call is logged.

The attacker is a provider (or a host a ``Helicone-Target-URL`` names) that frames its answers in
every odd way HTTP/1.x allows, or a client that reads slowly or leaves mid-stream. Each test talks
to a provider written byte by byte (``RawUpstream``) through the real proxy, and checks that each
caller gets its own answer and that a connection that cannot be trusted is never reused.
"""

from __future__ import annotations

import asyncio
import json
import random
import socket
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from llmtap.proxy.server import ThreadedProxy
from llmtap.settings import Settings
from llmtap.stores.factory import open_body_store
from support.probes import published_records, wait_for
from support.raw_upstream import RawConnection, RawRequest, RawUpstream, response

AUTH = {"authorization": "Bearer sk-x"}


def settings_for(tmp_path: Path, upstream: RawUpstream) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        proxy_port=0,
        openai_base_url=upstream.url,
        anthropic_base_url=upstream.url,
    )


def answer_for(caller: bytes) -> bytes:
    return b'{"answer_for":"%s"}' % caller


def caller_of(request: RawRequest) -> bytes:
    return request.header(b"x-caller") or b"?"


def post(url: str, caller: str, **headers: str) -> httpx.Response:
    return httpx.post(
        url + "/v1/chat/completions",
        json={"model": "m", "messages": []},
        headers={**AUTH, "x-caller": caller, **headers},
        timeout=5,
    )


def logged(settings: Settings, request_id: str) -> dict[str, Any]:
    return wait_for(
        lambda: published_records(settings).get(request_id), timeout_s=10, what="the record"
    )


async def honest(conn: RawConnection) -> None:
    while (request := await conn.read_request()) is not None:
        await conn.send(response(answer_for(caller_of(request))))


# -- a 1xx is head only: one that announces a body would smuggle bytes to the client -------

SMUGGLED = b'HTTP/1.1 200 OK\r\ncontent-length: 17\r\n\r\n{"smuggled":true}'
INTERIM_WITH_BODY = {
    "content-length": b"HTTP/1.1 199 Odd\r\ncontent-length: %d\r\n\r\n%s"
    % (len(SMUGGLED), SMUGGLED),
    "chunked": b"HTTP/1.1 150 Odd\r\ntransfer-encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n"
    % (len(SMUGGLED), SMUGGLED),
}


@pytest.mark.parametrize("framing", sorted(INTERIM_WITH_BODY))
def test_a_1xx_that_announces_a_body_is_refused(tmp_path: Path, framing: str) -> None:
    async def handler(conn: RawConnection) -> None:
        while (request := await conn.read_request()) is not None:
            if conn.index == 0:
                await conn.send(INTERIM_WITH_BODY[framing])
            await conn.send(response(answer_for(caller_of(request))))

    request_id = str(uuid.uuid4())
    with (
        RawUpstream(handler) as upstream,
        ThreadedProxy(settings_for(tmp_path, upstream)) as proxy,
    ):
        reply = post(proxy.url, "victim", **{"helicone-request-id": request_id})
        assert reply.status_code == 502
        assert reply.json()["error"]["code"] == "upstream_protocol_error"
        record = logged(settings_for(tmp_path, upstream), request_id)
        assert (record["status"], record["error"]) == (502, "upstream_protocol_error")
        assert post(proxy.url, "next").json() == {"answer_for": "next"}
        assert [len(c.requests) for c in upstream.connections] == [1, 1]


# -- a response split at every byte boundary ---------------------------------------------------


def composite(caller: bytes) -> bytes:
    """Two interim replies, then a chunked answer in two chunks."""
    body = answer_for(caller)
    return (
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\n"
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n"
        b"5\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n" % (body[:5], len(body) - 5, body[5:])
    )


async def split_where_told(conn: RawConnection) -> None:
    while (request := await conn.read_request()) is not None:
        whole = composite(caller_of(request))
        at = int(request.header(b"x-split") or b"0")
        if at < 0:  # one byte per write
            for i in range(len(whole)):
                await conn.send(whole[i : i + 1])
                await asyncio.sleep(0.0005)  # pacing, so the proxy sees many small reads
            continue
        await conn.send(whole[:at])
        await asyncio.sleep(0.002)  # pacing: the two parts arrive as two reads
        await conn.send(whole[at:])


def test_a_response_split_at_every_byte_boundary_reaches_its_own_caller(tmp_path: Path) -> None:
    size = len(composite(b"c000"))
    with (
        RawUpstream(split_where_told) as upstream,
        ThreadedProxy(settings_for(tmp_path, upstream)) as proxy,
        httpx.Client(base_url=proxy.url, timeout=5, headers=AUTH) as client,
    ):
        for at in [-1, *range(1, size)]:
            caller = f"c{at % 1000:03d}"
            reply = client.post("/v1/x", json={}, headers={"x-caller": caller, "x-split": str(at)})
            assert (reply.status_code, reply.json()) == (200, {"answer_for": caller}), at
            assert "link" not in reply.headers
        # every split framed right: the one connection was reused throughout
        assert len(upstream.connections) == 1


# -- a provider that answers before it has read the whole request ------------------------------

BIG = 8 * 1024 * 1024  # far more than the socket buffers between proxy and provider hold


async def answers_early(conn: RawConnection) -> None:
    """Answer the first request after its head only, then read its body and carry on."""
    if conn.index == 0:
        head = await conn.reader.readuntil(b"\r\n\r\n")
        length = RawRequest(head, b"").header(b"content-length") or b"0"
        await conn.send(response(b'{"error":"unauthorized"}', b"401 Unauthorized"))
        await conn.reader.readexactly(int(length))
        conn.requests.append(RawRequest(head, b""))
    await honest(conn)


def test_an_answer_before_the_request_was_written_drops_the_connection(tmp_path: Path) -> None:
    with (
        RawUpstream(answers_early) as upstream,
        ThreadedProxy(settings_for(tmp_path, upstream)) as proxy,
    ):
        reply = httpx.post(
            proxy.url + "/v1/chat/completions", content=b"x" * BIG, headers=AUTH, timeout=10
        )
        assert reply.status_code == 401
        # the rest of that body must not go out ahead of the next caller's request
        first = upstream.connections[0]
        wait_for(lambda: first.peer_closed, timeout_s=5, what="the proxy to drop the connection")
        assert post(proxy.url, "next").json() == {"answer_for": "next"}
        assert len(upstream.connections) == 2


# -- answers that end the connection -----------------------------------------------------------

CLOSING = {
    "connection close": b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: %d\r\n\r\n%s",
    "http/1.0": b"HTTP/1.0 200 OK\r\ncontent-length: %d\r\n\r\n%s",
}


@pytest.mark.parametrize("kind", sorted(CLOSING))
def test_an_answer_that_ends_the_connection_is_never_followed_on_it(
    tmp_path: Path, kind: str
) -> None:
    async def handler(conn: RawConnection) -> None:
        while (request := await conn.read_request()) is not None:
            body = answer_for(caller_of(request))
            # the provider says the connection ends, but keeps it open (and would answer more)
            await conn.send(CLOSING[kind] % (len(body), body))

    with (
        RawUpstream(handler) as upstream,
        ThreadedProxy(settings_for(tmp_path, upstream)) as proxy,
    ):
        assert post(proxy.url, "one").json() == {"answer_for": "one"}
        first = upstream.connections[0]
        wait_for(lambda: first.peer_closed, timeout_s=5, what="the proxy to close it")
        assert post(proxy.url, "two").json() == {"answer_for": "two"}
        assert [len(c.requests) for c in upstream.connections] == [1, 1]


def test_an_http10_answer_without_length_ends_at_close_and_is_logged(tmp_path: Path) -> None:
    async def handler(conn: RawConnection) -> None:
        request = await conn.read_request()
        assert request is not None
        await conn.send(b"HTTP/1.0 200 OK\r\ncontent-type: application/json\r\n\r\n")
        await conn.send(answer_for(caller_of(request)))
        conn.writer.close()

    request_id = str(uuid.uuid4())
    with (
        RawUpstream(handler) as upstream,
        ThreadedProxy(settings_for(tmp_path, upstream)) as proxy,
    ):
        reply = post(proxy.url, "old", **{"helicone-request-id": request_id})
        assert (reply.status_code, reply.json()) == (200, {"answer_for": "old"})
        record = logged(settings_for(tmp_path, upstream), request_id)
        assert (record["status"], record.get("error")) == (200, None)
        assert record["response_body"]["size"] == len(answer_for(b"old"))


def test_a_reset_during_a_body_that_ends_at_close_is_a_cut_not_an_answer(tmp_path: Path) -> None:
    """Only an orderly close ends such a body; a reset means the rest was lost."""
    reset = threading.Event()

    async def handler(conn: RawConnection) -> None:
        await conn.read_request()
        await conn.send(b'HTTP/1.0 200 OK\r\ncontent-type: application/json\r\n\r\n{"partial":')
        await asyncio.get_running_loop().run_in_executor(None, reset.wait, 5)
        conn.reset()

    request_id = str(uuid.uuid4())
    with (
        RawUpstream(handler) as upstream,
        ThreadedProxy(settings_for(tmp_path, upstream)) as proxy,
    ):
        headers = {**AUTH, "helicone-request-id": request_id}
        with (
            pytest.raises(httpx.RemoteProtocolError),
            httpx.stream("POST", proxy.url + "/v1/x", json={}, headers=headers, timeout=5) as r,
        ):
            chunks = r.iter_raw()
            assert next(chunks) == b'{"partial":'
            reset.set()
            list(chunks)
        record = logged(settings_for(tmp_path, upstream), request_id)
        assert (record["status"], record["error"]) == (200, "upstream_disconnected")


# -- a client that leaves mid-stream -----------------------------------------------------------


def test_a_client_leaving_mid_stream_never_leaves_its_answer_in_the_pool(tmp_path: Path) -> None:
    left = threading.Event()

    async def handler(conn: RawConnection) -> None:
        if conn.index == 0:
            await conn.read_request()
            await conn.send(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n4\r\nleft\r\n")
            await asyncio.get_running_loop().run_in_executor(None, left.wait, 5)
            # the rest of the stream, and then a whole answer nobody asked for
            await conn.send(b"4\r\nover\r\n0\r\n\r\n" + response(answer_for(b"stale")))
            await conn.wait_closed_by_peer()
            return
        await honest(conn)

    request_id = str(uuid.uuid4())
    with (
        RawUpstream(handler) as upstream,
        ThreadedProxy(settings_for(tmp_path, upstream)) as proxy,
    ):
        headers = {**AUTH, "helicone-request-id": request_id}
        with httpx.stream("POST", proxy.url + "/v1/x", json={}, headers=headers, timeout=5) as r:
            assert next(r.iter_raw()) == b"left"
        # the client is gone: once the proxy has seen it (else the rest of the stream may reach
        # the proxy first, and the call would end as a whole answer)
        wait_for(lambda: proxy.metrics.client_disconnects == 1, timeout_s=5, what="the close")
        left.set()
        record = logged(settings_for(tmp_path, upstream), request_id)
        assert record["error"] == "client_disconnected"
        first = upstream.connections[0]
        wait_for(lambda: first.peer_closed, timeout_s=5, what="the proxy to drop the connection")
        for caller in ("next", "after"):
            assert post(proxy.url, caller).json() == {"answer_for": caller}
        assert [len(c.requests) for c in upstream.connections] == [1, 2]


# -- a reused connection the provider closes right after reading the request -------------------


def closes_on_second_request(both_connected: threading.Event) -> Any:
    """Each connection answers its first request (once two connections exist, so the pool holds
    two) and closes without a word after reading its second: the provider may have acted on it."""

    async def handler(conn: RawConnection) -> None:
        request = await conn.read_request()
        if request is None:
            return
        if conn.index < 2:
            if conn.index == 1:
                both_connected.set()
            await asyncio.get_running_loop().run_in_executor(None, both_connected.wait, 5)
        await conn.send(response(answer_for(caller_of(request))))
        await conn.read_request()  # read, then close: acted on or not, nobody can tell

    return handler


def fill_the_pool_with_two(proxy: ThreadedProxy) -> None:
    with ThreadPoolExecutor(2) as executor:
        replies = list(executor.map(lambda c: post(proxy.url, c).json(), ["a", "b"]))
    assert replies == [{"answer_for": "a"}, {"answer_for": "b"}]
    wait_for(lambda: len(proxy.upstream_pool.idle_connections()) == 2, timeout_s=5, what="pool")


def seen(upstream: RawUpstream, caller: bytes) -> int:
    return sum(caller_of(r) == caller for c in upstream.connections for r in c.requests)


def test_a_post_is_not_replayed_after_the_provider_may_have_acted_on_it(tmp_path: Path) -> None:
    both = threading.Event()
    request_id = str(uuid.uuid4())
    with (
        RawUpstream(closes_on_second_request(both)) as upstream,
        ThreadedProxy(settings_for(tmp_path, upstream)) as proxy,
    ):
        fill_the_pool_with_two(proxy)
        reply = post(proxy.url, "charged", **{"helicone-request-id": request_id})
        assert reply.status_code == 502
        assert reply.json()["error"]["code"] == "upstream_disconnected"
        assert seen(upstream, b"charged") == 1  # sent once: no second generation, no second bill
        record = logged(settings_for(tmp_path, upstream), request_id)
        assert (record["status"], record["error"]) == (502, "upstream_disconnected")


@pytest.mark.parametrize("how", ["GET", "POST with idempotency-key"])
def test_a_replayable_call_is_retried_once_on_a_fresh_connection(tmp_path: Path, how: str) -> None:
    both = threading.Event()
    request_id = str(uuid.uuid4())
    with (
        RawUpstream(closes_on_second_request(both)) as upstream,
        ThreadedProxy(settings_for(tmp_path, upstream)) as proxy,
    ):
        fill_the_pool_with_two(proxy)
        headers = {**AUTH, "x-caller": "again", "helicone-request-id": request_id}
        if how == "GET":
            reply = httpx.get(proxy.url + "/v1/models", headers=headers, timeout=5)
        else:
            headers["idempotency-key"] = "k-1"
            reply = httpx.post(proxy.url + "/v1/x", json={}, headers=headers, timeout=5)
        # the retry goes on a new connection, not on the other idle one (just as stale)
        assert (reply.status_code, reply.json()) == (200, {"answer_for": "again"})
        assert seen(upstream, b"again") == 2
        assert len(upstream.connections) == 3
        record = logged(settings_for(tmp_path, upstream), request_id)
        assert (record["status"], record.get("error")) == (200, None)


# -- a client that reads slowly ----------------------------------------------------------------

PIECE = 56 * 1024  # one loopback segment: read by the proxy in one go


def test_a_slow_reader_never_leaves_a_paused_connection_in_the_pool(tmp_path: Path) -> None:
    """Two pipelined answers to a client that does not read: the second overflows the proxy's
    write buffer to that client, which pauses reading from the provider — in the very read that
    completes the answer. The connection must not go back to the pool paused: the next caller
    would wait on it until the idle timeout."""

    async def handler(conn: RawConnection) -> None:
        while (request := await conn.read_request()) is not None:
            caller = caller_of(request)
            await conn.send(response(caller * (PIECE // len(caller))))

    with (
        RawUpstream(handler) as upstream,
        ThreadedProxy(settings_for(tmp_path, upstream)) as proxy,
    ):
        slow = socket.socket()
        # a tiny receive window: the kernel holds little of what the proxy writes to us
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
        slow.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 536)
        slow.connect(("127.0.0.1", proxy.port))
        try:
            requests = b"".join(
                b"POST /v1/x HTTP/1.1\r\nhost: p\r\nauthorization: Bearer sk-x\r\n"
                b"x-caller: %s\r\ncontent-length: 2\r\n\r\n{}" % caller
                for caller in (b"slow1", b"slow2")
            )
            slow.sendall(requests)
            wait_for(
                lambda: len(proxy.upstream_pool.idle_connections()) == 2,
                timeout_s=5,
                what="both answers read from the provider",
            )
            # another caller, on whichever connection the pool hands out
            with httpx.Client(base_url=proxy.url, headers=AUTH, timeout=3) as client:
                for caller in ("fast1", "fast2"):
                    reply = client.post("/v1/x", json={}, headers={"x-caller": caller})
                    assert reply.content == caller.encode() * (PIECE // len(caller))
            got = b""
            slow.settimeout(5)
            while got.count(b"slow2") < PIECE // 5:
                chunk = slow.recv(65536)
                assert chunk, "the proxy closed the slow client's connection"
                got += chunk
            assert got.count(b"slow1") == got.count(b"slow2") == PIECE // 5
        finally:
            slow.close()


# -- many callers at once over the pool --------------------------------------------------------

CALLERS = 50
CALLS_EACH = 3


async def shuffling_provider(conn: RawConnection) -> None:
    """Echoes each request's token from its body, framed at random: content-length or chunked,
    after a random delay, sometimes behind interim replies, split into random pieces, sometimes
    closing the connection after the answer."""
    rng = random.Random(conn.index)
    while (request := await conn.read_request()) is not None:
        body = b'{"echo":"%s"}' % json.loads(request.body)["token"].encode()
        if rng.random() < 0.5:
            whole = response(body)
        else:
            whole = (
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                b"transfer-encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
            )
        if rng.random() < 0.2:
            whole = b"HTTP/1.1 100 Continue\r\n\r\n" + whole
        close = rng.random() < 0.1
        if close:
            whole = whole.replace(
                b"HTTP/1.1 200 OK\r\n", b"HTTP/1.1 200 OK\r\nconnection: close\r\n"
            )
        await asyncio.sleep(rng.random() * 0.02)
        while whole:
            cut = rng.randint(1, len(whole))
            await conn.send(whole[:cut])
            whole = whole[cut:]
            if whole:
                await asyncio.sleep(rng.random() * 0.002)
        if close:
            await conn.wait_closed_by_peer()
            return


def test_fifty_concurrent_callers_each_get_exactly_their_own_answer(tmp_path: Path) -> None:
    with (
        RawUpstream(shuffling_provider) as upstream,
        ThreadedProxy(settings_for(tmp_path, upstream)) as proxy,
    ):

        def caller(n: int) -> list[tuple[str, str, Any]]:
            out = []
            with httpx.Client(base_url=proxy.url, headers=AUTH, timeout=10) as client:
                for i in range(CALLS_EACH):
                    token, request_id = f"t{n}-{i}-{uuid.uuid4().hex}", str(uuid.uuid4())
                    reply = client.post(
                        "/v1/x", json={"token": token}, headers={"helicone-request-id": request_id}
                    )
                    out.append((token, request_id, (reply.status_code, reply.json())))
            return out

        with ThreadPoolExecutor(CALLERS) as executor:
            results = [r for batch in executor.map(caller, range(CALLERS)) for r in batch]

        assert len(results) == CALLERS * CALLS_EACH
        for token, _, got in results:
            assert got == (200, {"echo": token})
        settings = settings_for(tmp_path, upstream)
        wanted = {request_id for _, request_id, _ in results}
        records = wait_for(
            lambda: (r := published_records(settings)).keys() >= wanted and r,
            timeout_s=20,
            what="every call's record",
        )
        bodies = open_body_store(settings.bodies_url)
        try:
            for token, request_id, _ in results:
                record = records[request_id]
                assert (record["status"], record.get("error")) == (200, None)
                stored = json.loads(bodies.get(record["response_body"]["key"]))
                assert stored == {"echo": token}
        finally:
            bodies.close()
