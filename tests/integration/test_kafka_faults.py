"""Faults on the distributed path, on a real broker: proxies -> Kafka -> ``llmtap consume``
processes -> Postgres + S3. Each test ends by checking that every call the proxy answered (the
``Helicone-Id`` the client got) is stored exactly once.

The broker outage uses a Kafka of its own (``testing.kafka_broker``) so the shared broker other
tests use is never stopped. Every test gets its own topics, consumer group, Postgres schema and
bucket. Consumers run with a short session timeout (so a killed member's partitions move on in
seconds, not Kafka's default 45 s) and a short reconnect backoff; nothing else is tuned.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import signal
import statistics
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg
import pytest
from confluent_kafka import Consumer as RawConsumer
from confluent_kafka import KafkaError, KafkaException, TopicPartition
from confluent_kafka import Message as KafkaMessage
from confluent_kafka import Producer as RawProducer
from confluent_kafka.admin import AdminClient
from sqlalchemy.engine import make_url

from llmtap.consumer.dlq import HEADER_SOURCE, decode_dead_letter
from llmtap.stores.factory import open_body_store, open_records_store
from llmtap.testing.mock_upstream import MockUpstream
from support.kafka_broker import KafkaBroker, cached_kafka_lib
from support.probes import wait_for
from support.processes import LlmtapProcess, ProxyProcess, llmtap_env

pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.s3]

REPO = Path(__file__).resolve().parents[2]
PARTITIONS = 4
CONSUMER_OPTIONS = "session_timeout_ms=6000&heartbeat_interval_ms=500&reconnect_backoff_max_ms=1000"
PROMPT = [{"role": "user", "content": "hello"}]
DIAGNOSED = (
    "records_published",
    "records_spooled",
    "spool_pending",
    "spool_replayed",
    "delivery_failures",
    "records_dropped",
)


# -- the topology -----------------------------------------------------------------------------


@dataclass
class Calls:
    """What the clients saw: one entry per call, in the order they finished."""

    ids: list[str] = field(default_factory=list)
    started: list[float] = field(default_factory=list)
    latency_s: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, request_id: str, started: float, latency_s: float) -> None:
        with self.lock:
            self.ids.append(request_id)
            self.started.append(started)
            self.latency_s.append(latency_s)

    def count(self) -> int:
        with self.lock:
            return len(self.ids)

    def between(self, start: float, end: float) -> list[float]:
        with self.lock:
            return [
                lat for t, lat in zip(self.started, self.latency_s, strict=True) if start <= t < end
            ]


class Traffic:
    """Client threads calling the proxy, each pausing ``pause_s`` between calls (0: flat out)."""

    def __init__(self, url: str, calls: Calls, *, threads: int = 2, pause_s: float = 0.05) -> None:
        self._url = url + "/v1/chat/completions"
        self._calls = calls
        self._pause_s = pause_s
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def __enter__(self) -> Traffic:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)

    def _run(self) -> None:
        with httpx.Client(timeout=30.0) as client:
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    response = client.post(
                        self._url,
                        json={"model": "gpt-4o-mini", "messages": PROMPT},
                        headers={"authorization": "Bearer sk-test"},
                    )
                except httpx.HTTPError as exc:
                    self._calls.failures.append(repr(exc))
                    continue
                latency = time.monotonic() - started
                if response.status_code != 200 or "helicone-id" not in response.headers:
                    self._calls.failures.append(f"{response.status_code}: {response.text[:200]}")
                    continue
                self._calls.add(response.headers["helicone-id"], started, latency)
                if self._pause_s:
                    self._stop.wait(self._pause_s)


@dataclass
class Topology:
    tmp: Path
    bootstrap: str
    records_url: str
    schema: str
    pg: psycopg.Connection[tuple[object, ...]]
    topic: str
    dlq_topic: str
    group: str
    base_env: dict[str, str]
    started: list[LlmtapProcess] = field(default_factory=list)

    def env(self, queue_options: str = "", **extra: str) -> dict[str, str]:
        query = f"?{queue_options}" if queue_options else ""
        # faulthandler: a process stuck when a wait times out is asked (SIGABRT) where it is
        return llmtap_env(
            {
                **self.base_env,
                "LLMTAP_QUEUE_URL": f"kafka://{self.bootstrap}{query}",
                "PYTHONFAULTHANDLER": "1",
                **extra,
            }
        )

    def proxy(self, queue_options: str = "") -> ProxyProcess:
        name = f"proxy-{len(self.started)}"
        env = self.env(queue_options, LLMTAP_DATA_DIR=str(self.tmp / name))
        proxy = ProxyProcess(env, self.tmp / f"{name}.log")
        self.started.append(proxy)
        return proxy.start()

    def consumer(
        self, name: str, queue_options: str = CONSUMER_OPTIONS, **extra: str
    ) -> LlmtapProcess:
        # a data dir each: the analytics store (chDB) allows one process per directory
        env = self.env(queue_options, LLMTAP_DATA_DIR=str(self.tmp / name), **extra)
        consumer = LlmtapProcess(["consume"], env, self.tmp / f"{name}.log")
        self.started.append(consumer)
        return consumer.start()

    def stored(self) -> Counter[str]:
        rows = self.pg.execute(
            f'SELECT request_id, count(*) FROM "{self.schema}".requests GROUP BY request_id'
        ).fetchall()
        return Counter({str(request_id): int(str(n)) for request_id, n in rows})

    def assert_stored_exactly_once(self, calls: Calls, timeout_s: float = 90.0) -> None:
        assert not calls.failures, calls.failures[:5]
        answered = set(calls.ids)
        assert len(answered) == len(calls.ids), "the proxy gave two calls the same id"

        def all_there() -> bool:
            for p in self.started:
                if p.args[0] == "consume" and p.process is not None:
                    code = p.process.poll()
                    assert code in (None, 0, -9), f"{p.log_path.name} failed:\n{p.output()[-3000:]}"
            return answered <= set(self.stored())

        try:
            wait_for(all_there, timeout_s=timeout_s, interval_s=0.2, what="every answered call")
        except TimeoutError:
            pytest.fail(self.diagnosis(answered), pytrace=False)
        stored = self.stored()
        assert set(stored) == answered, "rows for calls nobody answered"
        assert [rid for rid, n in stored.items() if n > 1] == []

    def diagnosis(self, answered: set[str]) -> str:
        """What a timed-out wait saw: which answered calls are missing, whether they reached
        the topic at all (a proxy-side loss or stall) or not the store (the consumer's), the
        proxies' spool counters and the tail of every process's log."""
        missing = answered - set(self.stored())
        on_topic = {(m.key() or b"").decode() for m in read_whole_topic(self.bootstrap, self.topic)}
        lines = [
            f"{len(missing)} of {len(answered)} answered call(s) not stored; "
            f"{len(missing & on_topic)} of those are on the topic, "
            f"{len(missing - on_topic)} never reached it; e.g. {sorted(missing)[:3]}"
        ]
        for p in self.started:
            lines.append(f"--- {p.log_path.name} (alive: {p.alive})")
            if isinstance(p, ProxyProcess) and p.alive:
                with contextlib.suppress(RuntimeError):
                    metrics = p.metrics()
                    lines.append(", ".join(f"{n}={metric(metrics, n)}" for n in DIAGNOSED))
            if p.alive and p.process is not None:
                # every thread's Python stack, from faulthandler, at the end of its log
                p.process.send_signal(signal.SIGABRT)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.process.wait(15)
            lines.append(p.output()[-6000:])
        return "\n".join(lines)

    def committed(self) -> int:
        """Sum of the group's committed offsets on the logs topic (read without joining it)."""
        reader = RawConsumer({"bootstrap.servers": self.bootstrap, "group.id": self.group})
        try:
            found = reader.committed(
                [TopicPartition(self.topic, p) for p in range(PARTITIONS)], timeout=15
            )
        finally:
            reader.close()
        return sum(max(tp.offset, 0) for tp in found)

    def members(self) -> list[int]:
        """Partitions owned by each member of the group (empty while it rebalances)."""
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        (future,) = admin.describe_consumer_groups([self.group], request_timeout=10).values()
        group = future.result()
        return sorted(len(m.assignment.topic_partitions) for m in group.members)


@pytest.fixture
def pg_schema(postgres_url: str) -> Iterator[tuple[str, psycopg.Connection[tuple[object, ...]]]]:
    schema = f"faults_{secrets.token_hex(5)}"
    url = make_url(postgres_url)
    conn = psycopg.connect(
        host=url.host,
        port=url.port or 5432,
        user=url.username,
        password=url.password,
        dbname=url.database,
        autocommit=True,
    )
    conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield schema, conn
    finally:
        conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
        conn.close()


def make_topology(
    tmp: Path,
    bootstrap: str,
    postgres_url: str,
    s3_endpoint: str,
    pg: tuple[str, psycopg.Connection[tuple[object, ...]]],
    mock: MockUpstream,
) -> Topology:
    schema, conn = pg
    unique = secrets.token_hex(5)
    records = make_url(postgres_url).update_query_dict({"options": f"-csearch_path={schema}"})
    records_url = records.render_as_string(hide_password=False)
    bodies_url = f"s3://llmtap-faults-{unique}?endpoint={s3_endpoint}&region=us-east-1"
    # migrate the schema and create the bucket once, before several processes race to do it
    open_records_store(records_url).close()
    open_body_store(bodies_url).close()
    topic, dlq, group = f"faults-{unique}", f"faults-dlq-{unique}", f"faults-{unique}"
    return Topology(
        tmp=tmp,
        bootstrap=bootstrap,
        records_url=records_url,
        schema=schema,
        pg=conn,
        topic=topic,
        dlq_topic=dlq,
        group=group,
        base_env={
            "LLMTAP_RECORDS_URL": records_url,
            "LLMTAP_BODIES_URL": bodies_url,
            "LLMTAP_TOPIC": topic,
            "LLMTAP_DLQ_TOPIC": dlq,
            "LLMTAP_CONSUMER_GROUP": group,
            "LLMTAP_PARTITIONS": str(PARTITIONS),
            "LLMTAP_OPENAI_BASE_URL": mock.url,
            "LLMTAP_BATCH_MAX_WAIT_S": "0.05",
        },
    )


@pytest.fixture
def mock() -> Iterator[MockUpstream]:
    with MockUpstream() as upstream:
        yield upstream


@pytest.fixture
def shared(
    tmp_path: Path,
    kafka_bootstrap: str,
    postgres_url: str,
    s3_endpoint: str,
    pg_schema: tuple[str, psycopg.Connection[tuple[object, ...]]],
    mock: MockUpstream,
) -> Iterator[Topology]:
    """The topology on the shared broker."""
    topology = make_topology(tmp_path, kafka_bootstrap, postgres_url, s3_endpoint, pg_schema, mock)
    yield topology
    for process in reversed(topology.started):
        process.kill()
    # the shared broker outlives the run: every topic left behind slows its next start
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    for future in admin.delete_topics([topology.topic, topology.dlq_topic]).values():
        with contextlib.suppress(KafkaException):
            future.result(30)


@pytest.fixture
def broker(tmp_path: Path, kafka_bootstrap: str) -> Iterator[KafkaBroker]:
    """A broker of this test's own (the shared one must keep running for everyone else)."""
    lib = cached_kafka_lib(REPO)
    if lib is None:
        message = "no cached Kafka jars: run scripts/services/kafka.sh start"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    log4j = REPO / "scripts/services/kafka/log4j2.xml"
    with KafkaBroker(lib, log4j, tmp_path / "broker") as own:
        yield own


@pytest.fixture
def own(
    tmp_path: Path,
    broker: KafkaBroker,
    postgres_url: str,
    s3_endpoint: str,
    pg_schema: tuple[str, psycopg.Connection[tuple[object, ...]]],
    mock: MockUpstream,
) -> Iterator[Topology]:
    """The topology on the test's own broker."""
    topology = make_topology(tmp_path, broker.bootstrap, postgres_url, s3_endpoint, pg_schema, mock)
    yield topology
    for process in reversed(topology.started):
        process.kill()


def keep_going(duration_s: float) -> None:
    """Let traffic run for a stretch of wall time (the fault's duration, not a wait for a
    result)."""
    threading.Event().wait(duration_s)


def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = 60.0) -> None:
    wait_for(condition, timeout_s=timeout_s, interval_s=0.05, what=what)


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98] if len(values) > 1 else values[0]


