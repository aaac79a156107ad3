"""OpenAI (and compatible) embeddings: ``usage`` has ``prompt_tokens`` and ``total_tokens`` only.

An embedding produces no output tokens: the output is recorded as 0 (the provider's total equals
its prompt count), which keeps sums over mixed endpoints honest and lets the call be priced.
"""

from __future__ import annotations

from dataclasses import replace
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
    usage = chat_usage(doc.get("usage"))
    if usage is not None and usage.output is None:
        usage = replace(usage, output=0).with_total()
    parsed.usage = usage
    return parsed
