"""Alembic migrations of the records store (run by ``llmtap.stores.records.migrate``)."""
