"""OpenTelemetry GenAI spans as ``LogRecord``s (``source="otel"``).

Read: the GenAI semantic conventions (``gen_ai.provider.name``/``gen_ai.system``,
``gen_ai.operation.name``, ``gen_ai.request.model``, ``gen_ai.response.model``,
``gen_ai.usage.*``, ``gen_ai.input.messages``/``gen_ai.output.messages``), the older attributes
OpenLLMetry emits (``llm.request.type``, ``gen_ai.usage.prompt_tokens``/``completion_tokens``,
``gen_ai.prompt.N.*``/``gen_ai.completion.N.*``) and traceloop's
``traceloop.association.properties.*`` (``user_id``/``session_id`` become the user and session,
the rest properties).

A span is an LLM call when it names a model provider or a request model and its operation is a
model call; workflow, task, tool and agent spans are not, and are left out (the endpoint counts
them). The provider's bodies are not in a span: the prompt and completion messages are stored as
JSON bodies, and usage travels in ``extra`` (``capture.carried``). The request id is
derived from the trace id and the provider's response id (else the span id), so an exporter's
retry, or two instrumentations reporting the same call, land on one row.
"""

from __future__ import annotations

import uuid
from typing import Any

import msgspec

from llmtap.capture.bodies import body_ref
from llmtap.capture.builder import build_log_record
from llmtap.capture.carried import CARRIED_FLAG, FINISH_REASON, RESPONSE_MODEL
from llmtap.capture.tap import TapHeaders
from llmtap.ingest.built import Body, Ingested
from llmtap.ingest.errors import BadLog
from llmtap.ingest.otlp_decode import AttrValue, Span
from llmtap.ingest.values import MAX_COUNT, checked_url, decode_nested, digits, whole
from llmtap.record import BodyRef, Timing
from llmtap.stores.bodies.port import body_key

# uuid5 namespace for request ids made from trace ids (fixed: the same span gives the same id)
_NAMESPACE = uuid.UUID("5b0e3c52-8d1f-4c52-9a43-0b6f1d6c7e21")
_ASSOCIATION = "traceloop.association.properties."
_NOT_MODEL_CALLS = frozenset({"execute_tool", "invoke_agent", "create_agent", "workflow", "task"})
_TRACELOOP_KINDS_NOT_LLM = frozenset({"workflow", "task", "agent", "tool"})
# where a provider's API lives when the span does not say (prices are looked up by host)
_HOSTS = {
    "openai": "https://api.openai.com/v1",
    "anthropic": "https://api.anthropic.com",
    "groq": "https://api.groq.com/openai/v1",
    "mistral_ai": "https://api.mistral.ai/v1",
    "mistralai": "https://api.mistral.ai/v1",
    "deepseek": "https://api.deepseek.com",
    "cohere": "https://api.cohere.com",
    "together": "https://api.together.xyz/v1",
    "togetherai": "https://api.together.xyz/v1",
    "x_ai": "https://api.x.ai/v1",
    "xai": "https://api.x.ai/v1",
    "perplexity": "https://api.perplexity.ai",
}
_USAGE: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("usage.input_tokens", ("gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens")),
    ("usage.output_tokens", ("gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens")),
    ("usage.total_tokens", ("gen_ai.usage.total_tokens", "llm.usage.total_tokens")),
    (
        "usage.cache_read_tokens",
        ("gen_ai.usage.cache_read.input_tokens", "gen_ai.usage.cache_read_input_tokens"),
    ),
    (
        "usage.cache_write_tokens",
        (
            "gen_ai.usage.cache_creation.input_tokens",
            "gen_ai.usage.cache_write.input_tokens",
            "gen_ai.usage.cache_creation_input_tokens",
        ),
    ),
    ("usage.reasoning_tokens", ("gen_ai.usage.reasoning_tokens",)),
)
_REQUEST_PARAMS = (
    ("temperature", "gen_ai.request.temperature"),
    ("top_p", "gen_ai.request.top_p"),
    ("max_tokens", "gen_ai.request.max_tokens"),
)
_encoder = msgspec.json.Encoder()


def _text(value: AttrValue) -> str | None:
    return value if isinstance(value, str) and value else None


def _first(attrs: dict[str, AttrValue], *names: str) -> AttrValue:
    return _first_named(attrs, *names)[1]


def _first_named(attrs: dict[str, AttrValue], *names: str) -> tuple[str, AttrValue]:
    for name in names:
        value = attrs.get(name)
        if value is not None and value != "":
            return name, value
    return names[0], None


