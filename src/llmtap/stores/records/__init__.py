"""The records store: SQLite or Postgres through SQLAlchemy Core, schema by Alembic."""

from llmtap.stores.records.keys import ApiKeyInfo, OrgInfo
from llmtap.stores.records.migrate import downgrade, migrate
from llmtap.stores.records.store import RecordsStore

__all__ = ["ApiKeyInfo", "OrgInfo", "RecordsStore", "downgrade", "migrate"]
