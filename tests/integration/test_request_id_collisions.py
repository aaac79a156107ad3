"""A ``Helicone-Request-Id`` names a call, it does not own a row: a second, different call that
claims an id already logged is stored beside it under a fresh id, never over it; the same record
delivered again stays one row (docs/decisions/2026-12-01-request-id-collisions.md).

Everything runs through ``llmtap serve`` (proxy, embedded queue, consumer, SQLite + chDB) and the
query API; the records-store rule itself is also checked on Postgres in
tests/contract/test_records_store.py.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import msgspec
import openai

from llmtap.queue.factory import open_consumer, open_producer
from llmtap.record import decode, encode
from llmtap.settings import Settings
from llmtap.stores.records.store import RecordsStore
from llmtap.stores.row import RequestRow
from support.gateway import GatewayProcess
from support.probes import wait_for

CLAIMED = "llmtap-claimed-request-id"


def _rows_with(records: RecordsStore, prop: str, value: str) -> list[RequestRow]:
    rows = records.recent_requests(None, 500)
    return [r for r in rows if r.properties.get(prop) == value]


def _raw_record(gateway: GatewayProcess, request_id: str) -> bytes:
    """The queue message the proxy published for ``request_id``."""
    settings = Settings(data_dir=gateway.data_dir)
    consumer = open_consumer(settings, group=f"peek-{uuid.uuid4()}", topics=[settings.topic])
    try:
        while batch := consumer.poll_batch(1000, 0.5):
            for message in batch:
                if decode(message.value).request_id == request_id:
                    return message.value
    finally:
        consumer.close()
    raise AssertionError(f"no record of {request_id} on the queue")


def _publish(gateway: GatewayProcess, values: list[tuple[bytes, bytes]]) -> None:
    settings = Settings(data_dir=gateway.data_dir)
    producer = open_producer(settings)
    try:
        producer.publish_batch(settings.topic, values)
    finally:
        producer.close()


def _marker_call(client: openai.OpenAI) -> str:
    """A plain call published after the others: once it is stored, the consumer went past them
    (every test here publishes on the same partition key as its marker)."""
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "marker"}]
    )
    return raw.headers["helicone-id"]


def test_a_different_call_reusing_a_logged_id_is_stored_beside_it_not_over_it(
    gateway: GatewayProcess, records: RecordsStore
) -> None:
    key = gateway.first_key()
    assert key is not None
    gateway.wait_api()
    claimed = str(uuid.uuid4())
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="sk-provider", max_retries=0)
    first = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "the first call, which owns this id"}],
        extra_headers={"Helicone-Request-Id": claimed, "Helicone-User-Id": "first-user"},
    )
    original = wait_for(lambda: records.get_request(None, claimed), what="the first call's row")
    assert original.user_id == "first-user"

    # no key at all: the default organization, the same one as the first call
    second = client.chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": "someone else " * 40}],
        extra_headers={"Helicone-Request-Id": claimed, "Helicone-User-Id": "second-user"},
    )
    assert first.usage is not None and second.usage is not None
    assert first.usage.prompt_tokens != second.usage.prompt_tokens

    def second_row() -> RequestRow | None:
        for row in records.recent_requests(None, 500):
            if row.user_id == "second-user":
                return row
        return None

    newcomer = wait_for(second_row, what="the second call's row")
    kept = records.get_request(None, claimed)
    assert kept is not None
    # the first write is untouched: owner, body, tokens, model
    assert (kept.user_id, kept.model, kept.org_id) == ("first-user", "gpt-4o-mini", original.org_id)
    assert kept.input_tokens == first.usage.prompt_tokens
    assert kept.request_body_key == original.request_body_key
    assert kept.properties == original.properties
    # the newcomer has its own id, and says which id it claimed
    assert newcomer.request_id != claimed
    assert newcomer.properties[CLAIMED] == claimed
    assert newcomer.input_tokens == second.usage.prompt_tokens
    assert newcomer.org_id == original.org_id

    with httpx.Client(
        base_url=gateway.api_url, headers={"Authorization": f"Bearer {key}"}, timeout=30
    ) as api:
        shown = api.get(f"/v1/requests/{claimed}").json()
        assert shown["user_id"] == "first-user"
        assert api.get(f"/v1/requests/{newcomer.request_id}").json()["user_id"] == "second-user"
        found = api.post(
            "/v1/requests/search",
            json={"filter": {"field": f"properties.{CLAIMED}", "op": "eq", "value": claimed}},
        ).json()
        assert [r["request_id"] for r in found["data"]] == [newcomer.request_id]

        def counted() -> dict[str, Any] | None:
            response = api.get("/v1/metrics", params={"group_by": "user"})
            assert response.status_code == 200, response.text
            series = {g["group"]: g for g in response.json()["series"]}
            return series if {"first-user", "second-user"} <= set(series) else None

        series = wait_for(counted, what="both calls in the metrics")
        assert series["first-user"]["requests"] == 1
        assert series["second-user"]["requests"] == 1


def test_the_same_record_delivered_three_times_is_one_unchanged_row(
    gateway: GatewayProcess, records: RecordsStore
) -> None:
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="sk-provider", max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "deliver me again"}],
        extra_headers={"Helicone-User-Id": "redelivered"},
    )
    request_id = raw.headers["helicone-id"]
    row = wait_for(lambda: records.get_request(None, request_id), what="the call's row")
    value = _raw_record(gateway, request_id)
    before = records.count_requests(None)

    _publish(gateway, [(request_id.encode(), value)] * 3)
    # a marker with the same partition key goes after the three copies
    marker = msgspec.structs.replace(decode(value), request_id=str(uuid.uuid4()))
    _publish(gateway, [(request_id.encode(), encode(marker))])
    wait_for(lambda: records.get_request(None, marker.request_id), what="the marker's row")

    assert records.count_requests(None) == before + 1  # the marker, nothing else
    again = records.get_request(None, request_id)
    assert again == row
    assert _rows_with(records, CLAIMED, request_id) == []


def test_two_different_records_with_one_id_in_one_batch_are_both_kept_first_owns_the_id(
    gateway: GatewayProcess, records: RecordsStore
) -> None:
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="sk-provider", max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "template"}]
    )
    wait_for(lambda: records.get_request(None, raw.headers["helicone-id"]), what="the template")
    template = decode(_raw_record(gateway, raw.headers["helicone-id"]))
    shared = str(uuid.uuid4())
    one = msgspec.structs.replace(template, request_id=shared, user_id="batch-one")
    two = msgspec.structs.replace(template, request_id=shared, user_id="batch-two")
    key = shared.encode()
    _publish(gateway, [(key, encode(one)), (key, encode(two)), (key, encode(one))])

    newcomer = wait_for(
        lambda: next(iter(_rows_with(records, CLAIMED, shared)), None),
        what="the second record",
        timeout_s=15,
    )
    owner = records.get_request(None, shared)
    assert owner is not None and owner.user_id == "batch-one"
    assert newcomer.user_id == "batch-two" and newcomer.request_id != shared
    assert len(_rows_with(records, CLAIMED, shared)) == 1