def _count(attrs: dict[str, AttrValue], *names: str) -> int | None:
    """The first of ``names`` as a whole non-negative number; ``None`` when it is absent or not
    a number; ``BadLog`` when it spells a number no row can hold."""
    name, value = _first_named(attrs, *names)
    where = f"attribute {name}"
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        if value > MAX_COUNT:
            raise BadLog(f"invalid log: {where} is not a whole number below 2^63")
        return value if value >= 0 else None
    if isinstance(value, float):
        return whole(value, where)
    if isinstance(value, str):
        return digits(value, where)
    return None


def _operation(attrs: dict[str, AttrValue]) -> str | None:
    op = _text(_first(attrs, "gen_ai.operation.name", "llm.request.type"))
    return op.lower() if op else None


def is_llm_span(span: Span) -> bool:
    attrs = span.attributes
    if _text(attrs.get("traceloop.span.kind")) in _TRACELOOP_KINDS_NOT_LLM:
        return False
    if _operation(attrs) in _NOT_MODEL_CALLS:
        return False
    return any(
        _text(attrs.get(name))
        for name in (
            "gen_ai.provider.name",
            "gen_ai.system",
            "gen_ai.request.model",
            "llm.request.type",
        )
    )


def _system(attrs: dict[str, AttrValue]) -> str:
    system = _text(_first(attrs, "gen_ai.provider.name", "gen_ai.system"))
    return system.lower().replace(" ", "_") if system else "unknown"


def _path(system: str, operation: str | None) -> str:
    anthropic = system == "anthropic"
    if operation in ("chat", "completion", "text_completion"):
        if anthropic:
            return "/v1/messages"
        return "/chat/completions" if operation == "chat" else "/completions"
    if operation in ("embedding", "embeddings"):
        return "/embeddings"
    return f"/{operation}" if operation else ""


def _target_url(attrs: dict[str, AttrValue], system: str, operation: str | None) -> str:
    full = _text(attrs.get("url.full"))
    if full:
        return checked_url(full, "attribute url.full")
    path = _path(system, operation)
    name, base = _first_named(attrs, "gen_ai.openai.api_base", "gen_ai.api_base")
    if base := _text(base):
        return checked_url(base.rstrip("/") + path, f"attribute {name}")
    host = _text(attrs.get("server.address"))
    if host:
        port = _count(attrs, "server.port")
        if port is not None and not 0 < port < 65536:
            raise BadLog("invalid log: attribute server.port is not a TCP port")
        url = f"https://{host}{f':{port}' if port else ''}{path}"
        return checked_url(url, "attribute server.address")
    return _HOSTS.get(system, f"otel://{system}") + path


def _json_attr(value: AttrValue, name: str) -> Any:
    if isinstance(value, str):
        try:
            return decode_nested(lambda: msgspec.json.decode(value), f"attribute {name}")
        except msgspec.DecodeError:
            return value
    return value


def _indexed(attrs: dict[str, AttrValue], prefix: str) -> list[dict[str, Any]]:
    """``prefix.N.field`` attributes as a list of ``{field: value}`` ordered by N."""
    found: dict[int, dict[str, Any]] = {}
    for name, value in attrs.items():
        if not name.startswith(prefix):
            continue
        index, _, rest = name[len(prefix) :].partition(".")
        if not rest:
            continue
        number = digits(index, f"the index in attribute {prefix}N.{rest}")
        if number is not None:
            found.setdefault(number, {})[rest] = _json_attr(value, name)
    return [found[i] for i in sorted(found)]


def _messages(attrs: dict[str, AttrValue], new: str, old_prefix: str) -> Any:
    if new in attrs:
        return _json_attr(attrs[new], new)
    return _indexed(attrs, old_prefix) or None


def _bodies(
    span: Span, org_id: str, request_id: str, operation: str | None
) -> tuple[list[Body], BodyRef | None, BodyRef | None]:
    attrs = span.attributes
    request: dict[str, Any] = {}
    if model := _text(attrs.get("gen_ai.request.model")):
        request["model"] = model
    for key, name in _REQUEST_PARAMS:
        if (value := attrs.get(name)) is not None:
            request[key] = value
    if _first(attrs, "gen_ai.is_streaming", "llm.is_streaming") is True:
        request["stream"] = True
    prompts = _messages(attrs, "gen_ai.input.messages", "gen_ai.prompt.")
    if prompts is not None:
        request["input" if operation in ("embedding", "embeddings") else "messages"] = prompts
    response: dict[str, Any] = {}
    if model := _text(attrs.get("gen_ai.response.model")):
        response["model"] = model
    if (rid := _text(attrs.get("gen_ai.response.id"))) is not None:
        response["id"] = rid
    completions = _messages(attrs, "gen_ai.output.messages", "gen_ai.completion.")
    if completions is not None:
        response["output"] = completions
    bodies: list[Body] = []
    refs: list[BodyRef | None] = []
    for kind, doc in (("request", request), ("response", response)):
        if not doc:
            refs.append(None)
            continue
        key = body_key(org_id, request_id, kind)
        ref, data = body_ref(
            _encoder.encode(doc), omit=False, content_type="application/json", key=key
        )
        if data is not None:
            bodies.append(Body(key, data, "application/json"))
        refs.append(ref)
    return bodies, refs[0], refs[1]


