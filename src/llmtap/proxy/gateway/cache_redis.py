"""The distributed cache store: Redis (``LLMTAP_CACHE_URL=redis://...``), so every proxy
machine shares one cache.

A bucket is ``llmtap:cache:{<key>}:<idx>`` strings (the answers, expiring with their max-age)
and a hash ``llmtap:cache:{<key>}:c`` of claims (slot -> deadline in ms). ``begin`` is one Lua
script, so deciding and claiming is atomic across machines; it spells ``cache_store.decide`` in
Lua. The braces keep a bucket's keys in one Redis Cluster slot.
"""

from __future__ import annotations

import asyncio
import contextlib

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from llmtap.proxy.gateway.cache_store import Action, Begin, CacheStoreError

_BEGIN = """
local base = KEYS[1]
local n = tonumber(ARGV[1])
local read = ARGV[2] == '1'
local save = ARGV[3] == '1'
local claim_ms = tonumber(ARGV[4])
local rnd = tonumber(ARGV[5])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local claims = base .. ':c'
local filled, busy, free = {}, {}, {}
for i = 0, n - 1 do
  if redis.call('EXISTS', base .. ':' .. i) == 1 then
    filled[#filled + 1] = i
  else
    local c = redis.call('HGET', claims, tostring(i))
    if c and tonumber(c) > now then busy[#busy + 1] = i else free[#free + 1] = i end
  end
end
if read and #filled > 0 and not (save and #free > 0) then
  local idx = filled[(rnd % #filled) + 1]
  return {'hit', idx, redis.call('GET', base .. ':' .. idx)}
end
if save and #free > 0 then
  local idx = free[1]
  redis.call('HSET', claims, tostring(idx), now + claim_ms)
  redis.call('PEXPIRE', claims, claim_ms)
  return {'fill', idx}
end
if read and #busy > 0 then
  return {'wait', 0}
end
if save then
  local taken = {}
  for _, i in ipairs(filled) do taken[#taken + 1] = i end
  for _, i in ipairs(busy) do taken[#taken + 1] = i end
  return {'fill', taken[(rnd % #taken) + 1]}
end
return {'miss', 0}
"""


def _base(key: str) -> str:
    return f"llmtap:cache:{{{key}}}"


class RedisCacheStore:
    def __init__(self, url: str, *, timeout_s: float) -> None:
        self._timeout_s = timeout_s
        self._client = aioredis.Redis.from_url(
            url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry_on_timeout=False,
        )
        self._begin = self._client.register_script(_BEGIN)

    async def begin(
        self, key: str, bucket: int, read: bool, save: bool, claim_ms: int, rnd: int
    ) -> Begin:
        args = [bucket, int(read), int(save), claim_ms, rnd]
        try:
            async with asyncio.timeout(self._timeout_s):
                reply = await self._begin(keys=[_base(key)], args=args)
        except (RedisError, OSError, TimeoutError) as exc:
            raise CacheStoreError(f"redis: {type(exc).__name__}: {exc}") from exc
        action = reply[0].decode() if isinstance(reply[0], bytes) else str(reply[0])
        if action not in ("hit", "fill", "wait", "miss"):
            raise CacheStoreError(f"redis: unexpected answer {action[:20]!r}")
        checked: Action = action  # type: ignore[assignment]
        data = reply[2] if len(reply) > 2 and isinstance(reply[2], bytes) else b""
        if checked == "hit" and not data:
            return Begin("wait")
        return Begin(checked, int(reply[1]), data)

    async def put(self, key: str, idx: int, data: bytes, ttl_ms: int) -> int:
        # Redis evicts by its own maxmemory policy: nothing is counted here
        base = _base(key)
        try:
            async with asyncio.timeout(self._timeout_s):
                async with self._client.pipeline(transaction=True) as pipe:
                    pipe.set(f"{base}:{idx}", data, px=max(1, ttl_ms))
                    pipe.hdel(f"{base}:c", str(idx))
                    await pipe.execute()
        except (RedisError, OSError, TimeoutError) as exc:
            raise CacheStoreError(f"redis: {type(exc).__name__}: {exc}") from exc
        return 0

    async def release(self, key: str, idx: int) -> None:
        try:
            async with asyncio.timeout(self._timeout_s):
                await self._client.hdel(f"{_base(key)}:c", str(idx))
        except (RedisError, OSError, TimeoutError) as exc:
            raise CacheStoreError(f"redis: {type(exc).__name__}: {exc}") from exc

    async def close(self) -> None:
        with contextlib.suppress(RedisError, OSError):
            await self._client.aclose()
