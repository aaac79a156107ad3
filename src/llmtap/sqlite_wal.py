"""Switching a SQLite connection to WAL, for the embedded queue and the records store.

Several processes open the same new database at start (``serve``'s proxies and backend, or
migrations started together). Turning on WAL needs the database to itself for a moment, and
when two connections try at once SQLite may answer "database is locked" straight away, without
waiting out the busy timeout (it does so where waiting could deadlock). So the switch is retried
for a while; once one process has switched the file, the others find it in WAL and go on.
"""

from __future__ import annotations

import sqlite3
import time

WAL_SWITCH_WAIT_S = 60.0


def enable_wal(conn: sqlite3.Connection, wait_s: float = WAL_SWITCH_WAIT_S) -> None:
    """``PRAGMA journal_mode=WAL`` on ``conn``, retried while another connection holds the lock."""
    deadline = time.monotonic() + wait_s
    pause = 0.01
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as err:
            if "locked" not in str(err) or time.monotonic() + pause > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.5)
