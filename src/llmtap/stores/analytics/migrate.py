"""Versioned migrations of the analytics table, applied when a store opens.

``CREATE TABLE IF NOT EXISTS`` leaves a table made by an older llmtap as it was, so each change
to the table after the first release is a numbered ``Step`` here. A step is idempotent SQL
(``ADD COLUMN IF NOT EXISTS`` ...): a fresh table already has what it adds, and two processes
opening one ClickHouse server at once may both run it harmlessly. The table
``llmtap_schema_version`` records each step applied; opening again runs none.
"""

from __future__ import annotations

from dataclasses import dataclass

from llmtap.stores.analytics.client import ClickHouseClient
from llmtap.stores.analytics.ddl import CREATE_REQUESTS, CREATE_SCORES, TABLE, column_type
from llmtap.stores.fields import BY_NAME

VERSION_TABLE = "llmtap_schema_version"

_CREATE_VERSION_TABLE = f"""
CREATE TABLE IF NOT EXISTS {VERSION_TABLE}
(
    version UInt32,
    applied DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = MergeTree
ORDER BY version
"""


@dataclass(frozen=True, slots=True)
class Step:
    version: int
    why: str
    statements: tuple[str, ...]


def add_column(name: str) -> str:
    """``ALTER TABLE ... ADD COLUMN IF NOT EXISTS`` for the logged field ``name``, typed as
    ``stores/fields.py`` declares it."""
    field = BY_NAME[name]
    assert field.analytics is not None, f"{name} is not kept in the analytics table"
    return f"ALTER TABLE {TABLE} ADD COLUMN IF NOT EXISTS {field.analytics} {column_type(field)}"


STEPS: tuple[Step, ...] = (
    Step(1, "attempts: how many times the proxy sent the call upstream", (add_column("attempts"),)),
    Step(
        2,
        "fallback_index: which Helicone-Fallbacks target answered",
        (add_column("fallback_index"),),
    ),
    Step(
        3,
        "cache_hit, cache_saved_nano_usd: calls answered from the gateway's response cache",
        (add_column("cache_hit"), add_column("cache_saved_nano_usd")),
    ),
    Step(
        4,
        "prompt_id, prompt_version: Helicone-Prompt-Id and -Version",
        (add_column("prompt_id"), add_column("prompt_version")),
    ),
    Step(5, "llmtap_scores: scores and feedback, joined to the calls", (CREATE_SCORES,)),
)
"""In version order; append, never edit one that has shipped."""


def schema_version(client: ClickHouseClient) -> int:
    """The newest step applied (0: none, the table as the first release made it)."""
    [row] = client.query_rows(f"SELECT max(version) AS v FROM {VERSION_TABLE}", {})
    return int(row["v"] or 0)


def migrate(client: ClickHouseClient) -> list[int]:
    """Create the table if missing and apply the steps it lacks; the versions applied."""
    client.command(CREATE_REQUESTS)
    client.command(_CREATE_VERSION_TABLE)
    current = schema_version(client)
    applied = []
    for step in STEPS:
        if step.version <= current:
            continue
        for statement in step.statements:
            client.command(statement)
        client.command(f"INSERT INTO {VERSION_TABLE} (version) VALUES ({int(step.version)})")
        applied.append(step.version)
    return applied
