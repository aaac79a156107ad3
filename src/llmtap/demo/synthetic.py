"""Realistic synthetic LLM calls: models, users, sessions with paths, properties, prompts.

One generator shared by ``llmtap seed`` (rows written straight into the stores, ``seed.py``)
and ``serve --demo`` (calls sent through the proxy to the mock upstream, ``traffic.py``), so the
dashboard looks the same either way. Everything comes from one ``random.Random`` seeded by the
caller: the same seed gives the same calls, in the same order.

A *conversation* is what one user does in one sitting: a single call, or a session of several
calls whose ``Helicone-Session-Path`` values form a small tree (``/plan``, ``/plan/search``,
``/answer`` ...). Each call says what it asks (the request body), what it should get back
(status, tokens, latency, time to first token) and which headers carry its user, session and
properties; the seeder turns that into a stored row, the demo traffic into an HTTP call.

The distributions are chosen to look like production traffic, not to model any vendor exactly:
users follow a power law (a few heavy users), tokens and latencies are log-normal, about 3% of
calls fail (mostly 429, some 500), a third of chat calls stream.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

import msgspec


@dataclass(frozen=True, slots=True)
class Model:
    provider: str
    """``openai`` | ``anthropic``."""
    name: str
    """What the caller asks for."""
    snapshot: str
    """What the provider says answered (priced exactly by genai-prices)."""
    weight: float
    ttft_ms: float
    """Median time to first token."""
    tokens_per_s: float
    """Output speed once the answer streams."""

    @property
    def endpoint(self) -> str:
        return "messages" if self.provider == "anthropic" else "chat.completions"

    @property
    def path(self) -> str:
        return "/v1/messages" if self.provider == "anthropic" else "/v1/chat/completions"

    @property
    def target_url(self) -> str:
        host = "api.anthropic.com" if self.provider == "anthropic" else "api.openai.com"
        return f"https://{host}{self.path}"


MODELS: tuple[Model, ...] = (
    Model("openai", "gpt-4o-mini", "gpt-4o-mini-2024-07-18", 0.40, 320.0, 95.0),
    Model("openai", "gpt-4o", "gpt-4o-2024-08-06", 0.20, 520.0, 60.0),
    Model("openai", "gpt-4.1-mini", "gpt-4.1-mini-2025-04-14", 0.15, 380.0, 85.0),
    Model("anthropic", "claude-3-5-haiku-latest", "claude-3-5-haiku-20241022", 0.15, 450.0, 70.0),
    Model("anthropic", "claude-sonnet-4-0", "claude-sonnet-4-20250514", 0.10, 850.0, 50.0),
)

# feature -> (weight, median input tokens, median output tokens, share streamed, system prompt)
FEATURES: dict[str, tuple[float, float, float, float, str]] = {
    "chat": (0.45, 650.0, 220.0, 0.6, "You are a helpful support assistant for Acme Cloud."),
    "summarize": (0.20, 2400.0, 180.0, 0.1, "Summarize the document in three bullet points."),
    "search": (0.15, 900.0, 120.0, 0.2, "Answer using the search tool when facts are needed."),
    "extract": (0.12, 1200.0, 90.0, 0.0, "Extract the fields as JSON: name, company, email."),
    "classify": (0.08, 300.0, 8.0, 0.0, "Classify the ticket: billing, bug, feature or other."),
}
ENVS = (("prod", 0.85), ("staging", 0.12), ("dev", 0.03))
PROPERTIES = ("feature", "env")
"""The custom properties every call carries (``Helicone-Property-<name>``)."""

# session templates: (name, paths in call order); a path's parent is called before it
SESSIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Support chat", ("/greet", "/answer", "/answer/followup", "/answer/followup")),
    ("Research agent", ("/plan", "/plan/search", "/plan/search", "/plan/read", "/answer")),
    ("Doc pipeline", ("/chunk", "/chunk/summarize", "/chunk/summarize", "/merge")),
    ("Triage", ("/classify", "/classify/route")),
    ("Code review", ("/diff", "/diff/comment", "/diff/comment", "/diff/comment", "/summary")),
)
SESSION_SHARE = 0.4
"""Share of conversations that are sessions (the rest are single calls)."""

_TOPICS = (
    "my invoice shows a charge twice",
    "the API returns 502 since this morning",
    "how do I rotate my access keys",
    "can I export my data as CSV",
    "the dashboard is slow for large projects",
    "what is the difference between the Pro and Team plans",
    "my deployment is stuck in pending",
    "how do I add a teammate to my workspace",
    "the webhook retries too often",
    "is there an EU data region",
)
_ANSWERS = (
    "Thanks for reaching out. I checked your account and",
    "Here is what I found:",
    "Short answer: yes.",
    "This usually happens when",
    "I can help with that. First,",
)
_REPLY_TEXT = (
    "the request was retried and the second attempt succeeded so the charge will be refunded "
    "within five business days you can follow the status on the billing page or reply here "
    "if anything is still unclear"
)
_WORDS = tuple(_REPLY_TEXT.split())


@dataclass(slots=True)
class Call:
    """One synthetic call: what is sent and what it should get back."""

    model: Model
    user_id: str
    properties: dict[str, str]
    stream: bool
    system: str
    prompt: str
    reply: str
    status: int
    """200, or the error status the provider should answer with (429, 500)."""
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    latency_ms: float
    ttft_ms: float
    offset_ms: float = 0.0
    """When the call starts, after the conversation's first call."""
    session_id: str | None = None
    session_path: str | None = None
    session_name: str | None = None
    tool_call: bool = False
    """The answer asks for a tool (``search``)."""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def error(self) -> str | None:
        """The provider's error type, as the consumer records it."""
        if self.status == 429:
            return (
                "rate_limit_error" if self.model.provider == "anthropic" else "rate_limit_exceeded"
            )
        if self.status >= 500:
            return "api_error" if self.model.provider == "anthropic" else "server_error"
        return None

    def headers(self) -> dict[str, str]:
        """The Helicone headers that carry the user, session and properties."""
        out = {"Helicone-User-Id": self.user_id}
        if self.session_id is not None:
            out["Helicone-Session-Id"] = self.session_id
            out["Helicone-Session-Path"] = self.session_path or "/"
            out["Helicone-Session-Name"] = self.session_name or ""
        for name, value in self.properties.items():
            out[f"Helicone-Property-{name.capitalize()}"] = value
        return out

    def request_json(self) -> dict[str, Any]:
        """The request body, in the provider's own shape."""
        user = {"role": "user", "content": self.prompt}
        if self.model.provider == "anthropic":
            body: dict[str, Any] = {
                "model": self.model.name,
                "max_tokens": 1024,
                "system": self.system,
                "messages": [user],
            }
        else:
            body = {
                "model": self.model.name,
                "messages": [{"role": "system", "content": self.system}, user],
            }
            if self.tool_call:
                body["tools"] = [_SEARCH_TOOL]
        if self.stream:
            body["stream"] = True
            if self.model.provider == "openai":
                body["stream_options"] = {"include_usage": True}
        return body


