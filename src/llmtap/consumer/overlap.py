"""The next sink's write, run while the records store commits (``consumer_overlap_sinks``).

SQLite's commit (writing the batch's pages) and chDB's insert both release the GIL, so the
analytics insert can use a second core while the records transaction commits. It starts only
once the records store has given every row its final id and taken all of them
(``upsert.write_rows``), so it writes what the sequential path would have. Any failure of the
overlapped write is set aside: the runner then writes that sink the usual way, with its retries,
outage waits and poison handling (docs/decisions/2026-12-02-consumer-speed.md).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

from llmtap.consumer.batch import Item, RowKey
from llmtap.stores.row import RequestRow
from llmtap.stores.sink import Sink

log = logging.getLogger("llmtap.consumer.runner")


@runtime_checkable
class OverlappingSink(Protocol):
    """A sink that can run another write while it commits (``RecordsStore``)."""

    def write_batch_alongside(
        self, rows: Sequence[RequestRow], alongside: Callable[[], None] | None
    ) -> None: ...


class Alongside:
    """``sink.write_batch`` of the batch's rows, as a callable that never raises; ``done`` says
    whether the last run took every row."""

    def __init__(self, sink: Sink, live: dict[RowKey, list[Item]]) -> None:
        self.sink = sink
        self._live = live
        self.done = False

    def __call__(self) -> None:
        self.done = False
        rows = [items[-1].row for items in self._live.values()]
        try:
            self.sink.write_batch([row for row in rows if row is not None])
        except Exception:
            # written again by the runner, the usual way (which logs an outage or a refusal)
            log.debug("overlapped write to %s failed", self.sink.name, exc_info=True)
        else:
            self.done = True
