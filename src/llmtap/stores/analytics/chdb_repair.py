"""Undoing chDB's broken parts after a full disk, without losing a row.

chDB 4.4.0 can commit the result of a background merge whose marks file is empty when its disk
fills mid-merge (reproduced in tests/contract/test_chdb_broken_part.py). From then on every query
that reads the table fails (``Code: 246 ... Empty marks file``), while inserts still succeed.
When the engine opens the directory again it finds that part broken, sets it aside as
``detached/broken-on-start_<name>`` and brings back the parts it had merged — provided they are
still on disk. Hence the two halves of the repair:

* ``TABLE_SETTINGS`` (chdb_client.py) keeps merged-away parts for ``old_parts_lifetime`` instead of
  removing them at once, so a broken merge can be undone for that long (the cost: disk for
  recently merged parts, twice their size at most, for that long);
* ``ChdbClient`` reopens its session when a query meets a broken part, or when a check finds one
  (``empty_marks`` over the active parts, run after each successful insert for a while after a
  failed one — a merge that started while the disk was full may finish after it has room again —
  and after every insert while the disk is nearly full: chDB can also report an insert done whose
  own part it left broken, so an insert followed by a repair is reported unavailable, and the
  consumer writes the batch again).

``SessionGate`` lets statements share the session while a repair waits for them and then has it
to itself: a session is never closed under a running statement.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

BROKEN_PART_CODE = "Code: 246."
"""CORRUPTED_DATA: what a query reading a part with an empty marks file fails with."""
SUSPECT_S = 120.0
"""After a failed insert, how long every successful one is followed by a check of the parts."""
LOW_SPACE_BYTES = 256 * 2**20
"""Below this much free space on the store's disk every insert is followed by a check too: chDB
can also report an insert done whose part it left broken."""
_MARKS = (".mrk", ".mrk2", ".mrk3", ".cmrk", ".cmrk2", ".cmrk3", ".cmrk4")

ACTIVE_PARTS_SQL = (
    "SELECT name, path FROM system.parts WHERE active AND database = currentDatabase()"
)


def empty_marks(parts: list[dict[str, str]]) -> list[str]:
    """Names of the parts (rows of ``ACTIVE_PARTS_SQL``) holding an empty marks file."""
    broken = []
    for part in parts:
        try:
            files = os.scandir(part["path"])
        except OSError:
            continue  # merged away or dropped since the listing
        with files:
            for entry in files:
                if entry.name.endswith(_MARKS) and _empty(entry):
                    broken.append(part["name"])
                    break
    return broken


_FILE_IN_PART = re.compile(r"/([^/'\s]+)/[^/'\s]+'")


def broken_parts_named(message: str) -> set[str]:
    """The part a ``Code: 246`` message names (by one of its files' paths)."""
    found = _FILE_IN_PART.search(message)
    return {found.group(1)} if found else {message[:200]}


def low_on_space(path: Path) -> bool:
    try:
        stat = os.statvfs(path)
    except OSError:
        return True
    return stat.f_bavail * stat.f_frsize < LOW_SPACE_BYTES


def _empty(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.stat().st_size == 0
    except OSError:
        return False  # removed since the listing: not a broken part


class SessionGate:
    """Shared for statements, exclusive for a repair; a waiting repair goes before new statements."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._running = 0
        self._repairing = False
        self._waiting_repairs = 0

    @contextmanager
    def statement(self) -> Iterator[None]:
        with self._cond:
            while self._repairing or self._waiting_repairs:
                self._cond.wait()
            self._running += 1
        try:
            yield
        finally:
            with self._cond:
                self._running -= 1
                if not self._running:
                    self._cond.notify_all()

    @contextmanager
    def repair(self) -> Iterator[None]:
        with self._cond:
            self._waiting_repairs += 1
            while self._repairing or self._running:
                self._cond.wait()
            self._waiting_repairs -= 1
            self._repairing = True
        try:
            yield
        finally:
            with self._cond:
                self._repairing = False
                self._cond.notify_all()
