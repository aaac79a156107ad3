"""CostCalculator: agrees with genai-prices everywhere, and never turns "unknown" into $0."""

from __future__ import annotations

import dataclasses
import random
import warnings
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from genai_prices import data_snapshot

from llmtap.consumer.context import Context
from llmtap.consumer.handlers.cost import (
    CostCalculator,
    InconsistentUsage,
    _prices_usage,
    compile_tariff,
    to_nano_usd,
)
from llmtap.consumer.handlers.usage import Usage
from llmtap.errors import ConfigError
from llmtap.queue.port import Message
from llmtap.record import LogRecord, Timing
from llmtap.stores.row import RequestRow

WHEN = datetime(2026, 11, 20, 12, tzinfo=UTC)


def random_usage(rng: random.Random) -> Usage:
    total_in = rng.choice([0, 7, 1_000, 150_000, 200_001, 250_000, 1_200_000])
    read = rng.randint(0, total_in // 2)
    write = rng.randint(0, (total_in - read) // 2)
    out = rng.randint(0, 20_000)
    return Usage(
        input=total_in,
        output=out,
        cache_read=read,
        cache_write=write,
        cache_write_1h=rng.randint(0, write),
        audio_input=rng.choice([None, rng.randint(0, total_in - read - write)]),
        audio_output=rng.choice([None, rng.randint(0, out)]),
    )


def test_fast_path_equals_genai_prices_for_every_model() -> None:
    rng = random.Random(20261125)
    compared = 0
    for provider in data_snapshot.get_snapshot().providers:
        for model in provider.models:
            price = model.get_prices(WHEN)
            tariff = compile_tariff(price)
            if tariff is None:
                continue
            for _ in range(4):
                usage = random_usage(rng)
                with warnings.catch_warnings():
                    # genai-prices warns about price keys of its data it cannot use itself
                    warnings.simplefilter("ignore", UserWarning)
                    expected = price.calc_price(_prices_usage(usage))["total_price"]
                assert tariff.cost(usage) == expected, (provider.id, model.id, usage)
                compared += 1
    assert compared > 4000  # the comparison really ran over genai-prices' whole catalogue


def test_tiered_price_switches_on_total_input_including_cache() -> None:
    calc = CostCalculator()
    small = calc.price(
        Usage(input=200_000, output=0), ["claude-sonnet-4-5"], "anthropic", when=WHEN
    )
    large = calc.price(
        Usage(input=200_001, output=0), ["claude-sonnet-4-5"], "anthropic", when=WHEN
    )
    assert small is not None and large is not None
    # the whole request moves to the higher tier once input passes 200k ("cliff" pricing)
    assert large.nano_usd / 200_001 > 1.5 * small.nano_usd / 200_000


def test_models_go_through_genai_prices_when_the_fast_path_cannot_split_them() -> None:
    calc = CostCalculator()
    # gpt-realtime prices text and image tokens separately: only genai-prices itself can say
    usage = Usage(input=1_000, output=100)
    price = calc.price(usage, ["gpt-realtime"], "openai", when=WHEN)
    snapshot = data_snapshot.get_snapshot()
    provider, info = snapshot.find_provider_model("gpt-realtime", None, "openai", None)
    assert compile_tariff(info.get_prices(WHEN)) is None
    assert price is not None
    expected = info.calc_price(_prices_usage(usage), provider, genai_request_timestamp=WHEN)
    assert price.nano_usd == to_nano_usd(expected.total_price)


def test_service_tier_selects_the_price_variant() -> None:
    calc = CostCalculator()
    usage = Usage(input=1_000_000, output=0)
    standard = calc.price(usage, ["gpt-4o-mini"], "openai", when=WHEN)
    priority = calc.price(
        usage, ["gpt-4o-mini"], "openai", when=WHEN, context={"service_tier": "priority"}
    )
    assert standard is not None and priority is not None
    assert (standard.nano_usd, priority.nano_usd) == (150_000_000, 250_000_000)


def test_unknown_model_is_unpriced_not_free() -> None:
    calc = CostCalculator()
    assert calc.price(Usage(input=10, output=10), ["no-such-model-x"], "openai", when=WHEN) is None
    assert calc.price(Usage(input=10, output=10), ["gpt-4o"], None, match_model=False) is None


def test_first_priced_name_wins_and_overrides_beat_genai_prices() -> None:
    calc = CostCalculator({"GPT-4o": {"input": 1, "output": 2}})
    usage = Usage(input=1_000_000, output=1_000_000)
    via_library = calc.price(usage, ["unknown-snapshot", "gpt-4o-mini"], "openai", when=WHEN)
    assert via_library is not None
    assert (via_library.model, via_library.source) == ("gpt-4o-mini", "genai-prices")
    # an override on a later name still beats genai-prices on an earlier one
    via_override = calc.price(usage, ["gpt-4o-mini", "gpt-4o"], "openai", when=WHEN)
    assert via_override is not None
    assert (via_override.source, via_override.nano_usd) == ("override", 3_000_000_000)


def test_override_without_cache_price_bills_cached_tokens_as_input() -> None:
    calc = CostCalculator({"m": {"input": 2, "output": 4, "cache_write": 3}})
    price = calc.price(Usage(input=1_000, output=0, cache_read=400, cache_write=100), ["m"], None)
    assert price is not None
    assert price.nano_usd == to_nano_usd((Decimal(900) * 2 + Decimal(100) * 3) / 1_000_000)


@pytest.mark.parametrize(
    "prices",
    [{"input": 1, "outptu": 2}, {"input": -1}, {"input": float("nan")}],
)
def test_bad_overrides_are_refused_at_start(prices: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        CostCalculator({"m": prices})


def test_parts_larger_than_the_whole_are_not_priced() -> None:
    calc = CostCalculator()
    with pytest.raises(InconsistentUsage):
        calc.price(Usage(input=10, output=1, cache_read=50), ["gpt-4o-mini"], "openai", when=WHEN)


def test_nano_dollars_round_half_even() -> None:
    assert to_nano_usd(Decimal("0.0000000005")) == 0
    assert to_nano_usd(Decimal("0.0000000015")) == 2
    assert to_nano_usd(Decimal("0.0000000025")) == 2
    assert to_nano_usd(Decimal("1.23456789049")) == 1_234_567_890


def test_half_known_usage_is_not_priced() -> None:
    from llmtap.consumer.context import Context
    from llmtap.queue.port import Message
    from llmtap.record import LogRecord, Timing
    from llmtap.stores.row import RequestRow

    record = LogRecord(
        request_id="r",
        source="otel",
        provider="openai",
        method="POST",
        target_url="https://api.openai.com/v1/chat/completions",
        status=200,
        timing=Timing(start_unix_ms=WHEN.timestamp() * 1000, total_ms=1.0),
    )
    row = RequestRow(
        request_id="r",
        org_id="o",
        created_unix_ms=0.0,
        source="otel",
        provider="openai",
        method="POST",
        target_url=record.target_url,
        path="/v1/chat/completions",
        status=200,
        model="gpt-4o-mini",
        usage_source="provider",
        output_tokens=50,  # an upstream handler knew the output side only
    )
    ctx = Context(Message("t", 0, 0, None, b"", 0), record, row)
    CostCalculator()(ctx)
    assert (row.cost_source, row.cost_nano_usd) == ("unpriced", None)
    row.input_tokens = 100
    CostCalculator()(ctx)
    assert (row.cost_source, row.cost_nano_usd) == ("genai-prices", 45_000)


def _priced_call(calc: CostCalculator, target_url: str, model: str) -> Context:
    record = LogRecord(
        request_id="r",
        source="proxy",
        provider="",
        method="POST",
        target_url=target_url,
        status=200,
        timing=Timing(start_unix_ms=WHEN.timestamp() * 1000, total_ms=1.0),
    )
    row = RequestRow(
        request_id="r",
        org_id="o",
        created_unix_ms=record.timing.start_unix_ms,
        source="proxy",
        provider="",
        method="POST",
        target_url=target_url,
        path="/",
        status=200,
        model=model,
        usage_source="provider",
        input_tokens=1_000,
        output_tokens=1_000,
        total_tokens=2_000,
    )
    ctx = Context(message=Message("t", 0, 0, None, b"", 0), record=record, row=row)
    calc(ctx)
    return ctx


def test_each_call_is_priced_by_its_own_host_when_the_provider_cache_is_full() -> None:
    # the provider behind a URL is remembered per URL; a full cache starts over, never mixes
    calc = CostCalculator(cache_size=1)
    openai, anthropic = (
        "https://api.openai.com/v1/chat/completions",
        "https://api.anthropic.com/v1/messages",
    )
    for url, model, provider in [
        (openai, "gpt-4o", "openai"),
        (anthropic, "claude-3-5-haiku-20241022", "anthropic"),
        (anthropic, "claude-3-5-haiku-20241022", "anthropic"),
        (openai, "gpt-4o", "openai"),
        ("http://127.0.0.1:8000/v1/chat/completions", "gpt-4o", None),
    ]:
        ctx = _priced_call(calc, url, model)
        if provider is None:  # a self-hosted server: the model name alone is not a price
            assert ctx.row.cost_source == "unpriced", url
        else:
            assert ctx.row.cost_source == "genai-prices", url
            assert ctx.notes["cost"]["provider"] == provider, url


def test_the_total_filled_in_keeps_every_other_number() -> None:
    # with_total copies the fields by name: one added later must not be dropped on the way
    parts = {f.name: 10 + i for i, f in enumerate(dataclasses.fields(Usage)) if f.name != "total"}
    filled = Usage(**parts).with_total()
    assert filled.total == parts["input"] + parts["output"]
    assert {name: getattr(filled, name) for name in parts} == parts
