"""``llmtap seed``: write N realistic calls straight into the stores, in bulk.

For benchmarks and screenshots. Each synthetic call (``synthetic.py``) becomes what the proxy
would have produced: its bodies go into the body store in packs, its ``LogRecord`` goes through
the consumer's own row builder, request and response parsers and cost calculator (so tokens,
models and costs are exactly what the consumer would store, prices from genai-prices), and the
rows go to the consumer's sinks in order (records, then analytics), a batch at a time. Nothing
passes through the queue or the proxy: this is the stores' bulk path, not a load test of them.

Timestamps spread over the last ``days`` with a day/night rhythm, ending now (to the minute).
Request ids come from the seed and that end, so running the same command again in the same
minute writes the same rows again (replaced, never counted twice), and a later run adds new ones.
The stores must not be open in another process (chDB allows one process per data directory):
stop ``llmtap serve`` first.
"""

from __future__ import annotations

import hashlib
import heapq
import math
import random
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TextIO

from llmtap.consumer.context import Context
from llmtap.consumer.handlers.cost import CostCalculator
from llmtap.consumer.handlers.request_parser import RequestParser
from llmtap.consumer.handlers.response_parser import ResponseParser
from llmtap.consumer.handlers.row_builder import RowBuilder
from llmtap.demo.synthetic import Call, Synthetic, json_bytes, response_body
from llmtap.errors import ConfigError
from llmtap.queue.port import Message
from llmtap.record import BodyRef, LogRecord, Timing, encode
from llmtap.settings import Settings
from llmtap.stores.bodies.port import BodyStore, pack_bodies, pack_key
from llmtap.stores.factory import open_body_store, open_sinks
from llmtap.stores.records.store import RecordsStore
from llmtap.stores.row import RequestRow
from llmtap.stores.sink import Sink

DAY_MS = 86_400_000.0
PACK_CALLS = 1000
"""Calls whose bodies share one pack object (the proxy's shipper packs a batch the same way)."""


@dataclass(frozen=True, slots=True)
class SeedPlan:
    rows: int
    days: float = 7.0
    org: str = "default"
    """``default`` (the default organization) or an organization's id."""
    seed: int = 42
    bodies: bool = True
    batch: int = 10_000
    users: int = 5000


