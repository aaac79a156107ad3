"""A fake OpenAI + Anthropic upstream that speaks the real wire formats, for tests and benchmarks.

Run it stand-alone (``llmtap mock-upstream --port 9999``, i.e. :func:`run_mock_upstream`) or
in-process (``with MockUpstream() as mock: mock.url``). Both serve, on 127.0.0.1:

==========================================  ===========================================
``POST /v1/chat/completions``               OpenAI chat completion / ``chat.completion.chunk`` SSE
``POST /v1/responses``                      OpenAI Responses API object / named SSE events
``POST /v1/embeddings``                     OpenAI embeddings (float or base64)
``GET /v1/models``, ``/v1/models/{id}``     OpenAI, or Anthropic when ``anthropic-version`` is sent
``POST /v1/messages``                       Anthropic Messages / SSE events
``POST /v1/messages/count_tokens``          Anthropic token count
``GET /health``                             ``{"status":"ok"}``, no auth
anything else                               404 in the provider's error shape
==========================================  ===========================================

Auth is checked like the providers do: OpenAI paths need ``Authorization: Bearer <anything>``
(else 401); Anthropic needs ``x-api-key`` (or a bearer token; else 401) and ``anthropic-version``
(else 400). A body that is not a JSON object is a 400. Errors use the providers' shapes: OpenAI
``{"error": {"message", "type", "param", "code"}}``, Anthropic
``{"type": "error", "error": {"type", "message"}}``. Responses carry ``x-request-id`` and
``openai-processing-ms`` (OpenAI) or ``request-id`` (Anthropic).

What the model answers, and the token counts, are deterministic: see :mod:`mock_plan` for the
rules, and :func:`expected_usage` to compute them in a test. In short: the reply is
``x-mock-chunks`` words (default 8) echoed from the last message; output tokens = those words (or
tool-argument fragments) + reasoning tokens; input tokens = the words of the prompt. OpenAI model
aliases are answered with their dated snapshot (``gpt-4o-mini`` → ``gpt-4o-mini-2024-07-18``, see
``mock_openai.SNAPSHOTS``); every other model name, and every Anthropic model, is echoed as sent.

Per-request knobs, as request headers (the SDKs send them with ``extra_headers``):

``x-mock-status: 429``
    Answer with that status and the provider's error body (after the auth check).
``x-mock-latency-ms: 250``
    Wait before the response head (default: the server's ``latency_ms``).
``x-mock-chunk-delay-ms: 20``
    Wait before each streamed content delta (default: the server's ``chunk_delay_ms``).
``x-mock-chunks: 3``
    Words in the reply = content deltas in the stream; also the number of tool-argument fragments.
``x-mock-cached-tokens: 100``
    OpenAI ``cached_tokens`` (added to the prompt tokens); Anthropic ``cache_read_input_tokens``.
``x-mock-cache-creation-tokens: 50``
    Anthropic ``cache_creation_input_tokens``.
``x-mock-reasoning-tokens: 7``
    OpenAI ``reasoning_tokens`` (added to the output tokens); Anthropic output tokens too.
``x-mock-usage-in-last-content-chunk: 1``
    Chat streams: usage rides on the last content chunk (with ``finish_reason``, non-empty
    ``choices``), as some OpenAI-compatible providers do, whether or not usage was asked for.
``x-mock-no-usage: 1``
    No usage anywhere in the response.
``x-mock-drop-after-chunks: 2``
    Streams: send that many content deltas, then close the connection without finishing the
    chunked body. JSON: send the head and that many body bytes, then close.
``x-mock-fail-first: 2`` with ``x-mock-fail-key: <any text>``
    The first 2 requests carrying that key are answered ``x-mock-fail-status`` (default 500,
    the provider's error body; ``0``: the connection is closed without an answer), the ones
    after it normally. Counted per key, so concurrent tests each use their own (a uuid).
``x-mock-retry-after: 2``
    Add ``retry-after: 2`` (any text: seconds or an HTTP date) to the response.

Recorded responses are replayed with :meth:`MockUpstream.enqueue_reply`: the next request (to
``path``, if given) is answered with exactly the queued status, headers and body bytes, an event
stream one chunk per event; auth and knobs do not apply (see :mod:`mock_canned`).
"""

from __future__ import annotations

import asyncio
import signal
import sys
import threading
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any, Self

import msgspec
import uvloop

from llmtap.testing.mock_anthropic import plan_messages
from llmtap.testing.mock_app import MockApp
from llmtap.testing.mock_canned import CannedReplies, Ending, canned_reply
from llmtap.testing.mock_embeddings import embedding_inputs
from llmtap.testing.mock_http import ReceivedRequest, RequestLog
from llmtap.testing.mock_knobs import parse_knobs
from llmtap.testing.mock_openai import plan_chat
from llmtap.testing.mock_openai_responses import plan_responses
from llmtap.testing.mock_plan import MockUsage, words_of
from llmtap.testing.mock_server import MockServer, ServerStats

__all__ = [
    "MockUpstream",
    "MockUsage",
    "ReceivedRequest",
    "expected_usage",
    "run_mock_upstream",
]


def expected_usage(
    path: str,
    body: Mapping[str, Any] | bytes | str,
    headers: Mapping[str, str] | None = None,
) -> MockUsage:
    """The usage the mock reports for a request to ``path`` with ``body`` and ``x-mock-*``
    ``headers`` (streamed or not: the numbers are the same)."""
    data: Any = body if isinstance(body, Mapping) else msgspec.json.decode(body)
    knobs = parse_knobs({k.lower(): v for k, v in (headers or {}).items()})
    if path == "/v1/chat/completions":
        return plan_chat(dict(data), knobs).usage
    if path == "/v1/responses":
        return plan_responses(dict(data), knobs).usage
    if path == "/v1/messages":
        return plan_messages(dict(data), knobs).usage
    if path == "/v1/embeddings":
        tokens = max(1, len(words_of(embedding_inputs(data.get("input")))))
        return MockUsage(input_tokens=tokens, output_tokens=0)
    raise ValueError(f"no usage for {path}")