# -- the faults -------------------------------------------------------------------------------


def test_broker_down_for_ten_seconds_loses_nothing_and_no_call_waits_on_it(
    own: Topology, broker: KafkaBroker
) -> None:
    # Kafka's own retry budget (delivery.timeout.ms) is cut to 3 s so the outage outlasts it:
    # records librdkafka gives up on must reach the proxy's disk spool, not vanish.
    proxy = own.proxy("delivery_timeout_ms=3000&reconnect_backoff_max_ms=1000")
    # the consumer's outage backoff capped at 2 s (30 s by default) so it notices the broker's
    # return soon: the test's length, not its outcome, depends on it
    own.consumer("consumer", LLMTAP_RETRY_BACKOFF_MAX_S="2")
    calls = Calls()
    with Traffic(proxy.url, calls, threads=2, pause_s=0.05):
        wait_until(lambda: calls.count() >= 40 and len(own.stored()) >= 20, "steady traffic")
        settled = time.monotonic()  # the normal latency, measured once everything is running
        keep_going(2.0)
        before_end = time.monotonic()
        broker.stop()
        outage_start = time.monotonic()
        wait_until(
            lambda: proxy.metrics()["llmtap_proxy_records_spooled_total"] > 0,
            "records in the spool",
            timeout_s=20,
        )
        keep_going(max(0.0, 11.0 - (time.monotonic() - outage_start)))
        outage_end = time.monotonic()
        broker.start()
        # a proxy in service never gets a quiet moment: the spool must drain while calls go on
        try:
            wait_until(
                lambda: metric(proxy.metrics(), "spool_pending") == 0,
                "the spool replayed while the calls go on",
                timeout_s=60,
            )
        except TimeoutError:
            pytest.fail(
                "the spool did not drain within 60 s of the broker's return\n"
                + own.diagnosis(set(calls.ids)),
                pytrace=False,
            )
        keep_going(1.0)
    own.assert_stored_exactly_once(calls, timeout_s=120)

    metrics = proxy.metrics()
    assert metrics["llmtap_proxy_records_spooled_total"] > 0
    assert metrics["llmtap_proxy_records_dropped_total"] == 0
    assert metrics["llmtap_proxy_spool_replayed_total"] > 0

    before = calls.between(settled, before_end)
    during = calls.between(outage_start, outage_end)
    assert len(during) > 50, "traffic kept flowing during the outage"
    # Generous on purpose (timings belong in the benchmark): a call that waited on Kafka would
    # take seconds (librdkafka's timeouts), not a small multiple of the normal latency. The
    # 0.5 s floor is for a loaded machine: at load 9 on 2 cores a p99 of 0.22 s against a normal
    # 0.025 s was seen with nothing waiting on Kafka (the scheduler, not the proxy).
    normal = p99(before)
    assert p99(during) < max(5 * normal + 0.05, 0.5), (normal, p99(during))
    assert max(during) < max(20 * normal, 0.5), (normal, max(during))


