"""The outbox: signed deliveries to endpoints outside llmtap, durable in the records store.

The consumer enqueues after its sinks took a batch (``enqueue``: one transaction, unique on
(target, dedup key), so a redelivered batch adds nothing) for PostHog; a webhook's deliveries are
added by the delivery worker as it moves the webhook's cursor through the stored calls
(``outbox_tail``), and alerts add theirs with their episodes. Delivery workers, in any number of
processes, claim due deliveries (``claim``: a lease, and ``FOR UPDATE SKIP LOCKED`` on Postgres
so two workers never take the same row), send them and record the outcome (``succeeded`` /
``failed``). A target (one endpoint) carries its failure streak: after a failure nothing more is
sent to it until its backoff ends, and a streak long enough pauses it until ``resume``.
Decision: docs/decisions/2026-12-01-outbox.md.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from llmtap.stores.records.engine import translated
from llmtap.stores.records.outbox_cursor import backlog_counts
from llmtap.stores.records.schema import outbox, outbox_targets

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"
_ERROR_MAX = 500


@dataclass(frozen=True, slots=True)
class TargetSpec:
    """An endpoint to create if it does not exist yet (PostHog projects are made on first use)."""

    id: str
    org_id: str
    kind: str
    url: str
    secret: str


@dataclass(frozen=True, slots=True)
class Delivery:
    target_id: str
    org_id: str
    dedup_key: str
    """What makes it the same delivery when enqueued again (the request id for a call): the
    receiver's idempotency key."""
    body: bytes
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class Target:
    id: str
    org_id: str
    kind: str
    url: str
    secret: str
    created: datetime
    paused: bool
    consecutive_failures: int
    failing_since_ms: int | None
    retry_at_ms: int
    last_error: str | None
    last_success_ms: int | None


@dataclass(frozen=True, slots=True)
class Claimed:
    id: str
    dedup_key: str
    request_id: str | None
    body: bytes
    attempts: int
    created_ms: int


@dataclass(frozen=True, slots=True)
class DeliveryInfo:
    id: str
    request_id: str | None
    dedup_key: str
    status: str
    attempts: int
    created_ms: int
    next_attempt_ms: int | None
    done_ms: int | None
    last_status: int | None
    last_error: str | None


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    base_ms: int
    max_ms: int
    max_age_ms: int
    pause_after_failures: int
    pause_after_ms: int

    def backoff_ms(self, failures: int) -> int:
        """Wait after the ``failures``-th failure in a row (1-based), doubling up to the cap."""
        return int(min(self.base_ms * 2 ** max(0, min(failures, 40) - 1), self.max_ms))


def target_from_row(row: sa.RowMapping) -> Target:
    return Target(**{name: row[name] for name in Target.__dataclass_fields__})


