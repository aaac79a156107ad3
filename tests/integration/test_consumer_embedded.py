"""The consumer service end to end on the embedded adapters: SQLite queue, SQLite records, files.

Records are published the way the proxy publishes them (bodies first, then the record); the
service runs as it does inside ``llmtap serve`` (a thread) and as ``llmtap consume`` (a process
stopped with SIGTERM).
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from llmtap.consumer.dlq import decode_dead_letter
from llmtap.consumer.service import ConsumerService
from llmtap.queue.factory import open_consumer, open_producer
from llmtap.record import BodyRef, LogRecord, Timing, encode
from llmtap.settings import Settings
from llmtap.stores.bodies.port import body_key
from llmtap.stores.factory import open_body_store, open_records_store
from support.probes import wait_for


def publish_calls(settings: Settings, ids: list[str]) -> None:
    """Write each call's bodies, then its record, as the proxy does."""
    bodies = open_body_store(settings.bodies_url)
    producer = open_producer(settings)
    try:
        for request_id in ids:
            request_key = body_key(None, request_id, "request")
            bodies.put(request_key, json.dumps({"model": "gpt-4o-mini", "messages": []}).encode())
            response_key = body_key(None, request_id, "response")
            bodies.put(response_key, _chat_response(request_id))
            record = LogRecord(
                request_id=request_id,
                source="proxy",
                provider="openai",
                method="POST",
                target_url="https://api.openai.com/v1/chat/completions",
                status=200,
                timing=Timing(start_unix_ms=time.time() * 1000, total_ms=42.0),
                request_body=BodyRef(key=request_key, size=40),
                response_body=BodyRef(key=response_key, size=200),
                response_headers={"content-type": "application/json"},
                user_id="alice",
            )
            producer.publish(settings.topic, request_id.encode(), encode(record))
        producer.flush(5.0)
    finally:
        producer.close()
        bodies.close()


def _chat_response(request_id: str) -> bytes:
    return json.dumps(
        {
            "id": f"chatcmpl-{request_id}",
            "object": "chat.completion",
            "model": "gpt-4o-mini-2024-07-18",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "hello"},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 1000, "completion_tokens": 500, "total_tokens": 1500},
        }
    ).encode()


def count_rows(settings: Settings) -> int:
    records = open_records_store(settings.records_url)
    try:
        return records.count_requests(None)
    finally:
        records.close()


def uncommitted(settings: Settings) -> int:
    consumer = open_consumer(settings)
    try:
        return sum(consumer.lag().values())
    finally:
        consumer.close()


def test_service_consumes_dead_letters_and_drains_on_stop(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, batch_max_wait_s=0.05, retry_backoff_s=0.01)
    publish_calls(settings, [f"call-{i}" for i in range(20)])
    producer = open_producer(settings)
    producer.publish(settings.topic, b"junk", b"{not a record")
    producer.close()

    service = ConsumerService(settings)
    service.start()
    try:
        wait_for(lambda: service.processed == 20 and service.dead_lettered == 1)
        # more calls while it runs are picked up too
        publish_calls(settings, [f"late-{i}" for i in range(5)])
        wait_for(lambda: service.processed == 25)
    finally:
        assert service.stop(timeout=10)
    assert not service.running and service.failure is None
    assert service.batches >= 2
    assert count_rows(settings) == 25
    assert uncommitted(settings) == 0

    records = open_records_store(settings.records_url)
    row = records.get_request(records.default_org_id(), "late-3")
    records.close()
    assert row is not None and row.model == "gpt-4o-mini" and row.user_id == "alice"
    # the whole chain ran: the provider's usage, and a price for it
    assert row.response_model == "gpt-4o-mini-2024-07-18" and row.finish_reason == "stop"
    assert (row.usage_source, row.input_tokens, row.output_tokens) == ("provider", 1000, 500)
    assert row.cost_nano_usd is not None and row.cost_nano_usd > 0

    dlq = open_consumer(settings, group="inspect", topics=[settings.dlq_topic])
    letters = dlq.poll_batch(10, 2.0)
    dlq.close()
    assert [decode_dead_letter(m.value).original for m in letters] == [b"{not a record"]


def test_llmtap_consume_exits_cleanly_on_sigterm(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    publish_calls(settings, [f"proc-{i}" for i in range(10)])
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMTAP_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "llmtap.cli", "--data-dir", str(tmp_path), "consume"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for(lambda: count_rows(settings) == 10 or proc.poll() is not None, timeout_s=60)
        assert proc.poll() is None, proc.communicate()[0]
        publish_calls(settings, [f"proc-late-{i}" for i in range(5)])
        wait_for(lambda: count_rows(settings) == 15, timeout_s=30)
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, output
    assert "SIGTERM received" in output
    assert uncommitted(settings) == 0


def test_a_locked_records_database_is_waited_out_then_written(tmp_path: Path) -> None:
    """A real outage: another process holds the records database's write lock."""
    records_path = tmp_path / "records.db"
    settings = Settings(
        data_dir=tmp_path,
        records_url=f"sqlite:///{records_path}?timeout=0.1",
        batch_max_wait_s=0.05,
        retry_backoff_s=0.02,
        retry_backoff_max_s=0.1,
        max_attempts=1,
    )
    publish_calls(settings, [f"locked-{i}" for i in range(4)])
    service = ConsumerService(settings)
    blocker = sqlite3.connect(records_path, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    service.start()
    try:
        wait_for(lambda: service.stats.stalls >= 3)
        assert service.processed == 0 and service.dead_lettered == 0
        blocker.execute("COMMIT")
        wait_for(lambda: service.processed == 4)
    finally:
        blocker.close()
        assert service.stop(timeout=10)
    assert service.dead_lettered == 0
    assert count_rows(settings) == 4
    assert uncommitted(settings) == 0
