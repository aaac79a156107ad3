"""What the demo's next synthetic call is: the seam between a generator and the traffic driver.

``CallParams`` says what a call is about (provider, model, messages, user, session step,
properties, streamed or not) and how the mock upstream should answer it (latency, reply length,
a failure). ``CallSource`` is anything with ``next_call()``; ``llmtap.demo.traffic`` turns each
one into an HTTP request through the proxy.

``MiniCatalogue`` is deliberately small (seven models over four providers, eight users, two
session scripts, two properties): enough for every dashboard page to have something on it. The
full vocabulary of realistic calls belongs to one shared generator (``llmtap seed``'s
``Synthetic``); ``ConversationCalls`` is the source over it, typed by the few fields it reads, so
switching the demo to it changes one line of ``traffic.run_traffic`` and nothing else.
"""

from __future__ import annotations

import math
import random
import uuid
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

ROUTED_PROVIDERS = ("groq", "mistral")
"""OpenAI-compatible providers the demo reaches through named routes (``/router/<name>/...``);
``llmtap serve --demo`` points these routes at the mock upstream."""


@dataclass(frozen=True, slots=True)
class SessionStep:
    session_id: str
    path: str
    """``Helicone-Session-Path``: where in the session's tree this call sits (``/plan/search``)."""
    name: str


@dataclass(frozen=True, slots=True)
class CallParams:
    provider: str
    """``openai``, ``anthropic`` or one of ``ROUTED_PROVIDERS``."""
    model: str
    messages: tuple[tuple[str, str], ...]
    """(role, text) in order; a ``system`` message first is the system prompt."""
    kind: Literal["chat", "embeddings"] = "chat"
    stream: bool = False
    reply_words: int = 8
    latency_ms: int = 300
    """Time the mock waits before its response head."""
    chunk_delay_ms: float = 0.0
    """Time the mock waits before each streamed delta."""
    fail_status: int | None = None
    """The mock answers with this error status (and the provider's error body) instead."""
    cached_tokens: int = 0
    user_id: str | None = None
    session: SessionStep | None = None
    properties: tuple[tuple[str, str], ...] = ()


class CallSource(Protocol):
    def next_call(self) -> CallParams:
        """The next call to send."""
        ...


@dataclass(frozen=True, slots=True)
class _Model:
    provider: str
    name: str
    weight: int
    kind: Literal["chat", "embeddings"] = "chat"
    slowness: float = 1.0


MODELS: tuple[_Model, ...] = (
    _Model("openai", "gpt-4o-mini", 30),
    _Model("openai", "gpt-4o", 10, slowness=1.8),
    _Model("openai", "text-embedding-3-small", 8, kind="embeddings", slowness=0.3),
    _Model("anthropic", "claude-3-5-haiku-20241022", 15),
    _Model("anthropic", "claude-sonnet-4-20250514", 10, slowness=2.0),
    _Model("groq", "llama-3.3-70b-versatile", 8, slowness=0.4),
    _Model("mistral", "mistral-small-latest", 6),
)
USERS: tuple[tuple[str, int], ...] = (
    ("ada@example.com", 20),
    ("grace@example.com", 14),
    ("alan@example.com", 10),
    ("edsger@example.com", 8),
    ("barbara@example.com", 6),
    ("ken@example.com", 4),
    ("margaret@example.com", 3),
    ("linus@example.com", 1),
)
FEATURES: dict[str, tuple[str, tuple[str, ...]]] = {
    "chat": (
        "You are a friendly assistant. Answer briefly.",
        (
            "What is the difference between a list and a tuple in Python?",
            "Suggest three names for a bakery that only sells sourdough.",
            "How do I undo the last git commit but keep the changes?",
        ),
    ),
    "summarize": (
        "Summarize the user's text in two sentences.",
        (
            "The quarterly report shows revenue up twelve percent, driven by the new API tier, "
            "while support costs fell after the self-service docs launched in March.",
            "Meeting notes: the team agreed to ship the beta on Friday, move the database "
            "migration to next sprint and hire a second on-call engineer.",
        ),
    ),
    "search": (
        "Rewrite the question as a short web search query.",
        (
            "Which European cities have the best public transport for cyclists?",
            "Is it safe to run PostgreSQL on a network file system?",
        ),
    ),
    "support": (
        "You are the support bot of Acme Cloud. Be precise and polite.",
        (
            "My invoice shows two charges for the same month, can you check?",
            "The dashboard says my API key is revoked but I never revoked it.",
        ),
    ),
}
SESSION_SCRIPTS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    (
        "Research agent",
        "search",
        ("/plan", "/plan/search", "/plan/search/fetch", "/plan/search/fetch", "/plan/answer"),
    ),
    ("Support ticket", "support", ("/triage", "/triage/lookup", "/reply", "/reply/review")),
)
"""(session name, feature, the Helicone-Session-Path of each call in order)."""
MAX_OPEN_SESSIONS = 3


@dataclass(slots=True)
class _OpenSession:
    session_id: str
    name: str
    feature: str
    user_id: str
    paths: list[str] = field(default_factory=list)


