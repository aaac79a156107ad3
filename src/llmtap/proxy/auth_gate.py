"""The proxy's key check: a call carrying an llmtap key no organization has is refused (401).

Without it such a call was forwarded, answered, and then had no organization to be logged in
(docs/decisions/2026-12-01-unknown-keys.md). The check runs only for calls that carry
``Helicone-Auth``/``Llmtap-Auth``; plain calls never reach it.

The key directory answers from its cache (``key_cache_ttl_s``) and never makes the event loop
wait on a remote records store (``KeyDirectory.org_nowait``): until it knows the key, the call
goes through (the consumer logs it in the default organization, flagged, if the key turns out
unknown); later calls with the key hit the cache. If the store cannot answer, the call goes
through too (fail open): refusing every keyed call because the records store is down would turn
a logging outage into a gateway outage.

The same lookup tells whether the key carries a rate limit (``llmtap keys create
--rate-limit``): such a call is marked for the gateway (``TapHeaders.features`` becomes at least
an empty dict), so ``Gateway.wants`` stays one test for plain calls. With ``auth_gate`` off,
unknown keys go through but key rate limits still apply.
"""

from __future__ import annotations

from llmtap.keys import KeyGrant, hash_key
from llmtap.keys.directory import KeyDirectory
from llmtap.proxy.exchange import Exchange
from llmtap.proxy.metrics import ProxyMetrics


class AuthGate:
    def __init__(
        self, keys: KeyDirectory, metrics: ProxyMetrics, refuse_unknown: bool = True
    ) -> None:
        self._keys = keys
        self._metrics = metrics
        self._refuse_unknown = refuse_unknown

    def refuses(self, exchange: Exchange, auth: str) -> bool:
        """Answer 401 and return True when ``auth`` is known to be no organization's key."""
        grant = self._keys.grant_nowait(hash_key(auth))
        if grant is not None:
            # an organization's key, or not known yet
            if isinstance(grant, KeyGrant) and grant.rate_limit is not None:
                tap = exchange.tap
                if tap is not None and tap.features is None:
                    tap.features = {}
            return False
        if not self._refuse_unknown:
            return False
        self._metrics.refused += 1
        exchange.respond_error(
            401, "invalid_llmtap_key", "the llmtap key (Helicone-Auth) is unknown or revoked"
        )
        return True
