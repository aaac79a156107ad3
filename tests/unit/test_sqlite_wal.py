"""Turning on WAL while another connection holds the database: retried, not failed."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from llmtap.sqlite_wal import enable_wal


def _held(path: Path) -> sqlite3.Connection:
    """A connection in the middle of a read transaction on a rollback-journal database."""
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN")
    holder.execute("SELECT * FROM t").fetchall()
    return holder


def test_wal_is_switched_on_once_the_other_connection_lets_go(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    holder = _held(path)
    conn = sqlite3.connect(path, timeout=0.05, isolation_level=None)
    # the other process finishes its transaction a moment later (serve's children start together)
    release = threading.Timer(0.3, lambda: holder.execute("COMMIT"))
    release.start()
    try:
        enable_wal(conn, wait_s=30)
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        release.join()
        conn.close()
        holder.close()


def test_a_lock_that_never_goes_away_still_fails_after_the_wait(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    holder = _held(path)
    conn = sqlite3.connect(path, timeout=0.01, isolation_level=None)
    try:
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            enable_wal(conn, wait_s=0.2)
    finally:
        conn.close()
        holder.close()
