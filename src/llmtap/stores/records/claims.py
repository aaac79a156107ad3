"""Who owns a request id: the first call logged under it.

Callers choose request ids (``Helicone-Request-Id``), so an id alone cannot tell a redelivery of
a call from a different call that reuses the id. The record's digest can: a redelivery is the same
queue record, byte for byte. ``settle`` gives each row of a batch its final id before anything is
written:

* nobody holds the id, or the holder has the row's digest (a redelivery, a replay): keep it;
* the holder has no digest (written before digests existed): the row adopts it, as before;
* someone else holds it (stored, or earlier in the same batch): the row moves to
  ``fresh_id(id, digest)`` and notes the id it claimed (``llmtap-claimed-request-id``). The fresh
  id depends only on the claimed id and the digest, so the newcomer's own redeliveries land on
  the same fresh row; the step repeats in the rare case the fresh id is held too.

Rows without a digest (written directly, not from a record) are left as they are and replace.
See docs/decisions/2026-12-01-request-id-collisions.md.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence

import sqlalchemy as sa

from llmtap.errors import StoreUnavailable
from llmtap.stores.notes import CLAIMED_REQUEST_ID
from llmtap.stores.records.bulk_upsert import raw_select
from llmtap.stores.row import RequestRow

Key = tuple[str, str]

# The namespace of fresh ids (uuid5): any fixed UUID works, this one is llmtap's.
_NAMESPACE = uuid.UUID("6c6c6d74-6170-4a5e-8f5b-7265717565ff")
_MAX_STEPS = 8
_SELECT_CHUNK = 500  # keys per IN list: well under SQLite's bound-parameter limit
_IN_SQL = (
    "SELECT request_id, record_digest FROM requests WHERE org_id = ? AND request_id IN ({marks})"
)
_ANY_SQL = (
    "SELECT request_id, record_digest FROM requests"
    " WHERE org_id = %s AND request_id = ANY(%s::varchar[])"
)


class ClaimLoop(StoreUnavailable):
    """A fresh id was held again and again: never expected; the batch is retried."""


def fresh_id(claimed: str, digest: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"{claimed}\n{digest}"))


def settle(conn: sa.Connection, rows: Sequence[RequestRow]) -> None:
    """Give every row with a digest its final request id, in place (see the module doc)."""
    pending: list[RequestRow] = []
    for row in rows:
        if row.record_digest is None:
            continue
        claimed = row.properties.pop(CLAIMED_REQUEST_ID, None)
        if claimed is not None:
            # settled before, in a try that did not commit: start again from the claimed id
            row.request_id = claimed
        pending.append(row)
    owners: dict[Key, str | None] = {}
    for _ in range(_MAX_STEPS):
        if not pending:
            return
        stored = _stored_digests(conn, {(r.org_id, r.request_id) for r in pending} - owners.keys())
        moved: list[RequestRow] = []
        for row in pending:
            key = (row.org_id, row.request_id)
            if key not in owners and key not in stored:
                owners[key] = row.record_digest
                continue
            holder = owners[key] if key in owners else stored[key]
            if holder is None and key not in owners:
                owners[key] = row.record_digest  # a row from before digests: adopt it
                continue
            if holder == row.record_digest:
                owners[key] = holder
                continue
            assert row.record_digest is not None
            row.properties.setdefault(CLAIMED_REQUEST_ID, row.request_id)
            row.request_id = fresh_id(row.request_id, row.record_digest)
            moved.append(row)
        pending = moved
    if pending:
        raise ClaimLoop(f"{len(pending)} row(s) found no free request id")


def _stored_digests(conn: sa.Connection, keys: Iterable[Key]) -> dict[Key, str | None]:
    # one organization per SELECT, ``org_id = ? AND request_id IN (...)``: a lookup of the
    # primary key. SQLite answers ``(org_id, request_id) IN ((?, ?), ...)`` by scanning the
    # whole table, which made every batch slower as the table grew.
    found: dict[Key, str | None] = {}
    by_org: dict[str, list[str]] = {}
    for org_id, request_id in keys:
        by_org.setdefault(org_id, []).append(request_id)
    if conn.dialect.name == "postgresql":
        # one array parameter, not an IN list of hundreds: Postgres planned each such list
        # anew (no two batches have the same length), three times the time of the lookup
        for org_id, ids in by_org.items():
            rows = conn.exec_driver_sql(_ANY_SQL, (org_id, ids))
            for request_id, digest in rows:
                found[(org_id, request_id)] = digest
        return found
    for org_id, ids in by_org.items():
        for start in range(0, len(ids), _SELECT_CHUNK):
            chunk = ids[start : start + _SELECT_CHUNK]
            # plain SQL on the driver: building and compiling a select per chunk cost more
            # than SQLite's lookups
            sql = _IN_SQL.format(marks=",".join("?" * len(chunk)))
            for request_id, digest in raw_select(conn, sql, [org_id, *chunk]):
                found[(org_id, request_id)] = digest
    return found
