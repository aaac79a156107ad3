"""The demo's traffic: synthetic calls sent as real HTTP through the proxy, at a steady rate.

Each call takes the path a user's SDK call takes (client socket → proxy → provider → queue →
consumer → stores), so what the dashboard shows is what llmtap really logged. The provider is
the mock upstream ``llmtap serve --demo`` points every base URL and route at; ``x-mock-*``
headers tell it how to answer (latency, reply length, streamed pace, an error).

What to send comes from a ``CallSource`` (``llmtap.demo.calls``); ``render`` turns one
``CallParams`` into the provider's wire request and ``TrafficDriver`` sends them: at most
``max_in_flight`` open at once (a tick that finds them all busy is skipped, never queued), each
bounded by ``CALL_TIMEOUT_S``, and on stop the open ones are played to their end.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import signal
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import msgspec

from llmtap.demo.calls import CallParams, CallSource, MiniCatalogue
from llmtap.settings import Settings

log = logging.getLogger("llmtap.demo")

CALL_TIMEOUT_S = 30.0
"""Longest one synthetic call may take (the mock answers the catalogue's calls in seconds)."""
SUMMARY_EVERY_S = 60.0
"""How often the driver logs what it sent."""
DEMO_PROVIDER_KEY = "sk-demo-not-a-real-key"
"""What the demo sends as the provider key: the mock wants one, and no real provider sees it."""
ANTHROPIC_VERSION = "2023-06-01"


@dataclass(frozen=True, slots=True)
class WireRequest:
    path: str
    headers: tuple[tuple[str, str], ...]
    body: bytes


def render(call: CallParams) -> WireRequest:
    """The provider's HTTP request for ``call``, with llmtap's headers and the mock's knobs."""
    headers: list[tuple[str, str]] = [("Content-Type", "application/json")]
    body: dict[str, Any]
    if call.kind == "embeddings":
        path = "/v1/embeddings"
        body = {"model": call.model, "input": " ".join(text for _, text in call.messages)}
    elif call.provider == "anthropic":
        path = "/v1/messages"
        headers += [("x-api-key", DEMO_PROVIDER_KEY), ("anthropic-version", ANTHROPIC_VERSION)]
        body = {"model": call.model, "max_tokens": 1024, "messages": []}
        for role, text in call.messages:
            if role == "system":
                body["system"] = text
            else:
                body["messages"].append({"role": role, "content": text})
    else:
        path = "/v1/chat/completions"
        messages = [{"role": role, "content": text} for role, text in call.messages]
        body = {"model": call.model, "messages": messages}
    if call.provider not in ("openai", "anthropic"):
        path = f"/router/{call.provider}{path}"
    if call.provider != "anthropic":
        headers.append(("Authorization", f"Bearer {DEMO_PROVIDER_KEY}"))
    if call.stream and call.kind == "chat":
        body["stream"] = True
    headers += _mock_knobs(call)
    headers += _llmtap_headers(call)
    return WireRequest(path, tuple(headers), msgspec.json.encode(body))


def _mock_knobs(call: CallParams) -> list[tuple[str, str]]:
    knobs = [("x-mock-latency-ms", str(call.latency_ms)), ("x-mock-chunks", str(call.reply_words))]
    if call.stream:
        knobs.append(("x-mock-chunk-delay-ms", f"{call.chunk_delay_ms:.3f}"))
    if call.fail_status is not None:
        knobs.append(("x-mock-status", str(call.fail_status)))
    if call.cached_tokens:
        knobs.append(("x-mock-cached-tokens", str(call.cached_tokens)))
    return knobs


def _llmtap_headers(call: CallParams) -> list[tuple[str, str]]:
    headers = []
    if call.user_id is not None:
        headers.append(("Helicone-User-Id", call.user_id))
    if call.session is not None:
        headers += [
            ("Helicone-Session-Id", call.session.session_id),
            ("Helicone-Session-Path", call.session.path),
            ("Helicone-Session-Name", call.session.name),
        ]
    headers += [(f"Helicone-Property-{name}", value) for name, value in call.properties]
    return headers


class NoAnswer(Exception):
    """The proxy did not answer with an HTTP status (refused, reset, timed out)."""


async def send(host: str, port: int, request: WireRequest, timeout_s: float) -> int:
    """Send one request on a connection of its own and read the answer to its end: the status."""
    try:
        async with asyncio.timeout(timeout_s):
            reader, writer = await asyncio.open_connection(host, port)
            try:
                writer.write(_head(host, port, request) + request.body)
                await writer.drain()
                status_line = await reader.readline()
                # read to the end as a client would; ``Connection: close`` ends it with the body
                while await reader.read(65536):
                    pass
            finally:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
    except (OSError, TimeoutError) as exc:
        raise NoAnswer(f"{type(exc).__name__}: {exc}") from None
    parts = status_line.split()
    if len(parts) < 2 or not parts[1].isdigit():
        raise NoAnswer(f"not an HTTP answer: {status_line[:80]!r}")
    return int(parts[1])


def _head(host: str, port: int, request: WireRequest) -> bytes:
    authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    lines = [
        f"POST {request.path} HTTP/1.1",
        f"Host: {authority}",
        f"Content-Length: {len(request.body)}",
        "Connection: close",
        *(f"{name}: {_one_line(value)}" for name, value in request.headers),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace")


def _one_line(value: str) -> str:
    return value.replace("\r", " ").replace("\n", " ")


@dataclass(slots=True)
class TrafficStats:
    started: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    """Answered calls by HTTP status."""
    unanswered: int = 0
    skipped: int = 0
    """Ticks that found ``max_in_flight`` calls still open."""

    @property
    def answered(self) -> int:
        return sum(self.statuses.values())

    def summary(self) -> str:
        by_status = ", ".join(f"{s}: {n}" for s, n in sorted(self.statuses.items()))
        text = f"{self.answered} answered ({by_status or 'none'}), {self.unanswered} unanswered"
        return text + (f", {self.skipped} ticks skipped, every slot busy" if self.skipped else "")


class TrafficDriver:
    def __init__(
        self,
        host: str,
        port: int,
        source: CallSource,
        *,
        calls_per_s: float,
        max_in_flight: int,
        rng: random.Random,
        call_timeout_s: float = CALL_TIMEOUT_S,
    ) -> None:
        self.host = host
        self.port = port
        self.source = source
        self.interval_s = 1.0 / calls_per_s
        self.max_in_flight = max_in_flight
        self.call_timeout_s = call_timeout_s
        self.stats = TrafficStats()
        self._rng = rng
        self._open: set[asyncio.Task[None]] = set()

    async def run(self, stop: asyncio.Event) -> TrafficStats:
        """Send calls until ``stop`` is set, then wait (bounded) for the open ones."""
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        next_summary = time.monotonic() + SUMMARY_EVERY_S
        while not stop.is_set():
            if len(self._open) < self.max_in_flight:
                task = asyncio.create_task(self._one(render(self.source.next_call())))
                self.stats.started += 1
                self._open.add(task)
                task.add_done_callback(self._open.discard)
            else:
                self.stats.skipped += 1
            if time.monotonic() >= next_summary:
                log.info("demo traffic so far: %s", self.stats.summary())
                next_summary += SUMMARY_EVERY_S
            # steady with some jitter; after a stall, carry on at the rate instead of a burst
            next_at = max(next_at + self.interval_s * self._rng.uniform(0.5, 1.5), loop.time())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), next_at - loop.time())
        if self._open:
            await asyncio.wait(set(self._open), timeout=self.call_timeout_s)
        for task in set(self._open):
            task.cancel()
        return self.stats

    async def _one(self, request: WireRequest) -> None:
        try:
            status = await send(self.host, self.port, request, self.call_timeout_s)
        except NoAnswer as exc:
            self.stats.unanswered += 1
            if self.stats.unanswered == 1:
                log.warning("demo traffic: the proxy did not answer a call (%s)", exc)
            return
        self.stats.statuses[status] += 1


