"""Interim (1xx) replies from the provider, and bytes a pooled connection sends while idle.

A 1xx is not the answer: taking it for one released the connection early, and the next caller,
of any organization, got the previous caller's answer (issue 10, item 1). Every test here talks
to a provider written byte by byte (``RawUpstream``) through the real proxy.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from llmtap.proxy.server import ThreadedProxy
from llmtap.settings import Settings
from llmtap.stores.factory import open_body_store, open_records_store
from support.gateway import GatewayProcess
from support.probes import wait_for
from support.raw_upstream import RawConnection, RawUpstream, response

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


def answer(caller: bytes) -> bytes:
    return response(b'{"answer_for":"%s"}' % caller)


def call(url: str, caller: str, **headers: str) -> httpx.Response:
    return httpx.post(
        url + "/v1/chat/completions",
        json=CHAT,
        headers={"authorization": "Bearer sk-x", "x-caller": caller, **headers},
        timeout=10,
    )


def proxy_settings(tmp_path: Path, upstream: RawUpstream) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        proxy_port=0,
        openai_base_url=upstream.url,
        anthropic_base_url=upstream.url,
    )


async def early_hints_then_answer(conn: RawConnection) -> None:
    while (request := await conn.read_request()) is not None:
        await conn.send(b"HTTP/1.1 103 Early Hints\r\nlink: </a.css>; rel=preload\r\n\r\n")
        await asyncio.sleep(1.0)
        await conn.send(answer(request.header(b"x-caller") or b"?"))


@pytest.fixture
def hints_upstream() -> Iterator[RawUpstream]:
    with RawUpstream(early_hints_then_answer) as upstream:
        yield upstream


def test_early_hints_never_hand_one_callers_answer_to_another_organization(
    tmp_path: Path, hints_upstream: RawUpstream
) -> None:
    env = {
        "LLMTAP_OPENAI_BASE_URL": hints_upstream.url,
        "LLMTAP_ANTHROPIC_BASE_URL": hints_upstream.url,
        "LLMTAP_BATCH_MAX_WAIT_S": "0.05",
    }
    with GatewayProcess(tmp_path / "data", env=env) as gateway:
        records = open_records_store(gateway.records_url)
        bodies = open_body_store(gateway.bodies_url)
        try:
            callers: dict[str, tuple[str, str]] = {}  # caller -> (org id, request id)
            for name in ("alpha", "beta"):
                org = records.create_org(name)
                _, key = records.create_key(org, "k")
                callers[name] = (org, key)
            ids = {name: str(uuid.uuid4()) for name in callers}

            def send(name: str) -> Any:
                _, key = callers[name]
                auth = {"Helicone-Auth": f"Bearer {key}", "Helicone-Request-Id": ids[name]}
                try:
                    reply = call(gateway.url, name, **auth)
                except httpx.HTTPError as exc:
                    return repr(exc)
                return reply.status_code, reply.json()

            with ThreadPoolExecutor(2) as pool:
                first = pool.submit(send, "alpha")
                time.sleep(0.3)  # the scenario: the second caller arrives 0.3 s later
                second = pool.submit(send, "beta")
                got = {"alpha": first.result(), "beta": second.result()}

            assert got == {name: (200, {"answer_for": name}) for name in callers}
            for name, (org, _) in callers.items():
                row = wait_for(
                    lambda name=name: records.get_request(None, ids[name]),  # type: ignore[misc]
                    timeout_s=20,
                    what=f"the row of {name}",
                )
                assert row.org_id == org
                assert row.status == 200 and row.error is None
                assert row.response_body_key is not None
                assert json.loads(bodies.get(row.response_body_key)) == {"answer_for": name}
        finally:
            bodies.close()
            records.close()


async def continue_and_processing(conn: RawConnection) -> None:
    while (request := await conn.read_request()) is not None:
        await conn.send(b"HTTP/1.1 100 Continue\r\n\r\n")
        await conn.send(b"HTTP/1.1 102 Processing\r\n\r\n")
        await asyncio.sleep(0.05)
        await conn.send(b"HTTP/1.1 103 Early Hints\r\nlink: </b>\r\n\r\n")
        await conn.send(answer(request.header(b"x-caller") or b"?"))


def test_100_continue_and_102_processing_are_skipped(tmp_path: Path) -> None:
    with (
        RawUpstream(continue_and_processing) as upstream,
        ThreadedProxy(proxy_settings(tmp_path, upstream)) as proxy,
    ):
        for caller in ("one", "two", "three"):
            reply = call(proxy.url, caller)
            assert reply.status_code == 200
            assert reply.json() == {"answer_for": caller}
            assert "link" not in reply.headers  # the interim response's headers stay there
        assert len(upstream.connections) == 1  # the connection was kept and reused


async def serve_until_told(conn: RawConnection, stale: threading.Event) -> None:
    """Answer every request; on the first connection, after the first answer (and when the test
    says), also send a response nobody asked for."""
    while (request := await conn.read_request()) is not None:
        await conn.send(answer(request.header(b"x-caller") or b"?"))
        if conn.index == 0 and len(conn.requests) == 1:
            await asyncio.get_running_loop().run_in_executor(None, stale.wait)
            await conn.send(answer(b"stale"))


def test_bytes_on_an_idle_pooled_connection_discard_it(tmp_path: Path) -> None:
    stale = threading.Event()
    with (
        RawUpstream(lambda conn: serve_until_told(conn, stale)) as upstream,
        ThreadedProxy(proxy_settings(tmp_path, upstream)) as proxy,
    ):
        assert call(proxy.url, "first").json() == {"answer_for": "first"}
        stale.set()
        first = upstream.connections[0]
        wait_for(lambda: first.peer_closed, timeout_s=5, what="the proxy to drop the connection")
        reply = call(proxy.url, "second")
        assert reply.json() == {"answer_for": "second"}
        assert [len(c.requests) for c in upstream.connections] == [1, 1]


def test_the_pool_never_holds_a_connection_twice(tmp_path: Path) -> None:
    stale = threading.Event()
    with (
        RawUpstream(lambda conn: serve_until_told(conn, stale)) as upstream,
        ThreadedProxy(proxy_settings(tmp_path, upstream)) as proxy,
    ):
        assert call(proxy.url, "first").json() == {"answer_for": "first"}
        pool = proxy.upstream_pool
        assert len(pool.idle_connections()) == 1
        stale.set()
        first = upstream.connections[0]

        def settled() -> bool:
            idle = pool.idle_connections()
            return first.peer_closed or len(idle) > 1

        wait_for(settled, timeout_s=5, what="the proxy to read the unsolicited response")
        idle = pool.idle_connections()
        assert len(idle) == len(set(map(id, idle)))

        # two callers at once: each on a connection of its own, each with its own answer
        with ThreadPoolExecutor(2) as executor:
            replies = list(executor.map(lambda c: call(proxy.url, c).json(), ["x", "y"]))
        assert replies == [{"answer_for": "x"}, {"answer_for": "y"}]


async def processing_keepalives_then_answer(conn: RawConnection) -> None:
    """A slow provider that says it is still working: ``102 Processing`` every 0.3 s."""
    while (request := await conn.read_request()) is not None:
        for _ in range(8):  # 2.4 s in all, more than twice the idle timeout
            await conn.send(b"HTTP/1.1 102 Processing\r\n\r\n")
            await asyncio.sleep(0.3)
        await conn.send(answer(request.header(b"x-caller") or b"?"))


def test_interim_replies_count_as_activity_for_the_idle_timeout(tmp_path: Path) -> None:
    with RawUpstream(processing_keepalives_then_answer) as upstream:
        settings = Settings(
            data_dir=tmp_path / "data",
            proxy_port=0,
            openai_base_url=upstream.url,
            idle_timeout_s=1.0,
        )
        with ThreadedProxy(settings) as proxy:
            reply = call(proxy.url, "patient")
    assert reply.status_code == 200
    assert reply.json() == {"answer_for": "patient"}
