"""The rate-limit step: which budgets a call counts against, the check, and the answer.

A call meets up to two policies: its key's (``llmtap keys create --rate-limit``; the operator's,
whatever headers the call sends) and its ``Helicone-RateLimit-Policy`` header's. Both are checked
in one atomic step of the store (``ratelimit_store``); over either → 429 in the provider's error
shape, logged as a row with ``error = rate_limited``. Every answer to a limited call carries
``Helicone-RateLimit-Limit / -Remaining / -Policy / -Reset`` of the tighter policy.

Whose budget: a key's policy counts the key's calls; a header policy counts the organization's
(the key's, or the default organization without one), like Helicone. ``s=user`` splits the
budget per ``Helicone-User-Id``, ``s=<property>`` per value of that ``Helicone-Property-*``. A
call without that header shares one budget with the other calls without it (documented in
docs/gateway.md): leaving the header out must not be a way around an operator's limit.

Cents: the check needs budget left (at least a millionth of a cent); the call's real cost is
charged once the client has its answer (``charge_cost``), priced off the loop.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from llmtap.capture.tap import TapHeaders
from llmtap.keys import DEFAULT_ORG_ID, KeyGrant, hash_key
from llmtap.keys.directory import KeyDirectory
from llmtap.proxy.gateway.ratelimit_policy import (
    CENT_UNITS,
    PolicyError,
    RateLimitPolicy,
    parse_policy,
)
from llmtap.proxy.gateway.ratelimit_store import (
    BucketCheck,
    Decision,
    LimiterStore,
    LimiterUnavailable,
)
from llmtap.proxy.metrics import ProxyMetrics
from llmtap.record import EXTRA_RATELIMIT_IGNORED

log = logging.getLogger("llmtap.proxy.ratelimit")


class ScopeUnknown(Exception):
    """The call's key is not known yet (a remote records store is being asked)."""


@dataclass(frozen=True, slots=True)
class Applied:
    """One policy as it applies to one call: the budget it counts against."""

    policy: RateLimitPolicy
    check: BucketCheck


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    head: bytes
    """The ``Helicone-RateLimit-*`` header lines (empty when the store could not answer)."""
    message: str = ""


def _bucket_key(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode("utf-8", "surrogateescape")).hexdigest()[:40]


def _segment_value(policy: RateLimitPolicy, tap: TapHeaders) -> str:
    if policy.segment is None:
        return ""
    if policy.segment == "user":
        return tap.user_id or ""
    return tap.properties.get(policy.segment, "")


class RateLimiter:
    def __init__(
        self, store: LimiterStore, metrics: ProxyMetrics, keys: KeyDirectory | None
    ) -> None:
        self.store = store
        self._metrics = metrics
        self._keys = keys

    def plan(self, tap: TapHeaders, notes: dict[str, str]) -> tuple[Applied, ...]:
        """The budgets this call counts against (none: not limited). ``ScopeUnknown`` when its
        key is still being looked up; a malformed header policy is ignored, counted, and noted
        in ``notes`` (for the call's row)."""
        grant: KeyGrant | None = None
        if tap.auth is not None and self._keys is not None:
            found = self._keys.grant_nowait(hash_key(tap.auth))
            if isinstance(found, KeyGrant):
                grant = found
            elif found is not None:
                raise ScopeUnknown
            # None: no organization's key (the key check refuses it when on; off, the call is
            # logged in the default organization, whose header budget it counts against)
        applied: list[Applied] = []
        if grant is not None and grant.rate_limit is not None:
            try:
                policy = parse_policy(grant.rate_limit)
            except PolicyError:
                log.warning("a key's stored rate limit %r is unreadable: ignored", grant.rate_limit)
            else:
                scope = "key:" + hash_key(tap.auth or "")
                applied.append(self._apply(policy, scope, tap))
        text = tap.features.get("ratelimit-policy") if tap.features else None
        if text is not None:
            try:
                policy = parse_policy(text.strip())
            except PolicyError as exc:
                self._metrics.ratelimit_ignored += 1
                notes[EXTRA_RATELIMIT_IGNORED] = str(exc)
            else:
                scope = "org:" + (grant.org_id if grant is not None else DEFAULT_ORG_ID)
                applied.append(self._apply(policy, scope, tap))
        return tuple(applied)

    @staticmethod
    def _apply(policy: RateLimitPolicy, scope: str, tap: TapHeaders) -> Applied:
        segment = _segment_value(policy, tap)
        key = _bucket_key(scope, policy.unit, policy.segment or "", segment)
        cents = policy.unit == "cents"
        check = BucketCheck(
            key=key,
            limit=policy.limit_units,
            window_ms=policy.window_s * 1000,
            need=1,
            take=0 if cents else 1,
        )
        return Applied(policy, check)

    def check_nowait(self, applied: Sequence[Applied]) -> Verdict | None:
        """The verdict at once when the store can give it without waiting (else None)."""
        decision = self.store.acquire_nowait([a.check for a in applied])
        return None if decision is None else self._verdict(applied, decision)

    async def check(self, applied: Sequence[Applied]) -> Verdict:
        """Ask the store; fail open (allowed, counted) when it cannot answer."""
        try:
            decision = await self.store.acquire([a.check for a in applied])
        except LimiterUnavailable as exc:
            self._metrics.ratelimit_failopen += 1
            log.warning("rate limit not checked (the call goes through): %s", exc)
            return Verdict(True, b"")
        except TimeoutError:
            self._metrics.ratelimit_failopen += 1
            log.warning("rate limit not checked (the call goes through): the store timed out")
            return Verdict(True, b"")
        return self._verdict(applied, decision)

    def _verdict(self, applied: Sequence[Applied], decision: Decision) -> Verdict:
        # the policy to report: the one that refused, else the one with the least room left
        pick = 0
        best = None
        for i, (a, state) in enumerate(zip(applied, decision.states, strict=True)):
            room = (a.check.limit - state.used) / a.check.limit
            if not decision.allowed and state.used + a.check.need > a.check.limit:
                pick = i
                break
            if best is None or room < best:
                pick, best = i, room
        a, state = applied[pick], decision.states[pick]
        policy = a.policy
        left = max(0, a.check.limit - state.used)
        remaining = left // CENT_UNITS if policy.unit == "cents" else left
        reset_s = max(1, -(-state.reset_ms // 1000))
        head = (
            b"helicone-ratelimit-limit: %d\r\nhelicone-ratelimit-remaining: %d\r\n"
            b"helicone-ratelimit-policy: %s\r\nhelicone-ratelimit-reset: %d\r\n"
            % (policy.quota, remaining, policy.text().encode(), reset_s)
        )
        if decision.allowed:
            return Verdict(True, head)
        self._metrics.rate_limited += 1
        unit = "requests" if policy.unit == "request" else "cents"
        message = (
            f"rate limit exceeded: {policy.quota} {unit} per {policy.window_s} s"
            f" (policy {policy.text()}); the window resets in {reset_s} s"
        )
        return Verdict(False, head + b"retry-after: %d\r\n" % reset_s, message)
