"""The alert evaluator: a thread of the consumer process, beside the delivery worker.

Every ``alerts_poll_s`` it claims the rules whose evaluation is due (one evaluator per rule per
``alerts_eval_interval_s``, whatever the number of consumers), asks the process's analytics
reader for the rule's metric over its window — the same ``metrics(MetricsQuery)`` ``/v1/metrics``
answers from chDB, ClickHouse or the records store — and compares each group with the threshold.
A group that breaches and has no open episode fires; an open episode whose group has enough calls
(``min_requests``) and no longer breaches resolves. Too few calls (or none: traffic stopped, or
the consumer is behind) says nothing about the group, so its state stays as it is — an episode is
never resolved and fired again for want of data.
Both are written with their delivery in one transaction (``AlertTable.apply``), so the outbox
sends exactly what the state says, signed, with retries; a restarted evaluator reads the state
and fires nothing twice.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from llmtap.alerts.messages import FIRING, RESOLVED, body, payload
from llmtap.alerts.rules import METRICS, AlertRuleError, breaches, parsed_filter
from llmtap.api.filters import FilterLimits
from llmtap.errors import LlmtapError, StoreError
from llmtap.settings import Settings
from llmtap.stores.analytics.metrics import Metrics, MetricsQuery, MetricsResult
from llmtap.stores.filter import FilterError
from llmtap.stores.records.alerts import (
    AlertRule,
    AlertTable,
    Episode,
    Firing,
    Resolution,
    new_episode_id,
)
from llmtap.stores.records.outbox import Delivery

log = logging.getLogger(__name__)

_RULES_PER_ROUND = 32
_STORE_LOG_EVERY_S = 60.0


class MetricsReader(Protocol):
    def metrics(self, query: MetricsQuery) -> MetricsResult: ...


@dataclass(frozen=True, slots=True)
class EvaluatorConfig:
    interval_ms: int
    poll_s: float
    max_groups: int
    filter_limits: FilterLimits

    @classmethod
    def from_settings(cls, settings: Settings) -> EvaluatorConfig:
        return cls(
            interval_ms=int(settings.alerts_eval_interval_s * 1000),
            poll_s=settings.alerts_poll_s,
            max_groups=settings.alerts_max_groups,
            filter_limits=FilterLimits(
                max_values=settings.api_filter_max_values,
                max_leaves=settings.api_filter_max_leaves,
                max_depth=settings.api_filter_max_depth,
            ),
        )


@dataclass(frozen=True, slots=True)
class Observed:
    group: str | None
    value: float | None
    requests: int


@dataclass(slots=True)
class EvaluatorStats:
    evaluations: int = 0
    fired: int = 0
    resolved: int = 0
    failures: int = 0
    """Evaluations the analytics reader or the filter could not answer."""


def group_key(group: str | None) -> str:
    """A group's key in ``alert_episodes``: a digest, so a caller's long property value or user
    id fits the column (``None``, no value or no group-by, is a group of its own)."""
    return hashlib.sha256(json.dumps(group).encode()).hexdigest()


def _observed(rule: AlertRule, result: MetricsResult) -> dict[str, Observed]:
    """Each group's figure, by its key."""
    metric = METRICS[rule.spec.metric]
    rows: list[Metrics] = [result.totals] if rule.spec.group_by is None else result.series
    return {
        group_key(m.group): Observed(m.group, metric.value(m), m.requests)
        for m in rows
        if m.bucket_start_unix_ms is None
    }