class OutboxTable:
    """The queries of ``outbox`` and ``outbox_targets``, on an engine its owner opened."""

    def __init__(self, engine: sa.Engine, writer: sa.Engine | None = None) -> None:
        self._engine = engine
        self._writer = writer or engine
        """Transactions that write (SQLite: the write lock taken at BEGIN)."""
        self._insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert
        mark = "?" if engine.dialect.paramstyle == "qmark" else "%s"
        columns = (
            "id, target_id, org_id, dedup_key, request_id, body, status, created_ms,"
            " next_attempt_ms, lease_until_ms, attempts"
        )
        self._enqueue_sql = (
            f"INSERT INTO outbox ({columns}) VALUES ({', '.join([mark] * 11)})"
            " ON CONFLICT (target_id, dedup_key) DO NOTHING"
        )

    # -- the consumer's side -------------------------------------------------------------------

    def enqueue(
        self, targets: Sequence[TargetSpec], deliveries: Sequence[Delivery], now_ms: int
    ) -> None:
        """Create the missing ``targets`` and add ``deliveries`` not enqueued before, in one
        transaction (``StoreUnavailable`` when the database is away: nothing was added)."""
        if not deliveries:
            return
        created = datetime.now(UTC)
        with translated("enqueue deliveries"), self._writer.begin() as conn:
            if targets:
                conn.execute(
                    self._insert(outbox_targets).on_conflict_do_nothing(index_elements=["id"]),
                    [
                        {
                            "id": t.id,
                            "org_id": t.org_id,
                            "kind": t.kind,
                            "url": t.url,
                            "secret": t.secret,
                            "created": created,
                            "paused": False,
                            "consecutive_failures": 0,
                            "failing_since_ms": None,
                            "retry_at_ms": 0,
                            "last_error": None,
                            "last_success_ms": None,
                        }
                        for t in {t.id: t for t in targets}.values()
                    ],
                )
            self.add(conn, deliveries, now_ms)

    def add(self, conn: sa.Connection, deliveries: Sequence[Delivery], now_ms: int) -> None:
        """Add ``deliveries`` not enqueued before, inside the caller's transaction (the alert
        evaluator records an episode and its delivery together)."""
        wanted = {d.target_id for d in deliveries}
        if not wanted:
            return
        live = set(
            conn.execute(
                sa.select(outbox_targets.c.id).where(outbox_targets.c.id.in_(wanted))
            ).scalars()
        )
        # a webhook deleted since the consumer read its rules takes its deliveries with it
        deliveries = [d for d in deliveries if d.target_id in live]
        if not deliveries:
            return
        unique = {(d.target_id, d.dedup_key): d for d in deliveries}.values()
        # ids: time first (new rows append to the primary key's B-tree), then 56 random
        # bits drawn once per batch and the delivery's place in it (a uuid4 per delivery
        # was a tenth of the enqueue's time)
        prefix = f"{now_ms:012x}{os.urandom(7).hex()}"
        # the driver's executemany with plain tuples: SQLAlchemy's per-row parameter
        # processing was half the cost of enqueueing a large batch
        conn.exec_driver_sql(
            self._enqueue_sql,
            [
                (
                    f"{prefix}{n:06x}",
                    d.target_id,
                    d.org_id,
                    d.dedup_key,
                    d.request_id,
                    d.body,
                    PENDING,
                    now_ms,
                    now_ms,
                    0,
                    0,
                )
                for n, d in enumerate(unique)
            ],
        )

    # -- the delivery worker's side ------------------------------------------------------------

    def due_targets(self, now_ms: int, limit: int) -> list[Target]:
        """Endpoints not paused, not backing off, with a delivery due and not leased."""
        due = (
            sa.select(outbox.c.id)
            .where(
                outbox.c.target_id == outbox_targets.c.id,
                outbox.c.status == PENDING,
                outbox.c.next_attempt_ms <= now_ms,
                outbox.c.lease_until_ms <= now_ms,
            )
            .exists()
        )
        query = (
            sa.select(outbox_targets)
            .where(
                outbox_targets.c.paused.is_(False),
                outbox_targets.c.retry_at_ms <= now_ms,
                due,
            )
            .order_by(outbox_targets.c.retry_at_ms)
            .limit(limit)
        )
        with translated("read due targets"), self._engine.connect() as conn:
            return [target_from_row(row) for row in conn.execute(query).mappings()]

    def claim(self, target_id: str, now_ms: int, limit: int, lease_ms: int) -> list[Claimed]:
        """Up to ``limit`` due deliveries of the target, oldest first, leased to the caller
        until ``now_ms + lease_ms``; a row another worker holds (locked or leased) is skipped."""
        pick = (
            sa.select(outbox.c.id)
            .where(
                outbox.c.target_id == target_id,
                outbox.c.status == PENDING,
                outbox.c.next_attempt_ms <= now_ms,
                outbox.c.lease_until_ms <= now_ms,
            )
            # the index's order (``ix_outbox_due``): the longest-due first, no sort
            .order_by(outbox.c.next_attempt_ms)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        # Two statements in one transaction, not ``UPDATE … WHERE id IN (SELECT … LIMIT n FOR
        # UPDATE SKIP LOCKED)``: Postgres may run such a subquery more than once and update more
        # than ``limit`` rows. The SELECT locks its rows until the commit (Postgres) or holds
        # the write lock taken at BEGIN (SQLite), so no other worker can take them in between.
        with translated("claim deliveries"), self._writer.begin() as conn:
            ids = list(conn.execute(pick).scalars())
            if not ids:
                return []
            rows = conn.execute(
                sa.update(outbox)
                .where(outbox.c.id.in_(ids))
                .values(lease_until_ms=now_ms + lease_ms)
                .returning(
                    outbox.c.id,
                    outbox.c.dedup_key,
                    outbox.c.request_id,
                    outbox.c.body,
                    outbox.c.attempts,
                    outbox.c.created_ms,
                )
            ).all()
        claimed = [Claimed(*row) for row in rows]
        claimed.sort(key=lambda c: (c.created_ms, c.id))
        return claimed

    def succeeded(self, target_id: str, ids: Sequence[str], now_ms: int, status: int) -> None:
        with translated("record a delivery"), self._writer.begin() as conn:
            conn.execute(
                sa.update(outbox)
                .where(outbox.c.id.in_(list(ids)))
                .values(
                    status=DELIVERED,
                    attempts=outbox.c.attempts + 1,
                    last_status=status,
                    done_ms=now_ms,
                    lease_until_ms=0,
                )
            )
            conn.execute(
                sa.update(outbox_targets)
                .where(outbox_targets.c.id == target_id)
                .values(
                    consecutive_failures=0,
                    failing_since_ms=None,
                    retry_at_ms=0,
                    last_success_ms=now_ms,
                )
            )

    def failed(
        self,
        target_id: str,
        claimed: Sequence[Claimed],
        now_ms: int,
        error: str,
        status: int | None,
        policy: RetryPolicy,
    ) -> None:
        """One failed send of ``claimed``: each is retried after its backoff or, past
        ``max_age_ms``, given up; the endpoint backs off and may be paused."""
        error = error[:_ERROR_MAX]
        with translated("record a failed delivery"), self._writer.begin() as conn:
            for c in claimed:
                attempts = c.attempts + 1
                values: dict[str, object] = {
                    "attempts": attempts,
                    "last_error": error,
                    "last_status": status,
                    "lease_until_ms": 0,
                }
                if now_ms - c.created_ms >= policy.max_age_ms:
                    values.update(status=FAILED, done_ms=now_ms)
                else:
                    values["next_attempt_ms"] = now_ms + policy.backoff_ms(attempts)
                conn.execute(sa.update(outbox).where(outbox.c.id == c.id).values(**values))
            found = (
                conn.execute(
                    sa.select(
                        outbox_targets.c.consecutive_failures, outbox_targets.c.failing_since_ms
                    ).where(outbox_targets.c.id == target_id)
                )
                .mappings()
                .first()
            )
            if found is None:  # deleted while we were sending
                return
            failures = int(found["consecutive_failures"]) + 1
            since = found["failing_since_ms"] or now_ms
            pause = (
                failures >= policy.pause_after_failures and now_ms - since >= policy.pause_after_ms
            )
            conn.execute(
                sa.update(outbox_targets)
                .where(outbox_targets.c.id == target_id)
                .values(
                    consecutive_failures=failures,
                    failing_since_ms=since,
                    retry_at_ms=now_ms + policy.backoff_ms(failures),
                    last_error=error,
                    paused=pause,
                )
            )

    def sweep(self, before_ms: int) -> int:
        """Forget delivered and given-up deliveries finished before ``before_ms``; how many."""
        with translated("sweep deliveries"), self._writer.begin() as conn:
            result = conn.execute(
                sa.delete(outbox).where(outbox.c.status != PENDING, outbox.c.done_ms < before_ms)
            )
        return int(result.rowcount or 0)

    # -- what users see (always for one organization) ------------------------------------------

    def target(self, org_id: str, target_id: str) -> Target | None:
        query = sa.select(outbox_targets).where(
            outbox_targets.c.org_id == org_id, outbox_targets.c.id == target_id
        )
        with translated("read a target"), self._engine.connect() as conn:
            row = conn.execute(query).mappings().first()
        return None if row is None else target_from_row(row)

    def pending_counts(self, org_id: str) -> dict[str, int]:
        """Deliveries still to send, per target of the organization: the outbox's pending ones
        and, for a webhook, the calls after its cursor (``outbox_cursor``)."""
        query = (
            sa.select(outbox.c.target_id, sa.func.count())
            .where(outbox.c.org_id == org_id, outbox.c.status == PENDING)
            .group_by(outbox.c.target_id)
        )
        with translated("count deliveries"), self._engine.connect() as conn:
            counts = {str(t): int(n) for t, n in conn.execute(query).all()}
            for target, waiting in backlog_counts(conn, org_id).items():
                if waiting:
                    counts[target] = counts.get(target, 0) + waiting
        return counts

    def history(self, org_id: str, target_id: str, limit: int) -> list[DeliveryInfo]:
        """The target's deliveries, newest first."""
        query = (
            sa.select(
                outbox.c.id,
                outbox.c.request_id,
                outbox.c.dedup_key,
                outbox.c.status,
                outbox.c.attempts,
                outbox.c.created_ms,
                outbox.c.next_attempt_ms,
                outbox.c.done_ms,
                outbox.c.last_status,
                outbox.c.last_error,
            )
            .where(outbox.c.org_id == org_id, outbox.c.target_id == target_id)
            .order_by(outbox.c.created_ms.desc(), outbox.c.id.desc())
            .limit(limit)
        )
        with translated("read deliveries"), self._engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        return [
            DeliveryInfo(
                **{
                    **dict(row),
                    "next_attempt_ms": row["next_attempt_ms"] if row["status"] == PENDING else None,
                }
            )
            for row in rows
        ]

    def resume(self, org_id: str, target_id: str, now_ms: int) -> bool:
        """Un-pause the organization's target and make its pending deliveries due now."""
        with translated("resume a target"), self._writer.begin() as conn:
            result = conn.execute(
                sa.update(outbox_targets)
                .where(outbox_targets.c.org_id == org_id, outbox_targets.c.id == target_id)
                .values(paused=False, consecutive_failures=0, failing_since_ms=None, retry_at_ms=0)
            )
            if not result.rowcount:
                return False
            conn.execute(
                sa.update(outbox)
                .where(outbox.c.target_id == target_id, outbox.c.status == PENDING)
                .values(next_attempt_ms=now_ms)
            )
        return True
