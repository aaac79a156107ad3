"""LoadBodies: the request and response bytes a record refers to, read from the body store.

The proxy writes bodies before it publishes the record, so a missing object is most likely a
read that beat eventual consistency: ``BodyMissing`` is retriable, and the runner dead-letters the
record once its attempts are spent. A body store outage (``StoreUnavailable`` from the adapter)
is not about this record and passes through, so the runner waits instead of dead-lettering.

A record whose bodies the proxy could not store at all (``extra.body_error``) refers to none; its
row is noted ``llmtap-body-error`` so a reader sees why the bodies are missing.
"""

from __future__ import annotations

from llmtap.consumer.context import Context
from llmtap.errors import StoreError
from llmtap.record import EXTRA_BODY_ERROR, BodyRef
from llmtap.stores.bodies.port import BodyStore
from llmtap.stores.notes import BODY_ERROR, BODY_STORE_REFUSED


class BodyMissing(StoreError):
    """A body the record refers to is not in the body store (yet)."""

    retriable = True


class LoadBodies:
    name = "bodies"

    def __init__(self, store: BodyStore) -> None:
        self._store = store

    def __call__(self, ctx: Context) -> None:
        ctx.request_body = self._load(ctx.record.request_body, "request")
        ctx.response_body = self._load(ctx.record.response_body, "response")
        if EXTRA_BODY_ERROR in ctx.record.extra:
            # the proxy's error text names its store and addresses: the row gets a code only
            ctx.row.properties[BODY_ERROR] = BODY_STORE_REFUSED

    def _load(self, ref: BodyRef | None, kind: str) -> bytes | None:
        if ref is None or ref.omitted or ref.key is None:
            return None
        try:
            return self._store.get(ref.key)
        except KeyError:
            raise BodyMissing(f"{kind} body {ref.key!r} not in the body store") from None
