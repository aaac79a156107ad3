"""The seam between a conversation generator (``llmtap seed``'s ``Synthetic``) and the demo's
traffic: a generated call becomes what the mock is asked to answer."""

from __future__ import annotations

from dataclasses import dataclass, field

from llmtap.demo.calls import MAX_REPLY_WORDS, ConversationCalls, SessionStep, from_conversation


@dataclass(frozen=True)
class _Model:
    provider: str = "anthropic"
    name: str = "claude-3-5-haiku-latest"


@dataclass
class _Call:
    """Shaped like ``llmtap.demo.synthetic.Call`` (the fields the traffic reads)."""

    model: _Model = field(default_factory=_Model)
    system: str = "Be brief."
    prompt: str = "Hi"
    stream: bool = True
    status: int = 200
    output_tokens: int = 100
    cache_read_tokens: int = 0
    latency_ms: float = 2400.0
    ttft_ms: float = 400.0
    user_id: str = "user-00001"
    session_id: str | None = "s-1"
    session_path: str | None = "/plan/search"
    session_name: str | None = "Research agent #1"
    properties: dict[str, str] = field(default_factory=lambda: {"feature": "search"})


def test_a_stream_is_paced_to_its_time_to_first_token_and_its_latency() -> None:
    params = from_conversation(_Call())
    assert (params.latency_ms, params.chunk_delay_ms, params.reply_words) == (400, 20.0, 100)
    assert params.session == SessionStep("s-1", "/plan/search", "Research agent #1")
    assert params.properties == (("feature", "search"),)
    assert params.messages == (("system", "Be brief."), ("user", "Hi"))


def test_a_failed_or_json_call_waits_its_whole_latency_before_the_head() -> None:
    failed = from_conversation(_Call(status=429, latency_ms=120.0, ttft_ms=100.0))
    assert (failed.fail_status, failed.latency_ms, failed.chunk_delay_ms) == (429, 120, 0.0)
    plain = from_conversation(_Call(stream=False, session_id=None, output_tokens=10**6))
    assert (plain.latency_ms, plain.session, plain.reply_words) == (2400, None, MAX_REPLY_WORDS)


def test_conversations_are_sent_call_by_call_in_order() -> None:
    class Two:
        def __init__(self) -> None:
            self.n = 0

        def conversation(self) -> list[_Call]:
            self.n += 1
            return [_Call(prompt=f"{self.n}a"), _Call(prompt=f"{self.n}b")]

    source = ConversationCalls(Two())
    prompts = [source.next_call().messages[-1][1] for _ in range(5)]
    assert prompts == ["1a", "1b", "2a", "2b", "3a"]