async def wait_until_listening(host: str, port: int, stop: asyncio.Event) -> bool:
    """Wait until something accepts connections at host:port (the proxy starting); False if
    ``stop`` came first."""
    while not stop.is_set():
        try:
            _, writer = await asyncio.open_connection(host, port)
        except OSError:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.2)
            continue
        writer.close()
        return True
    return False


def connect_host(listen_host: str) -> str:
    """Where to reach a server listening on ``listen_host`` from this machine."""
    return {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(listen_host, listen_host)


def run_traffic(settings: Settings) -> int:
    """``llmtap serve --demo``'s traffic process: send until SIGTERM/SIGINT, then exit 0."""
    return asyncio.run(_run(settings))


async def _run(settings: Settings) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    host = connect_host(settings.proxy_host)
    rng = random.Random()
    driver = TrafficDriver(
        host,
        settings.proxy_port,
        MiniCatalogue(rng),
        calls_per_s=settings.demo_calls_per_s,
        max_in_flight=settings.demo_max_in_flight,
        rng=rng,
    )
    if await wait_until_listening(host, settings.proxy_port, stop):
        log.info("demo traffic: ~%.3g calls/s through the proxy", settings.demo_calls_per_s)
        stats = await driver.run(stop)
        log.info("demo traffic stopped: %s", stats.summary())
    return 0