class AlertEvaluator:
    def __init__(
        self,
        table: AlertTable,
        reader: MetricsReader,
        config: EvaluatorConfig,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._table = table
        self._reader = reader
        self._config = config
        self._clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_store_log = 0.0
        self.stats = EvaluatorStats()

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="llmtap-alerts", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop after the rule in hand (its claim lapses at the next interval if unfinished)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
            except StoreError as exc:
                now = time.monotonic()
                if now - self._last_store_log >= _STORE_LOG_EVERY_S:
                    self._last_store_log = now
                    log.warning("alerts: the records store is unavailable: %s", exc)
            except Exception:
                # the evaluator's edge: a bug must not end alerting for good; the next round
                # starts over from the table
                log.exception("alerts: evaluation round failed")
            self._stop.wait(self._config.poll_s)

    # -- one round ------------------------------------------------------------------------------

    def run_once(self) -> int:
        """Evaluate the rules that are due; how many were."""
        done = 0
        while not self._stop.is_set():
            rules = self._table.claim_due(
                self._now_ms(), self._config.interval_ms, _RULES_PER_ROUND
            )
            for rule in rules:
                self.evaluate(rule)
                done += 1
            if len(rules) < _RULES_PER_ROUND:
                break
        return done

    def evaluate(self, rule: AlertRule) -> None:
        now_ms = self._now_ms()
        spec = rule.spec
        try:
            query = MetricsQuery(
                org_id=rule.org_id,
                start_unix_ms=now_ms - spec.window_s * 1000.0,
                end_unix_ms=float(now_ms),
                group_by=spec.group_by,
                filter=parsed_filter(spec.filter, self._config.filter_limits),
            )
            result = self._reader.metrics(query)
        except (AlertRuleError, FilterError, LlmtapError) as exc:
            # nothing is known about this window: the state stays as it is
            self.stats.failures += 1
            log.warning("alerts: rule %s could not be evaluated: %s", rule.id, exc)
            self._table.apply(rule.id, now_ms, [], [], error=f"{type(exc).__name__}: {exc}")
            return
        self.stats.evaluations += 1
        observed = _observed(rule, result)
        open_episodes = {e.group_key: e for e in self._table.open_episodes(rule.id)}

        def breaching(seen: Observed | None) -> bool:
            return (
                seen is not None
                and seen.requests >= spec.min_requests
                and breaches(spec, seen.value)
            )

        resolutions: list[Resolution] = []
        for key, episode in open_episodes.items():
            seen = observed.get(key)
            if seen is None or seen.requests < spec.min_requests or breaching(seen):
                continue  # still breaching, or not enough data to say it is over
            value = None if seen is None else seen.value
            requests = 0 if seen is None else seen.requests
            resolutions.append(
                Resolution(
                    episode.id,
                    now_ms,
                    value,
                    self._delivery(rule, episode, RESOLVED, value, requests, now_ms),
                )
            )
        room = self._config.max_groups - (len(open_episodes) - len(resolutions))
        firings: list[Firing] = []
        for key, seen in observed.items():
            if key in open_episodes or not breaching(seen):
                continue
            if len(firings) >= room:
                log.warning(
                    "alerts: rule %s has %d groups firing (alerts_max_groups); more wait",
                    rule.id,
                    self._config.max_groups,
                )
                break
            episode = Episode(
                id=new_episode_id(),
                rule_id=rule.id,
                group_key=key,
                group_value=seen.group,
                threshold=spec.threshold,
                fired_ms=now_ms,
                fired_value=seen.value,
                resolved_ms=None,
                resolved_value=None,
            )
            firings.append(
                Firing(
                    episode,
                    self._delivery(rule, episode, FIRING, seen.value, seen.requests, now_ms),
                )
            )
        fired, resolved = self._table.apply(rule.id, now_ms, firings, resolutions)
        self.stats.fired += fired
        self.stats.resolved += resolved
        if fired or resolved:
            log.info("alerts: rule %s: %d fired, %d resolved", rule.id, fired, resolved)

    @staticmethod
    def _delivery(
        rule: AlertRule,
        episode: Episode,
        status: str,
        value: float | None,
        requests: int,
        now_ms: int,
    ) -> Delivery:
        document = payload(rule, episode, status, value, requests, now_ms)
        return Delivery(
            target_id=rule.id,
            org_id=rule.org_id,
            dedup_key=f"{episode.id}.{status}",
            body=body(rule, document),
        )
