"""The DLQ re-drive: dead letters go through the chain and sinks again, with backoff and a cap.

``llmtap replay --dlq`` reads the dead-letter topic in its own group (``<consumer_group>-dlq``,
so its progress is kept between runs), unwraps each letter back into the message it came from
(same topic, partition, offset, key, value) and hands it to the ordinary batch runner: what
succeeds lands in the stores, what fails again is dead-lettered again. Each re-drive adds to the
record's headers ``llmtap-redrives`` (how many times it was re-driven) and
``llmtap-dlq-history`` (a JSON list of its earlier failures), and a dead letter copies the
record's headers, so a letter carries its whole history. A letter already re-driven
``dlq_max_redrives`` times stays dead: it is read past and left in the topic as it is.

Once (the default) re-drives every letter that was on the topic when it started, at once: an
operator runs it after fixing the cause. ``follow`` keeps running as the DLQ consumer and waits
``dlq_redrive_backoff_s * 2^redrives`` (capped at ``dlq_redrive_backoff_max_s``) after a letter's
last failure before re-driving it.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from llmtap.consumer.dlq import DeadLetter, DeadLetterDecodeError, decode_dead_letter
from llmtap.consumer.replay import DEFAULT_IDLE_S, CatchUp, now_ms, run_until, start_ms
from llmtap.consumer.service import ConsumerService
from llmtap.queue.factory import open_consumer
from llmtap.queue.forwarding import ForwardingConsumer
from llmtap.queue.port import GroupConsumer, Message
from llmtap.settings import Settings

log = logging.getLogger(__name__)

HEADER_REDRIVES = "llmtap-redrives"
HEADER_HISTORY = "llmtap-dlq-history"
# With nothing due, look again at least this often (a stop must not wait for the next due time).
_DEFERRED_WAIT_MAX_S = 1.0


def redrives(letter: DeadLetter) -> int:
    """How many times this letter's record had been re-driven when it died this time."""
    try:
        return int(letter.original_headers.get(HEADER_REDRIVES, b"0"))
    except ValueError:
        return 0


def history(letter: DeadLetter) -> list[dict[str, Any]]:
    """The record's earlier failures, oldest first (this letter's own is not in it)."""
    try:
        found = json.loads(letter.original_headers.get(HEADER_HISTORY, b"[]"))
    except ValueError:
        return []
    return found if isinstance(found, list) else []


def redriven(letter: DeadLetter, dlq_message: Message) -> Message:
    """The message the letter came from, its headers extended with this failure."""
    failure = {
        "error_type": letter.error_type,
        "error": letter.error,
        "stage": letter.stage,
        "attempts": letter.attempts,
        "failed_unix_ms": letter.last_failure_unix_ms,
        "dead_letter": f"{dlq_message.topic}/{dlq_message.partition}/{dlq_message.offset}",
    }
    headers = {
        **letter.original_headers,
        HEADER_REDRIVES: str(redrives(letter) + 1).encode(),
        HEADER_HISTORY: json.dumps([*history(letter), failure]).encode(),
    }
    return Message(
        topic=letter.topic,
        partition=letter.partition,
        offset=letter.offset,
        key=letter.original_key,
        value=letter.original,
        timestamp_ms=letter.timestamp_ms,
        headers=headers,
    )


@dataclass(slots=True)
class RedriveCounts:
    stayed_dead: int = 0
    """Letters past the cap: left dead."""
    unreadable: int = 0
    """DLQ messages that are not dead letters (read past, with a warning)."""


