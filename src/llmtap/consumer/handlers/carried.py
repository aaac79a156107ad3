"""The response facts an ingested record carries in ``extra`` (``capture.carried``), read as a
``ParsedResponse``. The numbers are still the provider's own, as reported by the instrumentation.
"""

from __future__ import annotations

from collections.abc import Mapping

from llmtap.capture.carried import CARRIED_FLAG, FINISH_REASON, RESPONSE_MODEL, USAGE_KEYS
from llmtap.consumer.handlers.usage import ParsedResponse, Usage


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
