"""``/v1/metrics`` between HTTP and the analytics store: the bucket and range checks, the size of
the filter, and the JSON document made of the store's answer (``stores/analytics/metrics.py``).

Costs come from the store as integer nano-dollars and are converted to USD once, here.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Protocol, runtime_checkable

from llmtap.api.filters import FilterLimits, check_property_name, check_size
from llmtap.api.rows import iso_time, nano_to_usd
from llmtap.stores.analytics.metrics import Metrics, MetricsQuery, MetricsResult
from llmtap.stores.analytics.overview import Breakdown, Overview
from llmtap.stores.analytics.score_metrics import ScoreFigures, ScoreResult
from llmtap.stores.filter import FilterError
from llmtap.stores.scores import FEEDBACK

MAX_BUCKETS = 10_000
MAX_BUCKET_S = 2**32 - 1
"""The bucket is bound as UInt32 (``toIntervalSecond``)."""
BUCKET_NAMES = {"minute": 60, "hour": 3600, "day": 86400}


@runtime_checkable
class MetricsSource(Protocol):
    """What metrics need of the analytics store (``AnalyticsStore.metrics``, ``.overview``)."""

    def metrics(self, query: MetricsQuery) -> MetricsResult: ...

    def overview(self, query: MetricsQuery) -> Overview: ...


@runtime_checkable
class ScoreMetricsSource(Protocol):
    """Score figures for the same query (``AnalyticsStore.score_metrics``)."""

    def score_metrics(self, query: MetricsQuery) -> ScoreResult: ...


def bucket_seconds(raw: str | int | None) -> int | None:
    if raw is None or raw == "":
        return None
    if isinstance(raw, str) and raw in BUCKET_NAMES:
        return BUCKET_NAMES[raw]
    try:
        seconds = int(raw)
    except (TypeError, ValueError):
        raise FilterError(
            f"bucket: {raw!r} is not minute, hour, day or a number of seconds"
        ) from None
    if not 1 <= seconds <= MAX_BUCKET_S:
        raise FilterError(f"bucket: must be between 1 and {MAX_BUCKET_S} seconds")
    return seconds


def check(query: MetricsQuery) -> None:
    if query.end_unix_ms <= query.start_unix_ms:
        raise FilterError("end: must be after start")
    if query.bucket_s is not None:
        buckets = (query.end_unix_ms - query.start_unix_ms) / (query.bucket_s * 1000.0)
        if buckets > MAX_BUCKETS:
            raise FilterError(
                f"bucket: {math.ceil(buckets)} buckets in the range; at most {MAX_BUCKETS}"
            )
    if query.group_by and query.group_by.startswith("property:"):
        check_property_name(query.group_by.removeprefix("property:"), "group_by")


def compute(
    source: MetricsSource, query: MetricsQuery, limits: FilterLimits | None = None
) -> dict[str, Any]:
    """The metrics document: ``totals`` over the range and ``series`` per bucket/group."""
    check(query)
    check_size(query.filter, limits or FilterLimits())
    result = source.metrics(query)
    scored = _scored(source, query)
    series = []
    for metrics in result.series:
        key = (metrics.bucket_start_unix_ms, metrics.group)
        series.append(_json(metrics, scored.series.get(key, {})))
    return {
        "start": iso_time(query.start_unix_ms),
        "end": iso_time(query.end_unix_ms),
        "bucket_s": query.bucket_s,
        "group_by": query.group_by,
        "totals": _json(result.totals, scored.totals),
        "series": series,
    }


def compute_overview(
    source: MetricsSource, query: MetricsQuery, limits: FilterLimits | None = None
) -> dict[str, Any]:
    """The Overview document: totals and the series per bucket (every figure), models, statuses
    and top users (requests, errors and cost: ``Breakdown``) (``stores/analytics/overview.py``)."""
    check(query)
    check_size(query.filter, limits or FilterLimits())
    result = source.overview(query)
    scored = _scored(source, dataclasses.replace(query, group_by=None))
    return {
        "start": iso_time(query.start_unix_ms),
        "end": iso_time(query.end_unix_ms),
        "bucket_s": query.bucket_s,
        "totals": _json(result.totals, scored.totals),
        "series": [
            _json(m, scored.series.get((m.bucket_start_unix_ms, m.group), {}))
            for m in result.series
        ],
        "models": [_breakdown_json(b) for b in result.models],
        "statuses": [_breakdown_json(b) for b in result.statuses],
        "top_users": [_breakdown_json(b) for b in result.top_users],
    }


def _scored(source: MetricsSource, query: MetricsQuery) -> ScoreResult:
    if isinstance(source, ScoreMetricsSource):
        return source.score_metrics(query)
    return ScoreResult()


def scores_json(figures: dict[str, ScoreFigures]) -> dict[str, Any]:
    """Per score name: how many calls have it and its average, minimum and maximum; and the
    feedback as thumbs up/down and the share up (``None`` without feedback)."""
    scores = {
        name: {
            "count": f.count,
            "average": f.average,
            "min": f.minimum,
            "max": f.maximum,
        }
        for name, f in figures.items()
    }
    given = figures.get(FEEDBACK)
    feedback = None
    if given is not None:
        positive = round(given.total)
        feedback = {
            "count": given.count,
            "positive": positive,
            "negative": given.count - positive,
            "positive_rate": positive / given.count if given.count else None,
        }
    return {"scores": scores, "feedback": feedback}


def _json(metrics: Metrics, scores: dict[str, ScoreFigures] | None = None) -> dict[str, Any]:
    requests, errors = metrics.requests, metrics.errors
    out: dict[str, Any] = {}
    if metrics.bucket_start_unix_ms is not None:
        out["bucket_start"] = iso_time(float(metrics.bucket_start_unix_ms))
        out["bucket_start_unix_ms"] = metrics.bucket_start_unix_ms
    out.update(
        {
            "group": metrics.group,
            "requests": requests,
            "errors": errors,
            "error_rate": errors / requests if requests else None,
            "cost_usd": nano_to_usd(metrics.cost_nano_usd),
            "cost_nano_usd": metrics.cost_nano_usd,
            "priced_requests": metrics.priced_requests,
            "unpriced_requests": metrics.unpriced_requests,
            "unpriced_share": metrics.unpriced_requests / requests if requests else None,
            "tokens": metrics.tokens,
            "latency_ms": metrics.latency_ms,
            "ttft_ms": metrics.ttft_ms,
            "active_users": metrics.active_users,
            "cache_hits": metrics.cache_hits,
            "cache_hit_rate": metrics.cache_hits / requests if requests else None,
            "cache_saved_usd": nano_to_usd(metrics.cache_saved_nano_usd),
            "cache_saved_nano_usd": metrics.cache_saved_nano_usd,
        }
    )
    if scores is not None:
        out.update(scores_json(scores))
    return out


def _breakdown_json(part: Breakdown) -> dict[str, Any]:
    requests, errors = part.requests, part.errors
    return {
        "group": part.group,
        "requests": requests,
        "errors": errors,
        "error_rate": errors / requests if requests else None,
        "cost_usd": nano_to_usd(part.cost_nano_usd),
        "cost_nano_usd": part.cost_nano_usd,
        "priced_requests": part.priced_requests,
        "unpriced_requests": part.unpriced_requests,
        "unpriced_share": part.unpriced_requests / requests if requests else None,
    }