class DeadLetterSource(ForwardingConsumer):
    """The runner's ``GroupConsumer`` over the DLQ: yields the unwrapped originals and commits,
    for each one the runner commits, the dead letter it came from.

    ``due_at(letter)`` (unix ms) defers a letter until then (follow mode): its partition is
    rewound to it and nothing after it in that partition is handed on meanwhile. ``until_ms``
    (once mode) stops at letters published after the re-drive began, such as its own.
    """

    def __init__(
        self,
        inner: GroupConsumer,
        dlq_topic: str,
        *,
        max_redrives: int,
        due_at: Callable[[DeadLetter], int] | None = None,
        until_ms: int | None = None,
        idle_s: float = DEFAULT_IDLE_S,
        stop: threading.Event | None = None,
    ) -> None:
        super().__init__(inner)
        self._topic = dlq_topic
        self._max_redrives = max_redrives
        self._due_at = due_at
        self._until_ms = until_ms
        self._stop = stop or threading.Event()
        self._origin: dict[int, tuple[Message, Message]] = {}
        """id(unwrapped) -> (unwrapped, dead letter): kept until committed or rewound."""
        self._decided: list[Message] = []
        """Letters of the batch in hand read past without a re-drive (stayed dead, unreadable)."""
        self._batch: list[Message] = []
        self._finished: set[int] = set()
        self.catch_up = CatchUp(inner, idle_s)
        self.counts = RedriveCounts()

    def poll_batch(self, max_records: int, timeout_s: float) -> list[Message]:
        raw = self._inner.poll_batch(max_records, timeout_s)
        self._batch, self._decided = raw, []
        out: list[Message] = []
        deferred: dict[int, int] = {}
        now = now_ms()
        for m in raw:
            if m.partition in deferred or m.partition in self._finished:
                continue
            if self._until_ms is not None and m.timestamp_ms > self._until_ms:
                self._finished.add(m.partition)
                continue
            letter = self._letter(m)
            if letter is None:
                continue
            due = self._due_at(letter) if self._due_at is not None else 0
            if due > now:
                deferred[m.partition] = due
                self._inner.seek(m.partition, m.offset, self._topic)
                continue
            unwrapped = redriven(letter, m)
            self._origin[id(unwrapped)] = (unwrapped, m)
            out.append(unwrapped)
        if not out and self._decided:
            # nothing for the runner to commit with: record the letters read past now
            self._inner.commit(self._decided)
            self._decided = []
        self.catch_up.polled(bool(out) or (bool(raw) and not deferred))
        if not out and deferred:
            self._stop.wait(min((min(deferred.values()) - now) / 1000, _DEFERRED_WAIT_MAX_S))
        return out

    def commit(self, messages: Sequence[Message]) -> None:
        letters = list(self._decided)
        for m in messages:
            found = self._origin.get(id(m))
            # a message this source did not hand out (its batch was rewound) commits nothing:
            # above all not the logs topic's offsets under the DLQ group
            if found is not None:
                letters.append(found[1])
        self._inner.commit(letters)
        self._decided = []
        for m in messages:
            self._origin.pop(id(m), None)

    def seek(self, partition: int, offset: int, topic: str | None = None) -> None:
        if topic == self._topic:
            self._inner.seek(partition, offset, topic)
            return
        # the runner rewinds an unfinished batch by its originals' offsets: rewind the letters
        first: dict[int, int] = {}
        for m in self._batch:
            first[m.partition] = min(first.get(m.partition, m.offset), m.offset)
        for p, offset_ in first.items():
            self._inner.seek(p, offset_, self._topic)
        in_batch = {id(m) for m in self._batch}
        for key, (_, letter) in list(self._origin.items()):
            if id(letter) in in_batch:
                del self._origin[key]
        self._decided = []

    def _letter(self, m: Message) -> DeadLetter | None:
        try:
            letter = decode_dead_letter(m.value)
        except DeadLetterDecodeError as exc:
            log.warning("%s/%d/%d is not a dead letter, skipped: %s", *_at(m), exc)
            self.counts.unreadable += 1
            self._decided.append(m)
            return None
        if redrives(letter) >= self._max_redrives:
            log.warning(
                "dead letter %s/%d/%d (request %s) was re-driven %d time(s): it stays dead (%s)",
                *_at(m),
                letter.request_id or "?",
                redrives(letter),
                letter.error,
            )
            self.counts.stayed_dead += 1
            self._decided.append(m)
            return None
        return letter


def _at(m: Message) -> tuple[str, int, int]:
    return m.topic, m.partition, m.offset


@dataclass(frozen=True, slots=True)
class RedriveReport:
    redriven: int
    """Records that made it into the stores this time."""
    dead_again: int
    """Records that failed again (back on the DLQ, one more re-drive in their history)."""
    stayed_dead: int
    unreadable: int
    complete: bool


def backoff_ms(settings: Settings, redrives_so_far: int) -> int:
    delay = settings.dlq_redrive_backoff_s * 2**redrives_so_far
    return int(min(delay, settings.dlq_redrive_backoff_max_s) * 1000)


def redrive(
    settings: Settings,
    *,
    follow: bool = False,
    idle_s: float = DEFAULT_IDLE_S,
    stop: threading.Event | None = None,
) -> RedriveReport:
    """Re-drive the dead letters of ``settings.dlq_topic`` into the stores (see the module doc);
    ``follow`` runs until ``stop`` is set."""
    stop = stop or threading.Event()
    group = f"{settings.consumer_group}-dlq"
    sources: list[DeadLetterSource] = []
    # once: the letters on the topic now, not the ones this run writes (nor a reopened source's)
    until_ms = None if follow else start_ms()

    def due_at(letter: DeadLetter) -> int:
        return letter.last_failure_unix_ms + backoff_ms(settings, redrives(letter))

    def open_source(s: Settings) -> GroupConsumer:
        source = DeadLetterSource(
            open_consumer(s, group=group, topics=[s.dlq_topic]),
            s.dlq_topic,
            max_redrives=s.dlq_max_redrives,
            due_at=due_at if follow else None,
            until_ms=until_ms,
            idle_s=idle_s,
            stop=stop,
        )
        sources.append(source)
        return source

    log.info("re-driving dead letters of %s (group %s)", settings.dlq_topic, group)
    started = time.monotonic()
    service = ConsumerService(settings, source=open_source)
    complete = run_until(service, (lambda: False) if follow else _caught_up(sources), stop)
    counts = sources[0].counts
    stats = service.stats
    log.info(
        "re-drive done in %.1fs: %d stored, %d dead again, %d stay dead, %d unreadable",
        time.monotonic() - started,
        stats.processed,
        stats.dead_lettered,
        counts.stayed_dead,
        counts.unreadable,
    )
    return RedriveReport(
        stats.processed, stats.dead_lettered, counts.stayed_dead, counts.unreadable, complete
    )


def _caught_up(sources: list[DeadLetterSource]) -> Callable[[], bool]:
    return lambda: sources[0].catch_up.done
