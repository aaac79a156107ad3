"""The default handler chain, in the order each handler relies on the ones before it."""

from __future__ import annotations

from typing import Protocol

from llmtap.consumer.context import Handler
from llmtap.consumer.handlers.authenticate import Authenticate
from llmtap.consumer.handlers.bodies import LoadBodies
from llmtap.consumer.handlers.cost import CostCalculator
from llmtap.consumer.handlers.request_parser import RequestParser
from llmtap.consumer.handlers.response_parser import ResponseParser
from llmtap.keys.directory import KeyDirectory
from llmtap.settings import Settings
from llmtap.stores.bodies.port import BodyStore


class OrgDirectory(Protocol):
    """The part of the records store the chain needs."""

    def org_for_key_hash(self, key_hash: str) -> str | None: ...

    def default_org_id(self) -> str: ...


def build_chain(
    settings: Settings, records_store: OrgDirectory, body_store: BodyStore
) -> list[Handler]:
    """authenticate -> bodies -> request -> response -> cost."""
    keys = KeyDirectory(records_store.org_for_key_hash, ttl_s=settings.key_cache_ttl_s)
    return [
        Authenticate(keys, records_store.default_org_id),
        LoadBodies(body_store),
        RequestParser(),
        ResponseParser(),
        CostCalculator(settings.price_overrides),
    ]
