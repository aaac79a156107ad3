"""What the mock "model" answers, decided before any byte is written, so that tests can
predict it exactly.

The rules (the same for every endpoint and for streamed and non-streamed calls):

* **Prompt words** = the whitespace-separated words of every string the model would read: the
  system prompt / instructions and the ``content``, ``text`` and ``output`` fields of every
  message or input item (nested parts included), at least 1. Integers in a token array count
  one each (embeddings).
* **Reply**: ``x-mock-chunks`` words (default 8), capped by the request's max-tokens field (then
  the finish reason is ``length``/``max_tokens``). Word *i* is word *i mod n* of the **last**
  message's words (or of a fixed filler when it has none); every word after the first carries a
  leading space, so the streamed deltas concatenate to the non-streamed text.
* **Tool call** when the request offers function tools and does not forbid them: the named tool
  or the first one, with arguments built from its JSON schema (strings get the first reply word,
  numbers 1, booleans true, arrays [], objects {}); streamed as ``min(chunks, len(arguments))``
  fragments of near-equal length. The max-tokens cap does not apply to tool calls.
* **Output tokens** = reply pieces (words or argument fragments) + ``x-mock-reasoning-tokens``.
* **Input tokens**: OpenAI reports prompt words + ``x-mock-cached-tokens`` (the cached part is
  included, as OpenAI does); Anthropic reports prompt words as ``input_tokens`` and the cache
  knobs separately in ``cache_read_input_tokens`` / ``cache_creation_input_tokens``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import msgspec

from llmtap.testing.mock_knobs import Knobs

FILLER = ("mock", "reply", "from", "the", "llmtap", "upstream")

_TEXT_KEYS = ("content", "text", "output")


@dataclass(frozen=True, slots=True)
class MockUsage:
    """Token counts the mock reports for a request; see the module docstring for the rules.

    ``input_tokens`` is what the provider calls input: OpenAI's ``prompt_tokens`` /
    ``input_tokens`` (cached tokens included), Anthropic's ``input_tokens`` (cache reads and
    writes excluded). ``output_tokens`` includes the reasoning tokens.
    """

    input_tokens: int
    output_tokens: int
    cached_tokens: int = 0
    cache_creation_tokens: int = 0
    reasoning_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        """OpenAI's ``total_tokens``: input (cached included) + output."""
        return self.input_tokens + self.output_tokens


@dataclass(frozen=True, slots=True)
class ToolCall:
    name: str
    arguments: str
    pieces: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Plan:
    pieces: tuple[str, ...]
    """Text deltas in order; empty when the reply is a tool call."""
    tool_call: ToolCall | None
    truncated: bool
    """The max-tokens cap cut the reply short."""
    usage: MockUsage

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    @property
    def content_count(self) -> int:
        """How many content deltas a stream carries (words or argument fragments)."""
        return len(self.tool_call.pieces) if self.tool_call else len(self.pieces)


def words_of(value: Any) -> list[str]:
    """The words a prompt value holds, following the rules in the module docstring."""
    out: list[str] = []
    _collect(value, out)
    return out


def _collect(value: Any, out: list[str]) -> None:
    if isinstance(value, str):
        out.extend(value.split())
    elif isinstance(value, list):
        for item in value:
            _collect(item, out)
    elif isinstance(value, dict):
        for key in _TEXT_KEYS:
            inner = value.get(key)
            if inner is not None:
                _collect(inner, out)
    elif isinstance(value, int) and not isinstance(value, bool):
        out.append(str(value))


def _reply_pieces(source: list[str], count: int) -> tuple[str, ...]:
    words = source or FILLER
    n = len(words)
    return tuple(words[i % n] if i == 0 else " " + words[i % n] for i in range(count))


def _example_value(schema: Any, word: str) -> Any:
    kind = schema.get("type") if isinstance(schema, dict) else None
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), None)
    if kind in ("integer", "number"):
        return 1
    if kind == "boolean":
        return True
    if kind == "array":
        return []
    if kind == "object":
        return {}
    return word


def tool_arguments(schema: Any, word: str) -> str:
    """Compact JSON arguments for a tool whose parameters follow ``schema``."""
    properties = schema.get("properties") if isinstance(schema, dict) else None
    if not isinstance(properties, dict):
        return "{}"
    args = {name: _example_value(prop, word) for name, prop in properties.items()}
    return msgspec.json.encode(args).decode()


def _split(text: str, count: int) -> tuple[str, ...]:
    count = max(1, min(count, len(text)))
    size, extra = divmod(len(text), count)
    pieces: list[str] = []
    start = 0
    for i in range(count):
        end = start + size + (1 if i < extra else 0)
        pieces.append(text[start:end])
        start = end
    return tuple(pieces)


def make_plan(
    *,
    prompt: Any,
    last: Any,
    max_tokens: Any,
    tool: tuple[str, Any] | None,
    knobs: Knobs,
    provider: Literal["openai", "anthropic"],
) -> Plan:
    """Decide the reply. ``prompt`` holds everything the model reads, ``last`` the last message,
    ``tool`` the (name, JSON schema) of the tool to call, if any."""
    prompt_words = max(1, len(words_of(prompt)))
    source = words_of(last)
    count = knobs.chunks
    truncated = False
    tool_call = None
    if tool is not None:
        first = source[0] if source else FILLER[0]
        arguments = tool_arguments(tool[1], first)
        tool_call = ToolCall(tool[0], arguments, _split(arguments, count))
        pieces: tuple[str, ...] = ()
        produced = len(tool_call.pieces)
    else:
        if isinstance(max_tokens, int) and not isinstance(max_tokens, bool) and max_tokens < count:
            count, truncated = max(0, max_tokens), True
        pieces = _reply_pieces(source, count)
        produced = len(pieces)
    # OpenAI counts cached tokens inside the prompt; Anthropic reports them beside it.
    input_tokens = prompt_words + (knobs.cached_tokens if provider == "openai" else 0)
    usage = MockUsage(
        input_tokens=input_tokens,
        output_tokens=produced + knobs.reasoning_tokens,
        cached_tokens=knobs.cached_tokens,
        cache_creation_tokens=knobs.cache_creation_tokens,
        reasoning_tokens=knobs.reasoning_tokens,
    )
    return Plan(pieces, tool_call, truncated, usage)