@dataclass(frozen=True, slots=True)
class SeedReport:
    rows: int
    org_id: str
    seconds: float
    start_unix_ms: float
    end_unix_ms: float

    @property
    def rate(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else math.inf


class _Clock:
    """Conversation start times over the range, more by day than by night (UTC), in order."""

    def __init__(self, rnd: random.Random, start_ms: float, end_ms: float) -> None:
        self._rnd, self._start, self._span = rnd, start_ms, end_ms - start_ms

    def draw(self) -> float:
        while True:
            when = self._start + self._rnd.random() * self._span
            hour = (when / 3_600_000.0) % 24
            # busiest around 15:00 UTC, a third of that at night
            weight = 0.35 + 0.65 * (0.5 + 0.5 * math.cos((hour - 15) / 24 * 2 * math.pi))
            if self._rnd.random() < weight:
                return when

    def sorted(self, count: int) -> list[float]:
        return sorted(self.draw() for _ in range(count))


class Seeder:
    """Builds the rows of synthetic calls as the consumer would, and writes them in batches."""

    def __init__(
        self,
        plan: SeedPlan,
        org_id: str,
        end_unix_ms: float,
        price_overrides: dict[str, dict[str, float]] | None = None,
    ) -> None:
        self.plan, self.org_id = plan, org_id
        self.end_ms = end_unix_ms
        self.start_ms = end_unix_ms - plan.days * DAY_MS
        self._synthetic = Synthetic(plan.seed, users=plan.users)
        # ids and times from their own streams: the calls stay the same whatever the end
        self._ids = random.Random(f"{plan.seed}:{int(end_unix_ms)}")
        self._clock = _Clock(random.Random(plan.seed + 1), self.start_ms, end_unix_ms)
        self._build_row = RowBuilder()
        self._handlers = (RequestParser(), ResponseParser(), CostCalculator(price_overrides))

    def calls(self) -> Iterator[tuple[Call, float]]:
        """``rows`` calls and their start times (unix ms), oldest first, as a consumer would
        write them (a part of the analytics table then covers a short stretch of time)."""
        # how many conversations make ``rows`` calls: drawn once without keeping them, then
        # again from the same state, so the start times can be spread over the whole range
        state = self._synthetic.random.getstate()
        conversations, counted = 0, 0
        while counted < self.plan.rows:
            counted += len(self._synthetic.conversation())
            conversations += 1
        self._synthetic.random.setstate(state)
        self._synthetic.restart()
        left = self.plan.rows
        pending: list[tuple[float, int, Call]] = []  # a heap: the calls of open sessions
        order = 0
        latest = self.end_ms - 1.0
        for start in self._clock.sorted(conversations):
            while pending and pending[0][0] <= start:
                when, _, call = heapq.heappop(pending)
                yield call, when
            for call in self._synthetic.conversation()[:left]:
                order += 1
                heapq.heappush(pending, (min(start + call.offset_ms, latest), order, call))
                left -= 1
        while pending:
            when, _, call = heapq.heappop(pending)
            yield call, when

    def rows(self, chunk: list[tuple[Call, float]], bodies: BodyStore | None) -> list[RequestRow]:
        """The rows of ``chunk``; with ``bodies``, the bodies go there first, in one pack."""
        ids = [str(uuid.UUID(int=self._ids.getrandbits(128), version=4)) for _ in chunk]
        requests = [json_bytes(call.request_json()) for call, _ in chunk]
        responses = [
            response_body(call, request_id, int(when // 1000))
            for (call, when), request_id in zip(chunk, ids, strict=True)
        ]
        keys: list[str | None] = [None] * (2 * len(chunk))
        if bodies is not None:
            pack = pack_key(self.org_id, f"{self._ids.getrandbits(128):032x}")
            blob, packed = pack_bodies(
                pack, [b for pair in zip(requests, responses, strict=True) for b in pair]
            )
            bodies.put(pack, blob, "application/octet-stream")
            keys = list(packed)
        out = []
        for i, (call, when) in enumerate(chunk):
            record = self._record(
                call, when, ids[i], requests[i], responses[i], keys[2 * i : 2 * i + 2]
            )
            out.append(self._row(record, requests[i], responses[i]))
        return out

    def _record(
        self,
        call: Call,
        when: float,
        request_id: str,
        request: bytes,
        response: bytes,
        keys: list[str | None],
    ) -> LogRecord:
        stream = call.stream and call.status == 200
        content_type = "text/event-stream" if stream else "application/json"
        headers = {k.lower(): v for k, v in call.headers().items()}
        headers.update(
            {"content-type": "application/json", "user-agent": _AGENTS[call.model.provider]}
        )
        return LogRecord(
            request_id=request_id,
            source="proxy",
            provider=call.model.provider,
            method="POST",
            target_url=call.model.target_url,
            status=call.status,
            timing=Timing(
                start_unix_ms=round(when, 3),
                total_ms=call.latency_ms,
                upstream_headers_ms=round(call.ttft_ms * (0.4 if stream else 0.97), 3),
                first_chunk_ms=call.ttft_ms if stream else call.latency_ms,
            ),
            org_id=self.org_id,
            request_headers=headers,
            response_headers={
                "content-type": content_type,
                "x-request-id": f"req_{request_id[:8]}",
            },
            request_body=BodyRef(keys[0], len(request), "application/json"),
            response_body=BodyRef(keys[1], len(response), content_type),
            streamed=stream,
            user_id=call.user_id,
            session_id=call.session_id,
            session_path=call.session_path,
            session_name=call.session_name,
            properties=dict(call.properties),
            attempts=1,
        )

    def _row(self, record: LogRecord, request: bytes, response: bytes) -> RequestRow:
        value = encode(record)
        row = self._build_row(record)
        row.record_digest = hashlib.blake2b(value, digest_size=16).hexdigest()
        message = Message("seed", 0, 0, None, value, int(record.timing.start_unix_ms))
        ctx = Context(message, record, row, request_body=request, response_body=response)
        for handler in self._handlers:
            handler(ctx)
        return ctx.row


_AGENTS = {"openai": "OpenAI/Python 1.54.0", "anthropic": "Anthropic/Python 0.39.0"}


def resolve_org(records: RecordsStore, org: str) -> str:
    if org == "default":
        return records.default_org_id()
    if org not in {o.id for o in records.list_orgs()}:
        raise ConfigError(f"--org {org!r}: no such organization (`llmtap keys list` shows ids)")
    return org


def seed(
    settings: Settings,
    plan: SeedPlan,
    *,
    now_unix_ms: float | None = None,
    progress: Callable[[int, float], None] | None = None,
) -> SeedReport:
    """Write ``plan.rows`` calls through the consumer's sinks; ``progress(rows, seconds)`` after
    each batch."""
    if plan.rows < 0 or plan.days <= 0 or plan.batch < 1:
        raise ConfigError("seed: --rows must be >= 0, --days > 0, the batch >= 1")
    now = time.time() * 1000.0 if now_unix_ms is None else now_unix_ms
    sinks: list[Sink] = open_sinks(settings)
    bodies = open_body_store(settings.bodies_url) if plan.bodies else None
    try:
        records = sinks[0]
        assert isinstance(records, RecordsStore)
        org_id = resolve_org(records, plan.org)
        seeder = Seeder(plan, org_id, now // 60_000 * 60_000, settings.price_overrides)
        began = time.perf_counter()
        written = 0
        batch: list[RequestRow] = []
        chunk: list[tuple[Call, float]] = []

        def flush() -> None:
            nonlocal written
            for sink in sinks:
                sink.write_batch(batch)
            written += len(batch)
            batch.clear()
            if progress is not None:
                progress(written, time.perf_counter() - began)

        for item in seeder.calls():
            chunk.append(item)
            if len(chunk) == PACK_CALLS:
                batch.extend(seeder.rows(chunk, bodies))
                chunk.clear()
                if len(batch) >= plan.batch:
                    flush()
        if chunk:
            batch.extend(seeder.rows(chunk, bodies))
        if batch:
            flush()
        return SeedReport(
            written, org_id, time.perf_counter() - began, seeder.start_ms, seeder.end_ms
        )
    finally:
        for sink in sinks:
            sink.close()
        if bodies is not None:
            bodies.close()


def run_seed(settings: Settings, plan: SeedPlan, out: TextIO | None = None) -> int:
    """The command: seed, saying how far it got and at what rate."""

    def progress(rows: int, seconds: float) -> None:
        print(f"  {rows:>12,} rows  {rows / max(seconds, 1e-9):>10,.0f} rows/s", file=sys.stderr)

    report = seed(settings, plan, progress=progress)
    print(
        f"seeded {report.rows:,} rows into organization {report.org_id} in "
        f"{report.seconds:.1f} s ({report.rate:,.0f} rows/s), "
        f"{plan.days:g} days up to now",
        file=out or sys.stdout,
    )
    return 0
