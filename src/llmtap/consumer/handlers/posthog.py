"""PostHog export, at the end of the chain: one ``llmtap_request`` event per call for the
project the call names (``Helicone-Posthog-Key``/``-Host``) or else its organization's.

The project's key travels on the queue record only and is kept in the outbox's endpoint row, used
to send: it is never copied into the row, its headers or a body. An unusable host (not
``http(s)://host``) exports nothing; where the host may be reached is checked on every send.
"""

from __future__ import annotations

import hashlib
from functools import partial

from llmtap.consumer.context import Context, PendingDelivery
from llmtap.consumer.integrations import IntegrationDirectory
from llmtap.delivery.kinds import DEFAULT_POSTHOG_HOST, posthog_base_url
from llmtap.delivery.payloads import Links, posthog_delivery
from llmtap.stores.records.integrations import POSTHOG
from llmtap.stores.records.outbox import TargetSpec

_MAX_KEY = 200


def target_id(org_id: str, host: str, api_key: str) -> str:
    digest = hashlib.sha256(f"{org_id}\n{host}\n{api_key}".encode()).hexdigest()
    return "ph_" + digest[:32]


class PostHogExport:
    name = "posthog"

    def __init__(self, directory: IntegrationDirectory, links: Links) -> None:
        self._directory = directory
        self._links = links

    def __call__(self, ctx: Context) -> None:
        record = ctx.record
        key, host = record.posthog_key, record.posthog_host
        if key is None:
            project = self._directory.posthog(ctx.row.org_id)
            if project is None:
                return
            key, host = project.api_key, host or project.host
        key = key.strip()
        base = posthog_base_url(host or DEFAULT_POSTHOG_HOST)
        if not key or len(key) > _MAX_KEY or base is None:
            return
        org = ctx.row.org_id
        spec = TargetSpec(
            id=target_id(org, base, key), org_id=org, kind=POSTHOG, url=base, secret=key
        )
        render = partial(posthog_delivery, spec.id, self._links)
        ctx.deliveries.append(PendingDelivery(render=render, target=spec))
