"""The per-call gateway: the steps a call that asked for a feature goes through before (and
instead of) the plain ``pool.send``."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from llmtap.proxy.gateway.attempts import AttemptRun, Target
from llmtap.proxy.gateway.cache_relay import MissRelay
from llmtap.proxy.gateway.cache_request import CacheHeaderError, CacheRequests
from llmtap.proxy.gateway.cache_step import CacheStep
from llmtap.proxy.gateway.fallbacks import Fallback, json_object, parse_fallbacks
from llmtap.proxy.gateway.ratelimit import Applied, RateLimiter, ScopeUnknown, Verdict
from llmtap.proxy.gateway.ratelimit_cost import CostCharger
from llmtap.proxy.gateway.retry_policy import GatewayHeaderError, RetryPolicy, parse_retry
from llmtap.proxy.metrics import ProxyMetrics
from llmtap.proxy.routing import Router
from llmtap.proxy.types import Pool
from llmtap.settings import Settings

if TYPE_CHECKING:
    from llmtap.proxy.exchange import Exchange

log = logging.getLogger("llmtap.proxy.gateway")


@dataclass(slots=True)
class AttemptPlan:
    """What a call's retry and fallback headers ask for, read before anything is sent."""

    retry: RetryPolicy | None
    targets: list[Target]
    body_json: dict[str, Any] | None


class Gateway:
    """Runs the gateway features for the calls that ask for them.

    ``wants`` is the only thing a plain call pays for (one attribute test); ``run`` takes over
    sending the call. The steps (rate limit, cache, retries, fallbacks) are added here in the
    order a call meets them.
    """

    def __init__(
        self,
        pool: Pool,
        router: Router,
        settings: Settings,
        metrics: ProxyMetrics,
        limiter: RateLimiter | None = None,
        charger: CostCharger | None = None,
        cache: CacheStep | None = None,
    ) -> None:
        self.pool = pool
        self.router = router
        self.metrics = metrics
        self.limiter = limiter
        self.charger = charger
        self.cache = cache
        self._cache_requests = CacheRequests()
        self._timeout_s = settings.ratelimit_store_timeout_s
        self._tasks: set[asyncio.Task[None]] = set()
        self._retry_max_num = settings.retry_max_num
        self._retry_max_timeout_ms = settings.retry_max_timeout_ms
        self._max_fallbacks = settings.fallbacks_max_targets
        self._total_timeout_ns = int(settings.total_timeout_s * 1e9)

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
        self._after_limit(exchange)

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
            self._after_limit(exchange)

    def _go_on(self, exchange: Exchange, applied: Sequence[Applied], verdict: Verdict) -> None:
        exchange.extra_head = verdict.head
        if not verdict.allowed:
            exchange.respond_error(429, "rate_limited", verdict.message)
            return
        cents = [a for a in applied if a.policy.unit == "cents"]
        if cents and self.charger is not None:
            exchange.finish_hook = functools.partial(self.charger.after, applied=cents)
        self._after_limit(exchange)

    def _after_limit(self, exchange: Exchange) -> None:
        """After the rate limit: the cache, when the call asks for it, then ``_send``.

        Every header is read before the cache is looked up, so a bad one is a 400 before a
        bucket slot is claimed. A call the cache does not answer goes on through ``_send``:
        a miss with the cache's relay as the answer's way back, so retries and fallbacks apply
        to it and only the answer the client finally gets is saved (docs/gateway.md,
        "Combining features")."""
        tap = exchange.tap
        features = tap.features if tap is not None else None
        if not features:
            self.pool.send(exchange)  # a key's rate-limit policy was the only feature
            return
        asked = None
        if self.cache is not None:
            try:
                asked = self._cache_requests.get(features)
            except CacheHeaderError as exc:
                self.metrics.refused += 1
                exchange.respond_error(400, "invalid_cache_header", str(exc))
                return
            except Exception:  # fail-open edge: a bug of ours must not stop the call
                self.metrics.internal_errors += 1
                log.exception("llmtap internal error in the cache (the call goes uncached)")
        try:
            plan = self._plan(exchange, features)
        except GatewayHeaderError as exc:
            exchange.respond_error(exc.status, exc.code, exc.message)
            return
        except Exception:  # fail-open edge: a bug of ours must not stop the call
            self.metrics.internal_errors += 1
            log.exception("llmtap internal error in the gateway (the call goes through plainly)")
            plan = None
        if asked is not None:
            assert self.cache is not None
            self.cache.start(exchange, asked, functools.partial(self._send, exchange, plan))
            return
        self._send(exchange, plan)

    def finished(self, exchange: Exchange) -> None:
        """A call the cache took is over (the client has its answer): after-the-call work."""
        if self.cache is not None:
            self.cache.finished(exchange)

    async def aclose(self) -> None:
        """At shutdown, once no call is in flight: finish pending charges, close the store."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5.0)
        if self.charger is not None:
            await self.charger.aclose()
        if self.limiter is not None:
            await self.limiter.store.aclose()
        if self.cache is not None:
            await self.cache.close()

    def _plan(self, exchange: Exchange, features: dict[str, str]) -> AttemptPlan | None:
        """The call's retries and fallbacks (None: it asked for neither)."""
        retry = parse_retry(features, self._retry_max_num, self._retry_max_timeout_ms)
        raw_fallbacks = features.get("fallbacks")
        fallbacks = (
            None
            if raw_fallbacks is None
            else parse_fallbacks(raw_fallbacks, self.router, self._max_fallbacks)
        )
        if retry is None and fallbacks is None:
            return None
        return AttemptPlan(
            retry, self._targets(exchange, fallbacks), self._body_json(exchange, fallbacks)
        )

    def _send(
        self, exchange: Exchange, plan: AttemptPlan | None, relay: MissRelay | None = None
    ) -> None:
        """To the provider: one attempt, or the plan's retries and fallbacks; the answer goes
        back through ``relay`` on a cache miss (it keeps what the cache saves), else directly."""
        if plan is None:
            self.pool.send(exchange if relay is None else relay)
            return
        deadline_ns = exchange.t0_ns + self._total_timeout_ns
        AttemptRun(
            self.pool,
            self.metrics,
            exchange,
            plan.retry,
            plan.targets,
            deadline_ns,
            plan.body_json,
            relay,
        ).start()

    def _targets(self, exchange: Exchange, fallbacks: list[Fallback] | None) -> list[Target]:
        """The call's own route, or (with ``Helicone-Fallbacks``) each fallback in order."""
        routed = exchange.upstream
        assert routed is not None
        if fallbacks is None:
            return [Target(routed, exchange.upstream_path, None, None, exchange.request_bytes)]
        base = routed.base_path.encode()
        call_path = exchange.upstream_path
        if base and call_path.startswith(base):
            call_path = call_path[len(base) :]
        return [
            Target(f.upstream, f.upstream.base_path.encode() + call_path, f, index)
            for index, f in enumerate(fallbacks)
        ]

    @staticmethod
    def _body_json(exchange: Exchange, fallbacks: list[Fallback] | None) -> dict[str, Any] | None:
        """The request body as a JSON object when a fallback merges keys into it (checked
        before the first attempt, so a body that cannot take them is a 400, not a late 502)."""
        if fallbacks is None or all(f.body_override is None for f in fallbacks):
            return None
        body_json = json_object(exchange.request_bytes.partition(b"\r\n\r\n")[2])
        if body_json is None:
            raise GatewayHeaderError(
                "invalid_fallbacks",
                "Helicone-Fallbacks: bodyKeyOverride needs a request body that is a JSON object",
            )
        return body_json
