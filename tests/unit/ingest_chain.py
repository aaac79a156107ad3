"""Run an ingested log through the consumer's real handlers, the way ``llmtap consume`` does."""

from __future__ import annotations

from pathlib import Path

from llmtap.consumer.context import Context
from llmtap.consumer.handlers.bodies import LoadBodies
from llmtap.consumer.handlers.cost import CostCalculator
from llmtap.consumer.handlers.request_parser import RequestParser
from llmtap.consumer.handlers.response_parser import ResponseParser
from llmtap.consumer.handlers.row_builder import RowBuilder
from llmtap.ingest.built import Ingested
from llmtap.queue.port import Message
from llmtap.record import decode, encode
from llmtap.stores.factory import open_body_store
from llmtap.stores.row import RequestRow


def consume(ingested: Ingested, bodies_dir: Path) -> tuple[RequestRow, Context]:
    """Store the bodies, round-trip the record through its codec, run the handler chain."""
    store = open_body_store(f"file://{bodies_dir}")
    try:
        for body in ingested.bodies:
            store.put(body.key, body.data, body.content_type)
        value = encode(ingested.record)
        record = decode(value)
        message = Message(topic="t", partition=0, offset=0, key=None, value=value, timestamp_ms=0)
        ctx = Context(message=message, record=record, row=RowBuilder()(record))
        for handler in (LoadBodies(store), RequestParser(), ResponseParser(), CostCalculator({})):
            handler(ctx)
        return ctx.row, ctx
    finally:
        store.close()
