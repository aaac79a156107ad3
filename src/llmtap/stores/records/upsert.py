"""Idempotent batch writes of ``RequestRow``s: ``INSERT ... ON CONFLICT DO UPDATE``.

A redelivered or replayed row replaces the stored one, so writing the same batch any number of
times leaves the same rows. A *different* call that claims a stored request id never replaces it:
``claims.settle`` moves it to a fresh id first, in the same transaction, and the upsert's
``WHERE`` refuses to overwrite a row whose digest differs (a concurrent writer that settled
against an older state: that batch is settled again). The batch goes in one transaction as one
executemany; only if that fails on a data error is it redone row by row, each in its own
SAVEPOINT, to find the rows that can never be stored (``PoisonRows``) and keep the rest. The
statement is run through the driver's executemany with parameters made by ``BulkUpsert``
(``bulk_upsert.py``): the same SQL and values as SQLAlchemy's ``execute``, a fraction of the cost.

A refused row is detected by the executemany's row count, not ``RETURNING``: every parameter set
has its own key (``_last_per_key``), so each one inserts or updates exactly one row unless the
``WHERE`` refused it. Both drivers (sqlite3, psycopg 3) report the sum over the parameter sets
(``preserve_rowcount`` keeps it past the cursor's close). ``RETURNING`` made SQLAlchemy run the
batch as multi-row statements it builds and splits itself: twice the time of the executemany.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy import exc
from sqlalchemy.dialects import postgresql, sqlite

from llmtap.errors import StoreUnavailable
from llmtap.stores.records.bulk_upsert import BulkUpsert
from llmtap.stores.records.claims import settle
from llmtap.stores.records.engine import (
    WRITE_ERRORS,
    describe,
    is_row_error,
    translate,
    translated,
)
from llmtap.stores.records.schema import TX, requests
from llmtap.stores.row import RequestRow
from llmtap.stores.sink import PoisonRows

_KEY = ("org_id", "request_id")
_SETTLE_TRIES = 3


class _ClaimedMeanwhile(Exception):
    """Another writer took a request id between ``settle`` and the upsert: roll back, redo."""


def upsert_statement(dialect_name: str) -> sa.Insert:
    """The dialect's ``INSERT ... ON CONFLICT (org_id, request_id) DO UPDATE SET <all>
    WHERE <same call>``: a row the ``WHERE`` refuses counts 0 in the row count."""
    stmt: postgresql.Insert | sqlite.Insert
    if dialect_name == "postgresql":
        # ``tx``: the column's default, the writer's transaction id
        stmt = postgresql.insert(requests)
    else:
        # SQLite has one writer at a time: the largest rowid so far plus one (the rowid a fresh
        # row gets) puts each row after every row committed before it
        stmt = sqlite.insert(requests).values(
            {TX: sa.literal_column("(SELECT coalesce(max(rowid), 0) + 1 FROM requests)")}
        )
    # ``tx`` is the transaction that first stored the call: a redelivery keeps it
    updates = {c.name: stmt.excluded[c.name] for c in requests.columns if c.name not in (*_KEY, TX)}
    stored, incoming = requests.c.record_digest, stmt.excluded.record_digest
    same_call = sa.or_(stored.is_(None), incoming.is_(None), stored == incoming)
    return stmt.on_conflict_do_update(index_elements=list(_KEY), set_=updates, where=same_call)


def row_params(row: RequestRow) -> dict[str, Any]:
    return msgspec.structs.asdict(row)


def row_from_mapping(mapping: sa.RowMapping) -> RequestRow:
    return RequestRow(**{str(k): v for k, v in mapping.items() if k != TX})


def last_per_key(rows: Sequence[RequestRow]) -> list[RequestRow]:
    """One row per (organization, request id), the last copy (the newest): Postgres refuses to
    update one row twice in a statement."""
    latest: dict[tuple[str, str], RequestRow] = {}
    for row in rows:
        latest[(row.org_id, row.request_id)] = row
    return list(latest.values())


def prepare(engine: sa.Engine) -> BulkUpsert:
    """The upsert compiled for ``engine`` (done once per store, reused for every batch)."""
    return BulkUpsert(engine.dialect, upsert_statement(engine.dialect.name))


def write_rows(
    engine: sa.Engine,
    rows: Sequence[RequestRow],
    upsert: BulkUpsert | None = None,
    alongside: Callable[[], None] | None = None,
) -> None:
    """Upsert ``rows`` in one transaction; ``PoisonRows`` after storing the good ones.

    Rows moved to a fresh request id (``claims.settle``) are changed in place, so the sinks after
    this one write the same ids. ``upsert``: the store's ``prepare(engine)``, to skip compiling.
    ``alongside``: run on a thread of its own while the transaction commits, once every row has
    its final id and was taken (never on the row-by-row path); joined before this returns or
    raises. It must not raise.
    """
    if not rows:
        return
    upsert = upsert or prepare(engine)
    worker: threading.Thread | None = None
    try:
        for _ in range(_SETTLE_TRIES):
            try:
                with engine.begin() as conn:
                    settle(conn, rows)
                    unique = last_per_key(rows)
                    if upsert.execute(conn, unique) < len(unique):
                        raise _ClaimedMeanwhile
                    if alongside is not None:
                        # the commit (SQLite writing its pages) releases the GIL: the next sink
                        # can use the other core meanwhile
                        worker = threading.Thread(target=alongside, name="llmtap-sink-alongside")
                        worker.start()
                return
            except _ClaimedMeanwhile:
                continue
            except WRITE_ERRORS as err:
                if not is_row_error(err):
                    assert isinstance(err, exc.SQLAlchemyError)  # every value error is a row's
                    raise translate(err, "write batch") from err
                break
        else:
            raise StoreUnavailable("request ids were claimed by another writer meanwhile; retrying")
    finally:
        if worker is not None:
            worker.join()
    # some row is bad: find which, keep the others
    refused = _write_one_by_one(engine, upsert, rows)
    if refused:
        raise PoisonRows(refused)


def _write_one_by_one(
    engine: sa.Engine, upsert: BulkUpsert, rows: Sequence[RequestRow]
) -> dict[str, str]:
    refused: dict[str, str] = {}
    with translated("write batch row by row"), engine.begin() as conn:
        settle(conn, rows)
        for one in last_per_key(rows):
            try:
                with conn.begin_nested():
                    if upsert.execute(conn, [one]) < 1:
                        raise StoreUnavailable(
                            "a request id was claimed by another writer meanwhile; retrying"
                        )
            except WRITE_ERRORS as err:
                if not is_row_error(err):
                    raise
                refused[one.request_id] = describe(err)
    return refused
