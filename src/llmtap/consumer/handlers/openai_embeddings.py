"""OpenAI (and compatible) embeddings: ``usage`` has ``prompt_tokens`` and ``total_tokens`` only.

An embedding produces no output tokens; since the provider's total equals its prompt count, the
output is recorded as ``total - prompt`` (0), which keeps sums over mixed endpoints honest.
"""

from __future__ import annotations

from typing import Any

from llmtap.consumer.handlers.openai_chat import chat_usage, error_name
from llmtap.consumer.handlers.usage import ParsedResponse, text


def parse_embeddings_json(doc: Any) -> ParsedResponse:
    parsed = ParsedResponse()
    if not isinstance(doc, dict):
        return parsed
    if "error" in doc and "data" not in doc:
        parsed.error = error_name(doc["error"])
        return parsed
    parsed.model = text(doc.get("model"))
    parsed.usage = chat_usage(doc.get("usage"))
    return parsed