def test_a_consumer_killed_mid_batch_is_redone_by_its_successor(shared: Topology) -> None:
    proxy = shared.proxy()
    calls = Calls()
    with Traffic(proxy.url, calls, threads=4, pause_s=0):
        wait_until(lambda: calls.count() >= 600, "600 answered calls")
    total = len(calls.ids)
    first = shared.consumer("first", LLMTAP_BATCH_MAX_RECORDS="50")
    wait_until(lambda: len(shared.stored()) >= 100, "the first consumer at work", timeout_s=60)
    first.kill()
    assert len(shared.stored()) < total and shared.committed() < total, "killed too late"

    second = shared.consumer("second", LLMTAP_BATCH_MAX_RECORDS="50")
    shared.assert_stored_exactly_once(calls)
    assert shared.committed() == total
    assert second.stop() == 0


def test_two_consumers_share_the_partitions_through_rebalances(shared: Topology) -> None:
    proxy = shared.proxy()
    calls = Calls()
    # a long session: only a member that really leaves the group lets the other take over soon
    patient = "session_timeout_ms=45000&heartbeat_interval_ms=500"
    with Traffic(proxy.url, calls, threads=2, pause_s=0.05):
        first = shared.consumer("first", patient)
        wait_until(lambda: len(shared.stored()) >= 30, "the first consumer at work")
        second = shared.consumer("second", patient)
        wait_until(lambda: shared.members() == [2, 2], "the partitions shared by two members")
        stored_before = len(shared.stored())
        wait_until(lambda: len(shared.stored()) >= stored_before + 30, "both at work")
        assert first.stop() == 0  # SIGTERM: drain, commit, leave the group
        wait_until(
            lambda: shared.members() == [PARTITIONS],
            "the second member owning everything, well before the session timeout",
            timeout_s=15,
        )
        keep_going(1.0)
    shared.assert_stored_exactly_once(calls)
    assert second.stop() == 0
    # each one stored its share: the partitions really were split
    for member in (first, second):
        done = re.search(r"consumer stopped: (\d+) processed", member.output())
        assert done is not None and int(done.group(1)) > 0, member.output()[-2000:]


