"""The driver-level batch upsert (``bulk_upsert.py``) stores exactly what SQLAlchemy's per-row
path stored: the same rows, the same bytes in every column, the same rows refused as poison with
the same reasons, the same ids moved by claims. Generated batches of hostile rows — NULs,
unicode, huge and odd properties, copies of one id, different calls claiming one id, rows of two
organizations, values a column or the driver refuses — go through both paths into two stores
(two SQLite files; two Postgres schemas), and the tables are compared cell by cell.
"""

from __future__ import annotations

import copy
import os
import secrets
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import msgspec
import psycopg
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import exc
from sqlalchemy.engine import make_url

from llmtap.errors import LlmtapError, StoreUnavailable
from llmtap.stores.records.claims import settle
from llmtap.stores.records.engine import (
    WRITE_ERRORS,
    create_engine,
    describe,
    is_row_error,
    translate,
    translated,
)
from llmtap.stores.records.migrate import upgrade_with
from llmtap.stores.records.schema import TX, requests
from llmtap.stores.records.upsert import (
    last_per_key,
    prepare,
    row_params,
    upsert_statement,
    write_rows,
)
from llmtap.stores.row import RequestRow
from llmtap.stores.sink import PoisonRows

PG_URL = os.environ.get(
    "LLMTAP_TEST_POSTGRES_URL", "postgresql://llmtap:llmtap@127.0.0.1:5432/llmtap"
)
_ROWCOUNT = {"preserve_rowcount": True}


def reference_write_rows(engine: sa.Engine, rows: Sequence[RequestRow]) -> None:
    """The write path before the bulk upsert (6797af8): SQLAlchemy binds every parameter."""
    if not rows:
        return
    stmt = upsert_statement(engine.dialect.name)
    try:
        with engine.begin() as conn:
            settle(conn, rows)
            params = [row_params(r) for r in last_per_key(rows)]
            written = conn.execute(stmt, params, execution_options=_ROWCOUNT).rowcount
            assert written == len(params), "no concurrent writer in this test"
        return
    except WRITE_ERRORS as err:
        if not is_row_error(err):
            assert isinstance(err, exc.SQLAlchemyError)
            raise translate(err, "write batch") from err
    refused: dict[str, str] = {}
    with translated("write batch row by row"), engine.begin() as conn:
        settle(conn, rows)
        for one in last_per_key(rows):
            try:
                with conn.begin_nested():
                    if (
                        conn.execute(stmt, row_params(one), execution_options=_ROWCOUNT).rowcount
                        < 1
                    ):
                        raise StoreUnavailable("claimed meanwhile")
            except WRITE_ERRORS as err:
                if not is_row_error(err):
                    raise
                refused[one.request_id] = describe(err)
    if refused:
        raise PoisonRows(refused)


# -- hostile rows ---------------------------------------------------------------------------------

_TEXT = st.one_of(
    st.sampled_from(
        ["", "plain", "nul\x00inside", "\x00", "ü€😀", "q'\"`\\", "tab\tnl\n", "%s %(x)s ?"]
    ),
    st.text(max_size=40),
)
_BIG = "x" * 300_000  # a huge property value: one row of a few hundred KB
_PROPERTIES = st.one_of(
    st.dictionaries(_TEXT, _TEXT, max_size=6),
    st.just({"big": _BIG, "nul": "a\x00b"}),
    st.just({f"k{i}": str(i) for i in range(2000)}),
)
_COUNT = st.one_of(
    st.none(),
    st.integers(min_value=0, max_value=10**6),
    st.sampled_from([-1, 2**63 - 1, 2**63, 2**70]),  # refused by a check, the column, the driver
)
_FLOAT = st.one_of(
    st.floats(min_value=0, max_value=1e12, allow_nan=False),
    st.sampled_from([0, 7, 1e308]),  # ints too: a DOUBLE column gets 7.0 from both paths
)


@st.composite
def _row(draw: st.DrawFn, org: str) -> dict[str, Any]:
    # few ids and digests, so batches hold copies of one call and different calls claiming one id
    return {
        "request_id": draw(st.sampled_from(["r1", "r2", "r3", "r\x00nul", "ü-id"])),
        "org_id": draw(st.sampled_from([org, org + "-b"])),
        "created_unix_ms": draw(_FLOAT),
        "source": "proxy",
        "provider": draw(_TEXT),
        "method": "POST",
        "target_url": draw(_TEXT),
        "path": "/v1/chat/completions",
        "status": draw(st.sampled_from([0, 200, 500, 2**40])),
        "error": draw(st.none() | _TEXT),
        "streamed": draw(st.booleans()),
        "model": draw(st.none() | _TEXT | st.just("m" * 1000)),
        "user_id": draw(st.none() | _TEXT),
        "properties": draw(_PROPERTIES),
        "input_tokens": draw(_COUNT),
        "output_tokens": draw(_COUNT),
        "cost_nano_usd": draw(_COUNT),
        "latency_ms": draw(_FLOAT),
        "ttft_ms": draw(st.none() | _FLOAT),
        "request_omitted": draw(st.booleans()),
        "request_headers": draw(st.dictionaries(_TEXT, _TEXT, max_size=4)),
        "record_digest": draw(st.sampled_from([None, "d1", "d2", "d3"])),
        "attempt_log": draw(st.none() | st.just('[{"target":"a\\u0000"}]')),
        "cache_hit": draw(st.booleans()),
    }


