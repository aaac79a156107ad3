"""The per-call gateway: the steps a call that asked for a feature goes through before (and
instead of) the plain ``pool.send``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from llmtap.proxy.types import Pool

if TYPE_CHECKING:
    from llmtap.proxy.exchange import Exchange


class Gateway:
    """Runs the gateway features for the calls that ask for them.

    ``wants`` is the only thing a plain call pays for (one attribute test); ``run`` takes over
    sending the call. The steps (rate limit, cache, retries, fallbacks) are added here in the
    order a call meets them.
    """

    def __init__(self, pool: Pool) -> None:
        self.pool = pool

    def wants(self, exchange: Exchange) -> bool:
        tap = exchange.tap
        return tap is not None and tap.features is not None

    def run(self, exchange: Exchange) -> None:
        self.pool.send(exchange)