def test_a_poison_message_goes_to_the_dlq_with_its_origin_and_the_rest_flows(
    shared: Topology,
) -> None:
    proxy = shared.proxy()
    shared.consumer("consumer")
    calls = Calls()
    delivered: list[tuple[int, int]] = []

    def on_delivery(err: KafkaError | None, msg: KafkaMessage) -> None:
        assert err is None, err
        partition, offset = msg.partition(), msg.offset()
        assert partition is not None and offset is not None
        delivered.append((partition, offset))

    with Traffic(proxy.url, calls, threads=2, pause_s=0.05):
        wait_until(lambda: calls.count() >= 20, "traffic")
        raw = RawProducer({"bootstrap.servers": shared.bootstrap})
        raw.produce(
            shared.topic, value=b"\x00 not a log record", key=b"poison", on_delivery=on_delivery
        )
        assert raw.flush(15) == 0 and len(delivered) == 1
        poisoned_at = calls.count()
        wait_until(lambda: calls.count() >= poisoned_at + 20, "traffic after the poison")
    shared.assert_stored_exactly_once(calls)

    (partition, offset) = delivered[0]
    letters = read_topic(shared.bootstrap, shared.dlq_topic, expect=1)
    (message,) = letters
    letter = decode_dead_letter(message.value() or b"")
    assert letter.original == b"\x00 not a log record" and letter.original_key == b"poison"
    assert letter.error_type == "RecordDecodeError" and letter.attempts == 1
    assert (letter.topic, letter.partition, letter.offset) == (shared.topic, partition, offset)
    headers = dict(message.headers() or [])
    assert headers[HEADER_SOURCE] == f"{shared.topic}/{partition}/{offset}".encode()

    # a re-drive finds it still poison: dead again, one re-drive in its history
    redrive = LlmtapProcess(
        ["replay", "--dlq", "--idle-s", "2"], shared.env(), shared.tmp / "redrive.log"
    ).start()
    assert redrive.process is not None and redrive.process.wait(120) == 0, redrive.output()
    assert "0 stored, 1 dead again" in redrive.output()
    again = decode_dead_letter(
        read_topic(shared.bootstrap, shared.dlq_topic, expect=2)[1].value() or b""
    )
    assert again.original_headers["llmtap-redrives"] == b"1"
    assert (
        json.loads(again.original_headers["llmtap-dlq-history"])[0]["error_type"]
        == "RecordDecodeError"
    )


