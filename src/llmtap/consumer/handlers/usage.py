"""Token usage in one convention for every provider, and what a parsed response said.

The convention (see docs/usage-and-cost.md):

* ``input`` is every input token the provider billed, *including* cached reads and cache writes.
  OpenAI's ``prompt_tokens`` already counts this way; Anthropic's ``input_tokens`` excludes cache
  reads and writes, so its parser adds them back.
* ``cache_read``, ``cache_write`` (and its 1-hour part ``cache_write_1h``) and ``audio_input``
  are subsets of ``input``; ``reasoning`` and ``audio_output`` are subsets of ``output``.
* ``None`` means the provider did not say. A number is never made up to fill a gap; ``total``
  is the provider's own total, or ``input + output`` when it reports only the two parts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from llmtap.stores.row import RequestRow


def count(value: Any) -> int | None:
    """A token count from a JSON value, or None when it is not a sane one.

    Accepts ints and integral floats (some compatible servers send ``12.0``); refuses booleans,
    negatives and anything else instead of guessing.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, float) and value.is_integer() and value >= 0:
        return int(value)
    return None


def dig(doc: Any, *path: str) -> Any:
    """``doc[path[0]][path[1]]...`` through dicts only, None as soon as a step is missing."""
    for key in path:
        if not isinstance(doc, dict):
            return None
        doc = doc.get(key)
    return doc


def items(value: Any) -> list[Any]:
    """``value`` when it is a JSON array, else an empty list (never iterate a surprise)."""
    return value if isinstance(value, list) else []


def text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


@dataclass(frozen=True, slots=True)
class Usage:
    input: int | None = None
    output: int | None = None
    cache_read: int | None = None
    cache_write: int | None = None
    cache_write_1h: int | None = None
    """Part of ``cache_write`` written with a 1-hour TTL (Anthropic), priced higher."""
    reasoning: int | None = None
    audio_input: int | None = None
    audio_output: int | None = None
    total: int | None = None

    @property
    def known(self) -> bool:
        """The provider reported the numbers a price needs (input or output)."""
        return self.input is not None or self.output is not None

    @property
    def priceable(self) -> bool:
        """Both sides are known: pricing a missing side as 0 would make a number up."""
        return self.input is not None and self.output is not None

    def with_total(self) -> Usage:
        if self.total is not None or self.input is None or self.output is None:
            return self
        # made directly: ``dataclasses.replace`` took twice as long, once per priced record
        return Usage(
            input=self.input,
            output=self.output,
            cache_read=self.cache_read,
            cache_write=self.cache_write,
            cache_write_1h=self.cache_write_1h,
            reasoning=self.reasoning,
            audio_input=self.audio_input,
            audio_output=self.audio_output,
            total=self.input + self.output,
        )

    def apply_to(self, row: RequestRow) -> None:
        row.usage_source = "provider"
        row.input_tokens = self.input
        row.output_tokens = self.output
        row.total_tokens = self.total
        row.cache_read_tokens = self.cache_read
        row.cache_write_tokens = self.cache_write
        row.reasoning_tokens = self.reasoning
        row.audio_input_tokens = self.audio_input
        row.audio_output_tokens = self.audio_output

    @classmethod
    def from_row(cls, row: RequestRow, cache_write_1h: int | None = None) -> Usage:
        return cls(
            input=row.input_tokens,
            output=row.output_tokens,
            cache_read=row.cache_read_tokens,
            cache_write=row.cache_write_tokens,
            cache_write_1h=cache_write_1h,
            reasoning=row.reasoning_tokens,
            audio_input=row.audio_input_tokens,
            audio_output=row.audio_output_tokens,
            total=row.total_tokens,
        )

    def as_dict(self) -> dict[str, int]:
        return {f.name: v for f in fields(self) if (v := getattr(self, f.name)) is not None}


def merge(earlier: Usage | None, later: Mapping[str, int | None]) -> Usage:
    """``earlier`` with every non-None value of ``later`` replacing it (later values win)."""
    base = earlier or Usage()
    updates = {k: v for k, v in later.items() if v is not None}
    return replace(base, **updates) if updates else base


@dataclass(slots=True)
class ParsedResponse:
    """What one provider response said, before it is written onto the row."""

    model: str | None = None
    finish_reason: str | None = None
    usage: Usage | None = None
    error: str | None = None
    """The provider's error type or message (error body, ``error`` event, failed response)."""
    complete: bool = True
    """For streams: the provider's end-of-stream marker arrived."""
    price_context: dict[str, str] = field(default_factory=dict)
    """Facts that select a price variant in genai-prices (``service_tier``, ``speed``)."""
    partial_usage: Usage | None = None
    """Numbers a stream reported before it was cut off ahead of its final usage: kept as a note,
    never as the row's usage."""
    events: int = 0
    tool_calls: int = 0
