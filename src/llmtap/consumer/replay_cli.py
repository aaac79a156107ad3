"""``llmtap replay``: argument handling, signals and the summary line around
``consumer.replay`` and ``consumer.redrive``."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from types import FrameType

from llmtap.consumer.redrive import redrive
from llmtap.consumer.replay import replay
from llmtap.errors import ConfigError, LlmtapError
from llmtap.settings import Settings

log = logging.getLogger(__name__)


def parse_time_ms(text: str) -> int:
    """ISO 8601 (``2026-11-25T12:00:00Z``, ``2026-11-25 12:00``, ``2026-11-25``) to unix ms;
    a time without a zone is UTC."""
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"--from-time {text!r} is not an ISO 8601 time") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)


@contextmanager
def _stopped_by_signals() -> Iterator[threading.Event]:
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("%s received: finishing the batch in hand", signal.Signals(signum).name)
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run_replay_command(
    settings: Settings,
    *,
    from_offset: int | None,
    partitions: Sequence[int] | None,
    from_time: str | None,
    dlq: bool,
    follow: bool,
    idle_s: float,
) -> int:
    """Exit 0 when caught up (or, following, stopped by a signal), 1 if cut short, 2 on a bad
    argument or a queue/store that cannot be opened."""
    try:
        if follow and not dlq:
            raise ConfigError("--follow goes with --dlq")
        if partitions and from_offset is None:
            raise ConfigError("--partition goes with --from-offset")
        with _stopped_by_signals() as stop:
            if dlq:
                report = redrive(settings, follow=follow, idle_s=idle_s, stop=stop)
                print(
                    f"re-drove {settings.dlq_topic}: {report.redriven} stored,"
                    f" {report.dead_again} dead again, {report.stayed_dead} stay dead"
                    f" (re-driven {settings.dlq_max_redrives} times),"
                    f" {report.unreadable} unreadable"
                )
                return 0 if report.complete or follow else 1
            time_ms = parse_time_ms(from_time) if from_time is not None else None
            result = replay(
                settings,
                from_offset=from_offset,
                partitions=partitions or None,
                from_time_ms=time_ms,
                idle_s=idle_s,
                stop=stop,
            )
    except LlmtapError as exc:
        print(f"llmtap replay: {exc}", file=sys.stderr)
        return 2
    print(
        f"replayed {settings.topic}: {result.processed} record(s) stored again,"
        f" {result.dead_lettered} dead-lettered"
        + ("" if result.complete else " (stopped before catching up)")
    )
    return 0 if result.complete else 1