def test_replaying_the_topic_from_offset_zero_adds_no_row(shared: Topology) -> None:
    proxy = shared.proxy()
    consumer = shared.consumer("consumer")
    calls = Calls()
    with Traffic(proxy.url, calls, threads=2, pause_s=0.02):
        wait_until(lambda: calls.count() >= 80, "80 answered calls")
    shared.assert_stored_exactly_once(calls)

    # beside the live consumer, which keeps its own progress
    replay = LlmtapProcess(
        ["replay", "--from-offset", "0", "--idle-s", "2"], shared.env(), shared.tmp / "replay.log"
    ).start()
    assert replay.process is not None and replay.process.wait(120) == 0, replay.output()
    assert f"{len(calls.ids)} record(s) stored again, 0 dead-lettered" in replay.output()
    shared.assert_stored_exactly_once(calls)
    assert shared.committed() == len(calls.ids)
    assert consumer.stop() == 0


def read_topic(bootstrap: str, topic: str, expect: int) -> list[KafkaMessage]:
    """The first ``expect`` messages of ``topic`` (a fresh group, from the start)."""
    reader = RawConsumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"inspect-{secrets.token_hex(4)}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    reader.subscribe([topic])
    found: list[KafkaMessage] = []
    try:
        deadline = time.monotonic() + 60
        while len(found) < expect and time.monotonic() < deadline:
            found += [m for m in reader.consume(10, 0.5) if m.error() is None]
    finally:
        reader.close()
    assert len(found) >= expect, f"{len(found)} message(s) on {topic}"
    return found


def read_whole_topic(bootstrap: str, topic: str, idle_s: float = 3.0) -> list[KafkaMessage]:
    """Every message on ``topic`` (a fresh group; done once nothing came for ``idle_s``, or
    after 60 s)."""
    reader = RawConsumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"inspect-{secrets.token_hex(4)}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    reader.subscribe([topic])
    found: list[KafkaMessage] = []
    try:
        deadline = time.monotonic() + 60
        quiet_since = time.monotonic()
        while time.monotonic() - quiet_since < idle_s and time.monotonic() < deadline:
            batch = [m for m in reader.consume(500, 0.5) if m.error() is None]
            if batch:
                found += batch
                quiet_since = time.monotonic()
    finally:
        reader.close()
    return found


def metric(metrics: dict[str, float], name: str) -> float | None:
    """A proxy counter (``..._total``) or gauge by its short name."""
    return metrics.get(f"llmtap_proxy_{name}_total", metrics.get(f"llmtap_proxy_{name}"))
