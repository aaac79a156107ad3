"""Alert rules and their episodes, durable in the records store.

A rule is an outbox target of kind ``alert`` (its URL and signing secret, its failure state)
plus its definition (``alert_rules``). Evaluators in any number of processes take turns through
``claim_due``: a rule whose ``next_eval_ms`` has come is moved to the next interval by whoever
claims it first (``FOR UPDATE SKIP LOCKED`` on Postgres, the write lock on SQLite), so one
evaluator evaluates it per interval. What a rule's evaluation changes — an episode opened (it
fires) or closed (it resolves), with the delivery that says so — is written in one transaction
(``apply``), under the rule's row lock, and only if the episode is still as the evaluator saw it:
an evaluator restarted, or two racing after a lapsed claim, never fire one episode twice. Every
query users reach names the organization (invariant 6). Decision: docs/decisions/2026-12-01-alerts.md.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from llmtap.stores.records.engine import translated
from llmtap.stores.records.outbox import Delivery, OutboxTable
from llmtap.stores.records.schema import alert_episodes, alert_rules, outbox, outbox_targets

ALERT = "alert"
"""The outbox kind of an alert rule's endpoint (sent like a webhook: one signed delivery)."""
_ERROR_MAX = 500


@dataclass(frozen=True, slots=True)
class RuleSpec:
    """A rule as a user defines it (checked by ``llmtap.alerts.rules`` before it gets here)."""

    name: str
    metric: str
    comparison: str
    threshold: float
    window_s: int
    min_requests: int
    filter: dict[str, Any] | None
    group_by: str | None


@dataclass(frozen=True, slots=True)
class AlertRule:
    id: str
    org_id: str
    url: str
    spec: RuleSpec
    created: datetime
    next_eval_ms: int
    last_eval_ms: int | None
    last_error: str | None
    consecutive_failures: int
    """Of its endpoint: deliveries failing in a row."""
    delivery_error: str | None
    paused: bool
    """Its endpoint failed long enough to be paused (``POST /v1/alerts/{id}/resume``)."""


@dataclass(frozen=True, slots=True)
class Episode:
    id: str
    rule_id: str
    group_key: str
    """A digest of ``group_value`` (``alerts/evaluator.py``: ``group_key``)."""
    group_value: str | None
    threshold: float
    fired_ms: int
    fired_value: float | None
    resolved_ms: int | None
    resolved_value: float | None


@dataclass(frozen=True, slots=True)
class Firing:
    """An episode to open, if its group has none open, with the delivery that announces it."""

    episode: Episode
    delivery: Delivery


@dataclass(frozen=True, slots=True)
class Resolution:
    """An open episode to close, if it still is, with the delivery that announces it."""

    episode_id: str
    resolved_ms: int
    resolved_value: float | None
    delivery: Delivery


def new_rule_id() -> str:
    return "al_" + secrets.token_hex(12)


def new_episode_id() -> str:
    return "ep_" + secrets.token_hex(12)


def _rule_of(row: Any) -> AlertRule:
    return AlertRule(
        id=row["id"],
        org_id=row["org_id"],
        url=row["url"],
        spec=RuleSpec(
            name=row["name"],
            metric=row["metric"],
            comparison=row["comparison"],
            threshold=float(row["threshold"]),
            window_s=int(row["window_s"]),
            min_requests=int(row["min_requests"]),
            filter=row["filter"],
            group_by=row["group_by"],
        ),
        created=row["created"],
        next_eval_ms=int(row["next_eval_ms"]),
        last_eval_ms=row["last_eval_ms"],
        last_error=row["last_error"],
        consecutive_failures=int(row["consecutive_failures"]),
        delivery_error=row["target_error"],
        paused=bool(row["paused"]),
    )


def _episode_of(row: Any) -> Episode:
    return Episode(**{name: row[name] for name in Episode.__dataclass_fields__})


_RULE_COLUMNS = (
    alert_rules,
    outbox_targets.c.url,
    outbox_targets.c.consecutive_failures,
    outbox_targets.c.paused,
    outbox_targets.c.last_error.label("target_error"),
)


