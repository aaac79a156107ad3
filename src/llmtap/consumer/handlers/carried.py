"""Usage carried in the record itself, for logs that arrive without the provider's response body.

An OpenTelemetry span (``source="otel"``) reports the provider's numbers as attributes
(``gen_ai.usage.*``), not as the response the provider sent. The ingestion endpoint copies them
into ``LogRecord.extra`` under the keys below, and ``ResponseParser`` reads them instead of a body.
The numbers are still the provider's own, as reported by the instrumentation; a key that is
missing stays unknown, never 0.
"""

from __future__ import annotations

from collections.abc import Mapping

from llmtap.consumer.handlers.usage import ParsedResponse, Usage

CARRIED_FLAG = "usage.carried"
"""Present (``"1"``) when the record carries its response facts in ``extra``."""
RESPONSE_MODEL = "response.model"
FINISH_REASON = "response.finish_reason"
USAGE_KEYS: dict[str, str] = {
    "usage.input_tokens": "input",
    "usage.output_tokens": "output",
    "usage.total_tokens": "total",
    "usage.cache_read_tokens": "cache_read",
    "usage.cache_write_tokens": "cache_write",
    "usage.reasoning_tokens": "reasoning",
}
"""``extra`` key -> ``Usage`` field (same convention: input includes cached reads and writes)."""


def carried_response(extra: Mapping[str, str]) -> ParsedResponse | None:
    """The response facts carried in ``extra``; None when the record carries none."""
    if CARRIED_FLAG not in extra:
        return None
    numbers: dict[str, int] = {}
    for key, field_name in USAGE_KEYS.items():
        value = extra.get(key)
        if value is not None and value.isdigit():
            numbers[field_name] = int(value)
    usage = Usage(**numbers).with_total() if numbers else None
    return ParsedResponse(
        model=extra.get(RESPONSE_MODEL) or None,
        finish_reason=extra.get(FINISH_REASON) or None,
        usage=usage,
    )