_SEARCH_TOOL = {
    "type": "function",
    "function": {
        "name": "search",
        "description": "Search the help center",
        "parameters": {"type": "object", "properties": {"query": {"type": "string"}}},
    },
}


class Synthetic:
    """Draws conversations; deterministic for a given ``seed``."""

    def __init__(self, seed: int = 42, users: int = 5000) -> None:
        self.random = random.Random(seed)
        self.users = users
        self._sessions = 0
        self._model_weights = [m.weight for m in MODELS]
        self._features = list(FEATURES)
        self._feature_weights = [f[0] for f in FEATURES.values()]
        self._envs = [e for e, _ in ENVS]
        self._env_weights = [w for _, w in ENVS]

    def restart(self) -> None:
        """Number sessions from 1 again (with ``random`` set back to an earlier state, the same
        conversations come out again)."""
        self._sessions = 0

    def user(self) -> str:
        # power law: user-00001 calls far more often than user-04999
        index = int(self.users * self.random.random() ** 2.5)
        return f"user-{index + 1:05d}"

    def conversation(self) -> list[Call]:
        """One sitting of one user: a single call, or a session's calls in order."""
        rnd = self.random
        user = self.user()
        env = rnd.choices(self._envs, self._env_weights)[0]
        if rnd.random() >= SESSION_SHARE:
            feature = rnd.choices(self._features, self._feature_weights)[0]
            return [self._call(user, feature, env)]
        self._sessions += 1
        name, paths = SESSIONS[rnd.randrange(len(SESSIONS))]
        session_id = f"{rnd.getrandbits(64):016x}-{self._sessions:07d}"
        feature = {"Doc pipeline": "summarize", "Triage": "classify"}.get(name, "chat")
        # most sessions run all their steps; some stop early (the user left, a step failed)
        steps = paths if rnd.random() < 0.7 else paths[: rnd.randint(1, len(paths))]
        calls: list[Call] = []
        offset = 0.0
        for path in steps:
            call = self._call(user, "search" if "search" in path else feature, env)
            call.session_id, call.session_path = session_id, path
            call.session_name = f"{name} #{self._sessions}"
            call.offset_ms = offset
            calls.append(call)
            # the next step starts after this one ends, plus the user's or the agent's pause
            pause = rnd.lognormvariate(8.5, 1.0) if name == "Support chat" else rnd.uniform(5, 200)
            offset += call.latency_ms + pause
        return calls

    def _call(self, user: str, feature: str, env: str) -> Call:
        rnd = self.random
        model = rnd.choices(MODELS, self._model_weights)[0]
        _, median_in, median_out, stream_share, system = FEATURES[feature]
        stream = rnd.random() < stream_share
        input_tokens = max(12, int(rnd.lognormvariate(0.0, 0.6) * median_in))
        output_tokens = max(1, int(rnd.lognormvariate(0.0, 0.7) * median_out))
        cached = 0
        if input_tokens >= 1024 and rnd.random() < 0.3:
            cached = (input_tokens // 2) // 128 * 128  # prompt caching works in 128-token steps
        roll = rnd.random()
        status = 429 if roll < 0.02 else 500 if roll < 0.03 else 200
        ttft = model.ttft_ms * rnd.lognormvariate(0.0, 0.35) * (1 + input_tokens / 20000)
        if status == 200:
            latency = ttft + output_tokens / model.tokens_per_s * 1000 * rnd.uniform(0.8, 1.3)
            if rnd.random() < 0.01:
                latency *= rnd.uniform(3, 10)  # the long tail: a slow provider moment
        else:
            ttft = rnd.uniform(40, 250)
            latency = ttft + rnd.uniform(0, 30)
            input_tokens = output_tokens = cached = 0
        topic = _TOPICS[rnd.randrange(len(_TOPICS))]
        prompt = f"Hi, {topic}. Ticket #{rnd.randrange(10000, 99999)}."
        words = rnd.randint(8, 30)
        start = rnd.randrange(len(_WORDS) - words)
        reply = (
            f"{_ANSWERS[rnd.randrange(len(_ANSWERS))]} {' '.join(_WORDS[start : start + words])}."
        )
        return Call(
            model=model,
            user_id=user,
            properties={"feature": feature, "env": env},
            stream=stream,
            system=system,
            prompt=prompt,
            reply=reply,
            status=status,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cache_read_tokens=cached,
            latency_ms=round(latency, 3),
            ttft_ms=round(min(ttft, latency), 3),
            tool_call=feature == "search" and model.provider == "openai" and rnd.random() < 0.5,
        )


def response_body(call: Call, call_id: str, created_s: int) -> bytes:
    """What the provider answered, as the proxy stores it: JSON, or the SSE stream for a
    streamed call (an error is a JSON error document either way)."""
    if call.status != 200:
        kind = call.error or "api_error"
        message = "Rate limit reached" if call.status == 429 else "The server had an error"
        if call.model.provider == "anthropic":
            return json_bytes({"type": "error", "error": {"type": kind, "message": message}})
        return json_bytes({"error": {"message": message, "type": kind, "code": None}})
    if call.model.provider == "anthropic":
        return _anthropic(call, call_id)
    return _openai(call, call_id, created_s)


_encoder = msgspec.json.Encoder()


def json_bytes(doc: Any) -> bytes:
    """Compact JSON, as SDKs send it."""
    return _encoder.encode(doc)


def _openai(call: Call, call_id: str, created_s: int) -> bytes:
    usage: dict[str, Any] = {
        "prompt_tokens": call.input_tokens,
        "completion_tokens": call.output_tokens,
        "total_tokens": call.input_tokens + call.output_tokens,
        "prompt_tokens_details": {"cached_tokens": call.cache_read_tokens},
    }
    head = {"id": f"chatcmpl-{call_id}", "created": created_s, "model": call.model.snapshot}
    message: dict[str, Any] = {"role": "assistant", "content": call.reply}
    finish = "stop"
    if call.tool_call:
        arguments = json_bytes({"query": call.prompt[4:40]}).decode()
        message = {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": f"call_{call_id[:12]}",
                    "type": "function",
                    "function": {"name": "search", "arguments": arguments},
                }
            ],
        }
        finish = "tool_calls"
    if not call.stream:
        choice = {"index": 0, "message": message, "finish_reason": finish}
        return json_bytes(
            {**head, "object": "chat.completion", "choices": [choice], "usage": usage}
        )
    frames = []
    chunk_head = {**head, "object": "chat.completion.chunk"}
    words = (call.reply or "").split(" ")
    for i in range(0, len(words), 4):
        text = " ".join(words[i : i + 4]) + (" " if i + 4 < len(words) else "")
        delta = {"index": 0, "delta": {"content": text}, "finish_reason": None}
        frames.append({**chunk_head, "choices": [delta]})
    frames.append({**chunk_head, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
    frames.append({**chunk_head, "choices": [], "usage": usage})
    return b"".join(b"data: " + json_bytes(f) + b"\n\n" for f in frames) + b"data: [DONE]\n\n"


def _anthropic(call: Call, call_id: str) -> bytes:
    usage: dict[str, int] = {
        "input_tokens": call.input_tokens - call.cache_read_tokens,
        "output_tokens": call.output_tokens,
        "cache_read_input_tokens": call.cache_read_tokens,
        "cache_creation_input_tokens": 0,
    }
    message: dict[str, Any] = {
        "id": f"msg_{call_id}",
        "type": "message",
        "role": "assistant",
        "model": call.model.snapshot,
        "content": [{"type": "text", "text": call.reply}],
        "stop_reason": "end_turn",
        "usage": usage,
    }
    if not call.stream:
        return json_bytes(message)
    start = {**message, "content": [], "stop_reason": None, "usage": {**usage, "output_tokens": 1}}
    events: list[tuple[str, Any]] = [
        ("message_start", {"type": "message_start", "message": start}),
        (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
        ),
    ]
    words = call.reply.split(" ")
    for i in range(0, len(words), 4):
        text = " ".join(words[i : i + 4]) + (" " if i + 4 < len(words) else "")
        delta = {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "text_delta", "text": text},
        }
        events.append(("content_block_delta", delta))
    events.append(("content_block_stop", {"type": "content_block_stop", "index": 0}))
    events.append(
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn"},
                "usage": {"output_tokens": call.output_tokens},
            },
        )
    )
    events.append(("message_stop", {"type": "message_stop"}))
    return b"".join(
        b"event: " + name.encode() + b"\ndata: " + json_bytes(doc) + b"\n\n" for name, doc in events
    )
