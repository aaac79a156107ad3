"""RecordsAnalytics: the analytics store's queries answered by a Postgres records store.

A distributed deployment without a ClickHouse server has no analytics store every process can
reach: each consumer's embedded chDB would hold a part of the calls and the API an empty one.
Its records store holds every call once, so the metrics, the Overview and the session and user
lists are computed there (``analytics_sql.py``, ``analytics_groups.py``) and the consumers write
no analytics at all (docs/decisions/2026-12-01-distributed-analytics.md). It has the readers'
side of ``AnalyticsStore`` — ``metrics``, ``score_metrics``, ``overview``, ``groups``,
``close`` — and is no sink. Scores are read from the records store's own ``scores`` table
(``analytics_scores.py``): with no analytics store, the consumer's ``ScoreSync`` has nothing to do.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from llmtap.errors import ConfigError
from llmtap.stores.analytics.groups import GroupQuery, GroupRow, group_of
from llmtap.stores.analytics.metrics import MetricsQuery, MetricsResult, result_of
from llmtap.stores.analytics.overview import Overview, overview_of
from llmtap.stores.analytics.score_metrics import ScoreResult
from llmtap.stores.analytics.score_metrics import result_of as scores_result_of
from llmtap.stores.records.analytics_groups import groups_statement
from llmtap.stores.records.analytics_scores import any_scores_statement, score_statement
from llmtap.stores.records.analytics_sql import (
    breakdowns_statement,
    metrics_statement,
    timeline_statement,
)
from llmtap.stores.records.engine import create_engine, translated


class RecordsAnalytics:
    """Metrics from the records table of the Postgres database at ``url``."""

    def __init__(self, url: str) -> None:
        self._engine = create_engine(url)
        if self._engine.dialect.name != "postgresql":
            self._engine.dispose()
            raise ConfigError(
                "analytics from the records store need Postgres; an embedded records store"
                " uses the embedded analytics store (chdb:///…)"
            )

    def _rows(self, statement: sa.Select[Any], what: str) -> list[dict[str, Any]]:
        with translated(what), self._engine.connect() as conn:
            return [dict(row) for row in conn.execute(statement).mappings()]

    def metrics(self, query: MetricsQuery) -> MetricsResult:
        """Totals over the query's range and, with ``bucket_s`` or ``group_by``, the series."""
        return result_of(self._rows(metrics_statement(query), "metrics"))

    def score_metrics(self, query: MetricsQuery) -> ScoreResult:
        """Score figures per name over the query's calls, as totals and per bucket/group."""
        if not self._rows(any_scores_statement(query.org_id), "score metrics"):
            return ScoreResult()
        return scores_result_of(self._rows(score_statement(query), "score metrics"))

    def overview(self, query: MetricsQuery) -> Overview:
        """Every Overview panel of the query's range and filter (``group_by`` is not used)."""
        timeline = self._rows(timeline_statement(query), "overview")
        return overview_of(timeline, self._rows(breakdowns_statement(query), "overview"))

    def groups(self, query: GroupQuery) -> list[GroupRow]:
        """A page of sessions or users with their figures."""
        return [group_of(row) for row in self._rows(groups_statement(query), "sessions or users")]

    def close(self) -> None:
        self._engine.dispose()