class MockUpstream:
    """The mock upstream on a background thread with its own event loop.

    ``requests`` holds the last ``keep`` requests received (newest last), so a test can check
    what the provider saw.
    """

    def __init__(
        self,
        port: int = 0,
        latency_ms: float = 0.0,
        chunk_delay_ms: float = 0.0,
        *,
        host: str = "127.0.0.1",
        keep: int = 1000,
        tls_cert_file: str | None = None,
        tls_key_file: str | None = None,
        server_name: str | None = None,
    ) -> None:
        """With ``tls_cert_file`` (PEM chain, leaf first) and ``tls_key_file`` it serves HTTPS;
        ``server_name`` is the host its ``url`` names (default: ``localhost`` over TLS, so
        clients send SNI, which they never do for an IP address; else ``host``)."""
        self.host = host
        self.port = port
        self._tls_files = (tls_cert_file, tls_key_file)
        self.server_name = server_name or ("localhost" if tls_cert_file else host)
        self._log = RequestLog(keep)
        self._canned = CannedReplies()
        self._app = MockApp(
            latency_ms=latency_ms,
            chunk_delay_ms=chunk_delay_ms,
            requests=self._log,
            canned=self._canned,
        )
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._failure: BaseException | None = None
        self._stats: ServerStats | None = None

    @property
    def tls(self) -> bool:
        return self._tls_files[0] is not None

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` (``https://localhost:PORT`` over TLS) — OpenAI SDKs want
        ``mock.url + "/v1"``, Anthropic's not."""
        return f"{'https' if self.tls else 'http'}://{self.server_name}:{self.port}"

    @property
    def connections(self) -> int:
        """Connections accepted so far (over TLS: one handshake each)."""
        return self._stats.connections if self._stats is not None else 0

    @property
    def server_names(self) -> list[str | None]:
        """The SNI name each TLS handshake carried, oldest first (None: none was sent)."""
        return list(self._stats.server_names) if self._stats is not None else []

    @property
    def requests(self) -> list[ReceivedRequest]:
        return self._log.snapshot()

    @property
    def request_count(self) -> int:
        """Requests received (every one, however many ``requests`` keeps), since ``clear``."""
        return self._log.total

    def clear(self) -> None:
        """Forget the received requests and any canned reply not yet taken."""
        self._log.clear()
        self._canned.clear()

    def enqueue_reply(
        self,
        status: int,
        headers: Mapping[str, str] | Sequence[tuple[str, str]],
        body: bytes,
        *,
        path: str | None = None,
        chunked: bool | None = None,
        ending: Ending = "complete",
    ) -> None:
        """Answer the next request to ``path`` (any path when None) with exactly these bytes.

        Only the framing is added: ``content-length``, or ``transfer-encoding: chunked`` with one
        chunk per event when ``chunked`` (by default: the content type is an event stream).
        ``ending="drop"`` closes the connection after the bytes without ending the chunked body;
        ``"hold"`` leaves it open and unfinished. Replies queued for one path are taken in order.
        """
        pairs = list(headers.items()) if isinstance(headers, Mapping) else list(headers)
        self._canned.add(
            canned_reply(status, pairs, body, path=path, chunked=chunked, ending=ending)
        )

    @property
    def pending_replies(self) -> int:
        """Canned replies queued and not yet taken by a request."""
        return self._canned.pending()

    @property
    def internal_errors(self) -> int:
        """Requests the mock answered with a 500 because of its own bug (logged); should be 0."""
        return self._app.internal_errors

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="mock-upstream", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout=10):
            raise RuntimeError("mock upstream did not start within 10 s")
        if self._failure is not None:
            raise RuntimeError(f"mock upstream failed to start: {self._failure}") from self._failure

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _run(self) -> None:
        loop = uvloop.new_event_loop()
        try:
            loop.run_until_complete(self._serve())
        finally:
            loop.close()

    async def _serve(self) -> None:
        server = MockServer(self._app, *self._tls_files)
        self._stats = server.stats
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            self.port = await server.start(self.host, self.port)
        except OSError as exc:
            self._failure = exc
            self._ready.set()
            return
        self._ready.set()
        await self._stop.wait()
        await server.close()


def run_mock_upstream(
    host: str,
    port: int,
    latency_ms: float = 0.0,
    chunk_delay_ms: float = 0.0,
    tls_cert_file: str | None = None,
    tls_key_file: str | None = None,
) -> None:
    """Serve until SIGINT/SIGTERM (``llmtap mock-upstream``); HTTPS with ``tls_cert_file`` and
    ``tls_key_file``. The socket uses SO_REUSEPORT, so several processes may serve one port to
    use more cores."""
    uvloop.run(
        _serve_until_signalled(host, port, latency_ms, chunk_delay_ms, tls_cert_file, tls_key_file)
    )


async def _serve_until_signalled(
    host: str,
    port: int,
    latency_ms: float,
    chunk_delay_ms: float,
    tls_cert_file: str | None,
    tls_key_file: str | None,
) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    server = MockServer(
        MockApp(latency_ms=latency_ms, chunk_delay_ms=chunk_delay_ms), tls_cert_file, tls_key_file
    )
    bound = await server.start(host, port, reuse_port=True)
    scheme = "https" if tls_cert_file else "http"
    print(
        f"llmtap mock upstream listening on {scheme}://{host}:{bound}", file=sys.stderr, flush=True
    )
    await stop.wait()
    await server.close()
