"""Rate-limit counters in Redis (``LLMTAP_CACHE_URL=redis://…``): one set of budgets for every
proxy machine.

A check is one Lua script, which Redis runs atomically: it reads every bucket, decides, and
charges them all or none. A bucket is one integer key whose expiry is its window: Redis' clock
ends the window, so proxy machines whose clocks disagree still share one window.
"""

from __future__ import annotations

from collections.abc import Sequence

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from llmtap.proxy.gateway.ratelimit_store import (
    BucketCheck,
    BucketState,
    Decision,
    LimiterUnavailable,
)

# ARGV per bucket: limit, window_ms, need, take. A key without an expiry (PTTL -1) or missing
# (-2) is a fresh window. Returns {allowed, used1, reset1, used2, reset2, ...}.
_ACQUIRE = """
local used, ttl = {}, {}
for i = 1, #KEYS do
  local window = tonumber(ARGV[(i - 1) * 4 + 2])
  local t = redis.call('PTTL', KEYS[i])
  if t < 0 then
    used[i], ttl[i] = 0, window
  else
    used[i], ttl[i] = tonumber(redis.call('GET', KEYS[i]) or '0'), t
  end
end
local allowed = 1
for i = 1, #KEYS do
  if used[i] + tonumber(ARGV[(i - 1) * 4 + 3]) > tonumber(ARGV[(i - 1) * 4 + 1]) then
    allowed = 0
  end
end
local out = {allowed}
for i = 1, #KEYS do
  local take = tonumber(ARGV[(i - 1) * 4 + 4])
  if allowed == 1 and take > 0 then
    used[i] = used[i] + take
    redis.call('SET', KEYS[i], used[i], 'PX', ttl[i])
  end
  out[#out + 1] = used[i]
  out[#out + 1] = ttl[i]
end
return out
"""
_CHARGE = """
if redis.call('PTTL', KEYS[1]) > 0 then
  return redis.call('INCRBY', KEYS[1], ARGV[1])
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return tonumber(ARGV[1])
"""
_PREFIX = "llmtap:ratelimit:"


class RedisLimiterStore:
    def __init__(self, url: str, *, timeout_s: float) -> None:
        self._client = aioredis.Redis.from_url(
            url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry_on_timeout=False,
        )
        self._acquire = self._client.register_script(_ACQUIRE)
        self._charge = self._client.register_script(_CHARGE)

    def start(self) -> None:
        """Nothing to do: the client connects on the first check."""

    def acquire_nowait(self, checks: Sequence[BucketCheck]) -> Decision | None:
        return None  # a network round trip: always awaited

    async def acquire(self, checks: Sequence[BucketCheck]) -> Decision:
        args: list[int] = []
        for c in checks:
            args += (c.limit, c.window_ms, c.need, c.take)
        try:
            out = await self._acquire(keys=[_PREFIX + c.key for c in checks], args=args)
        except (RedisError, OSError) as exc:
            raise LimiterUnavailable(f"rate-limit store (redis): {type(exc).__name__}") from exc
        states = tuple(BucketState(int(out[i]), int(out[i + 1])) for i in range(1, len(out) - 1, 2))
        return Decision(bool(out[0]), states)

    async def charge(self, key: str, amount: int, window_ms: int) -> None:
        try:
            await self._charge(keys=[_PREFIX + key], args=[amount, window_ms])
        except (RedisError, OSError) as exc:
            raise LimiterUnavailable(f"rate-limit store (redis): {type(exc).__name__}") from exc

    async def aclose(self) -> None:
        await self._client.aclose()
