"""Schema migrations of the records store: ``migrate(url)`` brings a database to the latest schema.

Run at start by ``RecordsStore`` and by ``llmtap migrate``. The Alembic scripts ship inside the
package (``llmtap/stores/migrations``), so an installed wheel can migrate without a checkout.
"""

from __future__ import annotations

import threading
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from llmtap.stores.records.engine import create_engine, translated

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"

# Alembic's ``context`` and ``op`` are process-wide proxies: two migrations running in threads of
# one process would trample each other. Across processes the database's own lock serializes them.
_ALEMBIC_LOCK = threading.Lock()


def _config(connection: sa.Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest revision the code knows."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None, "no migrations shipped"
    return head


def upgrade_with(engine: sa.Engine, revision: str = "head") -> None:
    with _ALEMBIC_LOCK, translated("migrate"), engine.begin() as connection:
        command.upgrade(_config(connection), revision)


def downgrade_with(engine: sa.Engine, revision: str) -> None:
    with _ALEMBIC_LOCK, translated("migrate"), engine.begin() as connection:
        command.downgrade(_config(connection), revision)


def current_revision(url: str) -> str | None:
    """The revision the database at ``url`` is at (``None``: never migrated)."""
    engine = create_engine(url)
    try:
        with translated("read schema revision"), engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()


def migrate(url: str, revision: str = "head") -> None:
    """Upgrade the database at ``url`` to ``revision`` (the latest by default)."""
    engine = create_engine(url, immediate=True)
    try:
        upgrade_with(engine, revision)
    finally:
        engine.dispose()


def downgrade(url: str, revision: str) -> None:
    """Downgrade the database at ``url`` to ``revision`` (``"base"``: drop everything)."""
    engine = create_engine(url, immediate=True)
    try:
        downgrade_with(engine, revision)
    finally:
        engine.dispose()
