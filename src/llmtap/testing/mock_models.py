"""Model listings: OpenAI ``GET /v1/models[/{id}]`` and Anthropic ``GET /v1/models[/{id}]``."""

from __future__ import annotations

from llmtap.testing.mock_errors import anthropic_error, openai_error
from llmtap.testing.mock_http import Reply, encode

OPENAI_MODELS = (
    ("gpt-4o-mini", 1721172741),
    ("gpt-4o", 1715367049),
    ("gpt-4.1", 1744316542),
    ("gpt-4.1-mini", 1744318173),
    ("gpt-5", 1754425777),
    ("o3-mini", 1737146383),
    ("text-embedding-3-small", 1705948997),
    ("text-embedding-3-large", 1705953180),
)

ANTHROPIC_MODELS = (
    ("claude-sonnet-4-5-20250929", "Claude Sonnet 4.5", "2025-09-29T00:00:00Z"),
    ("claude-haiku-4-5-20251001", "Claude Haiku 4.5", "2025-10-15T00:00:00Z"),
    ("claude-opus-4-1-20250805", "Claude Opus 4.1", "2025-08-05T00:00:00Z"),
    ("claude-3-5-haiku-20241022", "Claude Haiku 3.5", "2024-10-22T00:00:00Z"),
)


def _openai_model(model_id: str, created: int) -> dict[str, object]:
    return {"id": model_id, "object": "model", "created": created, "owned_by": "system"}


def openai_models(model_id: str | None) -> Reply:
    if model_id is None:
        data = [_openai_model(m, c) for m, c in OPENAI_MODELS]
        return Reply(status=200, body=encode({"object": "list", "data": data}))
    for m, c in OPENAI_MODELS:
        if m == model_id:
            return Reply(status=200, body=encode(_openai_model(m, c)))
    return openai_error(
        404,
        f"The model '{model_id}' does not exist",
        param="model",
        code="model_not_found",
    )


def _anthropic_model(model_id: str, name: str, created: str) -> dict[str, object]:
    return {"type": "model", "id": model_id, "display_name": name, "created_at": created}


def anthropic_models(model_id: str | None) -> Reply:
    if model_id is None:
        data = [_anthropic_model(*m) for m in ANTHROPIC_MODELS]
        listing = {
            "data": data,
            "has_more": False,
            "first_id": data[0]["id"],
            "last_id": data[-1]["id"],
        }
        return Reply(status=200, body=encode(listing))
    for m in ANTHROPIC_MODELS:
        if m[0] == model_id:
            return Reply(status=200, body=encode(_anthropic_model(*m)))
    return anthropic_error(404, f"model: {model_id}")
