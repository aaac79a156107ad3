"""Every corpus case through ResponseParser and CostCalculator, as the consumer runs them."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from genai_prices import data_snapshot
from wire_corpus import TOKEN_FIELDS, Case, load_corpus

from llmtap.consumer.context import Context
from llmtap.consumer.handlers.cost import CostCalculator
from llmtap.consumer.handlers.providers import detect_provider
from llmtap.consumer.handlers.response_parser import (
    NOTE_PARTIAL_USAGE,
    NOTE_RESPONSE,
    NOTE_USAGE,
    ResponseParser,
)
from llmtap.queue.port import Message
from llmtap.record import BodyRef, LogRecord, Timing
from llmtap.stores.row import RequestRow

CASES = load_corpus()
# case price name -> genai-prices price key
PRICE_KEYS = {
    "input": "input_mtok",
    "output": "output_mtok",
    "cache_read": "cache_read_mtok",
    "cache_write": "cache_write_mtok",
    "cache_write_1h": "cache_write_1h_mtok",
    "audio_input": "input_audio_mtok",
    "audio_output": "output_audio_mtok",
}


def run_case(case: Case) -> Context:
    record = LogRecord(
        request_id=f"req-{case.name}",
        source="proxy",
        provider=case.provider,
        method="POST",
        target_url=case.target_url,
        status=case.status,
        timing=Timing(start_unix_ms=case.timestamp_ms, total_ms=100.0),
        response_headers=case.response_headers,
        response_body=BodyRef(
            key=f"bodies/{case.name}",
            size=len(case.response_body),
            truncated=case.truncated,
        ),
        streamed=case.streamed,
        model_override=case.model_override,
        error=case.record_error,
    )
    row = RequestRow(
        request_id=record.request_id,
        org_id="org-test",
        created_unix_ms=case.timestamp_ms,
        source="proxy",
        provider=case.provider,
        method="POST",
        target_url=case.target_url,
        path="/",
        status=case.status,
        streamed=case.streamed,
        endpoint=case.endpoint,
        # what the request parser leaves: the override wins over the body's model
        model=case.model_override or case.requested_model,
    )
    message = Message("request-response-logs", 0, 0, None, b"", 0)
    ctx = Context(message=message, record=record, row=row, response_body=case.response_body)
    ResponseParser()(ctx)
    CostCalculator(case.overrides)(ctx)
    return ctx


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_case(case: Case) -> None:
    ctx = run_case(case)
    row, expect = ctx.row, case.expect
    got = {name: getattr(row, name) for name in ("response_model", "finish_reason", "usage_source")}
    got.update({name: getattr(row, name) for name in TOKEN_FIELDS})
    want = {name: expect[name] for name in got}
    assert got == want
    assert row.cost_source == expect["cost_source"]
    assert row.cost_nano_usd == case.expected_cost_nano()

    note = ctx.notes[NOTE_RESPONSE]
    assert note.get("tool_calls", 0) == expect.get("tool_calls", 0)
    assert note.get("error") == expect.get("error")
    if "complete" in expect:
        assert note["complete"] is expect["complete"]
    if "cache_write_1h" in expect:
        assert ctx.notes[NOTE_USAGE].cache_write_1h == expect["cache_write_1h"]
    if "partial_input_tokens" in expect:
        assert ctx.notes[NOTE_PARTIAL_USAGE].input == expect["partial_input_tokens"]


def test_corpus_covers_every_family_both_ways() -> None:
    shapes = {(c.endpoint, c.streamed) for c in CASES}
    assert shapes >= {
        ("chat.completions", False),
        ("chat.completions", True),
        ("responses", False),
        ("responses", True),
        ("embeddings", False),
        ("messages", False),
        ("messages", True),
    }


PRICED = [c for c in CASES if c.expect["cost_source"] == "genai-prices"]


@pytest.mark.parametrize("case", PRICED, ids=[c.name for c in PRICED])
def test_published_prices_match_genai_prices(case: Case) -> None:
    """The prices written in a case (the provider's published ones) are genai-prices' own.

    This fails when genai-prices' data changes a price a case relies on: update the case.
    """
    provider = detect_provider(case.target_url, case.provider)
    model = case.model_override or case.expect["response_model"]
    _, info = data_snapshot.get_snapshot().find_provider_model(model, None, provider.price_id, None)
    prices = info.get_prices(datetime.fromtimestamp(case.timestamp_ms / 1000, tz=UTC))
    library = {
        name: float(value)
        for name, key in PRICE_KEYS.items()
        if (value := getattr(prices, key)) is not None
    }
    assert library == {name: float(value) for name, value in case.prices.items()}
