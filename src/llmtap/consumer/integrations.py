"""Which PostHog project an organization has, as the export handler sees it.

Read through the records store and kept ``key_cache_ttl_s`` per organization, like keys: a new
or deleted webhook takes effect within that long, and a batch of a thousand calls costs one
lookup per organization, not one per call. A store that cannot answer raises
``StoreUnavailable``: the runner waits the outage out, as for any handler. (Webhooks are read by
the delivery worker, ``delivery.webhook_feed``: the consumer does nothing for them.)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Protocol

from llmtap.stores.records.integrations import PostHogProject

_MAX_ORGS = 10_000


class IntegrationSource(Protocol):
    def posthog(self, org_id: str) -> PostHogProject | None: ...


class IntegrationDirectory:
    def __init__(
        self,
        source: IntegrationSource,
        ttl_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._source = source
        self._ttl_s = ttl_s
        self._clock = clock
        self._lock = threading.Lock()
        self._known: dict[str, tuple[float, PostHogProject | None]] = {}

    def posthog(self, org_id: str) -> PostHogProject | None:
        now = self._clock()
        with self._lock:
            found = self._known.get(org_id)
        if found is not None and found[0] > now:
            return found[1]
        project = self._source.posthog(org_id)
        with self._lock:
            if len(self._known) >= _MAX_ORGS:
                self._known.clear()
            self._known[org_id] = (now + self._ttl_s, project)
        return project
