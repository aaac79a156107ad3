"""``llmtap serve`` as an operator runs it: first start, SIGTERM under load, restart."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import openai
import pytest

from conftest import gateway_env
from llmtap.stores.factory import open_records_store
from llmtap.testing.mock_upstream import MockUpstream
from support.gateway import GatewayProcess
from support.probes import wait_for

PROMPT: Any = [{"role": "user", "content": "keep talking"}]


def test_sigterm_under_load_loses_no_answered_call(
    tmp_path_factory: pytest.TempPathFactory, mock_upstream: MockUpstream
) -> None:
    data = tmp_path_factory.mktemp("lifecycle") / "data"
    gateway = GatewayProcess(data, env=gateway_env(mock_upstream), processes=2).start()
    assert gateway.first_key() is not None, "first start prints the default key"

    answered: list[str] = []
    refused: list[BaseException] = []
    broken: list[BaseException] = []
    lock = threading.Lock()
    stop_sending = threading.Event()

    def streamer() -> None:
        try:
            stream_until_refused()
        except BaseException as exc:  # noqa: BLE001 -- reported to the test thread below
            broken.append(exc)

    def stream_until_refused() -> None:
        client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="sk-x", max_retries=0)
        while not stop_sending.is_set():
            try:
                raw = client.chat.completions.with_raw_response.create(
                    model="gpt-4o-mini",
                    messages=PROMPT,
                    stream=True,
                    extra_headers={"x-mock-chunks": "10", "x-mock-chunk-delay-ms": "30"},
                )
                chunks = list(raw.parse())
            except openai.APIConnectionError as exc:
                # refused after shutdown began: never answered, so nothing to log
                with lock:
                    refused.append(exc)
                return
            assert len(chunks) >= 10, "a stream was cut short"
            with lock:
                answered.append(raw.headers["helicone-id"])

    threads = [threading.Thread(target=streamer) for _ in range(8)]
    for thread in threads:
        thread.start()
    wait_for(lambda: len(answered) >= 16, timeout_s=30, what="some answered streams")
    with lock:
        answered_before_sigterm = len(answered)
    code = gateway.stop()  # SIGTERM while about eight streams are mid-flight
    stop_sending.set()
    for thread in threads:
        thread.join(30)
    assert code == 0, gateway.output()[-3000:]
    assert broken == []
    # the streams in flight at SIGTERM were played to their end, not cut
    assert len(answered) > answered_before_sigterm

    # whatever the consumer had not taken yet is in the durable queue: a restart finishes it
    again = GatewayProcess(data, env=gateway_env(mock_upstream), processes=1).start()
    try:
        assert again.first_key() is None or again.first_key() == gateway.first_key()
        store = open_records_store(again.records_url)
        try:
            wait_for(
                lambda: all(store.get_request(None, i) is not None for i in answered),
                timeout_s=30,
                what=f"all {len(answered)} answered calls to be stored",
            )
            rows = store.recent_requests(None, 10_000)
        finally:
            store.close()
    finally:
        assert again.stop() == 0, again.output()[-4000:]
    ids = [r.request_id for r in rows]
    assert len(ids) == len(set(ids))
    assert set(answered) <= set(ids)
    assert all(r.error is None for r in rows if r.request_id in set(answered))


def test_serve_prints_where_to_point_the_sdks(tmp_path: Path, mock_upstream: MockUpstream) -> None:
    with GatewayProcess(tmp_path / "data", env=gateway_env(mock_upstream)) as gateway:
        output = gateway.output()
    assert f"OpenAI(base_url='{gateway.url}/v1')" in output
    assert f"Anthropic(base_url='{gateway.url}')" in output
