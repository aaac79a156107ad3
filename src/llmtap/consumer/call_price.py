"""One call's cost, priced the way its row will be: for the proxy's ``u=cents`` rate limits.

The proxy charges a cents budget what a call cost as soon as the client has its answer, long
before the consumer prices the row. It must charge the same number, so it runs the consumer's
own parsers and price list on the record it built (``llmtap proxy`` and ``serve`` hand this in:
the proxy does not import the consumer).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from llmtap.consumer.context import Context
from llmtap.consumer.handlers.cost import CostCalculator
from llmtap.consumer.handlers.request_parser import RequestParser
from llmtap.consumer.handlers.response_parser import ResponseParser
from llmtap.consumer.handlers.row_builder import RowBuilder
from llmtap.errors import LlmtapError
from llmtap.queue.port import Message
from llmtap.record import LogRecord


class CallPricer:
    def __init__(self, price_overrides: Mapping[str, Mapping[str, float]]) -> None:
        self._build_row = RowBuilder()
        self._handlers = (
            RequestParser(),
            ResponseParser(),
            CostCalculator(price_overrides),
        )

    def __call__(
        self, record: LogRecord, request_body: bytes | None, response_body: bytes | None
    ) -> int | None:
        """The call's cost in nano-dollars; None when it has no price (or cannot be read)."""
        message = Message("proxy", 0, 0, None, b"", int(record.timing.start_unix_ms))
        ctx = Context(
            message,
            record,
            self._build_row(record),
            request_body=request_body,
            response_body=response_body,
        )
        try:
            for handler in self._handlers:
                handler(ctx)
        except LlmtapError:
            return None
        return ctx.row.cost_nano_usd


def pricer_factory(
    price_overrides: Mapping[str, Mapping[str, float]],
) -> Callable[[], CallPricer]:
    """What the proxy builds its pricer with, the first time a cents budget needs one."""
    return lambda: CallPricer(price_overrides)
