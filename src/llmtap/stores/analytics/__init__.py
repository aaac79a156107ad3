"""The analytics store: ClickHouse SQL shared by chDB (embedded) and a ClickHouse server."""

from llmtap.stores.analytics.metrics import Metrics, MetricsQuery, MetricsResult
from llmtap.stores.analytics.store import AnalyticsStore

__all__ = ["AnalyticsStore", "Metrics", "MetricsQuery", "MetricsResult"]
