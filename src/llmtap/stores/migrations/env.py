"""Alembic environment: always run through ``llmtap.stores.records.migrate`` with a connection.

There is no alembic.ini: the caller hands over an open connection (``config.attributes``), so the
migrations use the same engine set-up (SQLite pragmas, Postgres driver) as the store itself.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from llmtap.stores.records.schema import metadata

# Two processes starting together (N consumers on one Postgres) must not both create tables.
_PG_MIGRATION_LOCK = 0x6C6C6D74  # "llmt"


def run_migrations_online() -> None:
    connection: sa.Connection | None = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("run migrations with llmtap.stores.records.migrate(url)")
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # SQLite cannot ALTER most things: batch mode rebuilds the table instead
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            connection.execute(
                sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATION_LOCK}
            )
        context.run_migrations()


if context.is_offline_mode():
    raise RuntimeError("offline (SQL script) migrations are not supported")
run_migrations_online()