def _carried(attrs: dict[str, AttrValue], operation: str | None) -> dict[str, str]:
    extra = {CARRIED_FLAG: "1"}
    for key, names in _USAGE:
        number = _count(attrs, *names)
        if number is not None:
            extra[key] = str(number)
    is_embedding = operation in ("embedding", "embeddings")
    if is_embedding and "usage.input_tokens" in extra and "usage.output_tokens" not in extra:
        extra["usage.output_tokens"] = "0"  # embeddings produce no tokens (the consumer's rule)
    if model := _text(attrs.get("gen_ai.response.model")):
        extra[RESPONSE_MODEL] = model
    reasons = attrs.get("gen_ai.response.finish_reasons")
    if isinstance(reasons, list) and reasons and isinstance(reasons[0], str):
        extra[FINISH_REASON] = reasons[0]
    elif isinstance(reasons, str) and reasons:
        extra[FINISH_REASON] = reasons
    return extra


def request_id_for(span: Span) -> str:
    response_id = _text(span.attributes.get("gen_ai.response.id"))
    name = f"{span.trace_id}:{response_id or span.span_id}"
    return str(uuid.uuid5(_NAMESPACE, name))


def _people(attrs: dict[str, AttrValue]) -> tuple[str | None, str | None, dict[str, str]]:
    properties: dict[str, str] = {}
    for name, value in attrs.items():
        if name.startswith(_ASSOCIATION) and value is not None:
            key = name[len(_ASSOCIATION) :].lower()
            properties[key] = value if isinstance(value, str) else _encoder.encode(value).decode()
    user = properties.pop("user_id", None) or _text(
        _first(attrs, "user.id", "enduser.id", "gen_ai.request.user", "gen_ai.user")
    )
    session = properties.pop("session_id", None) or _text(
        _first(attrs, "session.id", "gen_ai.conversation.id")
    )
    return user, session, properties


def build_span_record(span: Span, *, org_id: str, key_hash: str) -> Ingested:
    """The record and bodies of one LLM span (check ``is_llm_span`` first)."""
    attrs = span.attributes
    system = _system(attrs)
    operation = _operation(attrs)
    request_id = request_id_for(span)
    bodies, request_ref, response_ref = _bodies(span, org_id, request_id, operation)
    user, session, properties = _people(attrs)
    http_status = _count(attrs, "http.response.status_code")
    if http_status is not None and not 100 <= http_status <= 599:
        raise BadLog("invalid log: attribute http.response.status_code is not an HTTP status")
    error_type = _text(attrs.get("error.type"))
    failed = span.status_error or error_type is not None
    status = http_status if http_status is not None else (0 if failed else 200)
    error = (span.status_message or error_type or "span_error") if failed else None
    extra = _carried(attrs, operation)
    if bodies:
        extra["bodies"] = "span-attributes"  # not the provider's bytes: rebuilt from the span
    service = _text(span.resource.get("service.name"))
    if service:
        extra["service.name"] = service
    tap = TapHeaders(request_id=request_id, user_id=user, session_id=session, properties=properties)
    record = build_log_record(
        tap,
        source="otel",
        provider=system,
        method="POST",
        target_url=_target_url(attrs, system, operation),
        status=status,
        timing=Timing(
            start_unix_ms=span.start_unix_nano / 1e6,
            total_ms=round((span.end_unix_nano - span.start_unix_nano) / 1e6, 3),
        ),
        auth_key_hash=key_hash,
        org_id=org_id,
        request_body=request_ref,
        response_body=response_ref,
        streamed=_first(attrs, "gen_ai.is_streaming", "llm.is_streaming") is True,
        error=error,
        trace_id=span.trace_id,
        span_id=span.span_id,
        parent_span_id=span.parent_span_id,
        extra=extra,
    )
    return Ingested(record, bodies)
