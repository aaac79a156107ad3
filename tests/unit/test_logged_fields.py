"""The logged fields are declared once (``stores/fields.py``): the row type, the records table,
a records database migrated to head, the analytics table as chDB builds it, and the API's
filterable and groupable fields all say the same thing about every field."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, get_args

import msgspec
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from llmtap.api.filters import FIELDS as FILTER_FIELDS
from llmtap.api.filters import parse_filter
from llmtap.stores.analytics.ddl import COLUMN_TYPES, COLUMNS, GROUP_KEYS
from llmtap.stores.factory import open_analytics_store
from llmtap.stores.fields import FIELDS, Field, Kind
from llmtap.stores.records import migrate
from llmtap.stores.records.engine import create_engine
from llmtap.stores.records.schema import TX, metadata, requests
from llmtap.stores.row import RequestRow

PYTHON_TYPE: dict[str, Any] = {
    "text": str,
    "int32": int,
    "int64": int,
    "nano_usd": int,
    "float": float,
    "time_ms": float,
    "bool": bool,
    "map": dict[str, str],
}
SQL_TYPE: dict[str, type[sa.types.TypeEngine[Any]]] = {
    "int32": sa.Integer,
    "int64": sa.BigInteger,
    "nano_usd": sa.BigInteger,
    "float": sa.Double,
    "time_ms": sa.Double,
    "bool": sa.Boolean,
    "map": sa.JSON,
}
CLICKHOUSE_TYPE = {
    "text": "String",
    "int32": "Int32",
    "int64": "Int64",
    "nano_usd": "Int64",
    "float": "Float64",
    "time_ms": "DateTime64(3, 'UTC')",
    "bool": "Bool",
    "map": "Map(String, String)",
}
FILTER_KIND = {
    "text": "str",
    "int32": "int",
    "int64": "int",
    "nano_usd": "cost",
    "float": "float",
    "time_ms": "time",
    "bool": "bool",
}


def test_every_field_is_declared_once() -> None:
    names = [field.name for field in FIELDS]
    assert len(names) == len(set(names))
    analytics = [field.analytics for field in FIELDS if field.analytics]
    assert len(analytics) == len(set(analytics))


def test_the_row_type_has_exactly_the_declared_fields() -> None:
    declared = {field.name: field for field in FIELDS}
    row = {info.name: info for info in msgspec.structs.fields(RequestRow)}
    assert set(row) == set(declared)
    for name, info in row.items():
        field = declared[name]
        expected = PYTHON_TYPE[field.kind]
        assert info.type == (expected | None if field.nullable else expected), name


def test_the_records_table_is_built_from_the_declaration() -> None:
    # the logged fields, then the one bookkeeping column (the outbox cursor's transaction)
    assert [c.name for c in requests.columns] == [field.name for field in FIELDS] + [TX]
    for field in FIELDS:
        column = requests.c[field.name]
        assert column.nullable is field.nullable, field.name
        if field.kind == "text":
            assert isinstance(column.type, sa.String)
            assert column.type.length == field.length, field.name
        else:
            assert isinstance(column.type, SQL_TYPE[field.kind]), field.name


def test_a_database_migrated_to_head_has_the_declared_columns(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'records.db'}"
    migrate(url)
    engine = create_engine(url)
    try:
        with engine.connect() as conn, warnings.catch_warnings():
            # SQLAlchemy cannot reflect expression indexes (the sort indexes of revision 0005);
            # tests/unit/test_migrations.py compares those by name
            warnings.filterwarnings("ignore", "Skipped unsupported reflection of expression")
            warnings.filterwarnings("ignore", "autogenerate skipping metadata-specified expression")
            reflected = {c["name"]: c for c in sa.inspect(conn).get_columns("requests")}
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            differences = list(compare_metadata(context, metadata))
    finally:
        engine.dispose()
    assert list(reflected) == [field.name for field in FIELDS] + [TX]
    for field in FIELDS:
        assert reflected[field.name]["nullable"] is field.nullable, field.name
    assert differences == []


def _describe(path: Path) -> dict[str, str]:
    store = open_analytics_store(f"chdb:///{path}")
    try:
        return store.column_types()
    finally:
        store.close()


def _clickhouse_type(field: Field) -> str:
    spelled = CLICKHOUSE_TYPE[field.kind]
    if field.nullable:
        spelled = f"Nullable({spelled})"
    return f"LowCardinality({spelled})" if field.low_cardinality else spelled


def test_the_analytics_table_chdb_builds_has_the_declared_columns(tmp_path: Path) -> None:
    described = _describe(tmp_path / "analytics")
    assert described == COLUMN_TYPES
    kept = {field.analytics: field for field in FIELDS if field.analytics}
    assert set(described) == set(kept) | {"version"}
    for column, field in kept.items():
        assert described[column] == _clickhouse_type(field), column
    # what the sink sends: every kept field but the time, which it turns into ``created``
    assert set(COLUMNS) == {f.name for f in kept.values() if f.kind != "time_ms"}
    assert set(COLUMNS) <= {info.name for info in msgspec.structs.fields(RequestRow)}


def test_the_api_filters_on_the_declared_fields_in_both_stores() -> None:
    declared = {field.filter: field for field in FIELDS if field.filter}
    # besides the logged fields: text in bodies, and feedback (from the scores table)
    assert set(FILTER_FIELDS) == set(declared) | {"body", "feedback"}
    for name, field in declared.items():
        assert FILTER_FIELDS[name] == FILTER_KIND[field.kind], name
        # searches run on the records store, filtered metrics on the analytics table
        assert field.name in requests.c and field.analytics in COLUMN_TYPES, name


def test_metrics_group_by_the_declared_fields() -> None:
    declared = {field.group: field for field in FIELDS if field.group}
    assert set(GROUP_KEYS) == set(declared)
    for name, field in declared.items():
        assert field.analytics is not None and field.analytics in GROUP_KEYS[name], name


@pytest.mark.parametrize(
    ("field", "value", "ok"),
    [
        ("attempts", 2, True),
        ("attempts", 2**31 - 1, True),
        ("attempts", 2**31, False),  # an Int32 column: the filter says so instead of wrapping
        ("request_size", 2**31, True),
        ("status", 2**31, False),
    ],
)
def test_integer_filters_take_what_the_column_holds(field: str, value: int, ok: bool) -> None:
    raw = {"field": field, "op": "eq", "value": value}
    if ok:
        assert parse_filter(raw).value == value  # type: ignore[union-attr]
    else:
        with pytest.raises(ValueError, match="must be between"):
            parse_filter(raw)


def test_these_checks_cover_every_kind() -> None:
    assert set(PYTHON_TYPE) == set(CLICKHOUSE_TYPE) == set(get_args(Kind))
