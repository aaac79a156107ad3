"""The default handler chain, in the order each handler relies on the ones before it."""

from __future__ import annotations

from llmtap.consumer.context import Handler
from llmtap.consumer.handlers.authenticate import Authenticate, OrgDirectory
from llmtap.consumer.handlers.bodies import LoadBodies
from llmtap.consumer.handlers.cost import CostCalculator
from llmtap.consumer.handlers.request_parser import RequestParser
from llmtap.consumer.handlers.response_parser import ResponseParser
from llmtap.settings import Settings
from llmtap.stores.bodies.port import BodyStore


def build_chain(
    settings: Settings, records_store: OrgDirectory, body_store: BodyStore
) -> list[Handler]:
    """authenticate -> bodies -> request -> response -> cost."""
    return [
        Authenticate(records_store),
        LoadBodies(body_store),
        RequestParser(),
        ResponseParser(),
        CostCalculator(settings.price_overrides),
    ]
