"""The S3 body store (SeaweedFS) away for the consumer, and for the proxy's body writes, behind a
``TcpRelay`` the test cuts and restores. Proxy and consumer are separate processes
(``llmtap proxy``, ``llmtap consume``) over one embedded queue, each reaching S3 through a relay of
its own, so the two outages can be told apart:

* the consumer's S3 away (12 s): it cannot read the bodies of the records it holds, so it holds
  the batch and retries (not poison); afterwards every call is stored once, bodies readable;
* the proxy's S3 away (5 s, inside the first): the calls are answered, their records published
  without bodies (``llmtap_proxy_bodies_dropped_total``); the records are stored once, each row
  noted ``llmtap-body-error: store_refused`` so it says why it has no bodies.

The clients pause, and the proxy ships every call answered so far, just before the proxy's S3 is
cut and just before it is restored: the calls that lose their bodies are then exactly those
answered in between, with no slack for how late a loaded machine runs the proxy's shipper or the
test's own thread (a ±4-call slack was not enough there).
"""

from __future__ import annotations

import secrets
import threading
from pathlib import Path

import pytest

from llmtap.stores.factory import open_body_store, open_records_store
from llmtap.stores.notes import BODY_ERROR, BODY_STORE_REFUSED
from llmtap.testing.mock_upstream import MockUpstream
from support.load import Answers, Load, proxy_metrics
from support.probes import wait_for
from support.processes import LlmtapProcess, ProxyProcess, llmtap_env
from support.relay import TcpRelay

pytestmark = pytest.mark.s3


def keep_going(seconds: float) -> None:
    """Traffic runs on for a stretch of wall time (the outage's length, not a wait for a result)."""
    threading.Event().wait(seconds)


def test_s3_away_for_the_consumer_and_the_proxy_loses_no_record_and_stores_each_once(
    tmp_path: Path, s3_endpoint: str, mock_upstream: MockUpstream
) -> None:
    bucket = f"llmtap-faults-{secrets.token_hex(5)}"
    host, port = s3_endpoint.removeprefix("http://").rsplit(":", 1)
    relays = {side: TcpRelay((host, int(port))) for side in ("proxy", "consumer")}
    for relay in relays.values():
        relay.start()

    def bodies_url(relay: TcpRelay | None) -> str:
        endpoint = f"http://127.0.0.1:{relay.port}" if relay else s3_endpoint
        return f"s3://{bucket}?endpoint={endpoint}&region=us-east-1"

    records_url = f"sqlite:///{tmp_path / 'records.db'}"
    open_records_store(records_url).close()  # migrated once, before two processes race to it
    open_body_store(bodies_url(None)).close()  # the bucket

    def env(side: str, **extra: str) -> dict[str, str]:
        return llmtap_env(
            {
                "LLMTAP_DATA_DIR": str(tmp_path / side),
                "LLMTAP_QUEUE_URL": f"sqlite:///{tmp_path / 'queue.db'}",
                "LLMTAP_RECORDS_URL": records_url,
                "LLMTAP_BODIES_URL": bodies_url(relays[side]),
                "LLMTAP_OPENAI_BASE_URL": mock_upstream.url,
                "LLMTAP_BATCH_MAX_WAIT_S": "0.05",
                **extra,
            }
        )

    def stored() -> dict[str, str | None]:
        return {rid: key for rid, (key, _) in stored_rows().items()}

    def stored_rows() -> dict[str, tuple[str | None, str | None]]:
        """request id -> (response body key, the ``llmtap-body-error`` note)."""
        store = open_records_store(records_url)
        try:
            return {
                r.request_id: (r.response_body_key, r.properties.get(BODY_ERROR))
                for r in store.recent_requests(None, 10**5)
            }
        finally:
            store.close()

    def shipped() -> int:
        """Records the proxy has handed on (published or spooled; none are dropped here)."""
        metrics = proxy_metrics(proxy.url)
        return int(
            metrics["llmtap_proxy_records_published_total"]
            + metrics["llmtap_proxy_records_spooled_total"]
        )

    def quiet(load: Load) -> int:
        """Stop ``load`` and wait until the proxy has shipped every call answered so far: the
        proxy's S3 is then cut or restored between two known calls, however late a loaded
        machine runs the shipper or this thread; the number of calls answered until then."""
        load.stop()
        count = answers.count()
        wait_for(lambda: shipped() >= count, timeout_s=60, what="every answered call shipped")
        return count

    proxy = ProxyProcess(env("proxy"), tmp_path / "proxy.log").start()
    consumer = LlmtapProcess(
        ["consume"], env("consumer", LLMTAP_RETRY_BACKOFF_MAX_S="1"), tmp_path / "consumer.log"
    ).start()
    try:
        answers = Answers()
        with Load(proxy.url, answers, threads=2, pause_s=0.02) as load:
            wait_for(lambda: len(stored()) >= 20, timeout_s=60, what="rows stored")
            relays["consumer"].cut()
            consumer_cut_at = answers.count()
            try:
                wait_for(
                    lambda: "handler:bodies unavailable" in consumer.output(),
                    timeout_s=30,
                    what="the consumer holding its batch",
                )
            except TimeoutError as exc:
                # not reproduced here (a busier machine saw it twice): keep what tells why
                raise AssertionError(
                    f"{exc}: {consumer_cut_at} calls answered at the cut, {answers.count()} now,"
                    f" {len(stored())} rows stored; consumer log:\n{consumer.output()[-3000:]}"
                ) from exc
            keep_going(3.0)
            proxy_cut = quiet(load)
        relays["proxy"].cut()
        with Load(proxy.url, answers, threads=2, pause_s=0.02) as load:
            keep_going(5.0)
            proxy_back = quiet(load)
        relays["proxy"].restore()
        with Load(proxy.url, answers, threads=2, pause_s=0.02):
            keep_going(3.0)
            relays["consumer"].restore()
            keep_going(2.0)
        assert answers.failures == [], answers.failures[:5]
        answered = answers.snapshot()
        assert proxy_back - proxy_cut > 20 and proxy_cut > consumer_cut_at + 20, "calls flowed"

        wait_for(
            lambda: len(stored()) >= len(answered), timeout_s=60, what="every answered call stored"
        )
        rows = stored()
        assert sorted(rows) == sorted(answered)
        assert "dead-lettering" not in consumer.output(), consumer.output()[-3000:]
        assert consumer.alive and proxy.alive

        # what the proxy could not write is counted; every other body is in the store
        metrics = proxy_metrics(proxy.url)
        dropped = int(metrics["llmtap_proxy_bodies_dropped_total"])
        without = [rid for rid in answered if rows[rid] is None]
        assert len(without) > 0 and dropped >= len(without)
        # the proxy's S3 was cut and restored with no call in flight: exactly the calls answered
        # in between lost their bodies
        assert set(without) == set(answered[proxy_cut:proxy_back])
        # each row without bodies says why, and only those rows do
        notes = {rid: note for rid, (_, note) in stored_rows().items()}
        assert {rid for rid, note in notes.items() if note is not None} == set(without)
        assert {notes[rid] for rid in without} == {BODY_STORE_REFUSED}
        assert metrics["llmtap_proxy_records_dropped_total"] == 0
        bodies = open_body_store(bodies_url(None))
        try:
            for rid in answered[consumer_cut_at : consumer_cut_at + 20]:
                key = rows[rid]
                assert key is not None and bodies.get(key)
        finally:
            bodies.close()
    finally:
        for process in (proxy, consumer):
            if process.alive:
                assert process.stop() == 0, process.output()[-3000:]
