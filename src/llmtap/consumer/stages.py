"""One round of the handler chain over a batch's records, a handler at a time.

The chain runs stage by stage over runs of ``chunk`` records (the row builder over the run,
then authenticate over it, then the bodies, ...), not record by record: each handler's code and
its caches stay hot across the run instead of being evicted by the other ~15 steps between two
of its calls (docs/decisions/2026-12-02-consumer-speed.md). ``chunk`` bounds what that
costs in memory: the contexts of one run, with their bodies, are alive at once; a batch
otherwise holds only finished rows.

Every record is still treated alone. A record that fails a stage leaves the run there: a
retriable error puts it up for the next round (until its attempts are spent), any other error
dead-letters it, named by the stage it failed in. A store outage (``StoreUnavailable``) is no
record's fault: the run's unfinished records and every later run wait for the next round
without spending an attempt. A record retried starts the chain again from its bytes.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from llmtap.consumer.batch import Batch, Item
from llmtap.consumer.context import Context, Handler
from llmtap.consumer.handlers.row_builder import RowBuilder
from llmtap.errors import LlmtapError, StoreUnavailable

INGESTED_DIGEST_PREFIX = "source:"
"""``record_digest`` of a row from an ingested log: ``source:<record source>`` (never a hex digest)."""
ROW_STAGE = "handler:row"

log = logging.getLogger("llmtap.consumer.runner")


@dataclass(slots=True)
class Round:
    """What one round left to do."""

    retry: list[Item] = field(default_factory=list)
    """Records for the next round: a retriable failure, or held back by an outage."""
    retries: int = 0
    """Of ``retry``, those that failed themselves (an attempt spent)."""
    outage: StoreUnavailable | None = None
    where: str = ""
    """The stage the outage was met in."""


class ChainRunner:
    """The chain (``handlers``, after the row builder) over rounds of a batch's records."""

    def __init__(self, handlers: Sequence[Handler], max_attempts: int, chunk: int) -> None:
        self._build_row = RowBuilder()
        # each handler with the stage name a failure in it is reported under, made once
        self._stages: list[tuple[str, Callable[[Context], None]]] = [
            (f"handler:{handler.name}", handler) for handler in handlers
        ]
        self._max_attempts = max_attempts
        self._chunk = max(1, chunk)

    def run_round(self, items: Sequence[Item], batch: Batch) -> Round:
        """Run the chain over ``items``: the finished ones go to ``batch.good`` (row and
        deliveries set), the dead ones to its dead letters, the rest to the round's ``retry``."""
        done = Round()
        for start in range(0, len(items), self._chunk):
            run = items[start : start + self._chunk]
            if done.outage is not None:
                # the store is down for everyone: do not spend this round's attempts on it
                done.retry.extend(run)
                continue
            self._run(run, batch, done)
        return done

    def _run(self, run: Sequence[Item], batch: Batch, done: Round) -> None:
        live: list[tuple[Item, Context]] = []
        for index, item in enumerate(run):
            item.stage = ROW_STAGE
            try:
                live.append((item, self._context(item)))
            except LlmtapError as exc:
                if self._refused(item, exc, batch, done):
                    done.retry.extend(it for it, _ in live)
                    done.retry.extend(run[index:])
                    return
            except Exception as exc:
                log.exception("handler %s failed on %s", item.stage, item.message.offset)
                _bug(item, exc, batch)
        for stage, handler in self._stages:
            passed: list[tuple[Item, Context]] = []
            for index, (item, ctx) in enumerate(live):
                item.stage = stage
                try:
                    handler(ctx)
                except LlmtapError as exc:
                    if self._refused(item, exc, batch, done):
                        done.retry.extend(it for it, _ in passed)
                        done.retry.extend(it for it, _ in live[index:])
                        return
                except Exception as exc:
                    log.exception("handler %s failed on %s", item.stage, item.message.offset)
                    _bug(item, exc, batch)
                else:
                    passed.append((item, ctx))
            live = passed
        for item, ctx in live:
            # the context (with its bodies) is dropped here: a batch holds rows, not bodies
            item.row = ctx.row
            item.deliveries = ctx.deliveries
            batch.good.append(item)

    def _context(self, item: Item) -> Context:
        record = item.record
        assert record is not None
        row = self._build_row(record)
        if record.source == "proxy":
            # the proxy publishes one record per call, and its bytes are the same for every
            # redelivery of that call only.
            row.record_digest = hashlib.blake2b(item.message.value, digest_size=16).hexdigest()
        else:
            # Ingested logs are re-sent by their (authenticated) senders with fresh receive
            # times, so their bytes cannot tell a re-send from another call: one digest per
            # source makes a re-send replace its own source's row, while a proxied call (no key
            # needed in the default organization) can no longer adopt the row as a pre-digest one.
            row.record_digest = (INGESTED_DIGEST_PREFIX + record.source)[:64]
        return Context(message=item.message, record=record, row=row)

    def _refused(self, item: Item, exc: LlmtapError, batch: Batch, done: Round) -> bool:
        """Sort ``item``'s failure; True for an outage (the caller holds back the rest)."""
        if isinstance(exc, StoreUnavailable):
            done.outage, done.where = exc, item.stage
            return True
        item.failed()
        if exc.retriable and item.attempts < self._max_attempts:
            done.retries += 1
            done.retry.append(item)
        else:
            batch.dead_letter(item, exc)
        return False


def _bug(item: Item, exc: Exception, batch: Batch) -> None:
    # Fail-open edge for handler bugs (logged by the caller): a parser tripping on one odd body
    # must not stall the pipeline. The record keeps its bytes in the DLQ for a re-drive.
    item.failed()
    batch.dead_letter(item, exc)
