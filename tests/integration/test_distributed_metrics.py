"""Metrics in the distributed topology without a ClickHouse server: ``llmtap proxy`` -> Kafka ->
two ``llmtap consume`` processes -> Postgres + S3, and ``llmtap api`` on its own.

Each consumer used to keep a private chDB and the API read an empty one of its own, so
``/v1/metrics`` answered 0 for calls every one of which was stored. Now the API computes the
metrics from the records store, and a configuration that would split them (a chDB beside a
shared records store) is refused at start, saying what to set.
"""

from __future__ import annotations

import contextlib
import re
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from sqlalchemy.engine import make_url
from test_kafka_faults import CONSUMER_OPTIONS, Calls, Topology, Traffic, make_topology, wait_until

from llmtap.stores.records.store import RecordsStore
from llmtap.testing.mock_upstream import MockUpstream
from support.dashboard import signed_in
from support.probes import wait_for
from support.processes import LlmtapProcess, free_port

pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.s3]

_REQUESTS_STAT = re.compile(r'<span class="label">Requests</span><span class="value">([\d,]+)<')


@pytest.fixture
def topology(
    tmp_path: Path, kafka_bootstrap: str, postgres_url: str, s3_endpoint: str
) -> Iterator[Topology]:
    schema = f"metrics_{secrets.token_hex(5)}"
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
    with MockUpstream() as mock:
        made = make_topology(
            tmp_path, kafka_bootstrap, postgres_url, s3_endpoint, (schema, conn), mock
        )
        try:
            yield made
        finally:
            for process in reversed(made.started):
                process.kill()
            admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
            for future in admin.delete_topics([made.topic, made.dlq_topic]).values():
                with contextlib.suppress(KafkaException):
                    future.result(30)
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
            conn.close()


def _api(topology: Topology, **extra: str) -> tuple[LlmtapProcess, str]:
    port = free_port()
    env = topology.env(
        LLMTAP_DATA_DIR=str(topology.tmp / "api"), LLMTAP_API_PORT=str(port), **extra
    )
    api = LlmtapProcess(["api"], env, topology.tmp / "api.log")
    topology.started.append(api)
    api.start()
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        assert api.alive, api.output()[-3000:]
        with contextlib.suppress(httpx.HTTPError):
            return httpx.get(f"{url}/v1/health", timeout=2).status_code == 200
        return False

    wait_for(up, timeout_s=60, interval_s=0.1, what="llmtap api")
    return api, url


def test_metrics_count_every_answered_call_after_a_consumer_is_killed(topology: Topology) -> None:
    records = RecordsStore(topology.records_url)
    try:
        _, key = records.create_key(records.default_org_id(), "metrics")
    finally:
        records.close()
    started_ms = time.time() * 1000.0
    proxy = topology.proxy()
    calls = Calls()
    options = {"LLMTAP_BATCH_MAX_RECORDS": "20"}
    first = topology.consumer("first", CONSUMER_OPTIONS, **options)
    topology.consumer("second", CONSUMER_OPTIONS, **options)
    with Traffic(proxy.url, calls, threads=3, pause_s=0.01):
        wait_until(lambda: topology.members() == [2, 2], "two members, two partitions each")
        stored = len(topology.stored())
        wait_until(lambda: len(topology.stored()) >= stored + 100, "both consumers at work")
        first.kill()  # SIGKILL mid-run: its uncommitted batch is redone by whoever owns it next
        answered = calls.count()
        wait_until(lambda: calls.count() >= answered + 150, "calls while one consumer is dead")
        topology.consumer("first-again", CONSUMER_OPTIONS, **options)
        answered = calls.count()
        wait_until(lambda: calls.count() >= answered + 100, "calls after the restart")
    topology.assert_stored_exactly_once(calls)
    total = len(calls.ids)

    _, url = _api(topology)
    window = {"start": started_ms - 60_000, "end": time.time() * 1000.0 + 60_000}
    auth = {"authorization": f"Bearer {key}"}
    answer = httpx.get(f"{url}/v1/metrics", params=window, headers=auth, timeout=30)
    assert answer.status_code == 200, answer.text
    assert answer.json()["totals"]["requests"] == total
    by_hour = httpx.post(
        f"{url}/v1/metrics", json={**window, "bucket": "minute"}, headers=auth, timeout=30
    ).json()
    assert sum(point["requests"] for point in by_hour["series"]) == total
    overview = httpx.post(f"{url}/v1/metrics/overview", json=window, headers=auth, timeout=30)
    assert overview.json()["totals"]["requests"] == total

    with signed_in(url, key) as browser:
        page = browser.get("/")
        assert page.status_code == 200
        shown = _REQUESTS_STAT.search(page.text)
        assert shown is not None, page.text[:3000]
        assert int(shown.group(1).replace(",", "")) == total
        assert "needs the analytics store" not in browser.get("/users").text
    # the consumers kept no analytics of their own: there is nothing to split
    assert not any((topology.tmp / name / "analytics").exists() for name in ("first", "second"))


@pytest.mark.parametrize("command", ["consume", "api"])
def test_a_private_chdb_beside_a_shared_records_store_is_refused(
    topology: Topology, command: str
) -> None:
    env = topology.env(
        LLMTAP_DATA_DIR=str(topology.tmp / command),
        LLMTAP_ANALYTICS_URL=f"chdb:///{topology.tmp / command / 'analytics'}",
        LLMTAP_API_PORT=str(free_port()),
    )
    process = LlmtapProcess([command], env, topology.tmp / f"{command}.log").start()
    assert process.process is not None
    code = process.process.wait(60)
    output = process.output()
    assert code != 0, output[-3000:]
    assert "LLMTAP_ANALYTICS_URL=clickhouse://" in output, output[-3000:]
    assert "leave LLMTAP_ANALYTICS_URL unset" in output
    assert not (topology.tmp / command / "analytics").exists()
