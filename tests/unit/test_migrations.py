"""Records-store migrations: up, down and up again on SQLite and Postgres; schema matches code."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import make_url

from llmtap.stores.records import RecordsStore, downgrade, migrate
from llmtap.stores.records.engine import create_engine
from llmtap.stores.records.migrate import current_revision, head_revision
from llmtap.stores.records.schema import metadata
from llmtap.stores.row import RequestRow

PG_URL = os.environ.get(
    "LLMTAP_TEST_POSTGRES_URL", "postgresql://llmtap:llmtap@127.0.0.1:5432/llmtap"
)
TABLES = {
    "organizations",
    "api_keys",
    "requests",
    "dashboard_sessions",
    "scores",
    "outbox_targets",
    "outbox",
    "webhooks",
    "posthog_settings",
    "alert_rules",
    "alert_episodes",
}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'records.db'}"
        return
    parsed = make_url(PG_URL)
    # marked tests only run when Postgres accepts connections (tests/conftest.py): an error here
    # is a real failure, never a skip
    admin = psycopg.connect(
        host=parsed.host,
        port=parsed.port or 5432,
        user=parsed.username,
        password=parsed.password,
        dbname=parsed.database,
        autocommit=True,
        connect_timeout=3,
    )
    schema = f"m_{secrets.token_hex(6)}"
    with admin:
        admin.execute(f'CREATE SCHEMA "{schema}"')
        try:
            yield parsed.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
                hide_password=False
            )
        finally:
            admin.execute(f'DROP SCHEMA "{schema}" CASCADE')


def _tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return set(sa.inspect(conn).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def _schema_differences(url: str) -> list[object]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn, warnings.catch_warnings():
            # SQLAlchemy cannot reflect expression indexes (the sort indexes of revision 0005)
            # and says so: they are compared by name below instead
            warnings.filterwarnings("ignore", "Skipped unsupported reflection of expression")
            warnings.filterwarnings("ignore", "autogenerate skipping")
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            differences: list[object] = list(compare_metadata(context, metadata))
            indexed = _index_names(conn)
            wanted = {str(index.name) for index in metadata.tables["requests"].indexes}
            differences.extend(f"missing index {name}" for name in sorted(wanted - indexed))
            return differences
    finally:
        engine.dispose()


def _index_names(conn: sa.Connection) -> set[str]:
    if conn.dialect.name == "sqlite":
        sql = "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'requests'"
    else:
        sql = "SELECT indexname FROM pg_indexes WHERE tablename = 'requests'"
    return {str(name) for (name,) in conn.execute(sa.text(sql))}


def test_upgrade_builds_the_schema_the_code_uses(url: str) -> None:
    assert current_revision(url) is None
    migrate(url)
    assert current_revision(url) == head_revision()
    assert _tables(url) == TABLES
    assert _schema_differences(url) == []


def test_downgrade_to_base_and_up_again(url: str) -> None:
    migrate(url)
    downgrade(url, "base")
    assert _tables(url) == set()
    assert current_revision(url) is None
    migrate(url)
    assert _tables(url) == TABLES
    store = RecordsStore(url, migrate=False)
    org = store.default_org_id()
    store.write_batch(
        [
            RequestRow(
                request_id="r1",
                org_id=org,
                created_unix_ms=1.0,
                source="proxy",
                provider="openai",
                method="POST",
                target_url="https://api.openai.com/v1/models",
                path="/v1/models",
                status=200,
            )
        ]
    )
    assert store.count_requests(org) == 1
    store.close()


def test_migrating_again_keeps_the_data(url: str) -> None:
    store = RecordsStore(url)
    org = store.create_org("acme")
    store.close()
    migrate(url)
    store = RecordsStore(url)
    assert [o.name for o in store.list_orgs()] == ["acme"]
    assert store.list_orgs()[0].id == org
    store.close()


def test_threads_starting_together_migrate_once(url: str) -> None:
    errors: list[BaseException] = []

    def start() -> None:
        try:
            RecordsStore(url).close()
        except Exception as err:  # noqa: BLE001 - collected and asserted on below
            errors.append(err)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    assert not any(t.is_alive() for t in threads)
    assert current_revision(url) == head_revision()


def test_processes_starting_together_migrate_once(url: str) -> None:
    # each process imports everything, says so, then waits for the word: they migrate at once
    code = (
        "import sys; from llmtap.stores.records import migrate; "
        "print('ready', flush=True); sys.stdin.readline(); migrate(sys.argv[1])"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(4)
    ]
    for proc in procs:
        assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write(b"go\n")
        proc.stdin.flush()
    failures = []
    for proc in procs:
        _, err = proc.communicate(timeout=60)
        if proc.returncode != 0:
            failures.append(err.decode()[-2000:])
    assert failures == []
    assert current_revision(url) == head_revision()
    assert _tables(url) == TABLES