class MiniCatalogue:
    """A small, seeded stream of plausible calls (see the module docstring); not thread-safe."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._sessions: list[_OpenSession] = []

    def next_call(self) -> CallParams:
        rng = self._rng
        if self._sessions and rng.random() < 0.5:
            return self._session_call(rng.choice(self._sessions))
        if len(self._sessions) < MAX_OPEN_SESSIONS and rng.random() < 0.2:
            name, feature, paths = rng.choice(SESSION_SCRIPTS)
            session = _OpenSession(self._uuid(), name, feature, self._user(), list(paths))
            self._sessions.append(session)
            return self._session_call(session)
        user = self._user() if rng.random() < 0.9 else None
        return self._call(self._model(), rng.choice(list(FEATURES)), user, None)

    def _session_call(self, session: _OpenSession) -> CallParams:
        path = session.paths.pop(0)
        if not session.paths:
            self._sessions.remove(session)
        step = SessionStep(session.session_id, path, session.name)
        chat = [m for m in MODELS if m.kind == "chat"]
        return self._call(self._model(chat), session.feature, session.user_id, step)

    def _call(
        self, model: _Model, feature: str, user: str | None, session: SessionStep | None
    ) -> CallParams:
        rng = self._rng
        system, prompts = FEATURES[feature]
        prompt = rng.choice(prompts)
        env = "prod" if rng.random() < 0.85 else "staging"
        properties = (("feature", feature), ("env", env))
        # long-tailed latency around ~400 ms, as real providers have
        latency = min(8000, int(rng.lognormvariate(math.log(400), 0.6) * model.slowness))
        if model.kind == "embeddings":
            return CallParams(
                model.provider,
                model.name,
                (("user", prompt),),
                kind="embeddings",
                latency_ms=latency,
                user_id=user,
                properties=properties,
            )
        stream = rng.random() < 0.4
        roll = rng.random()
        fail = 429 if roll < 0.03 else 500 if roll < 0.05 else None
        return CallParams(
            model.provider,
            model.name,
            (("system", system), ("user", prompt)),
            stream=stream,
            reply_words=rng.randint(10, 60) if stream else rng.randint(10, 200),
            latency_ms=latency,
            chunk_delay_ms=rng.randint(10, 40) if stream else 0,
            fail_status=fail,
            cached_tokens=rng.choice((0, 0, 0, 64, 256)) if model.provider == "openai" else 0,
            user_id=user,
            session=session,
            properties=properties,
        )

    def _model(self, models: Sequence[_Model] = MODELS) -> _Model:
        return self._rng.choices(models, weights=[m.weight for m in models])[0]

    def _user(self) -> str:
        return self._rng.choices([u for u, _ in USERS], weights=[w for _, w in USERS])[0]

    def _uuid(self) -> str:
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))


MAX_REPLY_WORDS = 1000
"""Longest reply a converted conversation call asks the mock for (its pace sets the time a
stream takes, so this bounds only the bytes)."""


class _ModelLike(Protocol):
    @property
    def provider(self) -> str: ...
    @property
    def name(self) -> str: ...


class ConversationCall(Protocol):
    """The fields of one generated call (``llmtap.demo.synthetic.Call``) the traffic uses."""

    @property
    def model(self) -> _ModelLike: ...
    @property
    def system(self) -> str: ...
    @property
    def prompt(self) -> str: ...
    @property
    def stream(self) -> bool: ...
    @property
    def status(self) -> int: ...
    @property
    def output_tokens(self) -> int: ...
    @property
    def cache_read_tokens(self) -> int: ...
    @property
    def latency_ms(self) -> float: ...
    @property
    def ttft_ms(self) -> float: ...
    @property
    def user_id(self) -> str: ...
    @property
    def session_id(self) -> str | None: ...
    @property
    def session_path(self) -> str | None: ...
    @property
    def session_name(self) -> str | None: ...
    @property
    def properties(self) -> Mapping[str, str]: ...


class Conversations(Protocol):
    def conversation(self) -> Sequence[ConversationCall]:
        """One user's sitting: a single call, or a session's calls in order."""
        ...


def from_conversation(call: ConversationCall) -> CallParams:
    """What to send for a generated call: the mock is asked for its status, its reply length,
    and its timing (head after the time to first token, then the rest spread over the words)."""
    words = max(1, min(call.output_tokens, MAX_REPLY_WORDS))
    streamed_ok = call.stream and call.status == 200
    latency = call.ttft_ms if streamed_ok else call.latency_ms
    pace = max(0.0, call.latency_ms - call.ttft_ms) / words if streamed_ok else 0.0
    session = None
    if call.session_id is not None:
        session = SessionStep(call.session_id, call.session_path or "/", call.session_name or "")
    return CallParams(
        call.model.provider,
        call.model.name,
        (("system", call.system), ("user", call.prompt)),
        stream=call.stream,
        reply_words=words,
        latency_ms=round(latency),
        chunk_delay_ms=pace,
        fail_status=None if call.status == 200 else call.status,
        cached_tokens=call.cache_read_tokens,
        user_id=call.user_id,
        session=session,
        properties=tuple(call.properties.items()),
    )


class ConversationCalls:
    """A ``CallSource`` over a conversation generator: each conversation's calls in order."""

    def __init__(self, conversations: Conversations) -> None:
        self._conversations = conversations
        self._pending: deque[ConversationCall] = deque()

    def next_call(self) -> CallParams:
        while not self._pending:
            self._pending.extend(self._conversations.conversation())
        return from_conversation(self._pending.popleft())
