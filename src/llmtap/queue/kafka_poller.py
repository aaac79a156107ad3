"""``consume`` on a thread of its own, so a call wedged inside librdkafka cannot hold the caller.

Seen in CI after a broker restart: a commit issued as the broker went away never came back, and
a later ``consume`` did not return either, past its own timeout, for minutes (librdkafka serving
the group's rebalance, which waits for outstanding commits, is the likely place; not proven):
the consumer's loop sat in it, so nothing could notice the wedge and replace the client, and
the answered calls stayed on the topic unstored.

A ``Poller`` runs one client's ``consume`` calls on its daemon thread and gives the caller the
result, or ``None`` when the call is not back within the caller's bound; the caller then replaces
the client and abandons this poller (``abandon``): whatever the wedged call returns later is
dropped (those records were not committed, so the group delivers them again), and the thread
ends. Rebalance callbacks run inside ``consume``, so on this thread, while the caller waits:
never two threads in the client at once.
"""

from __future__ import annotations

import queue
import threading
from typing import Any

from confluent_kafka import Consumer as _Client


class _Call:
    __slots__ = ("done", "error", "max_records", "result", "timeout_s")

    def __init__(self, max_records: int, timeout_s: float) -> None:
        self.max_records = max_records
        self.timeout_s = timeout_s
        self.done = threading.Event()
        self.result: list[Any] = []
        self.error: Exception | None = None


class Poller:
    def __init__(self, client: _Client) -> None:
        self._client = client
        self._calls: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self._abandoned = False
        self._thread = threading.Thread(target=self._run, name="llmtap-kafka-poll", daemon=True)
        self._thread.start()

    def consume(self, max_records: int, timeout_s: float, bound_s: float) -> list[Any] | None:
        """The client's ``consume(max_records, timeout_s)``; None if not back within
        ``bound_s`` (the call is then wedged: the caller replaces the client). What it raised
        is raised here."""
        call = _Call(max_records, timeout_s)
        self._calls.put(call)
        if not call.done.wait(bound_s):
            return None
        if call.error is not None:
            raise call.error
        return call.result

    def abandon(self) -> None:
        """Stop serving: a wedged call's late result is dropped and the thread ends."""
        self._abandoned = True
        self._calls.put(None)

    def join(self, timeout_s: float) -> None:
        """Wait (at most ``timeout_s``) for the thread to end: after ``abandon``, once a call
        still in the client returns."""
        self._thread.join(timeout_s)

    def _run(self) -> None:
        while (call := self._calls.get()) is not None and not self._abandoned:
            try:
                call.result = self._client.consume(
                    num_messages=call.max_records, timeout=call.timeout_s
                )
            except Exception as exc:  # noqa: BLE001 -- handed to the caller, raised there
                call.error = exc
            finally:
                call.done.set()