class AlertTable:
    """The queries of ``alert_rules`` and ``alert_episodes``, on an engine its owner opened."""

    def __init__(self, engine: sa.Engine, writer: sa.Engine, outbox_table: OutboxTable) -> None:
        self._engine = engine
        self._writer = writer
        """Transactions that write (SQLite: the write lock taken at BEGIN)."""
        self._outbox = outbox_table

    def _select_rules(self) -> sa.Select[Any]:
        return sa.select(*_RULE_COLUMNS).join(
            outbox_targets, outbox_targets.c.id == alert_rules.c.id
        )

    # -- what users do (always for one organization) -------------------------------------------

    def create(self, org_id: str, url: str, spec: RuleSpec) -> tuple[str, str]:
        """``(rule id, signing secret)``: the secret is shown to the user once."""
        rule_id, secret = new_rule_id(), "whsec_" + secrets.token_urlsafe(32)
        created = datetime.now(UTC)
        with translated("create alert rule"), self._writer.begin() as conn:
            conn.execute(
                outbox_targets.insert().values(
                    id=rule_id,
                    org_id=org_id,
                    kind=ALERT,
                    url=url,
                    secret=secret,
                    created=created,
                    paused=False,
                    consecutive_failures=0,
                    failing_since_ms=None,
                    retry_at_ms=0,
                    last_error=None,
                    last_success_ms=None,
                )
            )
            conn.execute(
                alert_rules.insert().values(
                    id=rule_id,
                    org_id=org_id,
                    name=spec.name,
                    metric=spec.metric,
                    comparison=spec.comparison,
                    threshold=spec.threshold,
                    window_s=spec.window_s,
                    min_requests=spec.min_requests,
                    filter=spec.filter,
                    group_by=spec.group_by,
                    created=created,
                    next_eval_ms=0,
                    last_eval_ms=None,
                    last_error=None,
                )
            )
        return rule_id, secret

    def count(self, org_id: str) -> int:
        query = sa.select(sa.func.count()).where(alert_rules.c.org_id == org_id)
        with translated("count alert rules"), self._engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def rules(self, org_id: str) -> list[AlertRule]:
        query = (
            self._select_rules()
            .where(alert_rules.c.org_id == org_id, outbox_targets.c.org_id == org_id)
            .order_by(alert_rules.c.created, alert_rules.c.id)
        )
        with translated("list alert rules"), self._engine.connect() as conn:
            return [_rule_of(row) for row in conn.execute(query).mappings()]

    def rule(self, org_id: str, rule_id: str) -> AlertRule | None:
        query = self._select_rules().where(
            alert_rules.c.org_id == org_id,
            outbox_targets.c.org_id == org_id,
            alert_rules.c.id == rule_id,
        )
        with translated("read alert rule"), self._engine.connect() as conn:
            row = conn.execute(query).mappings().first()
        return None if row is None else _rule_of(row)

    def delete(self, org_id: str, rule_id: str) -> bool:
        """Delete the organization's rule, its episodes, its endpoint and its deliveries."""
        with translated("delete alert rule"), self._writer.begin() as conn:
            found = conn.execute(
                sa.select(alert_rules.c.id)
                .where(alert_rules.c.org_id == org_id, alert_rules.c.id == rule_id)
                .with_for_update()
            ).first()
            if found is None:
                return False
            # explicit, not left to ON DELETE CASCADE: SQLite enforces it only per connection
            conn.execute(sa.delete(alert_episodes).where(alert_episodes.c.rule_id == rule_id))
            conn.execute(sa.delete(outbox).where(outbox.c.target_id == rule_id))
            conn.execute(sa.delete(alert_rules).where(alert_rules.c.id == rule_id))
            conn.execute(
                sa.delete(outbox_targets).where(
                    outbox_targets.c.org_id == org_id, outbox_targets.c.id == rule_id
                )
            )
        return True

    def history(self, org_id: str, rule_id: str, limit: int) -> list[Episode]:
        """The rule's episodes, newest first."""
        query = (
            sa.select(alert_episodes)
            .where(alert_episodes.c.org_id == org_id, alert_episodes.c.rule_id == rule_id)
            .order_by(alert_episodes.c.fired_ms.desc(), alert_episodes.c.id.desc())
            .limit(limit)
        )
        with translated("read alert history"), self._engine.connect() as conn:
            return [_episode_of(row) for row in conn.execute(query).mappings()]

    # -- the evaluators' side ------------------------------------------------------------------

    def claim_due(self, now_ms: int, interval_ms: int, limit: int) -> list[AlertRule]:
        """Up to ``limit`` rules due for evaluation, moved to ``now_ms + interval_ms`` so no
        other evaluator takes them before then."""
        pick = (
            sa.select(alert_rules.c.id)
            .where(alert_rules.c.next_eval_ms <= now_ms)
            .order_by(alert_rules.c.next_eval_ms)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        # two statements in one transaction, as the outbox's claim (outbox.py says why)
        with translated("claim alert rules"), self._writer.begin() as conn:
            ids = list(conn.execute(pick).scalars())
            if not ids:
                return []
            conn.execute(
                sa.update(alert_rules)
                .where(alert_rules.c.id.in_(ids))
                .values(next_eval_ms=now_ms + interval_ms)
            )
            rows = conn.execute(self._select_rules().where(alert_rules.c.id.in_(ids))).mappings()
            return [_rule_of(row) for row in rows]

    def open_episodes(self, rule_id: str) -> list[Episode]:
        query = sa.select(alert_episodes).where(
            alert_episodes.c.rule_id == rule_id, alert_episodes.c.resolved_ms.is_(None)
        )
        with translated("read open episodes"), self._engine.connect() as conn:
            return [_episode_of(row) for row in conn.execute(query).mappings()]

    def apply(
        self,
        rule_id: str,
        now_ms: int,
        firings: Sequence[Firing],
        resolutions: Sequence[Resolution],
        error: str | None = None,
    ) -> tuple[int, int]:
        """Open and close episodes and enqueue their deliveries, in one transaction, each only
        if the episode is still as the evaluator saw it; ``(fired, resolved)`` that were."""
        fired = resolved = 0
        with translated("record an alert evaluation"), self._writer.begin() as conn:
            found = conn.execute(
                sa.select(alert_rules.c.id).where(alert_rules.c.id == rule_id).with_for_update()
            ).first()
            if found is None:  # deleted while it was evaluated
                return 0, 0
            open_keys = set(
                conn.execute(
                    sa.select(alert_episodes.c.group_key).where(
                        alert_episodes.c.rule_id == rule_id,
                        alert_episodes.c.resolved_ms.is_(None),
                    )
                ).scalars()
            )
            deliveries: list[Delivery] = []
            for firing in firings:
                episode = firing.episode
                if episode.group_key in open_keys:
                    continue
                conn.execute(
                    alert_episodes.insert().values(
                        org_id=firing.delivery.org_id,
                        **{name: getattr(episode, name) for name in Episode.__dataclass_fields__},
                    )
                )
                open_keys.add(episode.group_key)
                deliveries.append(firing.delivery)
                fired += 1
            for resolution in resolutions:
                result = conn.execute(
                    sa.update(alert_episodes)
                    .where(
                        alert_episodes.c.id == resolution.episode_id,
                        alert_episodes.c.resolved_ms.is_(None),
                    )
                    .values(
                        resolved_ms=resolution.resolved_ms,
                        resolved_value=resolution.resolved_value,
                    )
                )
                if result.rowcount:
                    deliveries.append(resolution.delivery)
                    resolved += 1
            self._outbox.add(conn, deliveries, now_ms)
            conn.execute(
                sa.update(alert_rules)
                .where(alert_rules.c.id == rule_id)
                .values(
                    last_eval_ms=now_ms, last_error=None if error is None else error[:_ERROR_MAX]
                )
            )
        return fired, resolved
