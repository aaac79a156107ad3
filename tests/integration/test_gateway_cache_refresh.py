"""A hot cached answer costs one store round trip per ``cache_memory_ttl_s``, not one per call in
flight when the process's memory of it runs out (issue 14: at 64 concurrent calls that was 64
Redis commands, and 64 connections, every second). Redis is reached through a relay written
here that can hold its answers back, so the calls of that moment are all in flight together."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from llmtap.testing.mock_upstream import MockUpstream
from support.gateway_cache import CHAT, ON, cache_proxy, cache_status, chat
from support.probes import wait_for

pytestmark = pytest.mark.redis

MEMORY_TTL_S = 1.0
HELD_S = 1.0
IN_FLIGHT = 20


class SlowRelay:
    """TCP relay to Redis; while ``hold`` is set each answer from Redis waits ``HELD_S``."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.hold = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._socks: list[socket.socket] = [self._listener]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target, timeout=5)
            server.settimeout(None)
            self._socks += [client, server]
            threading.Thread(target=self._pump, args=(client, server, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, True), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, answers: bool) -> None:
        try:
            while data := src.recv(65536):
                if answers and self.hold.is_set():
                    time.sleep(HELD_S)  # the store's latency under test, not a wait for a result
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                sock.close()

    def close(self) -> None:
        for sock in self._socks:
            sock.close()


@pytest.fixture
def mock() -> Iterator[MockUpstream]:
    with MockUpstream() as upstream:
        yield upstream


@pytest.fixture
def relay(redis_url: str) -> Iterator[SlowRelay]:
    parts = urlsplit(redis_url)
    slow = SlowRelay((parts.hostname or "127.0.0.1", parts.port or 6379))
    yield slow
    slow.close()


async def _together(url: str, headers: dict[str, str], count: int) -> list[httpx.Response]:
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=count)) as client:
        calls = [
            client.post(
                url + "/v1/chat/completions",
                json=CHAT,
                headers={"authorization": "Bearer sk-caller-one", **headers},
            )
            for _ in range(count)
        ]
        return await asyncio.gather(*calls)


def test_an_expired_hot_answer_is_refreshed_by_one_store_lookup(
    tmp_path: Path, mock: MockUpstream, relay: SlowRelay
) -> None:
    seeded = {**ON, "Helicone-Cache-Seed": uuid.uuid4().hex}
    settings = {
        "cache_url": f"redis://127.0.0.1:{relay.port}/0",
        "cache_memory_ttl_s": MEMORY_TTL_S,
        "cache_timeout_s": 10.0,
    }
    with cache_proxy(tmp_path, mock, **settings) as proxy:
        assert cache_status(chat(proxy.url, seeded))[0] == "MISS"
        wait_for(lambda: proxy.metrics.cache_saves == 1, timeout_s=5, what="saved")
        saved = time.monotonic()  # the memory learnt the answer when it was saved
        assert cache_status(chat(proxy.url, seeded)) == ("HIT", "0")
        lookups = proxy.metrics.cache_lookups
        wait_for(
            lambda: time.monotonic() > saved + MEMORY_TTL_S * 1.5,
            timeout_s=5,
            what="the memory's time is up",
        )
        relay.hold.set()
        replies = asyncio.run(_together(proxy.url, seeded, IN_FLIGHT))
        assert [cache_status(r) for r in replies] == [("HIT", "0")] * IN_FLIGHT
        assert len({r.json()["id"] for r in replies}) == 1
        # one call asked Redis again; the others were served what the memory had meanwhile
        assert proxy.metrics.cache_lookups - lookups == 1
        assert mock.request_count == 1
        assert proxy.metrics.cache_errors == 0
