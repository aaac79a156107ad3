"""Usage carried in the record itself, for logs that arrive without the provider's response body.

An OpenTelemetry span (``source="otel"``) reports the provider's numbers as attributes
(``gen_ai.usage.*``), not as the response the provider sent. The ingestion endpoint copies them
into ``LogRecord.extra`` under the keys below, and the consumer's ``ResponseParser`` reads them
instead of a body (``consumer.handlers.carried``). A key that is missing stays unknown, never 0.
"""

from __future__ import annotations

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
