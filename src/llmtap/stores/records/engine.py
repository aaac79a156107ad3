"""One SQLAlchemy engine per records store, for SQLite or Postgres, and the error boundary.

Users write ``sqlite:///path`` or ``postgresql://user:pw@host/db``; the driver is ours to pick
(the standard library's sqlite3, psycopg 3). SQLAlchemy errors never leave this package: they are
translated into ``StoreUnavailable`` (the server is away, try again later), a row-level data
error (the caller decides which row), or a plain ``StoreError``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy import event, exc
from sqlalchemy.engine import URL, make_url

from llmtap.errors import ConfigError, StoreError, StoreUnavailable
from llmtap.private_files import private_file
from llmtap.sqlite_wal import enable_wal

# What one bad row can cause: the database refusing it, or the driver or a column type refusing
# to bind one of its values (an int beyond 64 bits, something JSON cannot hold) before the
# server ever sees it. SQLAlchemy wraps the latter in a StatementError.
_VALUE_ERRORS: tuple[type[BaseException], ...] = (OverflowError, ValueError, TypeError)
WRITE_ERRORS: tuple[type[BaseException], ...] = (exc.SQLAlchemyError, *_VALUE_ERRORS)
"""Everything a write can raise; ``is_row_error`` tells which of them one row caused."""


def is_row_error(err: BaseException) -> bool:
    """Whether ``err`` (one of ``WRITE_ERRORS``) is about the data of a row, not the database."""
    if isinstance(err, (exc.IntegrityError, exc.DataError, *_VALUE_ERRORS)):
        return True
    if isinstance(err, exc.DBAPIError):
        return False
    return isinstance(err, exc.StatementError) and isinstance(err.orig, _VALUE_ERRORS)


# The server is away or busy (down, restarting, "database is locked"): not about the data.
_UNAVAILABLE: tuple[type[BaseException], ...] = (
    exc.OperationalError,
    exc.InterfaceError,
    exc.DisconnectionError,
    exc.TimeoutError,
)


def parse_url(url: str) -> URL:
    """The SQLAlchemy URL for a records-store URL, with our driver; ``ConfigError`` otherwise."""
    try:
        parsed = make_url(url)
    except exc.ArgumentError as err:
        raise ConfigError(f"records store URL {url!r} is not a database URL") from err
    backend = parsed.get_backend_name()
    if backend == "postgres":
        backend = "postgresql"
    if backend == "sqlite" and parsed.get_driver_name() in ("pysqlite", ""):
        return parsed.set(drivername="sqlite+pysqlite")
    if backend == "postgresql" and parsed.get_driver_name() in ("psycopg", "psycopg2", ""):
        return parsed.set(drivername="postgresql+psycopg")
    raise ConfigError(
        f"records store URL {url!r}: expected sqlite:///<path> or postgresql://user:pw@host/db"
    )


def json_text(value: Any) -> str:
    # msgspec instead of the stdlib: JSON columns (properties, headers) are encoded for every row
    # of every batch, and the stdlib encoder was a tenth of the consumer's time
    return msgspec.json.encode(value).decode()


def create_engine(url: str, *, immediate: bool = False) -> sa.Engine:
    """An engine for ``url``; ``immediate`` takes SQLite's write lock at BEGIN (migrations)."""
    parsed = parse_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(parsed, immediate=immediate)
    connect_args: dict[str, Any] = {}
    if "connect_timeout" not in parsed.query:
        connect_args["connect_timeout"] = 5
    # pre-ping: after a server restart the next batch reconnects instead of failing once more
    return sa.create_engine(
        parsed, pool_pre_ping=True, connect_args=connect_args, json_serializer=json_text
    )


WRITER_CACHE_KIB = 65536
"""Page cache of a SQLite writer connection (SQLite's default is 2 MiB); grows only as used."""
WRITER_CHECKPOINT_PAGES = 16384
"""WAL pages (4 KiB each, so 64 MiB) after which a SQLite writer's commit checkpoints."""


def _sqlite_engine(parsed: URL, *, immediate: bool) -> sa.Engine:
    database = parsed.database or ""
    if database and database != ":memory:" and not database.startswith("file:"):
        # created 0600 before SQLite opens it: its -wal and -shm take the file's mode
        private_file(Path(database))
    # Migrations take the write lock at BEGIN and several processes may start at once: give a
    # waiting one longer than sqlite3's default 5 s, which a loaded machine can exceed. A timeout
    # the URL gives (``?timeout=``) is the operator's and wins.
    connect_args = {"timeout": 60.0} if immediate and "timeout" not in parsed.query else {}
    engine = sa.create_engine(parsed, json_serializer=json_text, connect_args=connect_args)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # sqlite3's own transaction handling skips BEGIN before DDL and SAVEPOINT, which breaks
        # transactional migrations and per-row savepoints; SQLAlchemy emits BEGIN instead.
        dbapi_connection.isolation_level = None
        # WAL: the api process reads while the consumer writes
        enable_wal(dbapi_connection)
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        if immediate:
            # The writer (the consumer's batches): the sort indexes take each row at a random
            # place, so a batch dirties pages all over them. A cache that holds them and a
            # checkpoint every WRITER_CHECKPOINT_PAGES (not SQLite's 1,000) copy each such page
            # to the database once per several batches instead of once per batch.
            cursor.execute(f"PRAGMA cache_size=-{WRITER_CACHE_KIB}")
            cursor.execute(f"PRAGMA wal_autocheckpoint={WRITER_CHECKPOINT_PAGES}")
        cursor.close()

    begin = "BEGIN IMMEDIATE" if immediate else "BEGIN"

    @event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        conn.exec_driver_sql(begin)

    return engine


def is_unavailable(err: BaseException) -> bool:
    if isinstance(err, exc.DBAPIError) and err.connection_invalidated:
        return True
    return isinstance(err, _UNAVAILABLE)


def describe(err: BaseException) -> str:
    """A short reason for logs and dead letters, without SQLAlchemy's statement dump."""
    if isinstance(err, exc.StatementError) and err.orig is not None:
        err = err.orig
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"


def translate(err: exc.SQLAlchemyError, what: str) -> StoreError:
    """llmtap's error for a SQLAlchemy one raised while doing ``what``."""
    if is_unavailable(err):
        return StoreUnavailable(f"records store unavailable ({what}): {describe(err)}")
    return StoreError(f"records store failed ({what}): {describe(err)}")


@contextmanager
def translated(what: str) -> Iterator[None]:
    """Translate SQLAlchemy errors raised inside into llmtap's store errors."""
    try:
        yield
    except exc.SQLAlchemyError as err:
        raise translate(err, what) from err
