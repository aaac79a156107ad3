"""The per-call gateway: the steps a call that asked for a feature goes through before (and
instead of) the plain ``pool.send``."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from llmtap.proxy.gateway.ratelimit import Applied, RateLimiter, ScopeUnknown, Verdict
from llmtap.proxy.gateway.ratelimit_cost import CostCharger
from llmtap.proxy.metrics import ProxyMetrics
from llmtap.proxy.types import Pool

if TYPE_CHECKING:
    from llmtap.proxy.exchange import Exchange

log = logging.getLogger("llmtap.proxy.gateway")


class Gateway:
    """Runs the gateway features for the calls that ask for them.

    ``wants`` is the only thing a plain call pays for (one attribute test); ``run`` takes over
    sending the call. The steps (rate limit, cache, retries, fallbacks) are added here in the
    order a call meets them.
    """

    def __init__(
        self,
        pool: Pool,
        metrics: ProxyMetrics | None = None,
        limiter: RateLimiter | None = None,
        charger: CostCharger | None = None,
        timeout_s: float = 0.25,
    ) -> None:
        self.pool = pool
        self.metrics = metrics or ProxyMetrics()
        self.limiter = limiter
        self.charger = charger
        self._timeout_s = timeout_s
        self._tasks: set[asyncio.Task[None]] = set()

    def wants(self, exchange: Exchange) -> bool:
        """The call sent a feature header, or its key carries a policy: the key check then sets
        ``features`` to an empty dict (``AuthGate``), so this stays one test."""
        tap = exchange.tap
        return tap is not None and tap.features is not None

    def run(self, exchange: Exchange) -> None:
        limiter, tap = self.limiter, exchange.tap
        if limiter is not None and tap is not None:
            notes: dict[str, str] = {}
            try:
                applied = limiter.plan(tap, notes)
                verdict = limiter.check_nowait(applied) if applied else None
            except ScopeUnknown:
                self.metrics.ratelimit_failopen += 1
                applied, verdict = (), None
            except Exception:  # fail-open edge: the call must still go through
                self.metrics.internal_errors += 1
                log.exception(
                    "llmtap internal error in the rate limit (the call still went through)"
                )
                applied, verdict = (), None
            if notes:
                exchange.notes = notes
            if verdict is not None:
                self._go_on(exchange, applied, verdict)
                return
            if applied:
                task = asyncio.get_running_loop().create_task(self._limited(exchange, applied))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
                return
        self.pool.send(exchange)

    async def _limited(self, exchange: Exchange, applied: Sequence[Applied]) -> None:
        assert self.limiter is not None
        try:
            async with asyncio.timeout(self._timeout_s):
                verdict = await self.limiter.check(applied)
        except TimeoutError:
            self.metrics.ratelimit_failopen += 1
            log.warning("rate limit not checked (the call goes through): the store timed out")
        except Exception:  # fail-open edge: the call must still go through
            self.metrics.internal_errors += 1
            log.exception("llmtap internal error in the rate limit (the call still went through)")
        else:
            if not exchange.finished:  # else the client left, or the call timed out, meanwhile
                self._go_on(exchange, applied, verdict)
            return
        if not exchange.finished:
            self.pool.send(exchange)

    def _go_on(self, exchange: Exchange, applied: Sequence[Applied], verdict: Verdict) -> None:
        exchange.extra_head = verdict.head
        if not verdict.allowed:
            exchange.respond_error(429, "rate_limited", verdict.message)
            return
        cents = [a for a in applied if a.policy.unit == "cents"]
        if cents and self.charger is not None:
            exchange.finish_hook = functools.partial(self.charger.after, applied=cents)
        self.pool.send(exchange)

    async def aclose(self) -> None:
        """At shutdown, once no call is in flight: finish pending charges, close the store."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5.0)
        if self.charger is not None:
            await self.charger.aclose()
        if self.limiter is not None:
            await self.limiter.store.aclose()
