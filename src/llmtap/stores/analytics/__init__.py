"""The analytics store: ClickHouse SQL shared by chDB (embedded) and a ClickHouse server."""

from llmtap.stores.analytics.store import AnalyticsStore, Breakdown, Bucket, Summary

__all__ = ["AnalyticsStore", "Breakdown", "Bucket", "Summary"]
