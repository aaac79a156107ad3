"""CostCalculator: what a call cost, from the provider's usage and a price list.

Prices come from the user's override table (``settings.price_overrides``, which wins) or from
Pydantic's genai-prices. The model priced is, in order: ``Helicone-Model-Override`` when the
caller set it (they told us what to call it), the model the provider says answered
(``response_model``, often a dated snapshot with an exact price), then the model requested. The
first name with a price wins; overrides are tried for every name before genai-prices is.

Unknown usage or a model without a price is ``unpriced`` with ``cost_nano_usd = None``, never 0.
A call answered from the gateway's response cache (``cache_hit``) cost nothing: ``cost_nano_usd``
is 0 (``cost_source = "cache_hit"``) and the price its usage would have had is
``cache_saved_nano_usd``.
The total in USD (a Decimal) is stored as integer nano-dollars rounded half-even.

Speed: genai-prices' ``calc_price`` validates its unit registry on every call (~60 µs); the
consumer aims at 20,000 records/s. Model lookups are cached per (provider, model), and a price
that only uses the units llmtap reports is evaluated here with the same leaf rule genai-prices
uses (a priced subset, e.g. cache reads, is taken out of its parent, e.g. input, and priced at
its own rate; tiers are chosen by total input tokens). Prices with other token units (text or
image modalities, cached audio) go through genai-prices itself. The unit test compares both ways
on every model genai-prices knows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from genai_prices import Usage as PricesUsage
from genai_prices import data_snapshot
from genai_prices.data_units import unit_data
from genai_prices.types import TieredPrices

from llmtap.consumer.context import Context
from llmtap.consumer.handlers.providers import Provider, detect_provider
from llmtap.consumer.handlers.response_parser import NOTE_PRICE_CONTEXT, NOTE_USAGE
from llmtap.consumer.handlers.usage import Usage
from llmtap.errors import ConfigError

PriceValue = Decimal | TieredPrices
NOTE_COST = "cost"
_NANO = Decimal(1_000_000_000)
_MTOK = Decimal(1_000_000)
_ONE = Decimal(1)

# price key -> Tariff field, for the units llmtap's Usage reports
_FAST_KEYS = {
    "input_mtok": "input",
    "output_mtok": "output",
    "cache_read_mtok": "cache_read",
    "cache_write_mtok": "cache_write",
    "cache_write_1h_mtok": "cache_write_1h",
    "input_audio_mtok": "audio_input",
    "output_audio_mtok": "audio_output",
    "requests_kcount": "requests_k",
}
# token units llmtap never reports and whose presence changes how reported tokens split
_TOKEN_KEYS = frozenset(
    unit["price_key"]
    for unit in unit_data.values()
    if unit.get("dimensions", {}).get("family") == "tokens"
)
_OVERRIDE_KEYS = {
    "input": "input",
    "output": "output",
    "cache_read": "cache_read",
    "cache_write": "cache_write",
    "cache_write_1h": "cache_write_1h",
    "audio_input": "audio_input",
    "audio_output": "audio_output",
    "request": "requests_k",
}


class InconsistentUsage(ValueError):
    """The parts of a usage exceed their whole (e.g. cached > input): no honest price."""


@dataclass(frozen=True, slots=True)
class Price:
    nano_usd: int
    source: str
    """``genai-prices`` | ``override``."""
    model: str
    """The name that was priced."""
    provider: str | None = None


@dataclass(frozen=True, slots=True)
class Tariff:
    """$ per million tokens per unit (``requests_k``: $ per 1000 requests)."""

    input: PriceValue | None = None
    output: PriceValue | None = None
    cache_read: PriceValue | None = None
    cache_write: PriceValue | None = None
    cache_write_1h: PriceValue | None = None
    audio_input: PriceValue | None = None
    audio_output: PriceValue | None = None
    requests_k: PriceValue | None = None

    def cost(self, usage: Usage) -> Decimal:
        """USD for ``usage``; raises ``InconsistentUsage`` when its parts exceed the whole."""
        total_input = usage.input or 0
        # leaves: a priced part is taken out of its parent; an unpriced one stays in it
        write_1h = (usage.cache_write_1h or 0) if self.cache_write_1h is not None else 0
        write = (usage.cache_write or 0) - write_1h if self.cache_write is not None else 0
        read = (usage.cache_read or 0) if self.cache_read is not None else 0
        audio_in = (usage.audio_input or 0) if self.audio_input is not None else 0
        plain_in = total_input - read - write - write_1h - audio_in
        audio_out = (usage.audio_output or 0) if self.audio_output is not None else 0
        plain_out = (usage.output or 0) - audio_out
        if plain_in < 0 or plain_out < 0 or write < 0:
            raise InconsistentUsage(f"usage parts exceed their total: {usage.as_dict()}")
        usd = Decimal(0)
        for price, tokens in (
            (self.input, plain_in),
            (self.cache_read, read),
            (self.cache_write, write),
            (self.cache_write_1h, write_1h),
            (self.audio_input, audio_in),
            (self.output, plain_out),
            (self.audio_output, audio_out),
        ):
            if price is not None and tokens:
                usd += _rate(price, total_input) * tokens / _MTOK
        if self.requests_k is not None:
            usd += _rate(self.requests_k, total_input) / 1000
        return usd


def _rate(price: PriceValue, total_input: int) -> Decimal:
    if isinstance(price, Decimal):
        return price
    # genai-prices' cliff rule: the highest tier whose start the total input exceeds, for all
    for tier in reversed(price.tiers):
        if total_input > tier.start:
            return tier.price
    return price.base


def compile_tariff(model_price: Any) -> Tariff | None:
    """A genai-prices ``ModelPrice`` as a ``Tariff``, or None when only genai-prices can price it."""
    values: dict[str, PriceValue] = {}
    for key, value in vars(model_price).items():
        if value is None or key.startswith("_"):
            continue
        if key in _FAST_KEYS:
            values[_FAST_KEYS[key]] = value
        elif key in _TOKEN_KEYS:
            return None
        # other units (searches, pages, audio hours) are never in llmtap's usage: they add 0
    return Tariff(**values)


def override_tariff(model: str, prices: Mapping[str, float]) -> Tariff:
    unknown = set(prices) - set(_OVERRIDE_KEYS)
    if unknown:
        raise ConfigError(
            f"price_overrides[{model!r}]: unknown key(s) {sorted(unknown)}; "
            f"use {sorted(_OVERRIDE_KEYS)} ($ per million tokens, 'request': $ per 1000 calls)"
        )
    values: dict[str, Decimal] = {}
    for key, value in prices.items():
        # through str: the user wrote 0.15, not 0.1499999999999999944488848768742172978818416595458984375
        price = Decimal(str(value))
        if not price.is_finite() or price < 0:
            raise ConfigError(f"price_overrides[{model!r}][{key!r}] must be a price >= 0")
        values[_OVERRIDE_KEYS[key]] = price
    return Tariff(**values)


def to_nano_usd(usd: Decimal) -> int:
    return int((usd * _NANO).quantize(_ONE, rounding=ROUND_HALF_EVEN))


class CostCalculator:
    name = "cost"

    def __init__(
        self, overrides: Mapping[str, Mapping[str, float]] | None = None, *, cache_size: int = 4096
    ) -> None:
        self._overrides = {
            model.lower(): override_tariff(model, prices)
            for model, prices in (overrides or {}).items()
        }
        self._cache_size = cache_size
        self._models: dict[tuple[str | None, bool, str], Any] = {}
        self._tariffs: dict[tuple[int, tuple[tuple[str, str], ...], datetime], _Resolved] = {}
        self._providers: dict[tuple[str, str], Provider] = {}
        self._snapshot: Any = None

    def __call__(self, ctx: Context) -> None:
        row = ctx.row
        self._price_row(ctx)
        if row.cache_hit:
            # served from the gateway's cache: nothing was paid; the price is what it saved
            row.cache_saved_nano_usd = row.cost_nano_usd
            row.cost_nano_usd, row.cost_source = 0, "cache_hit"

    def _price_row(self, ctx: Context) -> None:
        row, record = ctx.row, ctx.record
        row.cost_nano_usd, row.cost_source = None, "unpriced"
        if row.usage_source != "provider":
            return
        usage = ctx.notes.get(NOTE_USAGE)
        if not isinstance(usage, Usage):
            usage = Usage.from_row(row)
        if not usage.priceable:
            ctx.notes[NOTE_COST] = {"problem": "usage incomplete"} if usage.known else {}
            return
        names: list[str | None] = [record.model_override, row.response_model, row.model]
        provider = self._provider(record.target_url, record.provider)
        when = datetime.fromtimestamp(record.timing.start_unix_ms / 1000, tz=UTC)
        context = ctx.notes.get(NOTE_PRICE_CONTEXT)
        try:
            price = self.price(
                usage,
                list(dict.fromkeys(n for n in names if n)),
                provider.price_id,
                match_model=provider.match_model,
                when=when,
                context=context if isinstance(context, dict) else None,
            )
        except ValueError as exc:  # InconsistentUsage, or genai-prices refusing the same
            ctx.notes[NOTE_COST] = {"problem": str(exc)}
            return
        if price is not None:
            row.cost_nano_usd, row.cost_source = price.nano_usd, price.source
            ctx.notes[NOTE_COST] = {"model": price.model, "provider": price.provider}

    def price(
        self,
        usage: Usage,
        models: Sequence[str],
        provider_id: str | None,
        *,
        match_model: bool = True,
        when: datetime | None = None,
        context: Mapping[str, str] | None = None,
    ) -> Price | None:
        """The price of ``usage`` under the first of ``models`` that has one, else None."""
        for model in models:
            tariff = self._overrides.get(model.lower())
            if tariff is not None:
                return Price(to_nano_usd(tariff.cost(usage)), "override", model, provider_id)
        if provider_id is None and not match_model:
            return None
        when = when or datetime.now(tz=UTC)
        for model in models:
            found = self._lookup(provider_id, match_model, model)
            if found is None:
                continue
            provider, info = found
            tariff = self._tariff(info, when, context)
            if tariff is not None:
                usd = tariff.cost(usage)
            else:
                calc = info.calc_price(
                    _prices_usage(usage),
                    provider,
                    genai_request_timestamp=when,
                    price_context=context or None,
                )
                usd = calc.total_price
            return Price(to_nano_usd(usd), "genai-prices", model, provider.id)
        return None

    def _provider(self, target_url: str, route: str) -> Provider:
        # a few distinct URLs per deployment: parsing the host (and an IP address for a local
        # one) for every record was half of this handler's time
        key = (target_url, route)
        provider = self._providers.get(key)
        if provider is None:
            if len(self._providers) >= self._cache_size:
                self._providers.clear()
            provider = self._providers[key] = detect_provider(target_url, route)
        return provider

    def _lookup(self, provider_id: str | None, match_model: bool, model: str) -> Any:
        snapshot = data_snapshot.get_snapshot()
        if snapshot is not self._snapshot:
            # genai-prices' UpdatePrices swapped in new data: drop what came from the old
            self._snapshot = snapshot
            self._models.clear()
            self._tariffs.clear()
        key = (provider_id, match_model, model)
        try:
            return self._models[key]
        except KeyError:
            pass
        try:
            found: Any = snapshot.find_provider_model(model, None, provider_id, None)
        except LookupError:
            found = None
        if len(self._models) >= self._cache_size:
            self._models.clear()  # arbitrary model names must not grow memory without bound
        self._models[key] = found
        return found

    def _tariff(
        self, info: Any, when: datetime, context: Mapping[str, str] | None
    ) -> Tariff | None:
        # Which price applies depends on the date (price changes), the time of day (off-peak
        # prices) and the context (service tier): resolved once per model, context and minute.
        items = tuple(sorted(context.items())) if context else ()
        key = (id(info), items, when.replace(second=0, microsecond=0))
        cached = self._tariffs.get(key)
        if cached is not None and cached.info is info:
            return cached.tariff
        tariff = compile_tariff(info.get_prices(when, context or None))
        if len(self._tariffs) >= self._cache_size:
            self._tariffs.clear()
        self._tariffs[key] = _Resolved(info, tariff)
        return tariff


@dataclass(frozen=True, slots=True)
class _Resolved:
    info: Any
    """Held so the ``id`` in the cache key cannot be reused by another object."""
    tariff: Tariff | None


def _prices_usage(usage: Usage) -> PricesUsage:
    values = {
        "input_tokens": usage.input,
        "output_tokens": usage.output,
        "cache_read_tokens": usage.cache_read,
        "cache_write_tokens": usage.cache_write,
        "cache_write_1h_tokens": usage.cache_write_1h,
        "input_audio_tokens": usage.audio_input,
        "output_audio_tokens": usage.audio_output,
    }
    return PricesUsage(**{k: v for k, v in values.items() if v is not None})
