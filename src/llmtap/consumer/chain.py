"""The default handler chain, in the order each handler relies on the ones before it."""

from __future__ import annotations

from typing import Protocol

from llmtap.consumer.context import Handler
from llmtap.consumer.handlers.authenticate import Authenticate
from llmtap.consumer.handlers.bodies import LoadBodies
from llmtap.consumer.handlers.cost import CostCalculator
from llmtap.consumer.handlers.posthog import PostHogExport
from llmtap.consumer.handlers.request_parser import RequestParser
from llmtap.consumer.handlers.response_parser import ResponseParser
from llmtap.consumer.integrations import IntegrationDirectory, IntegrationSource
from llmtap.delivery.payloads import Links
from llmtap.keys.directory import KeyDirectory
from llmtap.settings import Settings
from llmtap.stores.bodies.port import BodyStore


class OrgDirectory(Protocol):
    """The part of the records store the chain needs."""

    def org_for_key_hash(self, key_hash: str) -> str | None: ...

    def default_org_id(self) -> str: ...


def public_links(settings: Settings) -> Links:
    base = settings.public_url or f"http://{settings.api_host}:{settings.api_port}"
    return Links(base.rstrip("/"))


def build_chain(
    settings: Settings,
    records_store: OrgDirectory,
    body_store: BodyStore,
    integrations: IntegrationSource | None = None,
) -> list[Handler]:
    """authenticate -> bodies -> request -> response -> cost [-> posthog].

    The PostHog export only prepares deliveries; the runner enqueues them into the outbox once
    the sinks took the batch (``integrations`` None: no export, as for replays into a scratch
    store). Webhooks cost the consumer nothing: the delivery worker reads the stored calls
    (``delivery.webhook_feed``)."""
    keys = KeyDirectory(records_store.org_for_key_hash, ttl_s=settings.key_cache_ttl_s)
    chain: list[Handler] = [
        Authenticate(keys, records_store.default_org_id),
        LoadBodies(body_store),
        RequestParser(),
        ResponseParser(),
        CostCalculator(settings.price_overrides),
    ]
    if integrations is not None:
        directory = IntegrationDirectory(integrations, settings.key_cache_ttl_s)
        chain.append(PostHogExport(directory, public_links(settings)))
    return chain