def _batches(org: str) -> st.SearchStrategy[list[list[dict[str, Any]]]]:
    return st.lists(st.lists(_row(org), min_size=1, max_size=8), min_size=1, max_size=3)


def _pg_admin() -> psycopg.Connection[tuple[object, ...]]:
    url = make_url(PG_URL)
    return psycopg.connect(
        host=url.host,
        port=url.port or 5432,
        user=url.username,
        password=url.password,
        dbname=url.database,
        autocommit=True,
        connect_timeout=3,
    )


def _with_search_path(url: str, schema: str) -> str:
    parsed = make_url(url).update_query_dict({"options": f"-csearch_path={schema}"})
    return parsed.render_as_string(hide_password=False)


# -- two stores, one per path ---------------------------------------------------------------------


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def engines(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[sa.Engine, ...]]:
    if request.param == "sqlite":
        urls = [f"sqlite:///{tmp_path / name}" for name in ("reference.db", "bulk.db")]
        schemas: list[str] = []
    else:
        schemas = [f"t_{secrets.token_hex(6)}" for _ in range(2)]
        with _pg_admin() as admin:
            for schema in schemas:
                admin.execute(f'CREATE SCHEMA "{schema}"')
        urls = [_with_search_path(PG_URL, schema) for schema in schemas]
    made = [create_engine(url, immediate=True) for url in urls]
    try:
        for engine in made:
            upgrade_with(engine)
        yield tuple(made)
    finally:
        for engine in made:
            engine.dispose()
        if schemas:
            with _pg_admin() as admin:
                for schema in schemas:
                    admin.execute(f'DROP SCHEMA "{schema}" CASCADE')


def _write(write: Any, engine: sa.Engine, rows: list[RequestRow]) -> tuple[list[str], object]:
    try:
        write(engine, rows)
    except PoisonRows as err:
        outcome: object = sorted(err.reasons.items())
    except LlmtapError as err:
        # a request id with a NUL fails the claims lookup on Postgres in both paths (the runner
        # then writes the batch one row at a time and dead-letters that one)
        outcome = type(err).__name__
    else:
        outcome = "ok"
    # the ids the sinks after this one would write (claims move them in place)
    return [row.request_id for row in rows], outcome


def _table(engine: sa.Engine, orgs: tuple[str, str]) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        # every column as the database holds it (JSON as its stored text on SQLite), but the
        # storing transaction's id (``tx``), which differs between two writes on Postgres
        names = [c.name for c in requests.columns if c.name != TX]
        if engine.dialect.name == "sqlite":
            # and each value's storage class: 7 and 7.0 are equal in Python, not on disk (the
            # driver-level path leaves floats and booleans to the columns' affinity)
            names += [f"typeof({name})" for name in names]
        columns = ", ".join(names)
        mark = "?" if engine.dialect.paramstyle == "qmark" else "%s"
        result = conn.exec_driver_sql(
            f"SELECT {columns} FROM requests WHERE org_id IN ({mark}, {mark})"
            " ORDER BY org_id, request_id",
            orgs,
        )
        return [tuple(row) for row in result]


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_the_bulk_upsert_stores_what_the_per_row_path_stored(
    engines: tuple[sa.Engine, sa.Engine], data: st.DataObject
) -> None:
    reference, bulk = engines
    org = f"org-{secrets.token_hex(4)}"  # each example in organizations of its own
    batches = data.draw(_batches(org))
    upsert = prepare(bulk)

    def bulk_write(engine: sa.Engine, rows: list[RequestRow]) -> None:
        write_rows(engine, rows, upsert)

    for batch in batches:
        # each path gets its own copies: claims change rows in place
        expected = _write(
            reference_write_rows, reference, [RequestRow(**copy.deepcopy(r)) for r in batch]
        )
        got = _write(bulk_write, bulk, [RequestRow(**copy.deepcopy(r)) for r in batch])
        assert got == expected
    assert _table(bulk, (org, org + "-b")) == _table(reference, (org, org + "-b"))


def test_a_refused_value_is_poison_in_both_paths(engines: tuple[sa.Engine, sa.Engine]) -> None:
    # the one value a bind processor refuses (JSON cannot hold it): raised before the driver
    _, bulk = engines
    good = RequestRow(
        request_id="ok",
        org_id="o",
        created_unix_ms=1.0,
        source="proxy",
        provider="p",
        method="POST",
        target_url="u",
        path="/",
        status=200,
    )
    bad = msgspec.structs.replace(good, request_id="bad", properties={"x": object()})  # type: ignore[dict-item]
    with pytest.raises(PoisonRows) as caught:
        write_rows(bulk, [good, bad], prepare(bulk))
    assert set(caught.value.reasons) == {"bad"}
    with bulk.connect() as conn:
        stored = conn.execute(sa.text("SELECT request_id FROM requests")).scalars().all()
    assert stored == ["ok"]
